"""The few-shot proposal: search the selection of corrected examples (strategy × k) on dev within the call
budget, check the best on the held-out test split, and propose it (never applied implicitly)."""

from __future__ import annotations

import difflib
import time
from collections.abc import Sequence
from datetime import datetime

import anyio

from align_mcp import config
from align_mcp.core import metrics
from align_mcp.core.few_shot import STRATEGIES, FewShotSettings
from align_mcp.core.jury import lead_settings
from align_mcp.core.models import Evaluator, Proposal, Score, SplitComparison
from align_mcp.core.templates import FEW_SHOT, VARIABLE, fill_few_shot, uses_few_shot
from align_mcp.engine import few_shot, holdout, jury
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.engine.evaluators import prompt_for
from align_mcp.errors import InvalidInput, NextStep
from align_mcp.llm.endpoint import resolve_endpoint
from align_mcp.llm.runner import Budget, Progress
from align_mcp.optimize.candidates import Judging, example_credit
from align_mcp.store import NewProposal, Store, now_iso

KS = (1, 2, 3, 5, 8)
"""The k values tried (those up to the corrections available)."""


def with_variable(template: str) -> str:
    """The template showing {{few_shot_examples}}: as it is when it does, else inserted as its own paragraph just
    before the paragraph of the example's first variable (so the shared prefix ends where the example starts)."""
    if uses_few_shot(template):
        return template
    first = VARIABLE.search(template)
    cut = template.rfind("\n\n", 0, first.start()) if first is not None else -1
    if cut < 0:
        return "{{" + FEW_SHOT + "}}\n\n" + template
    return template[:cut] + "\n\n{{" + FEW_SHOT + "}}" + template[cut:]


def candidate_settings(available: int, has_modes: bool) -> list[FewShotSettings]:
    """The selections to try, cheapest first: each strategy (cover only with stored failure modes) at each k."""
    ks = [k for k in KS if k <= available] or [available]
    strategies = [s for s in STRATEGIES if s != "cover" or has_modes]
    return [FewShotSettings(k=k, strategy=s) for k in ks for s in strategies]


async def propose_few_shot(
    store: Store,
    evaluator: str,
    budget: int,
    on_progress: Progress | None = None,
    *,
    concurrency: int | None = None,
    env: config.Settings | None = None,
) -> Proposal:
    """Search few-shot selections on dev, check the best on test, and store it as a proposal of mode 'fewshot'."""
    started = time.perf_counter()
    env = env or config.load()
    ev = get_evaluator(store, evaluator)
    own = [m.model for m in ev.judge.members if m.prompt is not None and uses_few_shot(m.prompt)]
    if own:
        raise InvalidInput(
            f"mode='fewshot' tries selections of examples in the shared prompt of {evaluator!r}, but jury "
            f"member(s) {', '.join(own)} show {{{{{FEW_SHOT}}}}} in their own prompt, which the search cannot "
            "vary with it. Take the variable out of the members' own prompts (or their own prompts out), "
            "then propose again.",
            NextStep("update_draft", {"evaluator": evaluator}),
        )
    dev, test = _holdout(store, evaluator)
    found = few_shot.corrections(store, evaluator)
    if not found.items:
        why = found.missing.text if found.missing is not None else "There are no corrections."
        raise InvalidInput(
            f"mode='fewshot' picks examples from the corrections of {evaluator!r}, and there are none: {why}",
            *(found.missing.next_steps if found.missing is not None else []),
        )
    assert found.alignment_run is not None
    template = with_variable(ev.draft)
    base = prompt_for(store, evaluator, "draft")[1]
    has_modes = store.latest_failure_analysis(found.alignment_run) is not None
    texts: dict[str, FewShotSettings] = {}
    for option in candidate_settings(len(found.items), has_modes):
        text = fill_few_shot(template, few_shot.choose(store, evaluator, option).block)
        texts.setdefault(text, option)  # settings that choose the same examples are one candidate
    # A jury's members judge every selection, as in an alignment run (the lead model stands for the jury).
    endpoint = resolve_endpoint(lead_settings(ev.judge), env)
    members = jury.members(ev.judge, env) if ev.judge.members else []
    spend = Budget(budget)
    judging = Judging(store, ev, endpoint, spend, concurrency or env.concurrency, on_progress, members)
    dev_ids, test_ids = [rid for rid, _ in dev], [rid for rid, _ in test]
    judging.load_runs(dev_ids + test_ids)
    try:
        floor = judging.uncached(base, dev_ids) + judging.uncached(base, test_ids) + 2 * len(test_ids)
        first = next(iter(texts))
        floor += judging.uncached(first, dev_ids)
        if budget < floor:
            raise InvalidInput(
                f"budget={budget} model calls is below the minimum for mode='fewshot' here: {floor} (the draft on "
                f"dev and test, one selection on dev, the best on test). Pass budget={floor} or more.",
                NextStep("propose_prompt", {"evaluator": evaluator, "mode": "fewshot", "budget": floor}),
            )
        judging.planned = min(budget, floor + sum(judging.uncached(t, dev_ids) for t in list(texts)[1:]))
        await judging.many(base, dev_ids)
        tried = 0
        stopped = False
        for text in texts:
            if judging.uncached(text, dev_ids) > spend.remaining - judging.uncached(base, test_ids) - len(
                test_ids
            ):
                stopped = True
                break
            await judging.many(text, dev_ids)
            tried += 1
        chosen = _best(judging, dev, ev, base, list(texts)[:tried])
        await judging.many(base, test_ids)
        await judging.many(chosen, test_ids)
        test_looks = store.count_test_evaluation(evaluator)
    finally:
        judging.stopped.set()
        with anyio.CancelScope(shield=True):
            await judging.aclose()
    settings = texts.get(chosen)
    changed = settings is not None and chosen != base
    dev_cmp = _compare("dev", dev, judging, base, chosen, ev)
    test_cmp = _compare("test", test, judging, base, chosen, ev)
    notes = [
        f"Tried {tried} of {len(texts)} selection(s) of the {len(found.items)} correction(s) ({found.origin()}) "
        "on dev; test results are reported, never used to choose.",
        f"The test split has now been evaluated {test_looks} time(s).",
    ]
    if not has_modes:
        notes.append(
            f"strategy=cover was not tried: no failure modes are stored for alignment run {found.alignment_run}."
        )
    if stopped:
        notes.append("The search stopped when the budget ran low; a larger budget tries more selections.")
    prompt = template if changed else ev.draft
    verdict = _verdict(dev_cmp, test_cmp, settings if changed else None)
    proposal = Proposal(
        id=0,
        evaluator=evaluator,
        mode="fewshot",
        status="proposed",
        changed=changed,
        prompt=prompt,
        base_prompt=ev.draft,
        diff=_diff(ev, prompt, settings if changed else None),
        addresses=[],
        dev=dev_cmp,
        test=test_cmp,
        verdict=verdict,
        budget=spend.report(stopped or spend.refused > 0),
        candidates=tried + 1,
        seen_examples=len(dev),
        alignment_run=found.alignment_run,
        analysis_id=None,
        wall_seconds=round(time.perf_counter() - started, 2),
        created_at=datetime.fromisoformat(now_iso()),
        notes=notes,
        few_shot=settings.describe() if changed and settings is not None else None,
    )
    new_id = store.insert_proposal(
        NewProposal(evaluator, "fewshot", found.alignment_run, None, ev.draft, prompt, dev_ids, proposal)
    )
    return proposal.model_copy(update={"id": new_id})


def _holdout(store: Store, evaluator: str) -> tuple[list[tuple[str, Score]], list[tuple[str, Score]]]:
    if holdout.ensure_split(store, evaluator) is None:
        raise InvalidInput(
            f"mode='fewshot' picks examples from dev and checks them on held-out test runs, so {evaluator!r} "
            "needs a dev/test split first. Label more runs of both classes.",
            NextStep("add_to_queue", {"evaluator": evaluator}),
        )
    return holdout.examples_for(store, evaluator, "dev")[1], holdout.examples_for(store, evaluator, "test")[1]


def _best(
    judging: Judging, dev: Sequence[tuple[str, Score]], ev: Evaluator, base: str, texts: Sequence[str]
) -> str:
    """The selection with the best mean dev credit; the draft unless one does strictly better."""

    def credit(text: str) -> float:
        results = judging.results.get(text, {})
        return sum(example_credit(ev.score_type, human, results.get(rid)) for rid, human in dev) / max(
            1, len(dev)
        )

    best, best_credit = base, credit(base)
    for text in texts:
        if (value := credit(text)) > best_credit + 1e-12:
            best, best_credit = text, value
    return best


def _compare(
    split: str, examples: Sequence[tuple[str, Score]], judging: Judging, base: str, chosen: str, ev: Evaluator
) -> SplitComparison:
    def judged(text: str, rid: str) -> Score | None:
        o = judging.results.get(text, {}).get(rid)
        return o.score if o is not None and o.error is None else None

    common = [
        (rid, h) for rid, h in examples if judged(base, rid) is not None and judged(chosen, rid) is not None
    ]
    return SplitComparison.model_validate(
        {
            "split": split,
            "n": len(examples),
            "before": metrics.compute_metrics(ev.score_type, [(h, judged(base, rid)) for rid, h in common]),
            "after": metrics.compute_metrics(ev.score_type, [(h, judged(chosen, rid)) for rid, h in common]),
            "flips": metrics.flip_report(
                {rid: judged(base, rid) == h for rid, h in common},
                {rid: judged(chosen, rid) == h for rid, h in common},
                "draft",
                "proposal",
            ),
            "excluded": len(examples) - len(common),
        }
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _verdict(dev: SplitComparison, test: SplitComparison, settings: FewShotSettings | None) -> str:
    if settings is None:
        return (
            f"No selection of corrected examples agreed with the human labels more often than the draft on dev "
            f"({_pct(dev.before.agreement.value)}), so there is nothing to apply."
        )
    text = (
        f"Showing corrected examples ({settings.describe()}): dev agreement {_pct(dev.before.agreement.value)} -> "
        f"{_pct(dev.after.agreement.value)}; on the held-out test split {_pct(test.before.agreement.value)} -> "
        f"{_pct(test.after.agreement.value)}."
    )
    tb, ta = test.before.agreement.value, test.after.agreement.value
    if tb is not None and ta is not None and ta < tb:
        return text + " It does worse on test, so do not apply it as is."
    return text + " Applying it sets the draft's few-shot settings (nothing is saved)."


def _diff(ev: Evaluator, prompt: str, settings: FewShotSettings | None) -> str:
    lines = list(
        difflib.unified_diff(
            ev.draft.splitlines(keepends=True),
            prompt.splitlines(keepends=True),
            fromfile="draft",
            tofile="proposal",
        )
    )
    if settings is not None:
        lines.append(f"few-shot settings: {settings.describe()}\n")
    return "".join(lines)
