"""Batch API jobs in the store: each job, its parts (provider batch ids, status, counts), requests and errors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from align_mcp.store.codec import dumps, load_score, now_iso
from align_mcp.store.database import Store
from align_mcp.store.rows import CacheEntry

_JOB_COLUMNS = (
    "id, kind, evaluator, alignment_id, base_url, model, status, requests, prompt_tokens, completion_tokens, "
    "created_at, updated_at, check_id"
)
_PART_COLUMNS = (
    "job_id, part, requests, bytes, input_file_id, batch_id, status, completed, failed, total, output_file_id, "
    "error_file_id, error, merged"
)


@dataclass(frozen=True, slots=True)
class BatchJobRow:
    """A batch job: what it judges for (an alignment run, or a pass rate), where, and what it cost so far."""

    id: int
    kind: str
    evaluator: str
    alignment_id: int | None
    base_url: str
    model: str
    status: str
    """'submitting' while parts are uploaded, 'submitted' once every part is a provider batch, 'merged' at the
    end; 'abandoned' when it stopped before any file reached the provider."""
    requests: int
    prompt_tokens: int
    completion_tokens: int
    created_at: str
    updated_at: str
    check_id: int | None = None
    """The self-consistency check a 'consistency' job samples for."""


@dataclass(frozen=True, slots=True)
class BatchPartRow:
    """One input file and the provider batch made of it: ids, the last status and request counts read."""

    job_id: int
    part: int
    requests: int
    bytes: int
    input_file_id: str | None
    batch_id: str | None
    status: str
    completed: int
    failed: int
    total: int
    output_file_id: str | None
    error_file_id: str | None
    error: str | None
    merged: bool


@dataclass(frozen=True, slots=True)
class BatchError:
    """A request of a batch that came back as an error (or never came back), and its tokens if it was billed."""

    custom_id: str
    error: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def create_job(
    store: Store,
    kind: str,
    evaluator: str,
    alignment_id: int | None,
    base_url: str,
    model: str,
    check_id: int | None = None,
) -> int:
    now = now_iso()
    with store.transaction():
        cur = store.conn.execute(
            "INSERT INTO batch_jobs (kind, evaluator, alignment_id, base_url, model, status, created_at, "
            "updated_at, check_id) VALUES (?, ?, ?, ?, ?, 'submitting', ?, ?, ?)",
            [kind, evaluator, alignment_id, base_url, model, now, now, check_id],
        )
    return int(cur.lastrowid or 0)


def get_job(store: Store, job_id: int) -> BatchJobRow | None:
    rows = store.read(f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE id = ?", [job_id])
    return BatchJobRow(*rows[0]) if rows else None


def open_job_of_alignment(store: Store, alignment_id: int) -> BatchJobRow | None:
    """The alignment run's batch job not merged yet, if any."""
    rows = store.read(
        f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE alignment_id = ? AND status NOT IN ('merged', 'abandoned') "
        "ORDER BY id DESC LIMIT 1",
        [alignment_id],
    )
    return BatchJobRow(*rows[0]) if rows else None


def open_jobs(store: Store, kind: str, evaluator: str, base_url: str, model: str) -> list[BatchJobRow]:
    """Jobs of this kind, evaluator and judge not merged yet (a call interrupted while they ran)."""
    rows = store.read(
        f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE kind = ? AND evaluator = ? AND base_url = ? AND model = ? "
        "AND status NOT IN ('merged', 'abandoned') ORDER BY id",
        [kind, evaluator, base_url, model],
    )
    return [BatchJobRow(*r) for r in rows]


def jobs_of_alignment(store: Store, alignment_id: int) -> list[BatchJobRow]:
    rows = store.read(
        f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE alignment_id = ? ORDER BY id", [alignment_id]
    )
    return [BatchJobRow(*r) for r in rows]


def add_part(store: Store, job_id: int, part: int, custom_ids: Sequence[str], size: int) -> None:
    """Record a written input file and its requests, before it is uploaded."""
    now = now_iso()
    with store.transaction():
        store.conn.execute(
            "INSERT INTO batch_parts (job_id, part, requests, bytes, status, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, 'written', ?, ?)",
            [job_id, part, len(custom_ids), size, now, now],
        )
        store.conn.executemany(
            "INSERT OR IGNORE INTO batch_requests (job_id, custom_id, part) VALUES (?, ?, ?)",
            ((job_id, cid, part) for cid in custom_ids),
        )
        store.conn.execute(
            "UPDATE batch_jobs SET requests = requests + ?, updated_at = ? WHERE id = ?",
            [len(custom_ids), now, job_id],
        )


def set_part_file(store: Store, job_id: int, part: int, input_file_id: str) -> None:
    with store.transaction():
        store.conn.execute(
            "UPDATE batch_parts SET input_file_id = ?, status = 'uploaded', updated_at = ? "
            "WHERE job_id = ? AND part = ?",
            [input_file_id, now_iso(), job_id, part],
        )


def set_part_state(
    store: Store,
    job_id: int,
    part: int,
    *,
    batch_id: str,
    status: str,
    completed: int,
    failed: int,
    total: int,
    output_file_id: str | None,
    error_file_id: str | None,
    error: str | None,
) -> None:
    """Record the provider batch of a part as last read."""
    with store.transaction():
        store.conn.execute(
            "UPDATE batch_parts SET batch_id = ?, status = ?, completed = ?, failed = ?, total = ?, "
            "output_file_id = ?, error_file_id = ?, error = ?, updated_at = ? WHERE job_id = ? AND part = ?",
            [
                batch_id,
                status,
                completed,
                failed,
                total,
                output_file_id,
                error_file_id,
                error,
                now_iso(),
                job_id,
                part,
            ],
        )


def set_job_status(store: Store, job_id: int, status: str) -> None:
    with store.transaction():
        store.conn.execute(
            "UPDATE batch_jobs SET status = ?, updated_at = ? WHERE id = ?", [status, now_iso(), job_id]
        )


def parts(store: Store, job_id: int) -> list[BatchPartRow]:
    rows = store.read(f"SELECT {_PART_COLUMNS} FROM batch_parts WHERE job_id = ? ORDER BY part", [job_id])
    return [_part_row(r) for r in rows]


def drop_part(store: Store, job_id: int, part: int) -> None:
    """Forget a part never made into a provider batch (its file is written again on resume)."""
    with store.transaction():
        n = store.conn.execute(
            "DELETE FROM batch_requests WHERE job_id = ? AND part = ?", [job_id, part]
        ).rowcount
        store.conn.execute("DELETE FROM batch_parts WHERE job_id = ? AND part = ?", [job_id, part])
        store.conn.execute("UPDATE batch_jobs SET requests = requests - ? WHERE id = ?", [n, job_id])


def submitted_ids(store: Store, job_id: int) -> set[str]:
    """The custom ids already in a part of this job."""
    return {r[0] for r in store.read("SELECT custom_id FROM batch_requests WHERE job_id = ?", [job_id])}


def record_errors(store: Store, job_id: int, errors: Iterable[BatchError]) -> None:
    """Keep requests that came back as errors; one already kept is kept as it was (a re-merge stores nothing
    twice)."""
    with store.transaction():
        store.conn.executemany(
            "INSERT OR IGNORE INTO batch_errors (job_id, custom_id, error, prompt_tokens, completion_tokens) "
            "VALUES (?, ?, ?, ?, ?)",
            ((job_id, e.custom_id, e.error, e.prompt_tokens, e.completion_tokens) for e in errors),
        )


def errors(store: Store, job_id: int, custom_ids: Sequence[str] | None = None) -> dict[str, BatchError]:
    """The job's error requests by custom id (only these ids when given)."""
    out: dict[str, BatchError] = {}
    select = "SELECT custom_id, error, prompt_tokens, completion_tokens FROM batch_errors WHERE job_id = ?"
    if custom_ids is None:
        rows = store.read(select, [job_id])
    else:
        rows = []
        ids = list(custom_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows += store.read(f"{select} AND custom_id IN ({','.join('?' * len(chunk))})", [job_id, *chunk])
    for cid, error, pt, ct in rows:
        out[cid] = BatchError(cid, error, pt, ct)
    return out


def unanswered(store: Store, job_id: int, part: int, chunk: int = 5000) -> Iterator[list[str]]:
    """Requests of a part with neither a verdict (cached, or kept with the job) nor a stored error, in chunks (after its merge: the
    requests the provider never answered)."""
    last = ""
    while True:
        rows = store.read(
            "SELECT q.custom_id FROM batch_requests q WHERE q.job_id = ? AND q.part = ? AND q.custom_id > ? "
            "AND NOT EXISTS (SELECT 1 FROM judge_cache c WHERE c.key = q.custom_id) "
            "AND NOT EXISTS (SELECT 1 FROM batch_errors e WHERE e.job_id = q.job_id "
            "AND e.custom_id = q.custom_id) "
            "AND NOT EXISTS (SELECT 1 FROM batch_results r WHERE r.job_id = q.job_id "
            "AND r.custom_id = q.custom_id) ORDER BY q.custom_id LIMIT ?",
            [job_id, part, last, chunk],
        )
        if not rows:
            return
        ids = [r[0] for r in rows]
        last = ids[-1]
        yield ids


def record_results(store: Store, job_id: int, results: Iterable[CacheEntry]) -> None:
    """Keep verdicts with the job instead of the judge cache (a job whose requests are samples, each its own);
    `key` is the request's custom id. A re-merge replaces a verdict with itself."""
    with store.transaction():
        store.conn.executemany(
            "INSERT OR REPLACE INTO batch_results (job_id, custom_id, judge_score, reasoning, prompt_tokens, "
            "completion_tokens, cached_tokens) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    job_id,
                    r.key,
                    dumps(r.judge_score),
                    r.reasoning,
                    r.prompt_tokens,
                    r.completion_tokens,
                    r.cached_tokens,
                )
                for r in results
            ),
        )


def results(store: Store, job_id: int) -> dict[str, CacheEntry]:
    """The verdicts kept with the job, by custom id."""
    return {
        cid: CacheEntry(cid, load_score(score), reasoning, pt, ct, cached)
        for cid, score, reasoning, pt, ct, cached in store.read(
            "SELECT custom_id, judge_score, reasoning, prompt_tokens, completion_tokens, cached_tokens "
            "FROM batch_results WHERE job_id = ?",
            [job_id],
        )
    }


def mark_merged(store: Store, job_id: int, part: int, prompt_tokens: int, completion_tokens: int) -> bool:
    """Mark a part merged and add its tokens to the job, once: False when it was merged already."""
    with store.transaction():
        n = store.conn.execute(
            "UPDATE batch_parts SET merged = 1, updated_at = ? WHERE job_id = ? AND part = ? AND merged = 0",
            [now_iso(), job_id, part],
        ).rowcount
        if n:
            store.conn.execute(
                "UPDATE batch_jobs SET prompt_tokens = prompt_tokens + ?, completion_tokens = completion_tokens + ? "
                "WHERE id = ?",
                [prompt_tokens, completion_tokens, job_id],
            )
    return bool(n)


def _part_row(r: tuple[object, ...]) -> BatchPartRow:
    row = BatchPartRow(*r)  # type: ignore[arg-type]  # the columns of _PART_COLUMNS, in order
    return row if isinstance(row.merged, bool) else replace(row, merged=bool(row.merged))
