"""An alignment run: judge the reference set with one prompt, persist each result, score it, compare it."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from dataclasses import replace
from typing import Literal

import anyio

from align_mcp import config
from align_mcp.core import metrics, pairwise
from align_mcp.core.models import (
    AlignmentReport,
    AlignmentSummary,
    ExampleResult,
    JudgeSettings,
    MisalignedCase,
    MisalignedPage,
    Note,
    PairOrders,
    Score,
    ScoreType,
)
from align_mcp.core.text import clip
from align_mcp.engine import batches, few_shot, holdout, jury, leases, rubrics, swap
from align_mcp.engine import pending as pending_runs
from align_mcp.engine.batches import BatchOptions
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.engine.evaluators import prompt_for
from align_mcp.engine.queues import balance, reference_set
from align_mcp.errors import AlignError, EmptyReferenceSet, InvalidInput, JudgeFailed, NextStep, NotFound
from align_mcp.llm.client import MAX_RETRY_AFTER_S, OnRequest
from align_mcp.llm.endpoint import Endpoint, resolve_endpoint
from align_mcp.llm.judge import Verdict, build_messages, cache_key, open_judge, response_schema
from align_mcp.llm.runner import Progress, Tally, run_batch
from align_mcp.store import (
    AlignmentRunRow,
    CacheEntry,
    NewResult,
    ResultRow,
    RunRow,
    Store,
)
from align_mcp.store import batches as batch_jobs

log = logging.getLogger(__name__)

Direction = Literal["false_pass", "false_fail", "over", "under", "mismatch"]
MAX_ERROR_EXAMPLES = 5
MAX_FAILURE_CAUSES = 3
DEFAULT_CASE_CHARS = 1200


def _prompt_hash(prompt: str, settings: JudgeSettings, endpoint: Endpoint) -> str:
    """What a run judged with: the prompt, the settings, the model and where it was served (the same model name
    at another endpoint may judge differently, so a run there never stands in for this one)."""
    material = json.dumps(
        {
            "prompt": prompt,
            "judge": settings.hashed(),
            "model": endpoint.model,
            "endpoint": endpoint.base_url.rstrip("/").lower(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


async def run_alignment(
    store: Store,
    evaluator: str,
    prompt: str | int = "draft",
    *,
    split: str = "auto",
    compare: bool = True,
    concurrency: int | None = None,
    on_progress: Progress | None = None,
    env: config.Settings | None = None,
    on_request: OnRequest | None = None,
    batch: bool | BatchOptions = False,
) -> AlignmentReport:
    """Judge every labeled run of `evaluator` with the draft (default) or a saved version.

    `split` is 'auto' (the dev split once a holdout exists, else every label), 'dev', 'test' (explicit and
    counted) or 'all'. Each result is stored as it completes; the draft's result is reported next to the last
    saved version judged on the same examples (judging it too where needed; unchanged prompts hit the cache).
    `on_request` is called before every request to the judge (a budget may refuse one by raising). `batch`
    sends the judge requests through the provider's Batch API instead (True, or BatchOptions for its limits and
    polling): the batch ids are stored, so `resume` picks an interrupted run up where it stopped.
    """
    _check_concurrency(concurrency)
    env = env or config.load()
    ev = get_evaluator(store, evaluator)
    prompt_ref, text, settings, version = prompt_for(store, evaluator, prompt)
    endpoint = _endpoint(settings, env)
    _check_batch(batch, settings)
    latest = ev.latest_version
    baseline: tuple[str, str, JudgeSettings, Endpoint] | None = None
    if compare and prompt_ref == "draft" and latest is not None:
        base_ref, base_text, base_settings, _ = prompt_for(store, evaluator, latest)
        # Resolved before any run is made: a baseline that cannot be judged must not leave a stray draft run.
        baseline = (base_ref, base_text, base_settings, _endpoint(base_settings, env))
    split, examples = _examples(store, evaluator, split)
    notes: list[Note] = []
    if prompt_ref == "draft" and few_shot.shows(ev.draft, ev.judge):
        # Chosen again now that the split surely exists (it may have been made just above), and said what the
        # examples fell short of (none to show, fewer than k).
        text, settings = prompt_for(store, evaluator, "draft")[1:3]
        notes = few_shot.draft_notes(store, evaluator, ev.draft, ev.judge)
    if split in ("test", "all") and holdout.info(store, evaluator) is not None:
        store.count_test_evaluation(evaluator)
    options = _batch_options(batch)
    aid = _create_run(store, evaluator, prompt_ref, version, text, settings, endpoint, split, examples)
    await _execute(
        store,
        aid,
        ev.score_type,
        endpoint,
        concurrency or env.concurrency,
        on_progress,
        on_request=on_request,
        env=env,
        batch=options,
    )
    baseline_id: int | None = None
    if baseline is not None:
        base_ref, base_text, base_settings, base_endpoint = baseline
        base_hash = _prompt_hash(base_text, base_settings, base_endpoint)
        if base_hash == _prompt_hash(text, settings, endpoint):
            # Same prompt, settings and model: judging it again would only repeat this run (and its errors).
            notes.append(
                Note(
                    text=f"The draft is identical to {base_ref}, so there is no change to compare.",
                    next_steps=[NextStep("update_draft", {"evaluator": evaluator})],
                )
            )
        elif (baseline_id := _covering_run(store, evaluator, base_ref, examples, base_hash)) is None:
            baseline_id = _create_run(
                store, evaluator, base_ref, latest, base_text, base_settings, base_endpoint, split, examples
            )
            await _execute(
                store,
                baseline_id,
                ev.score_type,
                base_endpoint,
                concurrency or env.concurrency,
                on_progress,
                base_ref,
                on_request=on_request,
                env=env,
                batch=options,
            )
    if baseline_id is not None:
        store.set_alignment_baseline(aid, baseline_id)
    return report(store, aid, extra_notes=notes)


async def resume(
    store: Store,
    alignment_id: int,
    *,
    retry_errors: bool = False,
    concurrency: int | None = None,
    on_progress: Progress | None = None,
    env: config.Settings | None = None,
    batch: bool | BatchOptions = False,
) -> AlignmentReport:
    """Finish an interrupted alignment run: only examples without a stored result are judged. A run with a
    batch job not merged yet polls and merges its stored batches (nothing is sent again); `batch` judges the
    rest through the Batch API."""
    _check_concurrency(concurrency)
    env = env or config.load()
    row = _run_row(store, alignment_id)
    score_type = get_evaluator(store, row.evaluator).score_type
    _check_batch(batch, row.judge)
    if row.judge.members:
        endpoint = jury.jury_endpoint(row.judge, env)
    else:
        endpoint = resolve_endpoint(row.judge.model_copy(update={"model": row.model}), env)
    with leases.judging(store, alignment_id):
        if retry_errors:
            store.reset_errors(alignment_id)
        await _execute(
            store,
            alignment_id,
            score_type,
            endpoint,
            concurrency or env.concurrency,
            on_progress,
            env=env,
            batch=_batch_options(batch),
        )
    return report(store, alignment_id)


def _endpoint(settings: JudgeSettings, env: config.Settings) -> Endpoint:
    """The single judge's endpoint, or what a jury run records as one."""
    return jury.jury_endpoint(settings, env) if settings.members else resolve_endpoint(settings, env)


def _check_batch(batch: bool | BatchOptions, settings: JudgeSettings) -> None:
    if batch is not False and settings.members:
        raise InvalidInput(
            "A jury is judged online: the Batch API path sends one judge's requests. Judge it without batch."
        )


def _batch_options(batch: bool | BatchOptions) -> BatchOptions | None:
    if isinstance(batch, BatchOptions):
        return batch
    return BatchOptions() if batch else None


def _check_concurrency(concurrency: int | None) -> None:
    if concurrency is not None and concurrency < 1:
        raise InvalidInput(f"concurrency={concurrency}: parallel judge calls must be at least 1.")


def _examples(store: Store, evaluator: str, split: str) -> tuple[str, list[tuple[str, Score]]]:
    used, examples = holdout.examples_for(store, evaluator, split)
    if not examples:
        raise EmptyReferenceSet(
            f"Evaluator {evaluator!r} has no labeled runs{'' if used == 'all' else ' in its ' + used + ' split'}, "
            "so there is nothing to align against. Label at least 20, of both classes.",
            NextStep("add_to_queue", {"evaluator": evaluator}),
        )
    return used, examples


def _create_run(
    store: Store,
    evaluator: str,
    prompt_ref: str,
    version: int | None,
    text: str,
    settings: JudgeSettings,
    endpoint: Endpoint,
    split: str,
    examples: list[tuple[str, Score]],
    *,
    comparison: bool = False,
) -> int:
    return store.create_alignment_run(
        evaluator,
        prompt_ref,
        version,
        text,
        settings,
        endpoint.model,
        _prompt_hash(text, settings, endpoint),
        split,
        examples,
        comparison=comparison,
    )


def _covering_run(
    store: Store, evaluator: str, prompt_ref: str, examples: list[tuple[str, Score]], prompt_hash: str
) -> int | None:
    """The latest completed run of `prompt_ref` with this judge model whose results cover exactly these examples
    and labels."""
    aid = store.latest_alignment_id(evaluator, prompt_ref=prompt_ref, status="completed")
    if aid is None or _run_row(store, aid).prompt_hash != prompt_hash:
        return None
    wanted = dict(examples)
    have = {r.run_id: r.human_score for r in store.alignment_results(aid)}
    return aid if have == wanted else None


Orders = list[tuple[list[dict[str, str]], str]]
"""A run's judgements: (messages, cache key) for each order it is shown in (two for a position-swapped pairwise
comparison, else one)."""


def _prepare(
    store: Store, aid: int, score_type: ScoreType, endpoint: Endpoint
) -> tuple[list[tuple[str, Orders]], dict[str, CacheEntry], int, int]:
    """Store the pending examples that need no judge call (every order cached, or the run unreadable); return
    the rest with their orders, the cache hits among those orders, the examples done and how many came whole
    from the cache."""
    row = _run_row(store, aid)
    settings = row.judge
    pending = store.pending_examples(aid)
    done = row.total - len(pending)
    schema = response_schema(score_type, settings.reasoning)

    def judgements(run: RunRow) -> Orders:
        # An example is judged once per order it is shown in, and each order is cached on its own.
        shown = [
            build_messages(row.prompt, v, settings.reasoning) for v in swap.views(score_type, run.as_dict())
        ]
        return [(m, cache_key(endpoint, settings, m, schema)) for m in shown]

    keyed, problems = pending_runs.shown(store, [rid for rid, _ in pending], judgements)
    work: list[tuple[str, Orders]] = []
    cached_results = [_verdict_row(rid, Verdict(None, None, problem)) for rid, problem in problems]
    hits = store.cache_get([k for _, orders in keyed for _, k in orders])
    for rid, orders in keyed:
        if not all(key in hits for _, key in orders):
            work.append((rid, orders))
            continue
        verdict, pair = swap.combine([swap.from_cache(hits[key]) for _, key in orders])
        cached_results.append(replace(_verdict_row(rid, verdict, pair), cached=True))
    if cached_results:
        store.record_results(aid, cached_results)
        done += len(cached_results)
    return work, hits, done, len(cached_results)


@leases.holding
async def _execute(
    store: Store,
    aid: int,
    score_type: ScoreType,
    endpoint: Endpoint,
    concurrency: int,
    on_progress: Progress | None,
    label: str | None = None,
    *,
    on_request: OnRequest | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    env: config.Settings | None = None,
    batch: BatchOptions | None = None,
) -> None:
    row = _run_row(store, aid)
    settings = row.judge
    total = row.total
    what = label or row.prompt_ref
    if settings.members:
        await _execute_jury(
            store, aid, row, score_type, env or config.load(), concurrency, on_progress, label, on_request
        )
        return
    if batch is not None or batch_jobs.open_job_of_alignment(store, aid) is not None:
        await _execute_batch(store, aid, score_type, endpoint, on_progress, what, batch or BatchOptions())
        return
    work, hits, done, from_cache = _prepare(store, aid, score_type, endpoint)
    store.reopen_alignment_run(aid)
    if on_progress is not None:
        await on_progress(done, total, f"{what}: {done}/{total} judged ({from_cache} from cache)")

    failure: AlignError | None = None
    completed = "interrupted"
    tally = Tally(on_progress, total, what, done=done, detail=" judged")

    try:
        if work:
            async with open_judge(
                endpoint, settings, score_type, on_wait=tally.waiting, on_request=on_request
            ) as judge:

                async def one(item: tuple[str, Orders]) -> None:
                    rid, orders = item
                    verdicts = []
                    cache: list[CacheEntry] = []
                    for messages, key in orders:
                        hit = hits.get(key)
                        verdicts.append(swap.from_cache(hit) if hit else await judge.judge_example(messages))
                        if hit is None and verdicts[-1].error is None:
                            cache.append(CacheEntry.of(key, verdicts[-1]))
                    verdict, pair = swap.combine(verdicts)
                    # In a worker thread: while a label or another request holds the store, a write made here
                    # would stop the event loop, and with it every other request of a shared server.
                    await anyio.to_thread.run_sync(
                        store.record_results, aid, [_verdict_row(rid, verdict, pair)], cache
                    )

                try:
                    await run_batch(work, one, concurrency=concurrency, progress=tally, limiter=limiter)
                except AlignError as e:
                    failure = e
        if failure is None:
            completed = "completed"
    finally:
        with anyio.CancelScope(shield=True):
            status = _finish(store, aid, score_type, completed)
    _raise_end(store, aid, status, failure)


async def _execute_jury(
    store: Store,
    aid: int,
    row: AlignmentRunRow,
    score_type: ScoreType,
    env: config.Settings,
    concurrency: int,
    on_progress: Progress | None,
    label: str | None,
    on_request: OnRequest | None,
) -> None:
    failure: AlignError | None = None
    completed = "interrupted"
    try:
        failure = await jury.judge_pending(
            store, aid, row, score_type, env, concurrency, on_progress, label or row.prompt_ref, on_request
        )
        if failure is None:
            completed = "completed"
    finally:
        with anyio.CancelScope(shield=True):
            status = _finish(store, aid, score_type, completed)
    _raise_end(store, aid, status, failure)


def _raise_end(store: Store, aid: int, status: str, failure: AlignError | None) -> None:
    """Raise what ended a run early: every example failed, or the error that stopped the batch."""
    if status == "failed":
        raise _failed(store, aid)
    if failure is not None:
        row = _run_row(store, aid)
        kept = row.total - len(store.pending_examples(aid))
        raise type(failure)(
            f"{failure} Alignment run {aid}: {kept} of {row.total} results kept.",
            *failure.next_steps,
            NextStep("resume_alignment", {"alignment_run": aid}),
        ) from failure


async def _execute_batch(
    store: Store,
    aid: int,
    score_type: ScoreType,
    endpoint: Endpoint,
    on_progress: Progress | None,
    what: str,
    options: BatchOptions,
) -> None:
    """Judge the run's pending examples through the Batch API (or finish its stored batch job), then store one
    result per example: the verdict, or the error its request came back with."""
    row = _run_row(store, aid)
    work, hits, done, from_cache = _prepare(store, aid, score_type, endpoint)
    store.reopen_alignment_run(aid)
    if on_progress is not None:
        await on_progress(done, row.total, f"{what}: {done}/{row.total} judged ({from_cache} from cache)")
    # Each order of a comparison is one request (its cache key is its custom_id); an order already cached is
    # not sent again.
    requests = [(key, messages) for _, orders in work for messages, key in orders if key not in hits]
    job = batch_jobs.open_job_of_alignment(store, aid)
    completed = "interrupted"
    try:
        if work:
            job_id = (
                job.id
                if job is not None
                else batch_jobs.create_job(
                    store, "alignment", row.evaluator, aid, endpoint.base_url, endpoint.model
                )
            )
            await batches.run_job(
                store,
                job_id,
                lambda: requests,
                endpoint,
                row.judge,
                score_type,
                what=what,
                on_progress=on_progress,
                options=options,
            )
            _apply_batch(store, aid, job_id, work)
        elif job is not None:
            batch_jobs.set_job_status(store, job.id, "merged")
        completed = "completed"
    except AlignError as e:
        open_job = batch_jobs.open_job_of_alignment(store, aid)
        sent = open_job is not None and batches.abandon_unsent(store, open_job.id) is False
        # Batch ids stored: resuming polls and merges them and sends nothing again. Nothing sent: resuming
        # judges the examples afresh (online, unless asked for a batch again).
        kept = "its batches are stored and are polled on resume" if sent else "nothing was sent"
        raise type(e)(
            f"{e} Alignment run {aid}: {kept}.",
            *e.next_steps,
            NextStep("resume_alignment", {"alignment_run": aid}),
        ) from e
    finally:
        with anyio.CancelScope(shield=True):
            status = _finish(store, aid, score_type, completed)
    if status == "failed":
        raise _failed(store, aid)


def _apply_batch(store: Store, aid: int, job_id: int, work: list[tuple[str, Orders]]) -> None:
    """One result per example from a merged batch job: each order's verdict from the cache, or its request's
    error, combined as the online path combines them."""
    keys = [key for _, orders in work for _, key in orders]
    hits = store.cache_get(keys)
    failed = batch_jobs.errors(store, job_id, keys)
    results = []
    for rid, orders in work:
        verdicts = []
        for _, key in orders:
            hit = hits.get(key)
            if hit is not None:
                verdicts.append(replace(swap.from_cache(hit), latency_ms=None, calls=1))
                continue
            error = failed.get(key)
            verdicts.append(
                Verdict(
                    score=None,
                    reasoning=None,
                    error=error.error if error else f"no result for this example in batch job {job_id}",
                    prompt_tokens=error.prompt_tokens if error else None,
                    completion_tokens=error.completion_tokens if error else None,
                    cached_tokens=None,
                    latency_ms=None,
                    calls=1,
                )
            )
        verdict, pair = swap.combine(verdicts)
        results.append(_verdict_row(rid, verdict, pair))
    store.record_results(aid, results)


def _verdict_row(rid: str, verdict: Verdict, orders: PairOrders | None = None) -> NewResult:
    return NewResult(
        run_id=rid,
        judge_score=verdict.score,
        reasoning=verdict.reasoning,
        error=verdict.error,
        prompt_tokens=verdict.prompt_tokens,
        completion_tokens=verdict.completion_tokens,
        cached_tokens=verdict.cached_tokens,
        latency_ms=verdict.latency_ms,
        cached=False,
        requests=verdict.calls,
        reasks=verdict.reasks,
        waited_s=verdict.waited_s,
        orders=orders,
    )


def _finish(store: Store, aid: int, score_type: ScoreType, status: str) -> str:
    """Store the run's end and metrics; a run that completed with every example in error has failed.
    Returns the status stored."""
    results = store.alignment_results(aid)
    pairs = [(r.human_score, r.judge_score if r.error is None else None) for r in results]
    computed = metrics.compute_metrics(score_type, pairs) if pairs else None
    if computed is not None and any(r.orders for r in results):
        computed.pairwise = pairwise.figures([(r.human_score, r.orders) for r in results if r.orders])
    if status == "completed" and results and all(r.error is not None for r in results):
        status = "failed"
    store.finish_alignment_run(aid, status, computed)
    return status


def _failed(store: Store, aid: int) -> JudgeFailed:
    """The error of a run in which every example failed: the counts and the first distinct causes."""
    results = store.alignment_results(aid)
    causes = Counter(r.error for r in results if r.error is not None)
    shown = [
        f"{cause.rstrip('.')} ({n} example{'' if n == 1 else 's'})"
        for cause, n in causes.most_common(MAX_FAILURE_CAUSES)
    ]
    more = len(causes) - len(shown)
    return JudgeFailed(
        f"Alignment run {aid} failed: 0 judged, {len(results)} errors. "
        f"{'First causes' if len(shown) > 1 else 'Cause'}: {'; '.join(shown)}"
        f"{f'; and {more} other cause(s)' if more > 0 else ''}. Fix the judge, then judge the run again.",
        NextStep("resume_alignment", {"alignment_run": aid, "retry_errors": True}),
    )


def _run_row(store: Store, aid: int) -> AlignmentRunRow:
    """The alignment run's row; NotFound when there is no such run."""
    row = store.alignment_run_row(aid)
    if row is None:
        raise NotFound(f"No alignment run {aid}.", NextStep("list_alignment_runs"))
    return row


def summary(store: Store, aid: int) -> AlignmentSummary:
    totals = store.get_alignment_run(aid)
    if totals is None:
        raise NotFound(f"No alignment run {aid}.", NextStep("list_alignment_runs"))
    row = totals.run
    return AlignmentSummary(
        id=row.id,
        evaluator=row.evaluator,
        prompt_ref=row.prompt_ref,
        version=row.version,
        split=row.split,
        status=row.status,  # type: ignore[arg-type]  # the store writes only AlignmentStatus values
        model=row.model,
        started_at=row.started_at,
        finished_at=row.finished_at,
        total=row.total,
        done=totals.judged,
        judged=totals.judged - totals.errors,
        errors=totals.errors,
        cache_hits=totals.cache_hits,
        requests=totals.requests,
        reasks=totals.reasks,
        waited_s=round(totals.waited_s, 3),
        prompt_tokens=totals.prompt_tokens,
        completion_tokens=totals.completion_tokens,
        metrics=row.metrics,
    )


def _correct(store: Store, aid: int) -> dict[str, bool]:
    return {
        r.run_id: r.judge_score == r.human_score
        for r in store.alignment_results(aid)
        if r.error is None and r.judge_score is not None
    }


def report(
    store: Store, aid: int, baseline_id: int | None = None, extra_notes: list[Note] | None = None
) -> AlignmentReport:
    """Metrics of a run, the baseline's on the same examples, the flips between them, and the errors."""
    run = summary(store, aid)
    results = store.alignment_results(aid)
    errors = [_example(r) for r in results if r.error is not None]
    if baseline_id is None:
        baseline_id = _run_row(store, aid).baseline_id  # the comparison made when the run was started
    baseline = summary(store, baseline_id) if baseline_id is not None else None
    flips = None
    if baseline is not None:
        flips = metrics.flip_report(
            _correct(store, baseline.id), _correct(store, aid), baseline.prompt_ref, run.prompt_ref
        )
    warnings = [Note(text=w) for w in balance(store, run.evaluator).warnings]
    notes = list(extra_notes or [])
    if run.metrics and run.metrics.errors:
        warnings.append(
            Note(
                text=f"{run.metrics.errors} example(s) could not be judged and are excluded from every rate.",
                next_steps=[NextStep("resume_alignment", {"alignment_run": aid, "retry_errors": True})],
            )
        )
    if run.status in ("running", "interrupted"):
        notes.append(
            Note(
                text=f"Run {aid} is {run.status}: {run.total - run.done} example(s) not judged yet.",
                next_steps=[NextStep("resume_alignment", {"alignment_run": aid})],
            )
        )
    if (
        cost := batches.cost_note(store, [j.id for j in batch_jobs.jobs_of_alignment(store, aid)])
    ) is not None:
        notes.append(Note(text=cost))
    if run.waited_s >= 1:
        notes.append(
            Note(
                text=f"{run.waited_s:.0f}s of this run were spent waiting between attempts, after rate limits "
                f"or errors (each wait is capped at {MAX_RETRY_AFTER_S:.0f}s)."
            )
        )
    m = run.metrics
    if m is not None and m.agreement.ci is not None and m.n:
        width = m.agreement.ci.high - m.agreement.ci.low
        if width > 0.2:
            notes.append(
                Note(
                    text=f"The 95% interval on agreement is {width:.0%} wide with n = {m.n}; about "
                    f"{math.ceil(m.n * (width / 0.2) ** 2)} labels would narrow it to 20 points."
                )
            )
    split_info = holdout.info(store, run.evaluator)
    if run.split == "test":
        warnings.extend(Note(text=w) for w in _overfit_warning(store, run))
        notes.append(
            Note(
                text=f"This run judged the held-out test split ({run.total} examples). The test split has been "
                f"evaluated {split_info.test_evaluations if split_info else 0} time(s) in all: each look makes it "
                "a little less independent, so tune on dev and check test rarely."
            )
        )
    elif run.split == "all" and split_info is None:
        notes.append(
            Note(
                text="No dev/test holdout yet: "
                + (holdout.needed_labels(reference_set(store, run.evaluator)) or "")
            )
        )
    stale = rubrics.stale_count(store, run.evaluator)
    if stale:
        notes.append(
            Note(
                text=f"{stale} label(s) were given under instructions a later saved version changed; their "
                "agreement is shown by rubric version. Relabel them blind to check they still hold.",
                next_steps=[NextStep("add_to_queue", {"evaluator": run.evaluator, "stale": True})],
            )
        )
    misaligned = _misaligned_count(store, aid)
    if misaligned and run.split != "test":
        notes.append(
            Note(
                text=f"{misaligned} misaligned example(s).",
                next_steps=[NextStep("show_misaligned", {"evaluator": run.evaluator, "alignment_run": aid})],
            )
        )
    jury_report = jury.report(
        store, aid, _run_row(store, aid).judge, get_evaluator(store, run.evaluator).score_type
    )
    return AlignmentReport(
        run=run,
        baseline=baseline,
        flips=flips,
        jury=jury_report,
        error_examples=errors[:MAX_ERROR_EXAMPLES],
        warnings=warnings,
        notes=notes,
        holdout=split_info,
        by_rubric=rubrics.agreement_by_rubric(
            store,
            run.evaluator,
            [(r.run_id, r.human_score, None if r.error else r.judge_score) for r in results],
        ),
        stale_labels=stale,
    )


def _overfit_warning(store: Store, test_run: AlignmentSummary) -> list[str]:
    """Warn when the same prompt does clearly better on dev than on test (beyond both 95% intervals)."""
    row = _run_row(store, test_run.id)
    for aid in store.runs_with_results(test_run.evaluator, row.prompt_hash):
        dev = summary(store, aid)
        if dev.split != "dev" or dev.status != "completed" or dev.metrics is None or test_run.metrics is None:
            continue
        d, t = dev.metrics.agreement, test_run.metrics.agreement
        if d.ci and t.ci and d.value is not None and t.value is not None and d.ci.low > t.ci.high:
            return [
                f"Possible overfitting: agreement is {d.value:.0%} on dev but {t.value:.0%} on test, and the 95% "
                "intervals do not overlap. The prompt may be tuned to the dev examples; label more runs and "
                "prefer general instructions over case-specific ones."
            ]
        return []
    return []


def _example(r: ResultRow) -> ExampleResult:
    return ExampleResult(
        run_id=r.run_id,
        human_score=r.human_score,
        judge_score=r.judge_score,
        reasoning=r.reasoning,
        error=r.error,
        prompt_tokens=r.prompt_tokens,
        completion_tokens=r.completion_tokens,
        cached_tokens=r.cached_tokens,
        latency_ms=r.latency_ms,
        cached=r.cached,
    )


def _misaligned_count(store: Store, aid: int) -> int:
    """Misaligned examples that get_misaligned can show (test-split examples are never shown)."""
    hidden = holdout.split_ids(store, _run_row(store, aid).evaluator, "test")
    return sum(1 for rid, ok in _correct(store, aid).items() if not ok and rid not in hidden)


def direction_of(score_type: ScoreType, human: Score, judge: Score) -> str:
    if score_type.kind == "binary":
        return "false_pass" if judge == 1 else "false_fail"
    if score_type.kind == "ordinal":
        assert isinstance(human, int) and isinstance(judge, int)
        return "over" if judge > human else "under"
    return "mismatch"


def latest_run_id(store: Store, evaluator: str) -> int:
    """The latest alignment run that may be shown as misaligned cases (never a test-split run)."""
    aid = (
        store.latest_alignment_id(evaluator, prompt_ref="draft", split="dev")
        or store.latest_alignment_id(evaluator, prompt_ref="draft", split="all")
        or store.latest_alignment_id(evaluator, split="dev")
        or store.latest_alignment_id(evaluator, split="all")
    )
    if aid is None:
        raise NotFound(
            f"Evaluator {evaluator!r} has no alignment run yet.",
            NextStep("run_alignment", {"evaluator": evaluator}),
        )
    return aid


def get_misaligned(
    store: Store,
    evaluator: str,
    alignment_run: int | None = None,
    direction: Direction | None = None,
    offset: int = 0,
    limit: int = 10,
    max_chars: int = DEFAULT_CASE_CHARS,
) -> MisalignedPage:
    """Misaligned examples side by side: inputs, outputs, human score + comment, judge score + reasoning."""
    ev = get_evaluator(store, evaluator)
    if offset < 0 or not 1 <= limit <= 100:
        raise InvalidInput(f"offset={offset}, limit={limit}: offset must be ≥ 0 and limit 1–100.")
    aid = alignment_run if alignment_run is not None else latest_run_id(store, evaluator)
    row = _run_row(store, aid)
    if row.evaluator != evaluator:
        raise InvalidInput(f"Alignment run {aid} belongs to {row.evaluator!r}, not {evaluator!r}.")
    if row.split == "test":
        raise InvalidInput(
            f"Alignment run {aid} judged the held-out test split; misaligned cases are shown from dev only, so "
            "the prompt is not tuned to the test set.",
            NextStep("run_alignment", {"evaluator": evaluator, "split": "dev"}),
        )
    kind = ev.score_type.kind
    allowed = {
        "binary": ("false_pass", "false_fail"),
        "ordinal": ("over", "under"),
        "categorical": ("mismatch",),
        "pairwise": ("mismatch",),
    }
    if direction is not None and direction not in allowed[kind]:
        raise InvalidInput(
            f"direction={direction!r} does not apply to a {kind} evaluator; use {' or '.join(allowed[kind])}."
        )
    total, results = store.misaligned(
        aid,
        evaluator,
        direction or "any",
        kind == "ordinal",
        offset,
        limit,
        may_hold_test=row.split != "dev",
    )
    page = []
    for r in results:
        human, judge = r.human_score, r.judge_score
        assert judge is not None  # misaligned results are judged
        page.append((r, human, judge, direction_of(ev.score_type, human, judge)))
    from align_mcp.engine.samples import unstable_run_ids

    unstable = unstable_run_ids(store, evaluator, prompt=row.prompt)
    runs = store.get_runs([r.run_id for r, *_ in page])
    labels = store.current_label_rows(evaluator, [r.run_id for r, *_ in page])
    truncated = False
    cases = []
    for r, human, judge, d in page:
        stored = runs.get(r.run_id)
        run = stored.as_dict() if stored else {"inputs": {}, "outputs": {}, "reference_outputs": None}
        label = labels.get(r.run_id)
        fields = {}
        for name in ("inputs", "outputs", "outputs_b", "reference_outputs"):
            fields[name], cut = clip(run.get(name), max_chars)
            truncated = truncated or cut
        reasoning, cut = clip(r.reasoning, max_chars)
        truncated = truncated or cut
        orders = r.orders
        if orders is not None:
            first, cut_first = clip(orders.original_reasoning, max_chars)
            second, cut_second = clip(orders.swapped_reasoning, max_chars)
            orders = orders.model_copy(update={"original_reasoning": first, "swapped_reasoning": second})
            truncated = truncated or cut_first or cut_second
        cases.append(
            MisalignedCase(
                run_id=r.run_id,
                direction=d,
                inputs=fields["inputs"] or {},
                outputs=fields["outputs"] or {},
                outputs_b=fields["outputs_b"],
                reference_outputs=fields["reference_outputs"],
                human_score=human,
                human_comment=label.comment if label else None,
                labeler=label.labeler if label else None,
                judge_score=judge,
                judge_reasoning=reasoning,
                orders=orders,
                flip_share=unstable.get(r.run_id),
            )
        )
    # Shown with labels and verdicts before a split exists, these runs must never become test examples.
    holdout.record_shown(store, evaluator, [c.run_id for c in cases])
    notes = []
    if any(c.flip_share for c in cases):
        notes.append(
            Note(
                text="Cases with a flip share change verdict between repeated judge samples: the rubric leaves "
                "them open."
            )
        )
    if truncated:
        notes.append(
            Note(text=f"Long texts were cut at {max_chars} characters.", next_steps=[NextStep("show_run")])
        )
    next_offset = offset + limit if offset + limit < total else None
    if next_offset is not None:
        more = NextStep(
            "show_misaligned", {"evaluator": evaluator, "alignment_run": aid, "offset": next_offset}
        )
        notes.append(
            Note(
                text=f"{total - next_offset} more from offset {next_offset}.",
                next_steps=[more] if direction is None else [],
            )
        )
    return MisalignedPage(
        alignment_run=aid,
        evaluator=evaluator,
        prompt_ref=row.prompt_ref,
        total=total,
        offset=offset,
        cases=cases,
        next_offset=next_offset,
        notes=notes,
    )


def list_runs(store: Store, evaluator: str) -> list[AlignmentSummary]:
    get_evaluator(store, evaluator)
    return [summary(store, aid) for aid in store.alignment_run_ids(evaluator)]


# ---- for other passes over the reference set (e.g. comparing judge models) --------------------------------


def reference_examples(store: Store, evaluator: str, split: str) -> tuple[str, list[tuple[str, Score]]]:
    """The (split used, labeled examples) a run over `split` judges; EmptyReferenceSet when there are none."""
    return _examples(store, evaluator, split)


def judge_hash(prompt: str, settings: JudgeSettings, endpoint: Endpoint) -> str:
    """What a run judges with (prompt, settings, model, endpoint), as stored on the run."""
    return _prompt_hash(prompt, settings, endpoint)


def covering_run(
    store: Store, evaluator: str, examples: list[tuple[str, Score]], prompt_hash: str
) -> int | None:
    """The latest completed run of the evaluator with this judge hash over exactly these examples and labels."""
    wanted = dict(examples)
    for aid in store.runs_with_results(evaluator, prompt_hash):
        row = _run_row(store, aid)
        if row.status != "completed" or row.total != len(wanted):
            continue
        if {r.run_id: r.human_score for r in store.alignment_results(aid)} == wanted:
            return aid
    return None


def start_comparison_run(
    store: Store,
    evaluator: str,
    prompt_ref: str,
    version: int | None,
    text: str,
    settings: JudgeSettings,
    endpoint: Endpoint,
    split: str,
    examples: list[tuple[str, Score]],
) -> int:
    """A new run of one model of a model comparison (never taken as the evaluator's latest run)."""
    return _create_run(
        store, evaluator, prompt_ref, version, text, settings, endpoint, split, examples, comparison=True
    )


async def judge_run(
    store: Store,
    aid: int,
    score_type: ScoreType,
    endpoint: Endpoint,
    concurrency: int,
    on_progress: Progress | None = None,
    label: str | None = None,
    *,
    limiter: anyio.CapacityLimiter | None = None,
) -> None:
    """Judge the run's examples not judged yet (cached verdicts reused), as run_alignment does; with `limiter`,
    its calls share that limit with every other run given the same limiter."""
    await _execute(store, aid, score_type, endpoint, concurrency, on_progress, label, limiter=limiter)
