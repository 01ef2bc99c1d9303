"""Failure modes: misaligned dev examples grouped by the judge model, or by terms in the human comments."""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from align_mcp import config
from align_mcp.core.jury import lead_settings
from align_mcp.core.models import Evaluator, FailureAnalysis, FailureMode, MisalignedCase, Score, ScoreType
from align_mcp.core.templates import prompt_file
from align_mcp.engine import alignment, holdout
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.errors import AlignError, JudgeConfigError
from align_mcp.llm.client import CallFailed, ModelClient, open_client
from align_mcp.llm.endpoint import Endpoint, resolve_endpoint
from align_mcp.llm.runner import Budget, BudgetSpent
from align_mcp.llm.structured import StructuredReply, ask
from align_mcp.optimize.candidates import MAX_BUDGET
from align_mcp.store import Store, now_iso

R = TypeVar("R", bound=BaseModel)

CASE_CHARS = 600  # per text field of an example shown to the analysis and reflection calls
ANALYSIS_CHUNK = 25  # misaligned examples per analysis call
KEYWORD_MODES_PER_DIRECTION = 3

DIRECTION_LABELS = {
    "false_pass": ("False passes", "the judge passed outputs the human failed"),
    "false_fail": ("False fails", "the judge failed outputs the human passed"),
    "over": ("Scored too high", "the judge scored above the human"),
    "under": ("Scored too low", "the judge scored below the human"),
    "mismatch": ("Wrong label", "the judge chose another label than the human"),
}


# ---- public API -------------------------------------------------------------------------------------------


async def analyze_failures(
    store: Store,
    evaluator: str,
    alignment_run: int | None = None,
    use_llm: bool = True,
    *,
    env: config.Settings | None = None,
) -> FailureAnalysis:
    """Group the misaligned dev examples of an alignment run into a few named failure modes.

    Each mode has a one-line description, its example ids and its direction (false_pass: the judge passed what
    the human failed; false_fail: the reverse). `alignment_run` defaults to the latest dev run (as
    get_misaligned). With `use_llm` and a judge model configured, the judge model groups the examples in one
    structured call (a few when there are many examples); otherwise, or when that call fails, the examples are
    grouped by direction and by terms recurring in the human comments. Test-split examples are never included.
    The analysis is stored with the alignment run it came from.
    """
    ev = get_evaluator(store, evaluator)
    aid = alignment_run if alignment_run is not None else alignment.latest_run_id(store, evaluator)
    cases, judged, prompt_ref = misaligned_cases(store, evaluator, aid)
    method, modes, calls, notes = await _analyze(ev, cases, use_llm, env or config.load(), None, 0)
    return _store_analysis(store, evaluator, aid, prompt_ref, method, judged, cases, modes, calls, notes)


async def analysis_for(
    store: Store, ev: Evaluator, aid: int, env: config.Settings, spend: Budget, keep: int
) -> tuple[FailureAnalysis, list[str]]:
    """The stored analysis of this run, else a new one whose model calls leave `keep` calls of the budget.

    Returns the analysis and the notes worth repeating in the proposal.
    """
    row = store.latest_failure_analysis(aid, "llm") or store.latest_failure_analysis(aid)
    if row is not None:
        return row.result, []
    cases, judged, prompt_ref = misaligned_cases(store, ev.name, aid)
    chunks = math.ceil(len(cases) / ANALYSIS_CHUNK)
    wanted = chunks + (1 if chunks > 1 else 0)
    use_llm = spend.remaining - wanted >= keep
    method, modes, calls, notes = await _analyze(ev, cases, use_llm, env, spend, keep)
    if not use_llm:
        notes.append(
            f"The failure modes were grouped by comment terms: the {wanted} model call(s) of an analysis would "
            "have left too little of the budget."
        )
    analysis = _store_analysis(store, ev.name, aid, prompt_ref, method, judged, cases, modes, calls, notes)
    return analysis, notes


# ---- model calls for analysis and reflection ----------------------------------------------------------------


class _ModeItem(StructuredReply):
    name: str
    description: str
    run_ids: list[str]


class _Modes(StructuredReply):
    modes: list[_ModeItem]


class _MergedItem(StructuredReply):
    name: str
    description: str
    members: list[str]


class _Merged(StructuredReply):
    modes: list[_MergedItem]


# ---- failure modes ------------------------------------------------------------------------------------------


def misaligned_cases(store: Store, evaluator: str, aid: int) -> tuple[list[MisalignedCase], int, str]:
    """All misaligned dev cases of a run (texts clipped), how many dev examples it judged, and its prompt ref."""
    cases: list[MisalignedCase] = []
    offset: int | None = 0
    prompt_ref = "draft"
    while offset is not None:
        page = alignment.get_misaligned(
            store, evaluator, alignment_run=aid, offset=offset, limit=100, max_chars=CASE_CHARS
        )
        cases.extend(page.cases)
        prompt_ref = page.prompt_ref
        offset = page.next_offset
    hidden = holdout.split_ids(store, evaluator, "test")
    judged = sum(
        1
        for r in store.alignment_results(aid)
        if r.error is None and r.judge_score is not None and r.run_id not in hidden
    )
    return cases, judged, prompt_ref


async def _analyze(
    ev: Evaluator,
    cases: Sequence[MisalignedCase],
    use_llm: bool,
    env: config.Settings,
    spend: Budget | None,
    keep: int,
) -> tuple[Literal["llm", "keywords"], list[FailureMode], int, list[str]]:
    """(method, modes, model calls, notes): the judge model groups the cases, else comment terms do.

    Every request the client sends is taken from the budget (retries included); a re-ask of an unusable reply
    is made only while `keep` requests stay in the budget after it.
    """
    spend = spend or Budget(MAX_BUDGET)
    before = spend.counts["analysis"]
    notes: list[str] = []
    if not cases:
        return "keywords", [], 0, ["No misaligned dev examples in this run: there is nothing to group."]
    if use_llm:
        try:
            endpoint: Endpoint | None = resolve_endpoint(lead_settings(ev.judge), env)
        except JudgeConfigError as e:
            endpoint = None
            notes.append(f"Grouped without a model: {e}")
        if endpoint is not None:
            try:
                # The analysis answers for many examples at once: the judge's max_tokens would cut it short.
                settings = lead_settings(ev.judge).model_copy(update={"max_tokens": None})
                async with open_client(endpoint, settings, on_request=spend.taker("analysis")) as client:
                    modes = await _llm_modes(ev, client, cases, spend, keep)
            except (CallFailed, BudgetSpent, AlignError) as e:
                notes.append(
                    f"The judge model could not group the failures ({e}); they were grouped by direction and by "
                    "terms recurring in the human comments instead."
                )
            else:
                return "llm", modes, spend.counts["analysis"] - before, notes
    return "keywords", _keyword_modes(cases), spend.counts["analysis"] - before, notes


async def _llm_modes(
    ev: Evaluator, client: ModelClient, cases: Sequence[MisalignedCase], spend: Budget, keep: int
) -> list[FailureMode]:
    system = prompt_file("optimizer_failure_modes.md")
    by_id = {c.run_id: c for c in cases}
    found: list[FailureMode] = []
    chunks = [list(cases[i : i + ANALYSIS_CHUNK]) for i in range(0, len(cases), ANALYSIS_CHUNK)]
    for chunk in chunks:
        user = f"Score type: {ev.score_type.describe()}.\n\n" + "\n\n".join(
            case_text(c, ev.score_type) for c in chunk
        )
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        reply = await ask(client, messages, "failure_modes", _Modes, may_reask=lambda: spend.leaves(keep))
        found.extend(_modes_from_reply(reply.value, chunk, by_id))
    if len(chunks) > 1:
        found = await _merge_modes(client, found, by_id, spend, keep)
    return _ordered(found)


async def _merge_modes(
    client: ModelClient,
    found: list[FailureMode],
    by_id: dict[str, MisalignedCase],
    spend: Budget,
    keep: int,
) -> list[FailureMode]:
    """One call merging the modes that separate batches found under different names (kept as is on failure)."""
    keys = {f"m{i + 1}": mode for i, mode in enumerate(found)}
    listing = "\n".join(
        f"- {key}: {m.name} ({len(m.run_ids)} example(s)): {m.description}" for key, m in keys.items()
    )
    messages = [
        {"role": "system", "content": prompt_file("optimizer_merge_modes.md")},
        {"role": "user", "content": f"Failure modes found in separate batches:\n{listing}"},
    ]
    try:
        reply = await ask(
            client,
            messages,
            "failure_mode_merge",
            _Merged,
            may_reask=lambda: spend.leaves(keep),
        )
    except CallFailed:
        return found
    merged = []
    for item in reply.value.modes:
        members = [keys.pop(k) for k in dict.fromkeys(item.members) if k in keys]
        if members:
            ids = [rid for m in members for rid in m.run_ids]
            merged.append(
                _mode(item.name or members[0].name, item.description or members[0].description, ids, by_id)
            )
    return merged + list(keys.values())


def _modes_from_reply(
    reply: _Modes, chunk: Sequence[MisalignedCase], by_id: dict[str, MisalignedCase]
) -> list[FailureMode]:
    """Modes from one analysis reply: unknown or repeated ids dropped, unassigned ones gathered in "Other"."""
    wanted = {c.run_id for c in chunk}
    taken: set[str] = set()
    modes = []
    for item in reply.modes:
        ids = [rid for rid in dict.fromkeys(item.run_ids) if rid in wanted and rid not in taken]
        taken.update(ids)
        if ids:
            modes.append(_mode(item.name or "Unnamed", item.description, ids, by_id))
    rest = [c.run_id for c in chunk if c.run_id not in taken]
    if rest:
        modes.append(_mode("Other", "Misaligned examples the analysis put in no failure mode.", rest, by_id))
    return modes


def _mode(
    name: str, description: str, run_ids: Sequence[str], by_id: dict[str, MisalignedCase]
) -> FailureMode:
    directions = sorted({by_id[rid].direction for rid in run_ids if rid in by_id})
    return FailureMode(
        name=name.strip()[:120] or "Unnamed",
        description=" ".join(description.split())[:400],
        direction=directions[0] if len(directions) == 1 else "mixed",
        run_ids=list(dict.fromkeys(run_ids)),
    )


def _ordered(modes: Sequence[FailureMode]) -> list[FailureMode]:
    return sorted(modes, key=lambda m: (m.name == "Other" or m.name.endswith(": other"), -len(m.run_ids)))


_STOPWORDS = frozenset(
    """about above after again against also although always another because been before being below between
    both cannot could does doing done down during each either else even every from further have having here
    into itself just like made make more most much must need never only other ought over same should since some
    such than that their theirs them then there these they this those though through under until very want
    were what when where which while whom whose will with within without would your yours answer output outputs
    judge human customer says said should".""".split()  # noqa: SIM905
)
_TERM = re.compile(r"[a-z][a-z'-]{3,}")


def _stem(word: str) -> str:
    word = word.strip("'-")
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4 and not word.endswith("ss"):
            return word[: len(word) - len(suffix)] + keep
    return word


def _terms(comment: str | None) -> dict[str, str]:
    """Stemmed key terms of a comment, each mapped to the first way it was written."""
    out: dict[str, str] = {}
    for word in _TERM.findall((comment or "").lower()):
        word = word.strip("'-")
        if word not in _STOPWORDS and len(word) >= 4:
            out.setdefault(_stem(word), word)
    return out


def _keyword_modes(cases: Sequence[MisalignedCase]) -> list[FailureMode]:
    """Group by direction, then greedily by the term shared by most of the remaining cases' human comments."""
    by_id = {c.run_id: c for c in cases}
    groups: dict[str, list[MisalignedCase]] = defaultdict(list)
    for case in cases:
        groups[case.direction].append(case)
    modes: list[FailureMode] = []
    for direction in sorted(groups, key=lambda d: (-len(groups[d]), d)):
        label, meaning = DIRECTION_LABELS.get(direction, (direction, "the judge disagreed with the human"))
        terms = {c.run_id: _terms(c.human_comment) for c in groups[direction]}
        left = [c.run_id for c in groups[direction]]
        found = 0
        while left and found < KEYWORD_MODES_PER_DIRECTION:
            counts = Counter(t for rid in left for t in terms[rid])
            common = sorted((t for t, n in counts.items() if n >= 2), key=lambda t: (-counts[t], t))
            if not common:
                break
            term = common[0]
            members = [rid for rid in left if term in terms[rid]]
            shown = next(terms[rid][term] for rid in members)
            also = Counter(t for rid in members for t in terms[rid] if t != term)
            extra = [
                terms[rid][t] for t, n in also.most_common(2) if n >= 2 for rid in members if t in terms[rid]
            ]
            extra = list(dict.fromkeys(extra))[:2]
            with_terms = f" (with {', '.join(repr(e) for e in extra)})" if extra else ""
            modes.append(
                _mode(
                    f"{label}: '{shown}'",
                    f"{len(members)} case(s) where {meaning}; the human comments mention '{shown}'{with_terms}.",
                    members,
                    by_id,
                )
            )
            left = [rid for rid in left if rid not in set(members)]
            found += 1
        if left:
            modes.append(
                _mode(
                    f"{label}: other",
                    f"{len(left)} case(s) where {meaning}, with no term recurring in their human comments.",
                    left,
                    by_id,
                )
            )
    return _ordered(modes)


def direction_label(direction: str) -> str:
    return DIRECTION_LABELS[direction][0].lower() if direction in DIRECTION_LABELS else direction


def describe_score(score_type: ScoreType, value: Score) -> str:
    if score_type.kind == "binary":
        return f"{value} ({'pass' if value == 1 else 'fail'})"
    return json.dumps(value, ensure_ascii=False)


def case_text(case: MisalignedCase, score_type: ScoreType) -> str:
    def show(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = [f'<example id="{case.run_id}">', f"Input: {show(case.inputs)}", f"Output: {show(case.outputs)}"]
    if case.outputs_b is not None:
        lines[-1] = f"Output A: {show(case.outputs)}"
        lines.append(f"Output B: {show(case.outputs_b)}")
    if case.reference_outputs is not None:
        lines.append(f"Reference output: {show(case.reference_outputs)}")
    lines.append(f"Human expert's score: {describe_score(score_type, case.human_score)}")
    if case.human_comment:
        lines.append(f"Human expert's comment: {case.human_comment}")
    if case.judge_score is not None:
        lines.append(f"Judge's score: {describe_score(score_type, case.judge_score)}")
    if case.judge_reasoning:
        lines.append(f"Judge's reasoning: {case.judge_reasoning}")
    lines.append("</example>")
    return "\n".join(lines)


def _store_analysis(
    store: Store,
    evaluator: str,
    aid: int,
    prompt_ref: str,
    method: Literal["llm", "keywords"],
    judged: int,
    cases: Sequence[MisalignedCase],
    modes: list[FailureMode],
    calls: int,
    notes: list[str],
) -> FailureAnalysis:
    result = FailureAnalysis(
        id=0,
        evaluator=evaluator,
        alignment_run=aid,
        prompt_ref=prompt_ref,
        method=method,
        judged=judged,
        misaligned=len(cases),
        modes=modes,
        model_calls=calls,
        created_at=datetime.fromisoformat(now_iso()),
        notes=notes,
    )
    new_id = store.insert_failure_analysis(result)
    return result.model_copy(update={"id": new_id})
