"""Judge requests sent through the provider's Batch API: submit them in parts, poll, merge the results.

Each request's custom id is its judge-cache key (a self-consistency sample's is its own, and its verdict is kept
with the job instead of the cache), so identical requests share an answer and a merge is idempotent:
a verdict goes to the judge cache (a re-merge replaces it with itself), a failed request to the job's errors
(kept once). Every request of a part ends as one or the other: a request that a completed, expired, failed or
cancelled batch never answered becomes an error naming why, so nothing is dropped. The batch ids are stored as
soon as they exist, so a restarted process polls and merges instead of sending again.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from align_mcp.core.models import JudgeSettings, Score, ScoreType
from align_mcp.llm.batch import (
    BatchApi,
    BatchState,
    Limits,
    Outcome,
    parse_line,
    price_factor,
    wait_for,
    write_parts,
)
from align_mcp.llm.client import Message, Sleep, open_client
from align_mcp.llm.endpoint import Endpoint
from align_mcp.llm.judge import parse_reply, response_schema
from align_mcp.llm.runner import Progress
from align_mcp.store import CacheEntry, Store
from align_mcp.store import batches as jobs
from align_mcp.store.batches import BatchError

KEPT_WITH_JOB = frozenset({"consistency"})
"""Kinds of job whose verdicts are kept with the job, never in the judge cache: their requests are repeated
samples (custom ids like `s3o0:<run id>`), each to be judged afresh."""
MERGE_CHUNK = 2000
"""Result lines stored per transaction while a result file is streamed."""
UNANSWERED = {
    "completed": "the batch completed without a result line for this request",
    "expired": "the batch expired (24h window) before this request was run; judge it again (without batch, or in "
    "a new batch)",
    "cancelled": "the batch was cancelled before this request was run",
    "failed": "the batch failed",
}


@dataclass(frozen=True)
class BatchOptions:
    """How batches are made and waited for: split limits, the sleeper between polls (tests pass one that does
    not wait), the first poll wait (None: ALIGN_MCP_BATCH_POLL_S or 5 s) and where input files are written."""

    limits: Limits = field(default_factory=Limits)
    sleep: Sleep = anyio.sleep
    first_wait: float | None = None
    workdir: Path | None = None


async def run_job(
    store: Store,
    job_id: int,
    requests: Callable[[], Iterable[tuple[str, list[Message]]]],
    endpoint: Endpoint,
    settings: JudgeSettings,
    score_type: ScoreType,
    *,
    what: str,
    on_progress: Progress | None = None,
    options: BatchOptions | None = None,
) -> None:
    """Send a job's requests (those not in a part yet), wait for every part and merge its results.

    `requests` gives (cache key, messages) in a stable order; it is called again on resume, and the requests
    already in a part are skipped. Parts that were uploaded but not made a batch are made one without a new
    upload; parts written but not uploaded are written again.
    """
    options = options or BatchOptions()
    schema = response_schema(score_type, settings.reasoning)
    async with open_client(endpoint, settings, sleep=options.sleep) as client:
        api = BatchApi(client)
        job = jobs.get_job(store, job_id)
        assert job is not None
        if job.status == "submitting":
            await _submit(store, job_id, requests, endpoint, settings, schema, api, options)
            jobs.set_job_status(store, job_id, "submitted")
        parts = jobs.parts(store, job_id)
        for part in parts:
            if part.merged:
                continue
            assert part.batch_id is not None

            async def seen(state: BatchState, part_no: int = part.part) -> None:
                _record(store, job_id, part_no, state)
                if on_progress is not None:
                    await on_progress(
                        state.completed + state.failed,
                        max(state.total, 1),
                        f"{what}: batch {state.id} {state.status}: {state.completed} completed, {state.failed} "
                        f"failed of {state.total} (part {part_no + 1} of {len(parts)})",
                    )

            state = await wait_for(
                api, part.batch_id, sleep=options.sleep, on_state=seen, first_wait=options.first_wait
            )
            await _merge(store, job_id, part.part, state, api, score_type, job.kind in KEPT_WITH_JOB)
    jobs.set_job_status(store, job_id, "merged")


async def _submit(
    store: Store,
    job_id: int,
    requests: Callable[[], Iterable[tuple[str, list[Message]]]],
    endpoint: Endpoint,
    settings: JudgeSettings,
    schema: dict[str, object],
    api: BatchApi,
    options: BatchOptions,
) -> None:
    existing = jobs.parts(store, job_id)
    for part in existing:
        if part.batch_id is None and part.input_file_id is None:
            jobs.drop_part(store, job_id, part.part)  # its file was never uploaded: written again below
    existing = jobs.parts(store, job_id)
    for part in existing:
        if part.batch_id is None and part.input_file_id is not None:
            _record(
                store, job_id, part.part, await api.create(part.input_file_id, _metadata(job_id, part.part))
            )
    skip = jobs.submitted_ids(store, job_id) if existing else set()
    fresh = (r for r in requests() if r[0] not in skip)
    first = max((p.part for p in existing), default=-1) + 1
    with tempfile.TemporaryDirectory(prefix="align-mcp-batch-", dir=options.workdir) as tmp:
        for written in write_parts(fresh, endpoint, settings, schema, Path(tmp), options.limits, first):
            jobs.add_part(store, job_id, written.index, written.custom_ids, written.size)
            file_id = await api.upload(written.path)
            written.path.unlink()
            jobs.set_part_file(store, job_id, written.index, file_id)
            _record(store, job_id, written.index, await api.create(file_id, _metadata(job_id, written.index)))


def _metadata(job_id: int, part: int) -> dict[str, str]:
    return {"align_mcp_job": str(job_id), "part": str(part)}


def _record(store: Store, job_id: int, part: int, state: BatchState) -> None:
    jobs.set_part_state(
        store,
        job_id,
        part,
        batch_id=state.id,
        status=state.status,
        completed=state.completed,
        failed=state.failed,
        total=state.total,
        output_file_id=state.output_file_id,
        error_file_id=state.error_file_id,
        error=state.errors,
    )


async def _merge(
    store: Store,
    job_id: int,
    part: int,
    state: BatchState,
    api: BatchApi,
    score_type: ScoreType,
    keep_with_job: bool,
) -> None:
    """Store every result line of an ended batch (verdicts to the cache, or with the job when `keep_with_job`;
    failures to the job's errors), then an error for each request it never answered; idempotent, and the tokens
    are added to the job once."""
    prompt_tokens = completion_tokens = 0

    def parse(content: str | None) -> tuple[Score, str | None]:
        return parse_reply(content, score_type)

    def store_chunk(outcomes: list[Outcome]) -> None:
        verdicts, failures = [], []
        for o in outcomes:
            if o.error is None:
                score, reasoning = o.value  # type: ignore[misc]  # parse returns (score, reasoning)
                verdicts.append(
                    CacheEntry(
                        o.custom_id,
                        score,
                        reasoning,
                        o.usage.prompt_tokens,
                        o.usage.completion_tokens,
                        o.usage.cached_tokens,
                    )
                )
            else:
                billed = o.usage.prompt_tokens or o.usage.completion_tokens
                failures.append(
                    BatchError(
                        o.custom_id,
                        o.error,
                        o.usage.prompt_tokens if billed else None,
                        o.usage.completion_tokens if billed else None,
                    )
                )
        if keep_with_job:
            jobs.record_results(store, job_id, verdicts)
        else:
            store.cache_put(verdicts)
        jobs.record_errors(store, job_id, failures)

    for file_id in (state.output_file_id, state.error_file_id):
        if file_id is None:
            continue
        chunk: list[Outcome] = []
        async for line in api.lines(file_id):
            outcome = parse_line(line, parse)
            prompt_tokens += outcome.usage.prompt_tokens
            completion_tokens += outcome.usage.completion_tokens
            chunk.append(outcome)
            if len(chunk) >= MERGE_CHUNK:
                await anyio.to_thread.run_sync(store_chunk, chunk)
                chunk = []
        if chunk:
            await anyio.to_thread.run_sync(store_chunk, chunk)
    why = UNANSWERED.get(state.status, f"the batch ended {state.status}")
    if state.status == "failed" and state.errors:
        why = f"{why}: {state.errors}"
    for ids in jobs.unanswered(store, job_id, part):
        jobs.record_errors(store, job_id, [BatchError(cid, why) for cid in ids])
    jobs.mark_merged(store, job_id, part, prompt_tokens, completion_tokens)


def abandon_unsent(store: Store, job_id: int) -> bool:
    """End a job none of whose input files reached the provider (so nothing is pending there); False when some
    did, and the job stays to be polled."""
    parts = jobs.parts(store, job_id)
    if any(p.input_file_id is not None for p in parts):
        return False
    for part in parts:
        jobs.drop_part(store, job_id, part.part)
    jobs.set_job_status(store, job_id, "abandoned")
    return True


def cost_note(store: Store, job_ids: Iterable[int]) -> str | None:
    """What the jobs sent and were billed, in words (tokens; the price factor applies to a known price)."""
    rows = [j for j in (jobs.get_job(store, i) for i in job_ids) if j is not None]
    if not rows:
        return None
    batch_ids = [p.batch_id for j in rows for p in jobs.parts(store, j.id) if p.batch_id]
    requests = sum(j.requests for j in rows)
    prompt = sum(j.prompt_tokens for j in rows)
    completion = sum(j.completion_tokens for j in rows)
    return (
        f"Judged through the Batch API ({', '.join(batch_ids)}): {requests} request(s), {prompt:,} prompt and "
        f"{completion:,} completion tokens, billed at the batch price ({price_factor():g} × the online price)."
    )
