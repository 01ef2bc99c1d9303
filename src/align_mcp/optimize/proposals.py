"""Prompt proposals: a judge prompt revised from dev failures, checked on held-out test, applied when asked."""

from __future__ import annotations

import difflib
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import anyio
from pydantic import Field

from align_mcp import config
from align_mcp.core import metrics
from align_mcp.core.jury import lead_settings
from align_mcp.core.models import (
    Evaluator,
    FailureAnalysis,
    JudgeSettings,
    MisalignedCase,
    ModeOutcome,
    Proposal,
    ProposalSummary,
    Score,
    ScoreType,
    SplitComparison,
)
from align_mcp.core.templates import prompt_file, uses_few_shot
from align_mcp.engine import alignment, few_shot, holdout, jury
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.engine.evaluators import update_draft
from align_mcp.engine.queues import reference_set
from align_mcp.errors import AlignError, Conflict, InvalidInput, NextStep, NotFound
from align_mcp.llm.client import CallFailed, ReplyError, open_client
from align_mcp.llm.endpoint import Endpoint, resolve_endpoint
from align_mcp.llm.runner import Budget, BudgetSpent, Progress
from align_mcp.llm.structured import StructuredReply, parse_model, reply_format
from align_mcp.optimize.candidates import MAX_BUDGET, Judging, Outcome, Template, is_wrong
from align_mcp.optimize.failure_modes import analysis_for, case_text, direction_label, misaligned_cases
from align_mcp.optimize.few_shot_search import propose_few_shot
from align_mcp.optimize.gepa import gepa_search, gepa_step_cost, load_dspy
from align_mcp.store import NewProposal, Store, now_iso

Mode = Literal["gepa", "reflect", "fewshot"]

DEFAULT_BUDGET = 300
REFLECT_EXAMPLES = 12  # misaligned examples shown to the reflect-mode rewrite
MIN_REWRITE_SHARE = 0.5
"""A reflect-mode rewrite shorter than this share of the current text is a fragment, not a revision: the
meta-prompt asks for the complete text at about its current length (a tiny model answers with a phrase)."""


# ---- public API -------------------------------------------------------------------------------------------


async def propose_prompt(
    store: Store,
    evaluator: str,
    mode: Mode = "gepa",
    budget: int = DEFAULT_BUDGET,
    on_progress: Progress | None = None,
    *,
    concurrency: int | None = None,
    env: config.Settings | None = None,
) -> Proposal:
    """Propose a revised judge prompt from the draft's dev failures, and check it on the held-out test split.

    `mode='gepa'` (default) searches with DSPy's GEPA optimizer: candidate prompts are judged on dev examples
    and a reflection model rewrites the instructions from feedback carrying the human score and comment and
    the judge's score and reasoning. `mode='reflect'` makes one rewrite from the failure modes, for small
    budgets, and needs no DSPy. `budget` caps the model calls: every HTTP request to the judge, reflection or
    analysis model counts, retries and re-asks included (cache hits are free), and it is never exceeded.
    `mode='fewshot'` searches which corrected dev examples {{few_shot_examples}} shows (strategy and k), adding
    the variable before the example when the draft lacks it. The result holds the revised prompt (same template variables), its
    diff against the draft, the failure modes it addresses, and dev and test agreement and kappa of the draft
    vs the proposal with 95% intervals and McNemar's flip test. The proposal is stored but not applied:
    apply_proposal copies it into the draft, and only save_prompt makes it a version.
    """
    started = time.perf_counter()
    if mode not in ("gepa", "reflect", "fewshot"):
        raise InvalidInput(
            f"mode={mode!r} is not 'gepa' (DSPy GEPA search), 'reflect' (one rewrite) or 'fewshot' (corrected "
            "examples)."
        )
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= MAX_BUDGET:
        raise InvalidInput(f"budget={budget!r} must be a whole number of model calls from 1 to {MAX_BUDGET}.")
    if mode == "fewshot":
        return await propose_few_shot(store, evaluator, budget, on_progress, concurrency=concurrency, env=env)
    if uses_few_shot(get_evaluator(store, evaluator).draft):
        raise InvalidInput(
            f"The draft of {evaluator!r} shows {{{{few_shot_examples}}}}; mode={mode!r} rewrites the instructions "
            "of a prompt without them. Use mode='fewshot' to tune the examples, or take the variable out first.",
            NextStep("propose_prompt", {"evaluator": evaluator, "mode": "fewshot"}),
        )
    dspy = load_dspy() if mode == "gepa" else None
    env = env or config.load()
    ev = get_evaluator(store, evaluator)
    # A jury's members judge; its lead (the evaluator's model, else the first member) reflects and analyzes.
    endpoint = resolve_endpoint(lead_settings(ev.judge), env)
    # A member's own prompt showing {{few_shot_examples}} shows the draft's examples, as in an alignment run.
    shown = few_shot.draft_prompt(store, evaluator, ev.draft, ev.judge)[1]
    members = jury.members(shown, env) if ev.judge.members else []
    dev, test = _holdout(store, evaluator)
    template = Template.split(ev.draft)
    spend = Budget(budget)
    judging = Judging(store, ev, endpoint, spend, concurrency or env.concurrency, on_progress, members)
    judging.load_runs([rid for rid, _ in dev + test])
    per = judging.calls_per_example
    try:
        covering = _covering_dev_run(
            store, ev, shown, jury.jury_endpoint(ev.judge, env) if members else endpoint, dev
        )
        dev_cost = 0 if covering is not None else judging.uncached(ev.draft, [rid for rid, _ in dev])
        test_cost = judging.uncached(ev.draft, [rid for rid, _ in test])
        step = gepa_step_cost(len(dev), per)
        floor = {
            "gepa": dev_cost + test_cost + step + len(test) * per,
            "reflect": dev_cost + test_cost + 1 + (len(dev) + len(test)) * per,
        }
        if budget < floor[mode]:
            raise InvalidInput(
                _budget_message(
                    mode, budget, floor, dev_cost, test_cost, len(dev) * per, len(test) * per, per
                )
            )
        # Progress counts model calls to the expected total: a reflect proposal's known calls (and the failure
        # analysis), or the budget a GEPA search may spend; it reaches the total when the proposal is done.
        judging.planned = budget if mode == "gepa" else min(budget, floor[mode] + 1)
        aid = (
            covering
            if covering is not None
            else await _judge_draft_on_dev(store, ev, spend, _draft_progress(on_progress, judging), env)
        )
        judging.adopt(ev.draft, store, aid)
        before_dev = judging.results.get(ev.draft, {})
        misaligned = [rid for rid, human in dev if is_wrong(before_dev.get(rid), human)]
        if not misaligned:
            errors = sum(1 for rid, _ in dev if before_dev.get(rid) is None or before_dev[rid].error)
            raise InvalidInput(
                f"The draft of {evaluator!r} agrees with the human label on every judged dev example "
                f"({len(dev) - errors} of {len(dev)}{f'; {errors} could not be judged' if errors else ''}, "
                f"alignment run {aid}): there is nothing to optimize. Label more runs, especially ones you "
                "expect the judge to get wrong.",
                NextStep("add_to_queue", {"evaluator": evaluator}),
                NextStep("run_alignment", {"evaluator": evaluator}),
            )
        reserve = test_cost + (len(test) + (0 if mode == "gepa" else len(dev))) * per
        analysis, notes = await analysis_for(
            store, ev, aid, env, spend, reserve + (step if mode == "gepa" else 1)
        )
        if mode == "gepa":
            assert dspy is not None
            stopped, skipped = await gepa_search(dspy, judging, template, dev, store, reserve, endpoint, ev)
            if skipped:
                notes.append(
                    f"{len(skipped)} reflection repl(ies) could not be used and were skipped (first: {skipped[0]})."
                )
        else:
            stopped = False
            cases = misaligned_cases(store, evaluator, aid)[0]
            await _reflect(judging, ev, endpoint, template, analysis, cases, dev, reserve)
        chosen = judging.best(dev, template, ev.score_type)
        await judging.many(ev.draft, [rid for rid, _ in test])
        await judging.many(chosen, [rid for rid, _ in test])
        test_looks = store.count_test_evaluation(evaluator)
        if on_progress is not None:
            total = max(spend.used, judging.planned)
            await on_progress(total, total, f"optimizer: done, {spend.used} of {budget} model calls used")
    finally:
        judging.stopped.set()
        with anyio.CancelScope(shield=True):
            await judging.aclose()
    return _store_proposal(
        store,
        ev,
        mode,
        template,
        chosen,
        dev,
        test,
        judging,
        analysis,
        aid,
        stopped,
        test_looks,
        notes,
        time.perf_counter() - started,
    )


def get_proposal(store: Store, proposal_id: int) -> Proposal:
    """A stored proposal: the revised prompt, its diff, the failure modes it addresses and its dev/test scores."""
    row = store.get_proposal(proposal_id)
    if row is None:
        raise NotFound(f"No proposal {proposal_id}.", NextStep("list_proposals"), NextStep("propose_prompt"))
    return row.result


def list_proposals(store: Store, evaluator: str) -> list[ProposalSummary]:
    """An evaluator's proposals, oldest first, with dev and test agreement before and after."""
    get_evaluator(store, evaluator)
    out = []
    for row in store.proposals(evaluator):
        p = row.result
        out.append(
            ProposalSummary(
                id=p.id,
                evaluator=p.evaluator,
                mode=p.mode,
                status=p.status,
                changed=p.changed,
                dev_before=p.dev.before.agreement.value,
                dev_after=p.dev.after.agreement.value,
                test_before=p.test.before.agreement.value,
                test_after=p.test.after.agreement.value,
                dev_before_ci=p.dev.before.agreement.ci,
                dev_after_ci=p.dev.after.agreement.ci,
                test_before_ci=p.test.before.agreement.ci,
                test_after_ci=p.test.after.agreement.ci,
                calls_used=p.budget.used,
                created_at=p.created_at,
                applied_at=p.applied_at,
            )
        )
    return out


def apply_proposal(store: Store, evaluator: str, proposal_id: int, force: bool = False) -> Evaluator:
    """Copy a proposal's prompt into the evaluator's draft. Nothing is saved: save_prompt makes it a version.

    Refuses when the draft was edited after the proposal was made (those edits would be lost) unless `force`.
    """
    proposal = get_proposal(store, proposal_id)
    if proposal.evaluator != evaluator:
        raise InvalidInput(f"Proposal {proposal_id} belongs to {proposal.evaluator!r}, not {evaluator!r}.")
    if not proposal.changed:
        raise InvalidInput(
            f"Proposal {proposal_id} is identical to the draft it started from; there is nothing to apply."
        )
    current = get_evaluator(store, evaluator).draft
    if current == proposal.prompt and proposal.few_shot is None:
        store.mark_proposal_applied(proposal_id)
        return get_evaluator(store, evaluator)
    if current != proposal.base_prompt and not force:
        raise Conflict(
            f"The draft of {evaluator!r} changed after proposal {proposal_id} was made; applying it would discard "
            "those edits.",
            NextStep("show_draft", {"evaluator": evaluator}),
            NextStep("apply_proposal", {"evaluator": evaluator, "proposal_id": proposal_id, "force": True}),
            NextStep("propose_prompt", {"evaluator": evaluator}),
        )
    updated = update_draft(store, evaluator, prompt=proposal.prompt, few_shot_settings=proposal.few_shot)
    store.mark_proposal_applied(proposal_id)
    return updated


# ---- the steps of a proposal ------------------------------------------------------------------------------


def _holdout(store: Store, evaluator: str) -> tuple[list[tuple[str, Score]], list[tuple[str, Score]]]:
    if holdout.ensure_split(store, evaluator) is None:
        reason = holdout.needed_labels(reference_set(store, evaluator)) or "No holdout exists yet."
        raise InvalidInput(
            f"The optimizer checks its proposal on held-out examples, so {evaluator!r} needs a dev/test split "
            f"first. {reason}"
        )
    _, dev = holdout.examples_for(store, evaluator, "dev")
    _, test = holdout.examples_for(store, evaluator, "test")
    if not dev or not test:
        raise InvalidInput(
            f"The dev/test split of {evaluator!r} has {len(dev)} dev and {len(test)} test examples; the optimizer "
            "needs both. Label more runs."
        )
    return dev, test


def _covering_dev_run(
    store: Store, ev: Evaluator, judge: JudgeSettings, endpoint: Endpoint, dev: Sequence[tuple[str, Score]]
) -> int | None:
    """A completed dev run of exactly the current draft and settings (`judge`, as a run of the draft stores them)
    over exactly the current dev labels."""
    wanted = dict(dev)
    for aid in reversed(store.alignment_run_ids(ev.name)[-20:]):
        row = store.alignment_run_row(aid)
        if row is None or row.split != "dev" or row.status != "completed":
            continue
        if row.prompt != ev.draft or row.judge != judge or row.model != endpoint.model:
            continue
        have = {r.run_id: r.human_score for r in store.alignment_results(aid)}
        if have == wanted:
            return aid
    return None


async def _judge_draft_on_dev(
    store: Store, ev: Evaluator, spend: Budget, on_progress: Progress | None, env: config.Settings
) -> int:
    """Judge the draft on dev with run_alignment (stored like any alignment run); each of its requests is taken
    from the budget, retries and re-asks included."""
    try:
        report = await alignment.run_alignment(
            store,
            ev.name,
            "draft",
            split="dev",
            compare=False,
            on_progress=on_progress,
            env=env,
            on_request=spend.taker("judge"),
        )
    except BudgetSpent:
        raise InvalidInput(
            f"budget={spend.limit} model calls ran out while judging the draft on dev ({spend.used} requests, "
            "retries and re-asks included), before anything could be proposed. Pass a larger budget.",
            NextStep("propose_prompt", {"evaluator": ev.name, "budget": spend.limit * 2}),
        ) from None
    spend.judged += report.run.judged - report.run.cache_hits
    spend.reasks += report.run.reasks
    spend.cache_hits += report.run.cache_hits
    if _run_prompt(store, report.run.id) != ev.draft:
        raise Conflict(f"The draft of {ev.name!r} changed while the optimizer started; propose again.")
    return report.run.id


def _draft_progress(on_progress: Progress | None, judging: Judging) -> Progress | None:
    """The draft's dev run reported as the proposal's first model calls, toward the proposal's total."""
    if on_progress is None:
        return None
    report = on_progress

    async def draft(done: int, total: int, message: str) -> None:
        used = judging.budget.used + done
        await report(used, max(used, judging.planned or judging.budget.limit), message)

    return draft


def _run_prompt(store: Store, alignment_id: int) -> str:
    row = store.alignment_run_row(alignment_id)
    return row.prompt if row else ""


def _budget_message(
    mode: str,
    budget: int,
    floor: dict[str, int],
    dev_cost: int,
    test_cost: int,
    dev: int,
    test: int,
    per: int = 1,
) -> str:
    """Why `budget` is too small; `dev` and `test` are the calls judging each split takes (examples × `per`, the
    calls per example)."""
    parts = [
        f"the draft on dev: {dev_cost}" + (" (the rest is cached)" if dev_cost < dev else ""),
        f"the draft on test: {test_cost}",
    ]
    if mode == "gepa":
        parts += [f"one GEPA step: {gepa_step_cost(dev // per, per)}", f"the proposal on test: {test}"]
    else:
        parts += ["one rewrite: 1", f"the proposal on dev: {dev}", f"the proposal on test: {test}"]
    other = "reflect" if mode == "gepa" else "gepa"
    return (
        f"budget={budget} model calls is below the minimum useful for mode={mode!r} here: {floor[mode]} "
        f"({', '.join(parts)}). Pass budget={floor[mode]} or more"
        + (f", or use mode={other!r} (needs {floor[other]})." if floor[other] < floor[mode] else ".")
    )


async def _reflect(
    judging: Judging,
    ev: Evaluator,
    endpoint: Endpoint,
    template: Template,
    analysis: FailureAnalysis,
    cases: Sequence[MisalignedCase],
    dev: Sequence[tuple[str, Score]],
    reserve: int,
) -> None:
    """One structured rewrite from the failure modes and misaligned dev examples; the result is judged on dev.

    An unusable reply (no JSON, or instructions that break the template) is shown to the model and asked again
    once, when the budget still covers the evaluation after it.
    """
    by_id = {c.run_id: c for c in cases}
    queues = [[by_id[rid] for rid in mode.run_ids if rid in by_id] for mode in analysis.modes]
    shown: list[MisalignedCase] = []
    while len(shown) < REFLECT_EXAMPLES and any(queues):  # round-robin, so every mode is illustrated
        for queue in queues:
            if queue and len(shown) < REFLECT_EXAMPLES:
                shown.append(queue.pop(0))
    kind = "instructions" if template.tail else "template"
    modes = "\n".join(
        f"- {m.name} ({direction_label(m.direction)}, {len(m.run_ids)} example(s)): {m.description}"
        for m in analysis.modes
    )
    user = "\n\n".join(
        [
            f"Score type: {ev.score_type.describe()}.",
            f"The judge's current {kind}:\n<instructions>\n{template.instructions}\n</instructions>",
            template.variables_rule(),
            f"Failure modes on the dev examples:\n{modes}",
            "Examples the judge got wrong:\n\n" + "\n\n".join(case_text(c, ev.score_type) for c in shown),
        ]
    )
    messages = [
        {"role": "system", "content": prompt_file("optimizer_reflect.md")},
        {"role": "user", "content": user},
    ]

    def usable(content: str | None) -> str:
        """The candidate template of a reply; ReplyError when it is empty or breaks the template."""
        revision = parse_model(content, _Revision)
        candidate = template.assemble(revision.instructions)
        if not revision.instructions.strip():
            raise ReplyError("the revised text is empty")
        if (found := template.problem(candidate)) is not None:
            raise ReplyError(f"the revised {kind} {found}")
        length, current = len(revision.instructions.strip()), len(template.instructions)
        if candidate != template.original and length < MIN_REWRITE_SHARE * current:
            raise ReplyError(
                f"the revision is {length:,} character{'' if length == 1 else 's'} long, under half of the "
                f"current {kind} ({current:,}): "
                "reply with the complete revised text, not a summary or a fragment"
            )
        return candidate

    # The reflection answers at length: the judge's max_tokens would cut it short.
    settings = lead_settings(ev.judge).model_copy(update={"max_tokens": None})
    try:
        async with open_client(endpoint, settings, on_request=judging.budget.taker("reflection")) as client:
            answer = await client.structured(
                messages,
                reply_format("prompt_revision", _Revision),
                usable,
                may_reask=lambda: judging.budget.leaves(reserve),
            )
    except CallFailed as e:
        raise AlignError(
            f"The reflection model did not return usable instructions ({e.problem}). Try the gepa mode, or edit "
            "the draft by hand from the failure modes.",
            NextStep("propose_prompt", {"evaluator": ev.name, "mode": "gepa"}),
            NextStep("analyze_failures", {"evaluator": ev.name}),
            NextStep("update_draft", {"evaluator": ev.name}),
        ) from e
    await judging.many(answer.value, [rid for rid, _ in dev])


class _Revision(StructuredReply):
    analysis: str = Field(description="What to change and why, in a few sentences")
    instructions: str = Field(description="The complete revised text")


# ---- the proposal -------------------------------------------------------------------------------------------


def _compare(
    split: Literal["dev", "test"],
    examples: Sequence[tuple[str, Score]],
    judging: Judging,
    base: str,
    chosen: str,
    score_type: ScoreType,
) -> SplitComparison:
    def outcome(template: str, rid: str) -> Outcome | None:
        return judging.results.get(template, {}).get(rid)

    def judged(template: str, rid: str) -> Score | None:
        o = outcome(template, rid)
        return o.score if o is not None and o.error is None else None

    # Both sides are measured on the examples both prompts judged: an example one of them could not judge would
    # otherwise count on one side only, and the two rates would describe different sets.
    common = [
        (rid, h) for rid, h in examples if judged(base, rid) is not None and judged(chosen, rid) is not None
    ]

    def pairs(template: str) -> list[tuple[Score, Score | None]]:
        return [(human, judged(template, rid)) for rid, human in common]

    def correct(template: str) -> dict[str, bool]:
        return {rid: judged(template, rid) == human for rid, human in common}

    return SplitComparison(
        split=split,
        n=len(examples),
        before=metrics.compute_metrics(score_type, pairs(base)),
        after=metrics.compute_metrics(score_type, pairs(chosen)),
        flips=metrics.flip_report(correct(base), correct(chosen), "draft", "proposal"),
        excluded=len(examples) - len(common),
    )


def _excluded_note(
    comparison: SplitComparison,
    examples: Sequence[tuple[str, Score]],
    judging: Judging,
    base: str,
    chosen: str,
) -> str | None:
    """Which examples a comparison left out, and why (the first error of each side)."""
    if not comparison.excluded:
        return None

    def failed(template: str) -> list[Outcome | None]:
        found = [judging.results.get(template, {}).get(rid) for rid, _ in examples]
        return [o for o in found if o is None or o.error is not None or o.score is None]

    sides = []
    for name, template in (("the draft", base), ("the proposal", chosen)):
        bad = failed(template)
        if bad and (name == "the draft" or template != base):
            first = next((o.error for o in bad if o is not None and o.error), "not judged")
            sides.append(f"{name} could not judge {len(bad)} (first: {first})")
    return (
        f"On {comparison.split}, {comparison.excluded} of {comparison.n} example(s) are left out of the "
        f"comparison, so both sides are measured on the same {comparison.n - comparison.excluded}: "
        + "; ".join(sides)
        + "."
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _verdict(dev: SplitComparison, test: SplitComparison, changed: bool) -> tuple[str, list[str]]:
    if not changed:
        return (
            f"No candidate agreed with the human labels more often than the draft on dev "
            f"({_pct(dev.before.agreement.value)}), so the proposal is the draft itself and there is nothing to "
            "apply. Read the failure modes and edit the draft by hand, label more runs, or try a larger budget.",
            [],
        )
    tb, ta = test.before.agreement.value, test.after.agreement.value
    text = (
        f"Dev agreement {_pct(dev.before.agreement.value)} -> {_pct(dev.after.agreement.value)}: "
        f"{dev.flips.verdict} On the held-out test split, which the optimizer never saw: {_pct(tb)} -> "
        f"{_pct(ta)}: {test.flips.verdict}"
    )
    warnings: list[str] = []
    if tb is not None and ta is not None and ta < tb:
        warnings.append(
            "The proposal does worse than the draft on the held-out test split: it probably fits the dev "
            "examples rather than the task. Do not apply it as is; label more runs and propose again."
        )
        text += " It does worse on test, so do not apply it as is."
    elif tb is not None and ta is not None and ta == tb:
        text += " It does no better on test, so its dev gain may not generalise; label more runs before trusting it."
    else:
        text += (
            " Applying it copies it into the draft (nothing is saved); judging the reference set again confirms "
            "it, and saving the draft keeps it as a version."
        )
    return text, warnings


def _store_proposal(
    store: Store,
    ev: Evaluator,
    mode: Mode,
    template: Template,
    chosen: str,
    dev: Sequence[tuple[str, Score]],
    test: Sequence[tuple[str, Score]],
    judging: Judging,
    analysis: FailureAnalysis,
    aid: int,
    stopped: bool,
    test_looks: int,
    notes: list[str],
    wall: float,
) -> Proposal:
    base = template.original
    changed = chosen != base
    dev_cmp = _compare("dev", dev, judging, base, chosen, ev.score_type)
    test_cmp = _compare("test", test, judging, base, chosen, ev.score_type)
    after = judging.results.get(chosen, {})
    humans = dict(dev)
    addresses = [
        ModeOutcome(
            name=m.name,
            description=m.description,
            direction=m.direction,
            cases=len(m.run_ids),
            fixed=sum(
                1
                for rid in m.run_ids
                if (o := after.get(rid)) is not None and o.error is None and o.score == humans.get(rid)
            ),
            run_ids=m.run_ids,
        )
        for m in analysis.modes
    ]
    verdict, warnings = _verdict(dev_cmp, test_cmp, changed)
    notes = list(notes)
    for comparison, examples in ((dev_cmp, dev), (test_cmp, test)):
        if (excluded := _excluded_note(comparison, examples, judging, base, chosen)) is not None:
            notes.append(excluded)
    if stopped:
        notes.append(
            f"The search stopped when the budget ran low ({judging.budget.used} of {judging.budget.limit} calls "
            "used, keeping enough to judge the proposal on test); a larger budget lets it try more candidates."
        )
    spent = judging.budget
    if spent.refused:
        warnings.append(
            f"The budget ran out before every example was judged: {spent.refused} judgement(s) were not made "
            f"({spent.used} of {spent.limit} model calls used). Comparisons leave those examples out; pass a larger "
            "budget for a complete check."
        )
    extra = spent.counts["judge"] - spent.judged
    if extra > 0:
        notes.append(
            f"{spent.counts['judge']} judge request(s) judged {spent.judged} example(s): {spent.reasks} re-ask(s) "
            f"after unusable replies, and {extra - spent.reasks} request(s) that were retried, failed, or were cut "
            "off when the budget ran out. The budget counts every request."
        )
    notes.append(
        f"The draft and the proposal were judged once each on the held-out test split; the test split has now "
        f"been evaluated {test_looks} time(s). Test results are reported, never used to choose."
    )
    diff = "".join(
        difflib.unified_diff(
            base.splitlines(keepends=True),
            chosen.splitlines(keepends=True),
            fromfile="draft",
            tofile="proposal",
        )
    )
    proposal = Proposal(
        id=0,
        evaluator=ev.name,
        mode=mode,
        status="proposed",
        changed=changed,
        prompt=chosen,
        base_prompt=base,
        diff=diff,
        addresses=addresses,
        dev=dev_cmp,
        test=test_cmp,
        verdict=verdict,
        budget=judging.budget.report(stopped or judging.budget.refused > 0),
        candidates=judging.full_candidates(dev),
        seen_examples=len(dev),
        alignment_run=aid,
        analysis_id=analysis.id,
        wall_seconds=round(wall, 2),
        created_at=datetime.fromisoformat(now_iso()),
        warnings=warnings,
        notes=notes,
    )
    new_id = store.insert_proposal(
        NewProposal(ev.name, mode, aid, analysis.id, base, chosen, [rid for rid, _ in dev], proposal)
    )
    return proposal.model_copy(update={"id": new_id})
