"""Beyond agreement: triage, blind second reviews, judge self-consistency, next labels, true pass rate."""

from __future__ import annotations

import copy
import json
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast, get_args

import anyio

from . import config, holdout, metrics
from .align import Progress, get_misaligned, run_alignment
from .errors import AlignError, Conflict, EmptyReferenceSet, InvalidInput, JudgeUnreachable, NotFound
from .evaluators import get as get_evaluator
from .evaluators import prompt_for
from .judge import (
    Endpoint,
    Judge,
    Verdict,
    _PerExampleFailure,
    _prompt_file,
    build_messages,
    cache_key,
    judge_example,
    resolve_endpoint,
    response_schema,
)
from .models import (
    AnnotatorAgreement,
    ConsistencyReport,
    ExampleConsistency,
    JudgeSettings,
    LabelSuggestion,
    MisalignedCase,
    PassRateReport,
    ReviewItem,
    ReviewReport,
    ReviewRequestReport,
    ReviewStatus,
    Score,
    ScoreType,
    SuggestionReport,
    TriageCategory,
    TriagedCase,
    TriageReport,
)
from .queues import balance
from .store import Store, dumps, loads, now_iso

T = TypeVar("T")

CATEGORIES: tuple[str, ...] = get_args(TriageCategory)
STATUSES: tuple[str, ...] = get_args(ReviewStatus)
MAX_TRIAGE_CASES = 200
MAX_CHUNK = 25
MAX_K = 20
MAX_SAMPLE = 500
MAX_REPEATS = 10
MAX_BUDGET = 10_000
CLASS_WEIGHT = 0.5
UNNAMED = {"", "anonymous"}
TRIAGE_SYSTEM = (
    "You are a careful auditor of human labels and LLM-judge verdicts. Reply with a single JSON object that "
    "matches the given schema. Output nothing else."
)


# ---- shared judge plumbing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prompt:
    ref: str
    text: str
    settings: JudgeSettings
    endpoint: Endpoint


@dataclass(frozen=True)
class _Job:
    run_id: str
    messages: list[dict[str, str]]
    key: str


class _Tally:
    """Progress over a known number of steps, reported through an optional async callback."""

    def __init__(self, on_progress: Progress | None, total: int, what: str) -> None:
        self.on_progress, self.total, self.what, self.done = on_progress, total, what, 0

    async def advance(self, detail: str = "") -> None:
        self.done += 1
        if self.on_progress is not None:
            await self.on_progress(self.done, self.total, f"{self.what}: {self.done}/{self.total}{detail}")


def _resolve(
    store: Store, evaluator: str, prompt: str | int, env: config.Settings, temperature: float | None = None
) -> _Prompt:
    ref, text, settings, _ = prompt_for(store, evaluator, prompt)
    if temperature is not None:
        settings = settings.model_copy(update={"temperature": temperature})
    return _Prompt(ref, text, settings, resolve_endpoint(settings, env))


@asynccontextmanager
async def _open_judge(
    endpoint: Endpoint, settings: JudgeSettings, score_type: ScoreType
) -> AsyncIterator[Judge]:
    judge = Judge(endpoint, settings, score_type)
    try:
        yield judge
    finally:
        with anyio.CancelScope(shield=True):
            await judge.aclose()


async def _bounded(items: Sequence[T], concurrency: int, fn: Callable[[T], Awaitable[None]]) -> None:
    """Run `fn` over items, `concurrency` at a time; the first AlignError stops the rest and is raised."""
    failure: list[AlignError] = []
    queue = iter(items)

    async def worker(scope: anyio.CancelScope) -> None:
        for item in queue:
            try:
                await fn(item)
            except AlignError as e:
                failure.append(e)
                scope.cancel()
                return

    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, len(items))):
            tg.start_soon(worker, tg.cancel_scope)
    if failure:
        raise failure[0]


def _lookup(
    store: Store, score_type: ScoreType, prompt: _Prompt, runs: dict[str, dict[str, Any]]
) -> tuple[dict[str, Score], list[_Job]]:
    """Cached verdicts of `prompt` on `runs`, and the judge calls still needed for the rest."""
    schema = response_schema(score_type, prompt.settings.reasoning)
    jobs = []
    for rid, run in runs.items():
        messages = build_messages(prompt.text, run, prompt.settings.reasoning)
        jobs.append(_Job(rid, messages, cache_key(prompt.endpoint.model, prompt.settings, messages, schema)))
    hits = store.cache_get([job.key for job in jobs])
    found = {job.run_id: loads(hits[job.key]["judge_score"]) for job in jobs if job.key in hits}
    return found, [job for job in jobs if job.key not in hits]


async def _judge_jobs(
    store: Store,
    score_type: ScoreType,
    prompt: _Prompt,
    jobs: Sequence[_Job],
    concurrency: int,
    tally: _Tally,
) -> dict[str, Verdict]:
    """Judge each job once, caching successful verdicts exactly as alignment runs do."""
    verdicts: dict[str, Verdict] = {}
    if not jobs:
        return verdicts
    async with _open_judge(prompt.endpoint, prompt.settings, score_type) as judge:

        async def one(job: _Job) -> None:
            verdict = await judge_example(judge, job.messages)
            verdicts[job.run_id] = verdict
            if verdict.error is None:
                store.cache_put(
                    [
                        {
                            "key": job.key,
                            "judge_score": dumps(verdict.score),
                            "reasoning": verdict.reasoning,
                            "prompt_tokens": verdict.prompt_tokens,
                            "completion_tokens": verdict.completion_tokens,
                            "cached_tokens": verdict.cached_tokens,
                            "created_at": now_iso(),
                        }
                    ]
                )
            await tally.advance()

        await _bounded(jobs, concurrency, one)
    return verdicts


def _shown(ids: Sequence[str], at_most: int = 5) -> str:
    return ", ".join(repr(i) for i in ids[:at_most]) + (" …" if len(ids) > at_most else "")


def _check_runs(store: Store, run_ids: Sequence[str], what: str = "run_ids") -> list[str]:
    ids = list(dict.fromkeys(run_ids))
    if not ids:
        raise InvalidInput(f"{what} is empty; pass at least one run id.")
    known = store.existing_run_ids(ids)
    missing = [rid for rid in ids if rid not in known]
    if missing:
        raise NotFound(
            f"{len(missing)} run id(s) are not in the store: {_shown(missing)}. Check the ids or import the "
            "runs with import_runs."
        )
    return ids


def _score_name(score_type: ScoreType, score: Score) -> str:
    if score_type.kind == "binary":
        return f"{'pass' if score == 1 else 'fail'} ({score})"
    return repr(score)


# ---- disagreement triage -----------------------------------------------------------------------------------


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
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "triage",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"cases": {"type": "array", "items": entry}},
                "required": ["cases"],
                "additionalProperties": False,
            },
        },
    }


def triage_messages(
    evaluator: str, score_type: ScoreType, rubric: str, cases: Sequence[MisalignedCase]
) -> list[dict[str, str]]:
    """The messages of one triage call: prompts/triage.md filled with the judge's rubric and the cases."""
    shown = [
        {
            "run_id": c.run_id,
            "inputs": c.inputs,
            "outputs": c.outputs,
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
        r"\{\{(" + "|".join(values) + r")\}\}", lambda m: values[m.group(1)], _prompt_file("triage.md")
    )
    return [{"role": "system", "content": TRIAGE_SYSTEM}, {"role": "user", "content": text}]


def _parse_triage(
    content: str | None, run_ids: Sequence[str]
) -> tuple[dict[str, tuple[TriageCategory, str]], str | None]:
    """The valid {run_id: (category, reason)} entries of a reply, and what was wrong with it, if anything."""
    text = (content or "").strip()
    if text.startswith("```"):
        text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}, f"the reply is not JSON: {(content or '')[:120]!r}"
    entries = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return {}, "the reply has no `cases` list"
    found: dict[str, tuple[TriageCategory, str]] = {}
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
        problems.append(f"no classification for {_shown(missing)}")
    return found, "; ".join(problems[:5]) if problems else None


async def _triage_chunk(
    judge: Judge, messages: list[dict[str, str]], run_ids: list[str]
) -> tuple[dict[str, tuple[TriageCategory, str]], str | None, int]:
    """One structured call, re-asked once when the reply is invalid: (classifications, problem, calls)."""
    convo = list(messages)
    best: dict[str, tuple[TriageCategory, str]] = {}
    problem: str | None = None
    calls = 0
    for _ in range(2):
        try:
            # Judge._call is the judge's transport (retries, backoff, error mapping) minus score parsing.
            content, _usage, n = await judge._call(convo)
        except _PerExampleFailure as e:
            return best, e.problem, calls + e.calls
        calls += n
        found, problem = _parse_triage(content, run_ids)
        if len(found) > len(best):
            best = found
        if problem is None:
            return found, None, calls
        convo = [
            *messages,
            {"role": "assistant", "content": content or ""},
            {
                "role": "user",
                "content": f"That reply was invalid ({problem}). Reply again with only the JSON object that "
                f"matches the schema, classifying each of these run_ids exactly once: {', '.join(run_ids)}.",
            },
        ]
    return best, problem, calls


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
                f"Not misaligned dev case(s) of alignment run {aid}: {_shown(unknown)}. get_misaligned "
                "lists the cases triage can classify."
            )
        cases = [c for c in cases if c.run_id in set(wanted)]
    row = store.get_alignment_run(aid)
    assert row is not None
    # Triage answers for many cases at once: the judge's own max_tokens would cut the reply short.
    settings = JudgeSettings.model_validate_json(row["judge"]).model_copy(
        update={"model": row["model"], "max_tokens": None}
    )
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
            notes=[f"Alignment run {aid} has no misaligned dev cases: nothing to triage."],
        )
    chunks = [cases[i : i + chunk_size] for i in range(0, len(cases), chunk_size)]
    results: dict[str, tuple[TriageCategory | None, str | None, str | None]] = {}
    calls = 0
    tally = _Tally(on_progress, len(chunks), "triage")

    async with _open_judge(endpoint, settings, ev.score_type) as judge:

        async def one(chunk: list[MisalignedCase]) -> None:
            nonlocal calls
            ids = [c.run_id for c in chunk]
            # A shallow copy shares the HTTP client but sends this chunk's schema (its run ids as an enum).
            chunk_judge = copy.copy(judge)
            chunk_judge.schema = triage_schema(ids)
            messages = triage_messages(evaluator, ev.score_type, row["prompt"], chunk)
            found, problem, n = await _triage_chunk(chunk_judge, messages, ids)
            calls += n
            stored = []
            for rid in ids:
                category, reason = found.get(rid, (None, None))
                error = None if rid in found else f"not classified: {problem or 'no reply'}"
                results[rid] = (category, reason, error)
                stored.append(
                    {
                        "evaluator": evaluator,
                        "alignment_id": aid,
                        "run_id": rid,
                        "category": category,
                        "reason": reason,
                        "error": error,
                        "model": endpoint.model,
                        "created_at": now_iso(),
                    }
                )
            store.insert_triage(stored)
            await tally.advance(f" chunks ({len(results)} of {len(cases)} cases)")

        try:
            await _bounded(chunks, concurrency or env.concurrency, one)
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
        notes=_triage_notes(triaged, remaining),
    )


def _triage_notes(triaged: Sequence[TriagedCase], remaining: int) -> list[str]:
    notes = []
    by = {name: [t.run_id for t in triaged if t.category == name] for name in CATEGORIES}
    if by["label_error"]:
        notes.append(
            f"{len(by['label_error'])} possible label error(s): request_review(run_ids={by['label_error']}) "
            "sends them to a different labeler for a blind second review."
        )
    if by["rubric_gap"]:
        notes.append(
            f"{len(by['rubric_gap'])} case(s) the rubric does not decide: add an instruction that settles "
            "them to the draft (update_draft), then run_alignment."
        )
    if by["judge_error"]:
        notes.append(
            f"{len(by['judge_error'])} judge error(s): the rubric decides them but the judge misapplied it; "
            "sharpen the wording it misread or add a worked example."
        )
    failed = [t.run_id for t in triaged if t.category is None]
    if failed:
        notes.append(
            f"{len(failed)} case(s) could not be classified; triage(run_ids={failed}) tries them again."
        )
    if remaining:
        notes.append(
            f"{remaining} more misaligned case(s) were left out by `limit`; raise it to include them."
        )
    return notes


# ---- blind second reviews and inter-annotator agreement ----------------------------------------------------
#
# The adjudication rule. request_review puts labeled runs back in the queue; the first label stays in the
# reference set while the review is pending. The second label must come from a different, named labeler
# (next_items never shows the first label). When the two agree, the label stands (status agreed); when they
# differ, the run leaves the reference set (status disputed) and goes back to the queue for an adjudicating
# third label from someone other than both reviewers, or an explicit adjudicate(); that label is final
# (status adjudicated) and the run rejoins the reference set with it. Every label stays in the history.


def _person(labeler: str | None) -> str | None:
    """A comparable identity for a labeler, or None when the label does not say who gave it."""
    if labeler is None or labeler.strip().casefold() in UNNAMED:
        return None
    return labeler.strip().casefold()


def request_review(
    store: Store, evaluator: str, run_ids: Sequence[str], reason: str | None = None
) -> ReviewRequestReport:
    """Send labeled runs back to the queue for a blind second review by a different labeler.

    Use it for cases triage marks label_error, or any label you doubt. The runs reappear in next_items without
    their labels; the second label must come from someone other than the first labeler. Until it arrives the
    first label keeps counting; if the two labels agree it stands, if they disagree the run leaves the
    reference set until a third labeler (or adjudicate) settles it. `reason` is kept with the review (default:
    the latest triage reason). All run ids are checked before anything changes.
    """
    get_evaluator(store, evaluator)
    ids = _check_runs(store, run_ids)
    labels = store.current_label_rows(evaluator, ids)
    unlabeled = [rid for rid in ids if rid not in labels]
    if unlabeled:
        raise InvalidInput(
            f"Run(s) without a label for {evaluator!r}: {_shown(unlabeled)}. Only labeled runs can get a "
            "second review; label them with submit_label."
        )
    already = [r["run_id"] for r in store.reviews(evaluator, ids, open_only=True)]
    if already:
        raise Conflict(
            f"Run(s) already under review for {evaluator!r}: {_shown(already)}. list_reviews shows where "
            "they stand; adjudicate settles one."
        )
    triaged = store.latest_triage(evaluator, ids)
    rows = []
    for rid in ids:
        why = reason
        if why is None and rid in triaged:
            why = f"triage: {triaged[rid]['category']}: {triaged[rid]['reason']}"
        rows.append((rid, int(labels[rid]["id"]), why))
    with store.transaction():
        store.insert_reviews(evaluator, rows)
    first = sorted({str(labels[rid]["labeler"]) for rid in ids if _person(labels[rid]["labeler"])})
    notes = [
        "The runs are back in the queue; next_items shows them without their labels. Until the second label "
        "arrives the first one keeps counting in the reference set.",
        f"The second label must come from a labeler other than the first ({', '.join(first) or 'unnamed'}) "
        "and must name who gives it.",
    ]
    pending = len(store.reviews(evaluator, open_only=True))
    return ReviewRequestReport(evaluator=evaluator, requested=ids, pending_reviews=pending, notes=notes)


def check_review_labels(
    store: Store, evaluator: str, labels: Sequence[tuple[str, str, str | None, str | None]]
) -> None:
    """Refuse labels that would break a blind review. Called by queues.submit_labels before it writes.

    `labels` are (run_id, score JSON, comment, labeler) rows. A run waiting for its second review needs a
    named labeler other than the first; a disputed run needs one other than both reviewers (or adjudicate).
    """
    open_reviews = {
        r["run_id"]: r for r in store.reviews(evaluator, [row[0] for row in labels], open_only=True)
    }
    for run_id, _score, _comment, labeler in labels:
        review = open_reviews.get(run_id)
        if review is None:
            continue
        disputed = review["status"] == "disputed"
        who = _person(labeler)
        if who is None:
            waiting = "needs an adjudicating label" if disputed else "is waiting for a blind second review"
            raise InvalidInput(
                f"Run {run_id!r} {waiting} for {evaluator!r}: say who is labeling (labeler=...), so this "
                "label can be told apart from the earlier one."
            )
        earlier = [review["first_labeler"], *([review["second_labeler"]] if disputed else [])]
        if who in {_person(name) for name in earlier}:
            if disputed:
                raise Conflict(
                    f"Run {run_id!r} needs an adjudicating label for {evaluator!r} from someone other than "
                    f"its two reviewers ({', '.join(repr(n) for n in earlier)}); or settle it with "
                    "adjudicate."
                )
            raise Conflict(
                f"Run {run_id!r} is waiting for a blind second review for {evaluator!r}, and {labeler!r} "
                "gave the first label; the second must come from a different labeler. To overrule the "
                "first label yourself, use adjudicate."
            )


def settle_reviews(store: Store, evaluator: str, run_ids: Sequence[str]) -> None:
    """Apply the adjudication rule to open reviews of runs that just got a label.

    Called by queues.submit_labels after it writes, inside the same transaction.
    """
    open_reviews = store.reviews(evaluator, run_ids, open_only=True)
    if not open_reviews:
        return
    current = store.current_label_rows(evaluator, [r["run_id"] for r in open_reviews])
    for review in open_reviews:
        label = current.get(review["run_id"])
        if label is None:
            continue
        if review["status"] == "pending" and label["id"] != review["first_label_id"]:
            if label["score"] == review["first_score"]:
                store.update_review(
                    review["id"], second_label_id=label["id"], status="agreed", resolved_at=now_iso()
                )
            else:
                store.update_review(review["id"], second_label_id=label["id"], status="disputed")
                store.requeue(evaluator, [review["run_id"]])
        elif review["status"] == "disputed" and label["id"] != review["second_label_id"]:
            store.update_review(
                review["id"], final_label_id=label["id"], status="adjudicated", resolved_at=now_iso()
            )


def adjudicate(
    store: Store, evaluator: str, run_id: str, score: object, labeler: str, comment: str | None = None
) -> ReviewItem:
    """Settle an open review with a final label: it replaces the current label and the review is closed.

    Works while the review is pending (overruling without a second label) or disputed. The adjudicator may be
    anyone, named in `labeler`; the earlier labels stay in the history.
    """
    score_type = get_evaluator(store, evaluator).score_type
    if _person(labeler) is None:
        raise InvalidInput("Say who adjudicates (labeler=...): the final label records its author.")
    _check_runs(store, [run_id], "run_id")
    reviews = store.reviews(evaluator, [run_id], open_only=True)
    if not reviews:
        raise InvalidInput(
            f"Run {run_id!r} has no open review for {evaluator!r}, so there is nothing to adjudicate. To "
            "change its label use submit_label (the history is kept)."
        )
    value = score_type.validate_score(score)
    with store.transaction():
        store.insert_labels(evaluator, [(run_id, dumps(value), comment, labeler)])
        label = store.current_label_rows(evaluator, [run_id])[run_id]
        store.update_review(
            reviews[0]["id"], final_label_id=label["id"], status="adjudicated", resolved_at=now_iso()
        )
    return _review_items(store, evaluator, store.reviews(evaluator, [run_id]))[-1]


def _review_items(store: Store, evaluator: str, rows: Sequence[dict[str, Any]]) -> list[ReviewItem]:
    current = store.current_label_rows(evaluator, [r["run_id"] for r in rows])
    disputed = store.disputed_run_ids(evaluator)
    items = []
    for r in rows:
        label = current.get(r["run_id"])
        counted = label is not None and r["run_id"] not in disputed
        items.append(
            ReviewItem(
                run_id=r["run_id"],
                status=r["status"],
                reason=r["reason"],
                first_score=loads(r["first_score"]),
                first_labeler=r["first_labeler"],
                second_score=loads(r["second_score"]),
                second_labeler=r["second_labeler"],
                final_score=loads(r["final_score"]),
                final_labeler=r["final_labeler"],
                in_reference_set=counted,
                reference_score=loads(label["score"]) if counted and label is not None else None,
                requested_at=datetime.fromisoformat(r["requested_at"]),
                resolved_at=datetime.fromisoformat(r["resolved_at"]) if r["resolved_at"] else None,
            )
        )
    return items


def list_reviews(store: Store, evaluator: str, status: ReviewStatus | None = None) -> ReviewReport:
    """Second reviews and where they stand, with inter-annotator agreement when runs have two labelers.

    This view shows every label: it is for whoever coordinates labeling, never for the second labeler.
    """
    get_evaluator(store, evaluator)
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status={status!r} is not one of {', '.join(STATUSES)}.")
    rows = store.reviews(evaluator)
    counts = {name: sum(1 for r in rows if r["status"] == name) for name in STATUSES}
    shown = [r for r in rows if status is None or r["status"] == status]
    agreement = annotator_agreement(store, evaluator) if _label_pairs(store, evaluator) else None
    return ReviewReport(
        evaluator=evaluator,
        counts=counts,
        reviews=_review_items(store, evaluator, shown),
        agreement=agreement,
    )


def _label_pairs(store: Store, evaluator: str) -> list[tuple[str, Score, Score]]:
    """(run_id, first label, blind second label) of every review that received its second label."""
    return [
        (r["run_id"], loads(r["first_score"]), loads(r["second_score"]))
        for r in store.reviews(evaluator)
        if r["second_label_id"] is not None
    ]


def annotator_agreement(store: Store, evaluator: str) -> AnnotatorAgreement:
    """Inter-annotator agreement (raw and Cohen's κ) over runs with a first label and a blind second label.

    Pairs come from request_review: the first label against the second reviewer's, who never saw it.
    Adjudicating labels and ordinary relabels are left out (a relabel made after seeing the judge's verdict
    is not independent). Quadratic-weighted κ for ordinal score types.
    """
    score_type = get_evaluator(store, evaluator).score_type
    pairs = _label_pairs(store, evaluator)
    if not pairs:
        raise InvalidInput(
            f"No run of {evaluator!r} has a blind second label yet, so there is no inter-annotator "
            "agreement to report. request_review sends labeled runs to a second labeler."
        )
    scored = [(a, b) for _, a, b in pairs]
    values = score_type.values()
    kappa = metrics.cohen_kappa(scored, values)
    unweighted = None
    if score_type.kind == "ordinal":
        unweighted = kappa
        kappa = metrics.weighted_kappa([(int(a), int(b)) for a, b in scored], [int(v) for v in values])
    agree = sum(a == b for a, b in scored)
    notes = []
    if len(pairs) < 20:
        notes.append(f"Only {len(pairs)} doubly labeled run(s): κ is rough; review more runs to firm it up.")
    if kappa is not None and kappa < 0.6:
        notes.append(
            f"κ = {kappa:.2f}: the labelers themselves often disagree, which caps how well any judge can "
            "agree with them; write down the labeling rule the disagreements turn on."
        )
    return AnnotatorAgreement(
        evaluator=evaluator,
        n=len(pairs),
        agreement=metrics.rate(agree, len(pairs)),
        kappa=kappa,
        unweighted_kappa=unweighted,
        disagreements=[rid for rid, a, b in pairs if a != b],
        notes=notes,
    )


# ---- judge self-consistency --------------------------------------------------------------------------------


def _flip_share(scores: Sequence[Score | None]) -> float | None:
    """Share of valid verdicts that differ from the most common one; None with fewer than two."""
    valid = [s for s in scores if s is not None]
    if len(valid) < 2:
        return None
    top = Counter(dumps(s) for s in valid).most_common(1)[0][1]
    return 1 - top / len(valid)


def _most_common(valid: Sequence[Score]) -> Score:
    key = Counter(dumps(s) for s in valid).most_common(1)[0][0]
    return next(s for s in valid if dumps(s) == key)


def _latest_samples(store: Store, evaluator: str, prompt: str | None = None) -> dict[str, list[Score | None]]:
    """Per run, the verdicts of the latest completed consistency check that sampled it."""
    latest: dict[str, tuple[int, list[Score | None]]] = {}
    for r in store.completed_samples(evaluator, prompt):
        check, scores = latest.get(r["run_id"], (-1, []))
        if r["check_id"] != check:
            check, scores = r["check_id"], []
            latest[r["run_id"]] = (check, scores)
        scores.append(loads(r["judge_score"]) if r["error"] is None else None)
    return {rid: scores for rid, (_, scores) in latest.items()}


def unstable_run_ids(store: Store, evaluator: str, prompt: str | None = None) -> dict[str, float]:
    """Runs whose repeated judge verdicts disagree: run_id -> flip share (share of samples off the mode).

    Reads the latest completed self-consistency samples per run; `prompt` (a prompt text) keeps only checks of
    that exact prompt. Stable runs and runs never sampled are absent.
    """
    out = {}
    for rid, scores in _latest_samples(store, evaluator, prompt).items():
        share = _flip_share(scores)
        if share:
            out[rid] = share
    return out


async def _sample(
    store: Store,
    evaluator: str,
    score_type: ScoreType,
    prompt: _Prompt,
    run_ids: Sequence[str],
    k: int,
    concurrency: int,
    tally: _Tally,
) -> int:
    """Judge every run k times with independent calls (never the cache); store the verdicts as a check."""
    runs = store.get_runs(run_ids)
    messages = {rid: build_messages(prompt.text, runs[rid], prompt.settings.reasoning) for rid in run_ids}
    check_id = store.create_consistency_check(
        {
            "evaluator": evaluator,
            "prompt_ref": prompt.ref,
            "prompt": prompt.text,
            "judge": prompt.settings.model_dump_json(),
            "model": prompt.endpoint.model,
            "temperature": prompt.settings.temperature,
            "k": k,
            "status": "running",
            "started_at": now_iso(),
        }
    )
    jobs = [(rid, i) for i in range(k) for rid in run_ids]
    status = "interrupted"
    try:
        async with _open_judge(prompt.endpoint, prompt.settings, score_type) as judge:

            async def one(job: tuple[str, int]) -> None:
                rid, i = job
                verdict = await judge_example(judge, messages[rid])
                store.record_samples(
                    check_id,
                    [
                        {
                            "run_id": rid,
                            "sample": i,
                            "judge_score": dumps(verdict.score) if verdict.score is not None else None,
                            "reasoning": verdict.reasoning,
                            "error": verdict.error,
                            "prompt_tokens": verdict.prompt_tokens,
                            "completion_tokens": verdict.completion_tokens,
                            "latency_ms": verdict.latency_ms,
                        }
                    ],
                )
                await tally.advance()

            await _bounded(jobs, concurrency, one)
        status = "completed"
    except AlignError as e:
        kept = len(store.consistency_samples(check_id))
        raise type(e)(f"{e} Consistency check {check_id}: {kept} of {len(jobs)} samples kept.") from e
    finally:
        with anyio.CancelScope(shield=True):
            store.update_consistency_check(check_id, status=status, finished_at=now_iso())
    return check_id


async def self_consistency(
    store: Store,
    evaluator: str,
    *,
    k: int = 5,
    run_ids: Sequence[str] | None = None,
    sample: int = 20,
    prompt: str | int = "draft",
    temperature: float | None = None,
    seed: int = 0,
    concurrency: int | None = None,
    on_progress: Progress | None = None,
    env: config.Settings | None = None,
) -> ConsistencyReport:
    """Judge the same runs K times and report how often the verdict flips.

    Each of the K calls is a separate request (the result cache is bypassed; no reliance on the API's `n`), at
    the prompt's temperature unless `temperature` is given. Runs are `run_ids`, or a seeded random `sample` of
    the labeled dev runs (all labeled runs before a holdout exists). Verdicts are stored, so the misaligned
    view can flag unstable runs (unstable_run_ids). At temperature 0 many servers are deterministic: agreement
    there says little, and the report says so.
    """
    env = env or config.load()
    ev = get_evaluator(store, evaluator)
    if not 2 <= k <= MAX_K:
        raise InvalidInput(
            f"k={k}: self-consistency compares repeated verdicts, so it needs at least 2 samples per run "
            f"(at most {MAX_K})."
        )
    if temperature is not None and not 0 <= temperature <= 2:
        raise InvalidInput(f"temperature={temperature} must be between 0 and 2.")
    if not 1 <= sample <= MAX_SAMPLE:
        raise InvalidInput(f"sample={sample} must be between 1 and {MAX_SAMPLE}.")
    if run_ids is not None:
        ids = _check_runs(store, run_ids)
        if len(ids) > MAX_SAMPLE:
            raise InvalidInput(f"{len(ids)} run ids; check at most {MAX_SAMPLE} per call.")
    else:
        _, examples = holdout.examples_for(store, evaluator, "auto")
        if not examples:
            raise EmptyReferenceSet(
                f"Evaluator {evaluator!r} has no labeled runs to sample from. Pass run_ids=[...] to check "
                "any runs, or label some first."
            )
        ids = [rid for rid, _ in examples]
        if len(ids) > sample:
            ids = sorted(random.Random(seed).sample(ids, sample))
    chosen = _resolve(store, evaluator, prompt, env, temperature)
    tally = _Tally(on_progress, k * len(ids), f"self-consistency ({chosen.ref}, k={k})")
    check_id = await _sample(
        store, evaluator, ev.score_type, chosen, ids, k, concurrency or env.concurrency, tally
    )
    return consistency_report(store, check_id)


def consistency_report(store: Store, check_id: int) -> ConsistencyReport:
    """The stored result of one self-consistency check."""
    check = store.get_consistency_check(check_id)
    if check is None:
        raise NotFound(f"No self-consistency check {check_id}.")
    k = int(check["k"])
    scores: dict[str, list[Score | None]] = {}
    calls = 0
    for r in store.consistency_samples(check_id):
        scores.setdefault(r["run_id"], [None] * k)[r["sample"]] = (
            loads(r["judge_score"]) if r["error"] is None else None
        )
        calls += 1
    examples = []
    for rid, verdicts in scores.items():
        valid = [s for s in verdicts if s is not None]
        share = _flip_share(verdicts)
        examples.append(
            ExampleConsistency(
                run_id=rid,
                scores=verdicts,
                modal_score=_most_common(valid) if valid else None,
                flip_share=share,
                flipped=len({dumps(s) for s in valid}) > 1,
                errors=k - len(valid),
            )
        )
    examples.sort(key=lambda e: (-(e.flip_share or 0), e.run_id))
    measured = [e for e in examples if e.flip_share is not None]
    flipped = [e.run_id for e in measured if e.flipped]
    errors = sum(e.errors for e in examples)
    temperature = float(check["temperature"])
    notes = []
    if measured and not flipped:
        if temperature == 0:
            notes.append(
                f"All {k} samples agreed on every run at temperature 0. Many servers are deterministic at "
                "temperature 0, so this says little about how sure the judge is; rerun with temperature=0.7 "
                "(or the temperature you will use) to probe it."
            )
        else:
            notes.append(
                f"All {k} samples agreed on every run at temperature {temperature:g}: the judge is stable."
            )
    if flipped:
        notes.append(
            f"{len(flipped)} of {len(measured)} run(s) flip between samples at temperature {temperature:g}: "
            "there the verdict is close to a coin toss, usually because the rubric leaves the case open. "
            "The misaligned view flags them as unstable."
        )
    if errors:
        notes.append(f"{errors} judge call(s) failed and are left out of every rate.")
    if check["status"] != "completed":
        notes.append(f"Check {check_id} is {check['status']}: some samples are missing.")
    return ConsistencyReport(
        check_id=check_id,
        evaluator=check["evaluator"],
        prompt_ref=check["prompt_ref"],
        model=check["model"],
        temperature=temperature,
        k=k,
        n=len(examples),
        flip_rate=metrics.rate(len(flipped), len(measured)),
        mean_flip_share=(sum(e.flip_share or 0 for e in measured) / len(measured) if measured else None),
        errors=errors,
        judge_calls=calls,
        examples=examples,
        notes=notes,
    )


# ---- suggested next labels ---------------------------------------------------------------------------------


async def suggest_labels(
    store: Store,
    evaluator: str,
    *,
    n: int = 10,
    budget: int = 50,
    repeats: int = 0,
    concurrency: int | None = None,
    on_progress: Progress | None = None,
    env: config.Settings | None = None,
) -> SuggestionReport:
    """Rank the queue's unlabeled runs by how much a human label would teach, and return the top `n`.

    Signals, summed into `value`: the latest saved version and the draft disagree on the run (1); repeated
    judge samples of it disagree (0–1, from stored self-consistency samples, plus `repeats` fresh draft
    samples per run when given); the verdict falls in a class that is under-represented among the labels (up
    to 0.5). At most `budget` judge calls are made, run by run in queue order; cached verdicts are free, so
    calling again with a larger budget continues where this one stopped. Show the human the run (get_run),
    not the judge's verdicts, so the label stays independent.
    """
    env = env or config.load()
    ev = get_evaluator(store, evaluator)
    score_type = ev.score_type
    if not 1 <= n <= 100:
        raise InvalidInput(f"n={n} must be between 1 and 100.")
    if not 0 <= budget <= MAX_BUDGET:
        raise InvalidInput(f"budget={budget} judge calls must be between 0 and {MAX_BUDGET}.")
    if repeats != 0 and not 2 <= repeats <= MAX_REPEATS:
        raise InvalidInput(
            f"repeats={repeats}: give 0 (use stored samples only) or 2 to {MAX_REPEATS} samples per run."
        )
    pending = store.pending_ids(evaluator)
    labeled = store.current_label_rows(evaluator, pending)  # runs back in the queue for a second review
    candidates = [rid for rid in pending if rid not in labeled]
    if not candidates:
        raise InvalidInput(
            f"The queue of {evaluator!r} has no unlabeled runs to rank. Add some with add_to_queue."
        )
    notes: list[str] = []
    draft = _resolve(store, evaluator, "draft", env)
    saved: _Prompt | None = None
    if ev.latest_version is not None:
        latest = _resolve(store, evaluator, ev.latest_version, env)
        if latest.text == draft.text and latest.settings == draft.settings:
            notes.append(
                f"The draft equals {latest.ref}, so there is no version disagreement to rank by; edit the "
                "draft (update_draft) to use it."
            )
        else:
            saved = latest
    runs = store.get_runs(candidates)
    order = {rid: i for i, rid in enumerate(candidates)}
    draft_scores, draft_jobs = _lookup(store, score_type, draft, runs)
    saved_scores, saved_jobs = _lookup(store, score_type, saved, runs) if saved else ({}, [])
    hits = len(draft_scores) + len(saved_scores)
    # Spend the budget run by run, so the runs judged get both verdicts.
    planned = sorted(
        [(0, job) for job in draft_jobs] + [(1, job) for job in saved_jobs],
        key=lambda pj: (order[pj[1].run_id], pj[0]),
    )[:budget]
    spare = budget - len(planned)
    repeat_ids = candidates[: spare // repeats] if repeats else []
    tally = _Tally(on_progress, len(planned) + len(repeat_ids) * repeats, "suggest labels")
    limit = concurrency or env.concurrency
    for which, scores, prompt in ((0, draft_scores, draft), (1, saved_scores, saved)):
        jobs = [job for w, job in planned if w == which]
        if prompt is not None and jobs:
            verdicts = await _judge_jobs(store, score_type, prompt, jobs, limit, tally)
            scores.update({rid: v.score for rid, v in verdicts.items() if v.score is not None})
    if repeat_ids:
        await _sample(store, evaluator, score_type, draft, repeat_ids, repeats, limit, tally)
    samples = _latest_samples(store, evaluator)

    counts = balance(store, evaluator, score_type).counts
    total = sum(counts.values())
    values = score_type.values()
    suggestions = []
    for rid in candidates:
        reasons: list[str] = []
        value = 0.0
        d, s = draft_scores.get(rid), saved_scores.get(rid)
        if d is not None and s is not None and d != s:
            value += 1
            assert saved is not None
            reasons.append(f"{saved.ref} and the draft disagree on it")
        share = _flip_share(samples.get(rid, []))
        if share:
            valid = [x for x in samples[rid] if x is not None]
            value += share / (1 - 1 / min(len(valid), len(values)))
            reasons.append(f"repeated judge verdicts disagree ({share:.0%} off the most common)")
        predicted = d if d is not None else s
        if predicted is None and samples.get(rid) and any(x is not None for x in samples[rid]):
            predicted = _most_common([x for x in samples[rid] if x is not None])
        if predicted is not None:
            have = counts.get(str(predicted), 0) / total if total else 0.0
            deficit = max(0.0, 1 / len(values) - have) * len(values)
            if deficit > 0:
                value += CLASS_WEIGHT * deficit
                reasons.append(
                    f"the judge predicts {_score_name(score_type, predicted)}, {have:.0%} of labels so far "
                    "(under-represented)"
                )
        if not reasons:
            reasons.append("no disagreement signal" if d is not None else "not judged within the budget")
        suggestions.append(
            LabelSuggestion(
                run_id=rid,
                value=round(value, 4),
                reason="; ".join(reasons),
                draft_score=d,
                saved_score=s,
                flip_share=share,
                predicted=predicted,
            )
        )
    suggestions.sort(key=lambda x: (-x.value, order[x.run_id]))
    unjudged = sum(1 for rid in candidates if rid not in draft_scores)
    if unjudged:
        notes.append(
            f"{unjudged} of {len(candidates)} queued run(s) have no draft verdict: the budget of {budget} "
            "judge calls ran out. Raise budget to rank them; verdicts are cached, so no call is repeated."
        )
    if not any(_flip_share(v) for v in samples.values()) and not repeats:
        notes.append(
            "No repeated judge samples disagree yet: pass repeats=3 (or run self_consistency on queued "
            "runs) to rank by judge instability too."
        )
    notes.append(
        "Label these with submit_label; show the labeler the run (get_run), not the judge's verdicts, so "
        "the label stays independent."
    )
    return SuggestionReport(
        evaluator=evaluator,
        candidates=len(candidates),
        suggestions=suggestions[:n],
        saved_version=int(saved.ref[1:]) if saved else None,
        judge_calls=len(planned) + len(repeat_ids) * repeats,
        cache_hits=hits,
        budget=budget,
        unjudged=unjudged,
        notes=notes,
    )


# ---- corrected pass rate -----------------------------------------------------------------------------------


def _unlabeled_ids(
    store: Store, evaluator: str, run_ids: Sequence[str] | None, source: str | None
) -> tuple[list[str], int]:
    if run_ids is not None and source is not None:
        raise InvalidInput("Give run_ids or a source, not both.")
    if run_ids is not None:
        ids = _check_runs(store, run_ids)
    elif source is not None:
        if store.get_source(source) is None:
            known = [s["name"] for s in store.list_sources()]
            raise NotFound(
                f"No source named {source!r}. Known: {', '.join(known) or 'none'}. "
                "Import runs with import_runs."
            )
        ids = store.run_ids(source=source)
    else:
        raise InvalidInput(
            "Say which unlabeled runs to estimate the pass rate of: run_ids=[...] or source=..."
        )
    labeled = store.current_label_rows(evaluator, ids)
    unlabeled = [rid for rid in ids if rid not in labeled]
    if not unlabeled:
        raise InvalidInput(
            f"All {len(ids)} run(s) already have a human label for {evaluator!r}; the corrected pass rate "
            "is for unlabeled runs."
        )
    return unlabeled, len(ids) - len(unlabeled)


def _test_run(
    store: Store, evaluator: str, prompt: _Prompt, examples: Sequence[tuple[str, Score]]
) -> int | None:
    """A completed, error-free test-split run of exactly this prompt over exactly these labels, if any."""
    wanted = {rid: dumps(score) for rid, score in examples}
    for aid in reversed(store.alignment_run_ids(evaluator)):
        row = store.get_alignment_run(aid)
        if (
            row is None
            or row["split"] != "test"
            or row["status"] != "completed"
            or (row["prompt"], row["judge"], row["model"])
            != (prompt.text, prompt.settings.model_dump_json(), prompt.endpoint.model)
        ):
            continue
        results = store.alignment_results(aid)
        if (
            all(r["error"] is None for r in results)
            and {r["run_id"]: r["human_score"] for r in results} == wanted
        ):
            return aid
    return None


async def corrected_pass_rate(
    store: Store,
    evaluator: str,
    run_ids: Sequence[str] | None = None,
    source: str | None = None,
    prompt: str | int = "latest",
    *,
    n_boot: int = 2000,
    seed: int = 0,
    concurrency: int | None = None,
    on_progress: Progress | None = None,
    env: config.Settings | None = None,
) -> PassRateReport:
    """Estimate the true pass rate of unlabeled runs from the judge's verdicts, corrected for its errors.

    θ = (p_obs + TNR − 1) / (TPR + TNR − 1), clipped to [0, 1], with a bootstrap 95% interval; p_obs is the
    share of the unlabeled runs (`run_ids`, or every unlabeled run of `source`) the judge passes with `prompt`
    (default: the latest saved version), and TPR / TNR come from the evaluator's labeled test split judged
    with the same prompt (judged now if needed, which counts as a look at the test split). Refuses when a
    class is missing from the test split or TPR + TNR ≤ 1 (the judge is no better than chance). Verdicts are
    cached.
    """
    env = env or config.load()
    ev = get_evaluator(store, evaluator)
    score_type = ev.score_type
    if not 1 <= n_boot <= 100_000:
        raise InvalidInput(f"n_boot={n_boot} must be between 1 and 100000.")
    ids, already_labeled = _unlabeled_ids(store, evaluator, run_ids, source)
    chosen = _resolve(store, evaluator, prompt, env)
    _, examples = holdout.examples_for(store, evaluator, "test")
    humans = [(score_type.is_pass(h), score_type.is_pass(h)) for _, h in examples]
    if len({h for h, _ in humans}) < 2:
        metrics.corrected_pass_rate([True], humans)  # refuses a missing class before any bootstrap: its words

    aid = _test_run(store, evaluator, chosen, examples)
    reused = aid is not None
    if aid is None:
        report = await run_alignment(
            store,
            evaluator,
            prompt,
            split="test",
            compare=False,
            concurrency=concurrency,
            on_progress=on_progress,
            env=env,
        )
        aid = report.run.id
    labeled = [
        (score_type.is_pass(loads(r["human_score"])), score_type.is_pass(loads(r["judge_score"])))
        for r in store.alignment_results(aid)
        if r["error"] is None and r["judge_score"] is not None
    ]
    positives = [j for h, j in labeled if h]
    negatives = [not j for h, j in labeled if not h]
    if (
        not positives
        or not negatives
        or (sum(positives) / len(positives) + sum(negatives) / len(negatives) <= 1)
    ):
        metrics.corrected_pass_rate([True], labeled)  # refuses before any bootstrap and before judging more

    runs = store.get_runs(ids)
    found, jobs = _lookup(store, score_type, chosen, runs)
    tally = _Tally(on_progress, len(jobs), f"unlabeled runs ({chosen.ref})")
    verdicts = await _judge_jobs(store, score_type, chosen, jobs, concurrency or env.concurrency, tally)
    found.update({rid: v.score for rid, v in verdicts.items() if v.score is not None})
    failed = [v.error for v in verdicts.values() if v.score is None]
    if not found:
        raise JudgeUnreachable(
            f"None of the {len(ids)} unlabeled runs could be judged (first error: {failed[0]}). Check the "
            "judge and call this again; verdicts that succeed are cached."
        )
    estimate = metrics.corrected_pass_rate(
        [score_type.is_pass(found[rid]) for rid in ids if rid in found], labeled, n_boot=n_boot, seed=seed
    )
    split = holdout.info(store, evaluator)
    notes = [
        f"The judge passes {estimate.observed:.0%} of {estimate.n_unlabeled} unlabeled run(s); corrected "
        f"for its test-split error rates (TPR {estimate.tpr:.0%}, TNR {estimate.tnr:.0%}) the true pass "
        f"rate is about {estimate.corrected:.0%} (95% interval "
        f"{estimate.ci.low:.0%}–{estimate.ci.high:.0%}).",
        f"TPR and TNR come from alignment run {aid} on the test split "
        + (
            "(reused: no new look at the test split)."
            if reused
            else "(judged now; counted as a test evaluation)."
        ),
    ]
    if score_type.kind == "ordinal":
        notes.append(f"'Pass' means a score above the middle of {score_type.min}..{score_type.max}.")
    elif score_type.kind == "categorical":
        notes.append(f"'Pass' means the first label, {(score_type.labels or [''])[0]!r}.")
    if estimate.clipped:
        notes.append(
            "The raw estimate fell outside [0, 1] and was clipped: the unlabeled runs may differ from the "
            "labeled ones, or the test split is too small to pin down TPR and TNR."
        )
    if len(labeled) < 30:
        notes.append(
            f"TPR and TNR rest on {len(labeled)} test label(s), which is why the interval is wide; more "
            "labels narrow it."
        )
    if failed:
        notes.append(
            f"{len(failed)} unlabeled run(s) could not be judged and are left out; call again to retry."
        )
    if already_labeled:
        notes.append(f"{already_labeled} run(s) already have a human label and were left out.")
    tp, p = sum(positives), len(positives)
    tn, f = sum(negatives), len(negatives)
    return PassRateReport(
        evaluator=evaluator,
        prompt_ref=chosen.ref,
        model=chosen.endpoint.model,
        observed=estimate.observed,
        corrected=estimate.corrected,
        ci=estimate.ci,
        tpr=metrics.rate(tp, p),
        tnr=metrics.rate(tn, f),
        clipped=estimate.clipped,
        n_unlabeled=estimate.n_unlabeled,
        n_labeled=estimate.n_labeled,
        n_boot=estimate.n_boot,
        skipped_resamples=estimate.skipped_resamples,
        unlabeled_errors=len(failed),
        already_labeled=already_labeled,
        test_alignment_run=aid,
        test_evaluations=split.test_evaluations if split else 0,
        notes=notes,
    )
