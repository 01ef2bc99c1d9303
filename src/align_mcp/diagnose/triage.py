"""Disagreement triage: each misaligned dev case classed as judge error, label error or rubric gap."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, cast, get_args

from align_mcp import config
from align_mcp.core.jury import lead_settings
from align_mcp.core.models import (
    MisalignedCase,
    Note,
    ScoreType,
    TriageCategory,
    TriagedCase,
    TriageReport,
)
from align_mcp.core.templates import prompt_file
from align_mcp.core.text import shown, strip_code_fence
from align_mcp.engine.alignment import get_misaligned
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.errors import AlignError, InvalidInput, NextStep
from align_mcp.llm.client import CallFailed, ModelClient, ReplyError, Usage, json_schema_format, open_client
from align_mcp.llm.endpoint import resolve_endpoint
from align_mcp.llm.runner import Progress, Tally, run_batch
from align_mcp.store import Store, TriageRow

CATEGORIES: tuple[str, ...] = get_args(TriageCategory)
MAX_TRIAGE_CASES = 200
MAX_CHUNK = 25
TRIAGE_SYSTEM = (
    "You are a careful auditor of human labels and LLM-judge verdicts. Reply with a single JSON object that "
    "matches the given schema. Output nothing else."
)


def triage_schema(run_ids: Sequence[str]) -> dict[str, Any]:
    """The json_schema response format of one triage call: one entry per run id sent, from a fixed enum."""
    entry = {
        "type": "object",
        "properties": {
            "run_id": {"type": "string", "enum": list(run_ids)},
            "category": {"type": "string", "enum": list(CATEGORIES)},
            "reason": {"type": "string", "description": "One or two sentences naming what is at stake"},
        },
        "required": ["run_id", "category", "reason"],
        "additionalProperties": False,
    }
    schema = {
        "type": "object",
        "properties": {"cases": {"type": "array", "items": entry}},
        "required": ["cases"],
        "additionalProperties": False,
    }
    return json_schema_format("triage", schema)


def triage_messages(
    evaluator: str, score_type: ScoreType, rubric: str, cases: Sequence[MisalignedCase]
) -> list[dict[str, str]]:
    """The messages of one triage call: prompts/triage.md filled with the judge's rubric and the cases."""
    shown = [
        {
            "run_id": c.run_id,
            "inputs": c.inputs,
            "outputs": c.outputs,
            **({} if c.outputs_b is None else {"outputs_b": c.outputs_b}),
            "reference_outputs": c.reference_outputs,
            "human_score": c.human_score,
            "human_comment": c.human_comment,
            "judge_score": c.judge_score,
            "judge_reasoning": c.judge_reasoning,
        }
        for c in cases
    ]
    values = {
        "evaluator": evaluator,
        "score_type": score_type.describe(),
        "rubric": rubric.strip(),
        "cases": json.dumps(shown, indent=2, ensure_ascii=False),
    }
    # One pass over the template, so braces inside the rubric or the cases are never filled in turn.
    text = re.sub(
        r"\{\{(" + "|".join(values) + r")\}\}", lambda m: values[m.group(1)], prompt_file("triage.md")
    )
    return [{"role": "system", "content": TRIAGE_SYSTEM}, {"role": "user", "content": text}]


Classes = dict[str, tuple[TriageCategory, str]]
"""Classified cases: {run_id: (category, reason)}."""


class PartialTriage(ReplyError):
    """A triage reply with problems; `found` keeps the cases it did classify properly."""

    def __init__(self, problem: str, found: Classes) -> None:
        super().__init__(problem)
        self.found = found


def _classifications(content: str | None, run_ids: Sequence[str]) -> tuple[Classes, str | None]:
    """The valid {run_id: (category, reason)} entries of a reply, and what was wrong with it, if anything."""
    try:
        data = json.loads(strip_code_fence(content or ""))
    except json.JSONDecodeError:
        return {}, f"the reply is not JSON: {(content or '')[:120]!r}"
    entries = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return {}, "the reply has no `cases` list"
    found: Classes = {}
    flagged: set[str] = set()
    problems: list[str] = []
    for entry in entries:
        rid = entry.get("run_id") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(rid, str):
            problems.append("an entry has no run_id")
        elif rid not in run_ids:
            problems.append(f"run_id {rid!r} was not among the cases sent")
        elif rid in found:
            problems.append(f"run_id {rid!r} was classified twice")
        elif entry.get("category") not in CATEGORIES:
            flagged.add(rid)
            problems.append(
                f"category {entry.get('category')!r} of {rid!r} is not one of {', '.join(CATEGORIES)}"
            )
        elif not isinstance(entry.get("reason"), str) or not entry["reason"].strip():
            flagged.add(rid)
            problems.append(f"{rid!r} has no reason")
        else:
            found[rid] = (cast(TriageCategory, entry["category"]), entry["reason"].strip())
    missing = [rid for rid in run_ids if rid not in found and rid not in flagged]
    if missing:
        problems.append(f"no classification for {shown(missing)}")
    return found, "; ".join(problems[:5]) if problems else None


def parse_triage(content: str | None, run_ids: Sequence[str]) -> Classes:
    """Every run id classified exactly once; PartialTriage (with what was classified) otherwise."""
    found, problem = _classifications(content, run_ids)
    if problem is not None:
        raise PartialTriage(problem, found)
    return found


async def _triage_chunk(
    client: ModelClient, messages: list[dict[str, str]], run_ids: list[str]
) -> tuple[Classes, str | None, Usage]:
    """One structured call, re-asked once when the reply is invalid: (classifications, problem, usage).

    When no reply classifies every case, the reply that classified the most is kept.
    """
    try:
        answer = await client.structured(
            messages,
            triage_schema(run_ids),
            lambda content: parse_triage(content, run_ids),
            reask_hint=f", classifying each of these run_ids exactly once: {', '.join(run_ids)}",
        )
    except CallFailed as e:
        partial = [reply.found for reply in e.replies if isinstance(reply, PartialTriage)]
        return max(partial, key=len, default={}), e.problem, e.usage
    return answer.value, None, answer.usage


def _all_misaligned(
    store: Store, evaluator: str, alignment_run: int | None
) -> tuple[int, str, list[MisalignedCase]]:
    page = get_misaligned(store, evaluator, alignment_run, offset=0, limit=100)
    cases = list(page.cases)
    while page.next_offset is not None:
        page = get_misaligned(store, evaluator, page.alignment_run, offset=page.next_offset, limit=100)
        cases.extend(page.cases)
    return page.alignment_run, page.prompt_ref, cases


async def triage(
    store: Store,
    evaluator: str,
    *,
    alignment_run: int | None = None,
    run_ids: Sequence[str] | None = None,
    limit: int = 50,
    chunk_size: int = 10,
    concurrency: int | None = None,
    on_progress: Progress | None = None,
    env: config.Settings | None = None,
) -> TriageReport:
    """Classify each misaligned dev case as judge_error, label_error (possible) or rubric_gap, with a reason.

    Cases come from `alignment_run` (default: the latest dev run, as get_misaligned) and never from the test
    split. The judge model of that run reads the judge's rubric and up to `chunk_size` cases per call and
    answers in a fixed JSON schema; a reply that names other run ids or misses one is re-asked once, then the
    missing cases are reported with an `error`. `run_ids` limits triage to some of the misaligned cases.
    Possible label errors can go to a second labeler with request_review; rubric gaps call for a new
    instruction in the draft. Results are stored with the run.
    """
    env = env or config.load()
    ev = get_evaluator(store, evaluator)
    if not 1 <= limit <= MAX_TRIAGE_CASES:
        raise InvalidInput(f"limit={limit} must be between 1 and {MAX_TRIAGE_CASES}.")
    if not 1 <= chunk_size <= MAX_CHUNK:
        raise InvalidInput(f"chunk_size={chunk_size} must be between 1 and {MAX_CHUNK} cases per call.")
    aid, prompt_ref, cases = _all_misaligned(store, evaluator, alignment_run)
    if run_ids is not None:
        wanted = list(dict.fromkeys(run_ids))
        if not wanted:
            raise InvalidInput("run_ids is empty; omit it to triage every misaligned dev case.")
        misaligned = {c.run_id for c in cases}
        unknown = [rid for rid in wanted if rid not in misaligned]
        if unknown:
            raise InvalidInput(
                f"Not misaligned dev case(s) of alignment run {aid}: {shown(unknown)}. Only misaligned dev "
                "cases can be classified.",
                NextStep("show_misaligned", {"evaluator": evaluator, "alignment_run": aid}),
            )
        cases = [c for c in cases if c.run_id in set(wanted)]
    row = store.alignment_run_row(aid)
    assert row is not None
    # Triage answers for many cases at once: the judge's own max_tokens would cut the reply short.
    # A jury's lead model (the evaluator's, else its first member) classifies for it.
    lead = (
        lead_settings(row.judge) if row.judge.members else row.judge.model_copy(update={"model": row.model})
    )
    settings = lead.model_copy(update={"max_tokens": None})
    endpoint = resolve_endpoint(settings, env)
    remaining = max(0, len(cases) - limit)
    cases = cases[:limit]
    if not cases:
        return TriageReport(
            evaluator=evaluator,
            alignment_run=aid,
            prompt_ref=prompt_ref,
            model=endpoint.model,
            cases=[],
            counts={**dict.fromkeys(CATEGORIES, 0), "unclassified": 0},
            remaining=0,
            judge_calls=0,
            reasks=0,
            notes=[Note(text=f"Alignment run {aid} has no misaligned dev cases: nothing to triage.")],
        )
    chunks = [cases[i : i + chunk_size] for i in range(0, len(cases), chunk_size)]
    results: dict[str, tuple[TriageCategory | None, str | None, str | None]] = {}
    calls = reasks = 0
    tally = Tally(
        on_progress, len(chunks), "triage", detail=lambda: f" chunks ({len(results)} of {len(cases)} cases)"
    )

    async with open_client(endpoint, settings, on_wait=tally.waiting) as client:

        async def one(chunk: list[MisalignedCase]) -> None:
            nonlocal calls, reasks
            ids = [c.run_id for c in chunk]
            messages = triage_messages(evaluator, ev.score_type, row.prompt, chunk)
            found, problem, usage = await _triage_chunk(client, messages, ids)
            calls += usage.requests
            reasks += usage.reasks
            stored = []
            for rid in ids:
                category, reason = found.get(rid, (None, None))
                error = None if rid in found else f"not classified: {problem or 'no reply'}"
                results[rid] = (category, reason, error)
                stored.append(TriageRow(evaluator, aid, rid, category, reason, error, endpoint.model))
            store.insert_triage(stored)

        try:
            await run_batch(chunks, one, concurrency=concurrency or env.concurrency, progress=tally)
        except AlignError as e:
            raise type(e)(
                f"{e} Triage: {len(results)} of {len(cases)} cases were classified and kept."
            ) from e

    triaged = [
        TriagedCase(
            run_id=c.run_id,
            direction=c.direction,
            human_score=c.human_score,
            judge_score=c.judge_score,
            category=results[c.run_id][0],
            reason=results[c.run_id][1],
            error=results[c.run_id][2],
        )
        for c in cases
    ]
    counts = {name: sum(1 for t in triaged if t.category == name) for name in CATEGORIES}
    counts["unclassified"] = sum(1 for t in triaged if t.category is None)
    return TriageReport(
        evaluator=evaluator,
        alignment_run=aid,
        prompt_ref=prompt_ref,
        model=endpoint.model,
        cases=triaged,
        counts=counts,
        remaining=remaining,
        judge_calls=calls,
        reasks=reasks,
        notes=_triage_notes(evaluator, aid, triaged, remaining),
    )


def _triage_notes(evaluator: str, aid: int, triaged: Sequence[TriagedCase], remaining: int) -> list[Note]:
    notes = []
    by = {name: [t.run_id for t in triaged if t.category == name] for name in CATEGORIES}
    if by["label_error"]:
        notes.append(
            Note(
                text=f"{len(by['label_error'])} possible label error(s): {shown(by['label_error'])}.",
                next_steps=[
                    NextStep("request_review", {"evaluator": evaluator, "run_ids": by["label_error"]})
                ],
            )
        )
    if by["rubric_gap"]:
        notes.append(
            Note(
                text=f"{len(by['rubric_gap'])} case(s) the rubric does not decide: add an instruction that "
                "settles them to the draft, then judge the reference set again.",
                next_steps=[
                    NextStep("update_draft", {"evaluator": evaluator}),
                    NextStep("run_alignment", {"evaluator": evaluator}),
                ],
            )
        )
    if by["judge_error"]:
        notes.append(
            Note(
                text=f"{len(by['judge_error'])} judge error(s): the rubric decides them but the judge misapplied "
                "it; sharpen the wording it misread or add a worked example."
            )
        )
    failed = [t.run_id for t in triaged if t.category is None]
    if failed:
        notes.append(
            Note(
                text=f"{len(failed)} case(s) could not be classified: {shown(failed)}.",
                next_steps=[
                    NextStep("triage", {"evaluator": evaluator, "alignment_run": aid, "run_ids": failed})
                ],
            )
        )
    if remaining:
        limit = min(len(triaged) + remaining, MAX_TRIAGE_CASES)
        notes.append(
            Note(
                text=f"{remaining} more misaligned case(s) were left out by the limit.",
                next_steps=[
                    NextStep("triage", {"evaluator": evaluator, "alignment_run": aid, "limit": limit})
                ],
            )
        )
    return notes
