"""The SQLite store: the only code that knows table names (one file, WAL, safe across processes and tasks)."""

from __future__ import annotations

import functools
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from align_mcp.core.few_shot import FewShotSettings, FrozenFewShot
from align_mcp.core.models import (
    FailureAnalysis,
    JudgeSettings,
    Metrics,
    PairOrders,
    Proposal,
    Score,
    ScoreType,
    SourceKind,
)
from align_mcp.errors import StoreError
from align_mcp.store.codec import dumps, judge_matches, load_score, loads, now_iso, parse_time
from align_mcp.store.migrations import migrations
from align_mcp.store.rows import (
    AlignmentRunRow,
    AlignmentRunTotals,
    CacheEntry,
    ConsistencyCheckRow,
    EvaluatorRow,
    FailureAnalysisRow,
    FeedbackRow,
    LabelRow,
    LeaseRow,
    MemberVerdict,
    NewLabel,
    NewProposal,
    NewResult,
    NewReview,
    NewRun,
    NewSample,
    ProposalRow,
    QueueCounts,
    Reservation,
    ResultRow,
    ReviewRow,
    RunRow,
    SampleRow,
    SourceListing,
    SourceRow,
    SplitRow,
    TriageRow,
    TriageVerdict,
    VersionRow,
)

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30.0
_MISALIGNED_SQL = {
    "any": "1",
    "false_pass": "r.judge_score = '1'",
    "false_fail": "r.judge_score = '0'",
    "over": "CAST(r.judge_score AS INTEGER) > CAST(r.human_score AS INTEGER)",
    "under": "CAST(r.judge_score AS INTEGER) < CAST(r.human_score AS INTEGER)",
    "mismatch": "1",
}


class Store:
    """One SQLite file shared by the CLI and running servers.

    One connection per Store, usable from any thread (guarded by a re-entrant lock); writes that must be
    atomic run in `BEGIN IMMEDIATE` transactions so concurrent processes serialize on the SQLite lock.
    `clock` tells queue reservations the time in seconds since the epoch (tests pass one they advance).
    """

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except (sqlite3.Error, OSError) as e:
            if conn is not None:
                conn.close()
            # "file is not a database" is a DatabaseError; OperationalError is about access (permissions, locks).
            if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
                raise StoreError(
                    f"{self.path} is not an align-mcp store ({e}). Point ALIGN_MCP_DB at another file."
                ) from e
            raise StoreError(
                f"Cannot open the align-mcp store at {self.path}: {e}. Set ALIGN_MCP_DB to a writable file path."
            ) from e
        self.conn = conn
        self.db = Database(conn)
        self._lock = threading.RLock()
        try:
            with self.transaction():
                self._refuse_newer_schema()
                migrations.apply(self.db)
                if self._scalar("PRAGMA user_version") != schema_version():
                    self.conn.execute(f"PRAGMA user_version = {schema_version()}")
        except StoreError:
            conn.close()
            raise
        except sqlite3.OperationalError as e:
            conn.close()
            if "locked" in str(e) or "busy" in str(e):
                raise StoreError(
                    f"The align-mcp store at {self.path} stayed locked for {BUSY_TIMEOUT_S:g}s ({e}); another "
                    "process holds a long write (an import?). Try again when it finishes."
                ) from e
            raise StoreError(
                f"{self.path} is not an align-mcp store ({e}). Point ALIGN_MCP_DB at another file."
            ) from e
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StoreError(
                f"{self.path} is not an align-mcp store ({e}). Point ALIGN_MCP_DB at another file."
            ) from e

    def _refuse_newer_schema(self) -> None:
        """Refuse a store that a newer align-mcp has migrated past what this one knows, before writing to it."""
        found = int(self._scalar("PRAGMA user_version") or 0)
        unknown: list[str] = []
        if self._scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlite_migrations'"):
            unknown = sorted({m.name for m in migrations.applied(self.db)} - set(known_migrations()))
        if found <= schema_version() and not unknown:
            return
        what = f"schema version {found}" if found > schema_version() else "a newer schema"
        if unknown:
            what += f", with migration(s) {', '.join(unknown[:5])}{' …' if len(unknown) > 5 else ''}"
        raise StoreError(
            f"The align-mcp store at {self.path} was written by a newer align-mcp ({what}); this align-mcp "
            f"reads schema version {schema_version()} at most, so it left the store untouched. Upgrade align-mcp "
            "(pip install --upgrade align-mcp), or point ALIGN_MCP_DB at another file."
        )

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction taken with BEGIN IMMEDIATE: all or nothing, serialized across processes."""
        with self._lock:
            if self.conn.in_transaction:
                with self.db.atomic():
                    yield
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self.conn.execute(sql, params)
            cols = [c[0] for c in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def _one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples in the SELECT's column order, for building typed rows without a dict per row."""
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query as tuples, for the store's other modules (no write lock is taken)."""
        return self._tuples(sql, params)

    def _tuple(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self.conn.execute(sql, params).fetchone()
            return row

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._lock:
            row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def _write(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            if self.conn.in_transaction:
                return self.conn.execute(sql, params)
            with self.transaction():
                return self.conn.execute(sql, params)

    # ---- sources and runs -------------------------------------------------------------------------------

    def get_source(self, name: str) -> SourceRow | None:
        row = self._tuple("SELECT name, kind, created_at FROM sources WHERE name = ?", [name])
        return None if row is None else SourceRow(row[0], row[1], parse_time(row[2]))

    def insert_source(self, name: str, kind: SourceKind) -> None:
        self._write("INSERT INTO sources (name, kind, created_at) VALUES (?, ?, ?)", [name, kind, now_iso()])

    def list_sources(self) -> list[SourceListing]:
        """Every source with its number of runs, by name."""
        return [
            SourceListing(name, kind, parse_time(created_at), runs)
            for name, kind, created_at, runs in self._tuples(
                "SELECT s.name, s.kind, s.created_at, (SELECT count(*) FROM runs r WHERE r.source = s.name) "
                "FROM sources s ORDER BY s.name"
            )
        ]

    def insert_runs(self, source: str, runs: Iterable[NewRun]) -> int:
        """Insert runs into a source; runs whose id is already stored are kept as they are.

        Returns how many were new. Call inside `transaction()`.
        """
        with self._lock:
            created = now_iso()
            cur = self.conn.executemany(
                "INSERT OR IGNORE INTO runs (id, source, inputs, outputs, reference_outputs, metadata, created_at, "
                "outputs_b) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.id,
                        source,
                        dumps(r.inputs),
                        dumps(r.outputs),
                        None if r.reference_outputs is None else dumps(r.reference_outputs),
                        dumps(r.metadata),
                        created,
                        None if r.outputs_b is None else dumps(r.outputs_b),
                    )
                    for r in runs
                ],
            )
            return max(cur.rowcount, 0)

    def start_import_ids(self) -> None:
        """Start an empty scratch list of the ids one import has read (a temporary table of this connection,
        off the Python heap). Call inside the import's `transaction()`."""
        with self._lock:
            self.conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS import_ids (id TEXT PRIMARY KEY, line INTEGER NOT NULL, "
                "digest BLOB NOT NULL) WITHOUT ROWID"
            )
            self.conn.execute("DELETE FROM temp.import_ids")

    def import_ids_seen(self, ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """Of these ids, those the current import has read already: id -> (its first line, its digest)."""
        out: dict[str, tuple[int, bytes]] = {}
        for chunk in _chunks(list(dict.fromkeys(ids)), 500):
            marks = ",".join("?" * len(chunk))
            for run_id, line, digest in self._tuples(
                f"SELECT id, line, digest FROM temp.import_ids WHERE id IN ({marks})", chunk
            ):
                out[run_id] = (line, bytes(digest))
        return out

    def note_import_ids(self, rows: Sequence[tuple[str, int, bytes]]) -> None:
        """Add (id, first line, digest) rows to the current import's scratch list."""
        with self._lock:
            self.conn.executemany("INSERT INTO temp.import_ids (id, line, digest) VALUES (?, ?, ?)", rows)

    def get_runs(self, ids: Sequence[str]) -> dict[str, RunRow]:
        """The stored runs among these ids, by id, with their JSON decoded.

        A run whose JSON cannot be decoded (nested too deep for Python, from before imports bounded nesting) is
        left out rather than failing every run read with it; `unreadable_run` says why.
        """
        out: dict[str, RunRow] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for run_id, source, inputs, outputs, reference_outputs, metadata, outputs_b in self._tuples(
                "SELECT id, source, inputs, outputs, reference_outputs, metadata, outputs_b FROM runs "
                f"WHERE id IN ({marks})",
                chunk,
            ):
                try:
                    out[run_id] = RunRow(
                        run_id,
                        source,
                        loads(inputs),
                        loads(outputs),
                        loads(reference_outputs),
                        loads(metadata) or {},
                        loads(outputs_b),
                    )
                except (RecursionError, ValueError) as e:
                    log.warning("Run %r cannot be decoded and is left out: %s", run_id, e)
        return out

    def unreadable_run(self, run_id: str) -> str | None:
        """Why a stored run cannot be decoded (see get_runs), or None when it decodes or is not stored."""
        row = self._tuple(
            "SELECT inputs, outputs, reference_outputs, metadata, outputs_b FROM runs WHERE id = ?", [run_id]
        )
        if row is None:
            return None
        columns = ("inputs", "outputs", "reference_outputs", "metadata", "outputs_b")
        for column, text in zip(columns, row, strict=True):
            try:
                loads(text)
            except RecursionError:
                return f"its {column} nest objects and arrays too deeply to be read"
            except ValueError as e:
                return f"its {column} are not valid JSON ({e})"
        return None

    def run_samples(self, evaluator: str, limit: int) -> tuple[str, list[dict[str, Any]]]:
        """Up to `limit` runs a template of the evaluator will be filled from, newest first, as dicts of their
        inputs, outputs, reference_outputs and metadata: its queued (and labeled) runs, or every run when its
        queue is empty. Returns ("queue" or "all", the runs); runs that cannot be decoded are left out."""
        columns = "r.inputs, r.outputs, r.reference_outputs, r.metadata, r.outputs_b"
        scope, rows = (
            "queue",
            self._tuples(
                f"SELECT {columns} FROM queue_items q JOIN runs r ON r.id = q.run_id WHERE q.evaluator = ? "
                "ORDER BY q.rowid DESC LIMIT ?",
                [evaluator, limit],
            ),
        )
        if not rows:
            scope, rows = (
                "all",
                self._tuples(f"SELECT {columns} FROM runs r ORDER BY r.rowid DESC LIMIT ?", [limit]),
            )
        out: list[dict[str, Any]] = []
        for inputs, outputs, reference_outputs, metadata, outputs_b in rows:
            try:
                sample = {
                    "inputs": loads(inputs),
                    "outputs": loads(outputs),
                    "reference_outputs": loads(reference_outputs),
                    "metadata": loads(metadata) or {},
                }
                if outputs_b is not None:
                    sample.update(outputs_a=sample["outputs"], outputs_b=loads(outputs_b))
                out.append(sample)
            except (RecursionError, ValueError):
                continue
        return scope, out

    def existing_run_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            found.update(r["id"] for r in self._rows(f"SELECT id FROM runs WHERE id IN ({marks})", chunk))
        return found

    def run_ids(
        self,
        source: str | None = None,
        metadata: dict[str, Any] | None = None,
        exclude_queued_for: str | None = None,
    ) -> list[str]:
        """Run ids filtered by source and metadata equality (parameterized; keys are bound, not spliced)."""
        where: list[str] = []
        params: list[Any] = []
        if source is not None:
            where.append("source = ?")
            params.append(source)
        for key, value in (metadata or {}).items():
            where.append("json_extract(metadata, ?) = ?")
            params.append("$." + json.dumps(key))
            params.append(value if not isinstance(value, bool) else int(value))
        if exclude_queued_for is not None:
            where.append("id NOT IN (SELECT run_id FROM queue_items WHERE evaluator = ?)")
            params.append(exclude_queued_for)
        sql = "SELECT id FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY rowid"
        return [r["id"] for r in self._rows(sql, params)]

    def run_ids_by_outputs(self, ids: Sequence[str], two: bool) -> list[str]:
        """Of these run ids, those with two outputs (pairwise runs) when `two`, else those with one."""
        found: list[str] = []
        test = "IS NOT NULL" if two else "IS NULL"
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            found += [
                run_id
                for (run_id,) in self._tuples(
                    f"SELECT id FROM runs WHERE id IN ({marks}) AND outputs_b {test} ORDER BY rowid", chunk
                )
            ]
        return found

    def run_metadata(self, ids: Sequence[str], key: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for row in self._rows(
                f"SELECT id, json_extract(metadata, ?) AS v FROM runs WHERE id IN ({marks})",
                ["$." + json.dumps(key), *chunk],
            ):
                out[row["id"]] = row["v"]
        return out

    def insert_feedback(self, rows: Sequence[FeedbackRow]) -> list[FeedbackRow]:
        """Keep feedback from imports: newer replaces older, and a row equal to the stored one is skipped.

        Equal means the same score JSON and comment (the labeler does not count), compared with what was
        stored before this call. Returns the rows that were new or changed, in order. Call inside `transaction()`.
        """
        encoded = [dumps(row.score) for row in rows]
        with self._lock:
            before = self._feedback_for_runs(list(dict.fromkeys(row.run_id for row in rows)))
            changed = [
                (row, score)
                for row, score in zip(rows, encoded, strict=True)
                if before.get((row.run_id, row.key)) != (score, row.comment)
            ]
            created = now_iso()
            self.conn.executemany(
                "INSERT OR REPLACE INTO feedback (run_id, key, score, comment, labeler, created_at, details) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        row.run_id,
                        row.key,
                        score,
                        row.comment,
                        row.labeler,
                        created,
                        _json_or_null(row.details),
                    )
                    for row, score in changed
                ],
            )
        return [row for row, _ in changed]

    def _feedback_for_runs(self, run_ids: list[str]) -> dict[tuple[str, str], tuple[str, str | None]]:
        """Stored import feedback as written: (run_id, key) -> (score JSON, comment)."""
        out: dict[tuple[str, str], tuple[str, str | None]] = {}
        for chunk in _chunks(run_ids, 500):
            marks = ",".join("?" * len(chunk))
            for run_id, key, score, comment in self._tuples(
                f"SELECT run_id, key, score, comment FROM feedback WHERE run_id IN ({marks})", chunk
            ):
                out[(run_id, key)] = (score, comment)
        return out

    def feedback_for_key(self, key: str) -> list[FeedbackRow]:
        """Imported feedback under one key, by run id, with each score decoded."""
        return [
            FeedbackRow(run_id, found, loads(score), comment, labeler, loads(details))
            for run_id, found, score, comment, labeler, details in self._tuples(
                "SELECT run_id, key, score, comment, labeler, details FROM feedback WHERE key = ? ORDER BY run_id",
                [key],
            )
        ]

    # ---- evaluators and versions ------------------------------------------------------------------------

    def evaluator_names(self) -> list[str]:
        return [r["name"] for r in self._rows("SELECT name FROM evaluators ORDER BY name")]

    def get_evaluator(self, name: str) -> EvaluatorRow | None:
        row = self._tuple(
            "SELECT name, feedback_key, description, score_type, judge, draft, draft_updated_at, created_at, "
            "test_evaluations FROM evaluators WHERE name = ?",
            [name],
        )
        if row is None:
            return None
        found, key, description, score_type, judge, draft, draft_updated_at, created_at, tests = row
        return EvaluatorRow(
            name=found,
            feedback_key=key,
            description=description,
            score_type=ScoreType.model_validate_json(score_type),
            judge=JudgeSettings.model_validate_json(judge),
            draft=draft,
            draft_updated_at=parse_time(draft_updated_at),
            created_at=parse_time(created_at),
            test_evaluations=tests,
        )

    def evaluators_for_key(self, feedback_key: str) -> list[str]:
        return [
            r["name"]
            for r in self._rows(
                "SELECT name FROM evaluators WHERE feedback_key = ? ORDER BY name", [feedback_key]
            )
        ]

    def insert_evaluator(
        self,
        name: str,
        feedback_key: str,
        description: str | None,
        score_type: ScoreType,
        judge: JudgeSettings,
        draft: str,
    ) -> None:
        """Add an evaluator whose draft is `draft`, created (and its draft last updated) now."""
        created = now_iso()
        self._write(
            "INSERT INTO evaluators (name, feedback_key, description, score_type, judge, draft, draft_updated_at, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                name,
                feedback_key,
                description,
                score_type.model_dump_json(),
                judge.model_dump_json(),
                draft,
                created,
                created,
            ],
        )

    def update_draft(self, name: str, draft: str, judge: JudgeSettings) -> None:
        """Replace an evaluator's draft prompt and judge settings, stamping the draft as updated now."""
        self._write(
            "UPDATE evaluators SET draft = ?, judge = ?, draft_updated_at = ? WHERE name = ?",
            [draft, judge.model_dump_json(), now_iso(), name],
        )

    def versions(self, evaluator: str) -> list[VersionRow]:
        """The evaluator's saved versions, oldest first."""
        return [
            _version_row(row)
            for row in self._tuples(
                f"SELECT {_VERSION_COLUMNS} FROM prompt_versions WHERE evaluator = ? ORDER BY version",
                [evaluator],
            )
        ]

    def get_version(self, evaluator: str, version: int) -> VersionRow | None:
        row = self._tuple(
            f"SELECT {_VERSION_COLUMNS} FROM prompt_versions WHERE evaluator = ? AND version = ?",
            [evaluator, version],
        )
        return None if row is None else _version_row(row)

    def insert_version(
        self,
        evaluator: str,
        prompt: str,
        judge: JudgeSettings,
        message: str | None,
        few_shot: FrozenFewShot | None = None,
    ) -> int:
        """Append the next version number atomically and return it (with the few-shot examples it froze, if any)."""
        with self.transaction():
            version = int(
                self._scalar(
                    "SELECT coalesce(max(version), 0) + 1 FROM prompt_versions WHERE evaluator = ?",
                    [evaluator],
                )
            )
            self.conn.execute(
                "INSERT INTO prompt_versions (evaluator, version, prompt, judge, message, created_at, few_shot) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    evaluator,
                    version,
                    prompt,
                    judge.model_dump_json(),
                    message,
                    now_iso(),
                    few_shot.model_dump_json() if few_shot is not None else None,
                ],
            )
        return version

    def version_few_shot(self, evaluator: str, version: int) -> FrozenFewShot | None:
        """The few-shot examples a saved version froze, or None when its prompt shows none."""
        value = self._scalar(
            "SELECT few_shot FROM prompt_versions WHERE evaluator = ? AND version = ?", [evaluator, version]
        )
        return FrozenFewShot.model_validate_json(value) if value else None

    def draft_few_shot(self, evaluator: str) -> FewShotSettings | None:
        """The draft's few-shot settings, or None when none were set (the defaults apply)."""
        value = self._scalar("SELECT few_shot FROM evaluators WHERE name = ?", [evaluator])
        return FewShotSettings.model_validate_json(value) if value else None

    def set_draft_few_shot(self, evaluator: str, settings: FewShotSettings | None) -> None:
        """Set (or, with None, clear) the draft's few-shot settings, stamping the draft as updated now."""
        self._write(
            "UPDATE evaluators SET few_shot = ?, draft_updated_at = ? WHERE name = ?",
            [settings.model_dump_json() if settings is not None else None, now_iso(), evaluator],
        )

    # ---- queues and labels ------------------------------------------------------------------------------

    def enqueue(self, evaluator: str, run_ids: Sequence[str]) -> int:
        """Queue runs for an evaluator; already-queued runs are left alone. Returns how many were added."""
        with self.transaction():
            added = now_iso()
            # rowcount counts the statement's own rows; total_changes would also count the tally triggers.
            cur = self.conn.executemany(
                "INSERT OR IGNORE INTO queue_items (evaluator, run_id, added_at, labeled) "
                "VALUES (?, ?, ?, EXISTS (SELECT 1 FROM labels WHERE evaluator = ? AND run_id = ? AND current = 1))",
                [(evaluator, rid, added, evaluator, rid) for rid in run_ids],
            )
            return max(cur.rowcount, 0)

    def reserve(self, evaluator: str, labeler: str, limit: int, ttl_s: float) -> list[str]:
        """Reserve up to `limit` unlabeled, unreserved (or expired, or already ours) items for a labeler.

        The labeler's own reservations come first, then the queue in order. A run under blind review is never
        handed to a labeler who already labeled it in that review.
        """
        # Two reads, each an index walk that stops at `limit`: the labeler's own reservations (the partial index of
        # reserved items), then the oldest free or expired items (the pending index, in queue order). One query
        # ordered by "ours first" sorted the whole queue inside the write lock (80 ms at 40k pending items, which
        # serialized every other request of a shared server behind it).
        not_theirs = (
            "AND NOT EXISTS (SELECT 1 FROM label_reviews v JOIN labels l "
            "ON l.id IN (v.first_label_id, v.second_label_id) WHERE v.evaluator = q.evaluator "
            "AND v.run_id = q.run_id AND v.status IN ('pending', 'disputed') "
            "AND lower(trim(l.labeler)) = lower(trim(?))) "
        )
        with self.transaction():
            now = self.clock()
            ids = [
                run_id
                for (run_id,) in self._tuples(
                    "SELECT run_id FROM queue_items q INDEXED BY queue_items_reserved WHERE evaluator = ? "
                    f"AND labeled = 0 AND reserved_until IS NOT NULL AND reserved_by = ? {not_theirs}"
                    "ORDER BY added_at, rowid LIMIT ?",
                    [evaluator, labeler, labeler, limit],
                )
            ]
            if len(ids) < limit:
                ids += [
                    run_id
                    for (run_id,) in self._tuples(
                        "SELECT run_id FROM queue_items q INDEXED BY queue_items_pending "
                        "WHERE evaluator = ? AND labeled = 0 AND (reserved_until IS NULL OR reserved_until < ?) "
                        f"AND (reserved_by IS NULL OR reserved_by != ?) {not_theirs}"
                        "ORDER BY added_at, rowid LIMIT ?",
                        [evaluator, now, labeler, labeler, limit - len(ids)],
                    )
                ]
            self.conn.executemany(
                "UPDATE queue_items SET reserved_by = ?, reserved_until = ? WHERE evaluator = ? AND run_id = ?",
                [(labeler, now + ttl_s, evaluator, rid) for rid in ids],
            )
        return ids

    def reservations(self, evaluator: str, run_ids: Sequence[str]) -> dict[str, Reservation]:
        """Who holds each queued run and until when, by run id (runs not in the queue are left out)."""
        out: dict[str, Reservation] = {}
        for chunk in _chunks(list(run_ids), 500):
            marks = ",".join("?" * len(chunk))
            for run_id, reserved_by, reserved_until in self._tuples(
                f"SELECT run_id, reserved_by, reserved_until FROM queue_items WHERE evaluator = ? AND run_id IN ({marks})",
                [evaluator, *chunk],
            ):
                until = None if not reserved_until else datetime.fromtimestamp(reserved_until, UTC)
                out[run_id] = Reservation(reserved_by, until)
        return out

    def insert_labels(self, evaluator: str, labels: Sequence[NewLabel]) -> list[bool]:
        """Store labels as the runs' current ones, keeping history.

        Returns, per label, whether it replaced an earlier one. Call inside `transaction()`.
        """
        created = now_iso()
        relabeled: list[bool] = []
        with self._lock:
            for label in labels:
                cur = self.conn.execute(
                    "UPDATE labels SET current = 0 WHERE evaluator = ? AND run_id = ? AND current = 1",
                    [evaluator, label.run_id],
                )
                relabeled.append(cur.rowcount > 0)
                self.conn.execute(
                    "INSERT INTO labels (evaluator, run_id, score, comment, labeler, created_at, current, "
                    "rubric_version) VALUES (?, ?, ?, ?, ?, ?, 1, coalesce(?, (SELECT coalesce(max(version), 0) "
                    "FROM prompt_versions WHERE evaluator = ?)))",
                    [
                        evaluator,
                        label.run_id,
                        dumps(label.score),
                        label.comment,
                        label.labeler,
                        created if label.created_at is None else label.created_at.astimezone(UTC).isoformat(),
                        label.rubric_version,
                        evaluator,
                    ],
                )
                self.conn.execute(
                    "INSERT INTO queue_items (evaluator, run_id, added_at, labeled) VALUES (?, ?, ?, 1) "
                    "ON CONFLICT (evaluator, run_id) DO UPDATE SET labeled = 1, reserved_by = NULL, "
                    "reserved_until = NULL",
                    [evaluator, label.run_id, created],
                )
        return relabeled

    def label_counts(self, evaluator: str) -> dict[Score, int]:
        """Current labels per score in the reference set: the trigger-kept tallies less the disputed runs."""
        disputed = dict(self._disputed_tallies(evaluator))
        counts = {}
        for score, n in self._tuples(
            "SELECT score, n FROM label_tallies WHERE evaluator = ? AND n > 0", [evaluator]
        ):
            kept = n - disputed.get(score, 0)
            if kept > 0:
                counts[load_score(score)] = kept
        return counts

    def _disputed_tallies(self, evaluator: str) -> list[tuple[str, int]]:
        """(stored score, runs) of the current labels of disputed runs, which are out of the reference set."""
        return [
            (score, int(n))
            for score, n in self._tuples(
                "SELECT l.score, count(*) FROM label_reviews v JOIN labels l ON l.evaluator = v.evaluator "
                "AND l.run_id = v.run_id AND l.current = 1 WHERE v.evaluator = ? AND v.status = 'disputed' "
                "GROUP BY l.score",
                [evaluator],
            )
        ]

    def queue_counts(self, evaluator: str) -> QueueCounts:
        """Pending and labeled from the trigger-kept tallies; live reservations through their partial index."""
        pending = self._scalar("SELECT pending FROM queue_tallies WHERE evaluator = ?", [evaluator]) or 0
        reserved = self._scalar(
            "SELECT count(*) FROM queue_items WHERE evaluator = ? AND labeled = 0 AND reserved_until IS NOT NULL "
            "AND reserved_until >= ?",
            [evaluator, self.clock()],
        )
        labeled = self._scalar(
            "SELECT coalesce(sum(n), 0) FROM label_tallies WHERE evaluator = ?", [evaluator]
        )
        disputed = sum(n for _, n in self._disputed_tallies(evaluator))
        return QueueCounts(pending=int(pending), reserved=int(reserved), labeled=int(labeled) - disputed)

    def pending_ids(self, evaluator: str, limit: int | None = None) -> list[str]:
        sql = "SELECT run_id FROM queue_items WHERE evaluator = ? AND labeled = 0 ORDER BY added_at, rowid"
        params: list[Any] = [evaluator]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [r["run_id"] for r in self._rows(sql, params)]

    def current_labels(self, evaluator: str, run_ids: Sequence[str] | None = None) -> list[LabelRow]:
        """The evaluator's current labels (of these runs, or all of them by run id)."""
        if run_ids is None:
            return [
                _label_row(row)
                for row in self._tuples(
                    f"SELECT {_LABEL_COLUMNS} FROM labels WHERE evaluator = ? AND current = 1 ORDER BY run_id",
                    [evaluator],
                )
            ]
        out: list[LabelRow] = []
        for chunk in _chunks(list(run_ids), 500):
            marks = ",".join("?" * len(chunk))
            out.extend(
                _label_row(row)
                for row in self._tuples(
                    f"SELECT {_LABEL_COLUMNS} FROM labels "
                    f"WHERE evaluator = ? AND current = 1 AND run_id IN ({marks})",
                    [evaluator, *chunk],
                )
            )
        return out

    def current_label_rows(self, evaluator: str, run_ids: Sequence[str]) -> dict[str, LabelRow]:
        """The current labels of these runs, by run id (unlabeled runs are left out)."""
        return {label.run_id: label for label in self.current_labels(evaluator, run_ids)}

    def reference_scores(self, evaluator: str) -> list[tuple[str, Score]]:
        """(run_id, score) of every current label, by run id: the bulk read behind the reference set."""
        return [
            (run_id, load_score(score))
            for run_id, score in self._tuples(
                "SELECT run_id, score FROM labels WHERE evaluator = ? AND current = 1 ORDER BY run_id",
                [evaluator],
            )
        ]

    def label_history(self, evaluator: str, run_id: str) -> list[LabelRow]:
        """Every label a run got from this evaluator's labelers, oldest first."""
        return [
            _label_row(row[:-1], bool(row[-1]))
            for row in self._tuples(
                f"SELECT {_LABEL_COLUMNS}, current FROM labels WHERE evaluator = ? AND run_id = ? ORDER BY id",
                [evaluator, run_id],
            )
        ]

    def all_labels(self, evaluator: str) -> list[LabelRow]:
        """Every label of the evaluator, current and replaced, by run id and oldest first (exports)."""
        return [
            _label_row(row[:-1], bool(row[-1]))
            for row in self._tuples(
                f"SELECT {_LABEL_COLUMNS}, current FROM labels WHERE evaluator = ? ORDER BY run_id, id",
                [evaluator],
            )
        ]

    def rubric_counts(self, evaluator: str) -> dict[int, int]:
        """Current labels per rubric version they were given under, from the trigger-kept tallies."""
        return {
            int(rubric): int(n)
            for rubric, n in self._tuples(
                "SELECT rubric_version, n FROM rubric_tallies WHERE evaluator = ? AND n > 0 ORDER BY rubric_version",
                [evaluator],
            )
        }

    def runs_labeled_under(self, evaluator: str, rubrics: Sequence[int]) -> list[str]:
        """Runs whose current label was given under one of these rubric versions, by run id."""
        if not rubrics:
            return []
        marks = ",".join("?" * len(rubrics))
        return [
            run_id
            for (run_id,) in self._tuples(
                "SELECT run_id FROM labels INDEXED BY labels_rubric WHERE evaluator = ? AND current = 1 "
                f"AND rubric_version IN ({marks}) ORDER BY run_id",
                [evaluator, *rubrics],
            )
        ]

    # ---- holdout ----------------------------------------------------------------------------------------

    def split_rows(self, evaluator: str) -> list[SplitRow]:
        """The evaluator's holdout assignments, by run id."""
        return [
            SplitRow(run_id, split, load_score(stratum))
            for run_id, split, stratum in self._tuples(
                "SELECT run_id, split, stratum FROM splits WHERE evaluator = ? ORDER BY run_id", [evaluator]
            )
        ]

    def insert_splits(self, evaluator: str, rows: Sequence[SplitRow]) -> None:
        """Assign runs to dev or test; assignments are permanent. Call inside `transaction()`."""
        created = now_iso()
        with self._lock:
            self.conn.executemany(
                "INSERT OR IGNORE INTO splits (evaluator, run_id, split, stratum, assigned_at) VALUES (?, ?, ?, ?, ?)",
                [(evaluator, row.run_id, row.split, dumps(row.stratum), created) for row in rows],
            )

    def set_splits(self, evaluator: str, rows: Sequence[SplitRow]) -> None:
        """Assign runs to dev or test as given, replacing an assignment made here (an imported split wins).

        Call inside `transaction()`.
        """
        created = now_iso()
        with self._lock:
            self.conn.executemany(
                "INSERT OR REPLACE INTO splits (evaluator, run_id, split, stratum, assigned_at) VALUES (?, ?, ?, ?, ?)",
                [(evaluator, row.run_id, row.split, dumps(row.stratum), created) for row in rows],
            )

    def unsplit_unshown(self, evaluator: str, run_ids: Sequence[str]) -> list[str]:
        """Those of these runs that have no split yet and are not yet recorded as shown (a read, no lock)."""
        out: list[str] = []
        for chunk in _chunks(list(dict.fromkeys(run_ids)), 500):
            marks = ",".join("?" * len(chunk))
            out.extend(
                run_id
                for (run_id,) in self._tuples(
                    f"SELECT id FROM runs r WHERE id IN ({marks}) "
                    "AND NOT EXISTS (SELECT 1 FROM splits s WHERE s.evaluator = ? AND s.run_id = r.id) "
                    "AND NOT EXISTS (SELECT 1 FROM shown_runs v WHERE v.evaluator = ? AND v.run_id = r.id)",
                    [*chunk, evaluator, evaluator],
                )
            )
        return out

    def record_shown(self, evaluator: str, run_ids: Sequence[str]) -> None:
        """Record runs as shown with their labels before they had a split; the first time shown is kept."""
        shown_at = now_iso()
        with self.transaction():
            self.conn.executemany(
                "INSERT OR IGNORE INTO shown_runs (evaluator, run_id, shown_at) VALUES (?, ?, ?)",
                [(evaluator, rid, shown_at) for rid in run_ids],
            )

    def shown_run_ids(self, evaluator: str) -> set[str]:
        """Runs recorded as shown with their labels before they had a split."""
        return {
            run_id
            for (run_id,) in self._tuples("SELECT run_id FROM shown_runs WHERE evaluator = ?", [evaluator])
        }

    def count_test_evaluation(self, evaluator: str) -> int:
        with self.transaction():
            self.conn.execute(
                "UPDATE evaluators SET test_evaluations = test_evaluations + 1 WHERE name = ?", [evaluator]
            )
            return int(self._scalar("SELECT test_evaluations FROM evaluators WHERE name = ?", [evaluator]))

    # ---- diagnose ---------------------------------------------------------------------------------------

    def create_consistency_check(
        self,
        evaluator: str,
        prompt_ref: str,
        prompt: str,
        judge: JudgeSettings,
        model: str,
        temperature: float,
        k: int,
    ) -> int:
        """Start a self-consistency check (status running, started now); returns its id."""
        cur = self._write(
            "INSERT INTO consistency_checks (evaluator, prompt_ref, prompt, judge, model, temperature, k, status, "
            "started_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?)",
            [evaluator, prompt_ref, prompt, judge.model_dump_json(), model, temperature, k, now_iso()],
        )
        return int(cur.lastrowid or 0)

    def get_consistency_check(self, check_id: int) -> ConsistencyCheckRow | None:
        row = self._tuple(
            "SELECT id, evaluator, prompt_ref, prompt, judge, model, temperature, k, status, started_at, finished_at "
            "FROM consistency_checks WHERE id = ?",
            [check_id],
        )
        if row is None:
            return None
        (
            found,
            evaluator,
            prompt_ref,
            prompt,
            judge,
            model,
            temperature,
            k,
            status,
            started_at,
            finished_at,
        ) = row
        return ConsistencyCheckRow(
            id=found,
            evaluator=evaluator,
            prompt_ref=prompt_ref,
            prompt=prompt,
            judge=JudgeSettings.model_validate_json(judge),
            model=model,
            temperature=float(temperature),
            k=int(k),
            status=status,
            started_at=parse_time(started_at),
            finished_at=None if finished_at is None else parse_time(finished_at),
        )

    def finish_consistency_check(self, check_id: int, status: str) -> None:
        """End a check with this status (completed or interrupted), stamped now."""
        self._write(
            "UPDATE consistency_checks SET status = ?, finished_at = ? WHERE id = ?",
            [status, now_iso(), check_id],
        )

    def record_samples(self, check_id: int, samples: Iterable[NewSample]) -> None:
        """Store repeated judge verdicts of a check; a sample replaces one stored under the same run and number."""
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO judge_samples (check_id, run_id, sample, judge_score, reasoning, error, "
                "prompt_tokens, completion_tokens, latency_ms, requests, reasks) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        check_id,
                        s.run_id,
                        s.sample,
                        None if s.judge_score is None else dumps(s.judge_score),
                        s.reasoning,
                        s.error,
                        s.prompt_tokens,
                        s.completion_tokens,
                        s.latency_ms,
                        s.requests,
                        s.reasks,
                    )
                    for s in samples
                ],
            )

    def consistency_samples(self, check_id: int) -> list[SampleRow]:
        """A check's samples by run id and sample number, with scores decoded and the requests each took."""
        return [
            SampleRow(
                found,
                run_id,
                sample,
                None if judge_score is None else load_score(judge_score),
                error,
                requests,
                reasks,
            )
            for found, run_id, sample, judge_score, error, requests, reasks in self._tuples(
                "SELECT check_id, run_id, sample, judge_score, error, requests, reasks FROM judge_samples "
                "WHERE check_id = ? ORDER BY run_id, sample",
                [check_id],
            )
        ]

    def completed_samples(self, evaluator: str, prompt: str | None = None) -> list[SampleRow]:
        """Samples of the evaluator's completed consistency checks (optionally of one prompt text), oldest first."""
        sql = (
            "SELECT s.check_id, s.run_id, s.sample, s.judge_score, s.error FROM judge_samples s "
            "JOIN consistency_checks c ON c.id = s.check_id WHERE c.evaluator = ? AND c.status = 'completed'"
        )
        params: list[Any] = [evaluator]
        if prompt is not None:
            sql += " AND c.prompt = ?"
            params.append(prompt)
        return [
            SampleRow(
                check_id, run_id, sample, None if judge_score is None else load_score(judge_score), error
            )
            for check_id, run_id, sample, judge_score, error in self._tuples(
                sql + " ORDER BY s.check_id, s.run_id, s.sample", params
            )
        ]

    def insert_triage(self, rows: Sequence[TriageRow]) -> None:
        """Store triage outcomes, stamped now."""
        created = now_iso()
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO triage_results (evaluator, alignment_id, run_id, category, reason, error, model, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.evaluator, r.alignment_id, r.run_id, r.category, r.reason, r.error, r.model, created)
                    for r in rows
                ],
            )

    def latest_triage(self, evaluator: str, run_ids: Sequence[str]) -> dict[str, TriageVerdict]:
        """The latest triage category of each of these runs that triage classified, by run id."""
        out: dict[str, TriageVerdict] = {}
        for chunk in _chunks(list(run_ids), 500):
            marks = ",".join("?" * len(chunk))
            for run_id, category, reason in self._tuples(
                "SELECT run_id, category, reason FROM triage_results WHERE evaluator = ? AND category IS NOT NULL "
                f"AND run_id IN ({marks}) ORDER BY id",
                [evaluator, *chunk],
            ):
                out[run_id] = TriageVerdict(category, reason)
        return out

    def insert_reviews(self, evaluator: str, reviews: Sequence[NewReview]) -> None:
        """Open pending blind reviews and put their runs back in the queue. Call inside `transaction()`."""
        created = now_iso()
        with self._lock:
            self.conn.executemany(
                "INSERT INTO label_reviews (evaluator, run_id, status, reason, first_label_id, requested_at) "
                "VALUES (?, ?, 'pending', ?, ?, ?)",
                [(evaluator, r.run_id, r.reason, r.first_label_id, created) for r in reviews],
            )
            self.requeue(evaluator, [r.run_id for r in reviews])

    def requeue(self, evaluator: str, run_ids: Sequence[str]) -> None:
        """Mark runs as waiting for a label again (unreserved). Call inside `transaction()`."""
        created = now_iso()
        with self._lock:
            self.conn.executemany(
                "INSERT INTO queue_items (evaluator, run_id, added_at, labeled) VALUES (?, ?, ?, 0) "
                "ON CONFLICT (evaluator, run_id) DO UPDATE SET labeled = 0, reserved_by = NULL, "
                "reserved_until = NULL",
                [(evaluator, rid, created) for rid in run_ids],
            )

    def agree_review(self, review_id: int, second_label_id: int) -> None:
        """Close a pending review whose blind second label agrees with the first, stamped now."""
        self._write(
            "UPDATE label_reviews SET second_label_id = ?, status = 'agreed', resolved_at = ? WHERE id = ?",
            [second_label_id, now_iso(), review_id],
        )

    def dispute_review(self, review_id: int, second_label_id: int) -> None:
        """Mark a pending review disputed: its blind second label differs from the first (it stays open)."""
        self._write(
            "UPDATE label_reviews SET second_label_id = ?, status = 'disputed' WHERE id = ?",
            [second_label_id, review_id],
        )

    def adjudicate_review(self, review_id: int, final_label_id: int) -> None:
        """Close an open review with its final label, stamped now."""
        self._write(
            "UPDATE label_reviews SET final_label_id = ?, status = 'adjudicated', resolved_at = ? WHERE id = ?",
            [final_label_id, now_iso(), review_id],
        )

    def reviews(
        self, evaluator: str, run_ids: Sequence[str] | None = None, open_only: bool = False
    ) -> list[ReviewRow]:
        """Reviews with their labels' scores and labelers, oldest first."""
        sql = (
            "SELECT r.id, r.run_id, r.status, r.reason, r.requested_at, r.resolved_at, r.first_label_id, "
            "r.second_label_id, r.final_label_id, f.score, f.labeler, s.score, s.labeler, a.score, a.labeler "
            "FROM label_reviews r JOIN labels f ON f.id = r.first_label_id "
            "LEFT JOIN labels s ON s.id = r.second_label_id LEFT JOIN labels a ON a.id = r.final_label_id "
            "WHERE r.evaluator = ?"
        )
        params: list[Any] = [evaluator]
        if open_only:
            sql += " AND r.status IN ('pending', 'disputed')"
        if run_ids is None:
            return [_review_row(row) for row in self._tuples(sql + " ORDER BY r.id", params)]
        out: list[ReviewRow] = []
        for chunk in _chunks(list(run_ids), 500):
            marks = ",".join("?" * len(chunk))
            out.extend(
                _review_row(row)
                for row in self._tuples(sql + f" AND r.run_id IN ({marks}) ORDER BY r.id", [*params, *chunk])
            )
        return out

    def disputed_run_ids(self, evaluator: str) -> set[str]:
        """Runs whose two blind reviews disagree and await adjudication."""
        return {
            r["run_id"]
            for r in self._rows(
                "SELECT run_id FROM label_reviews WHERE evaluator = ? AND status = 'disputed'", [evaluator]
            )
        }

    # ---- optimizer --------------------------------------------------------------------------------------

    def insert_failure_analysis(self, analysis: FailureAnalysis) -> int:
        """Store a failure analysis (all but its id) under the alignment run it came from; returns its id."""
        cur = self._write(
            "INSERT INTO failure_analyses (evaluator, alignment_id, method, result, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                analysis.evaluator,
                analysis.alignment_run,
                analysis.method,
                analysis.model_dump_json(exclude={"id"}),
                now_iso(),
            ],
        )
        return int(cur.lastrowid or 0)

    def latest_failure_analysis(
        self, alignment_id: int, method: str | None = None
    ) -> FailureAnalysisRow | None:
        sql = (
            "SELECT id, evaluator, alignment_id, method, result, created_at FROM failure_analyses "
            "WHERE alignment_id = ?"
        )
        params: list[Any] = [alignment_id]
        if method is not None:
            sql += " AND method = ?"
            params.append(method)
        row = self._tuple(sql + " ORDER BY id DESC LIMIT 1", params)
        if row is None:
            return None
        found, evaluator, aid, stored_method, result, created_at = row
        return FailureAnalysisRow(
            id=found,
            evaluator=evaluator,
            alignment_id=aid,
            method=stored_method,
            result=FailureAnalysis.model_validate({**json.loads(result), "id": found}),
            created_at=parse_time(created_at),
        )

    def insert_proposal(self, new: NewProposal) -> int:
        """Store a proposal (its result without id, status and applied time), created now; returns its id."""
        cur = self._write(
            "INSERT INTO proposals (evaluator, mode, alignment_id, analysis_id, base_prompt, prompt, seen_run_ids, "
            "result, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                new.evaluator,
                new.mode,
                new.alignment_id,
                new.analysis_id,
                new.base_prompt,
                new.prompt,
                dumps(list(new.seen_run_ids)),
                new.result.model_dump_json(exclude={"id", "status", "applied_at"}),
                now_iso(),
            ],
        )
        return int(cur.lastrowid or 0)

    def get_proposal(self, proposal_id: int) -> ProposalRow | None:
        row = self._tuple(f"SELECT {_PROPOSAL_COLUMNS} FROM proposals WHERE id = ?", [proposal_id])
        return None if row is None else _proposal_row(row)

    def proposals(self, evaluator: str) -> list[ProposalRow]:
        return [
            _proposal_row(row)
            for row in self._tuples(
                f"SELECT {_PROPOSAL_COLUMNS} FROM proposals WHERE evaluator = ? ORDER BY id", [evaluator]
            )
        ]

    def mark_proposal_applied(self, proposal_id: int) -> None:
        self._write("UPDATE proposals SET applied_at = ? WHERE id = ?", [now_iso(), proposal_id])

    # ---- judge cache ------------------------------------------------------------------------------------

    def cache_put(self, entries: Iterable[CacheEntry]) -> None:
        """Add judge-cache entries, stamped now; an entry replaces an older one under the same key."""
        created = now_iso()
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO judge_cache (key, judge_score, reasoning, prompt_tokens, completion_tokens, "
                "cached_tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.key,
                        dumps(e.judge_score),
                        e.reasoning,
                        e.prompt_tokens,
                        e.completion_tokens,
                        e.cached_tokens,
                        created,
                    )
                    for e in entries
                ],
            )

    def cache_get(self, keys: Sequence[str]) -> dict[str, CacheEntry]:
        """The cached entries among these keys, by key, with each score decoded."""
        out: dict[str, CacheEntry] = {}
        for chunk in _chunks(list(keys), 500):
            marks = ",".join("?" * len(chunk))
            for key, score, reasoning, prompt_tokens, completion_tokens, cached_tokens in self._tuples(
                "SELECT key, judge_score, reasoning, prompt_tokens, completion_tokens, cached_tokens "
                f"FROM judge_cache WHERE key IN ({marks})",
                chunk,
            ):
                out[key] = CacheEntry(
                    key, load_score(score), reasoning, prompt_tokens, completion_tokens, cached_tokens
                )
        return out

    # ---- alignment leases -------------------------------------------------------------------------------

    def acquire_lease(
        self, alignment_id: int, token: str, pid: int, host: str, ttl_s: float
    ) -> LeaseRow | None:
        """Take the run's lease for `ttl_s` seconds, unless another holder's lease is still live.

        Returns None when the lease is now ours, else the live lease of whoever holds it (nothing is written).
        """
        with self.transaction():
            now = self.clock()
            held = self._lease(alignment_id)
            if held is not None and held.token != token and held.expires_at > now:
                return held
            self.conn.execute(
                "INSERT OR REPLACE INTO alignment_leases (alignment_id, token, pid, host, renewed_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [alignment_id, token, pid, host, now, now + ttl_s],
            )
        return None

    def take_over_lease(
        self, alignment_id: int, stale_token: str, token: str, pid: int, host: str, ttl_s: float
    ) -> bool:
        """Replace a lease whose holder is known to be gone, if it still carries `stale_token`; False when
        someone else has taken or freed it meanwhile."""
        now = self.clock()
        cur = self._write(
            "UPDATE alignment_leases SET token = ?, pid = ?, host = ?, renewed_at = ?, expires_at = ? "
            "WHERE alignment_id = ? AND token = ?",
            [token, pid, host, now, now + ttl_s, alignment_id, stale_token],
        )
        return cur.rowcount > 0

    def renew_lease(self, alignment_id: int, token: str, ttl_s: float) -> bool:
        """Extend our lease by `ttl_s` seconds from now; False when it is no longer ours."""
        now = self.clock()
        cur = self._write(
            "UPDATE alignment_leases SET renewed_at = ?, expires_at = ? WHERE alignment_id = ? AND token = ?",
            [now, now + ttl_s, alignment_id, token],
        )
        return cur.rowcount > 0

    def release_lease(self, alignment_id: int, token: str) -> None:
        """Give up our lease (a lease taken over by someone else since is left alone)."""
        self._write(
            "DELETE FROM alignment_leases WHERE alignment_id = ? AND token = ?", [alignment_id, token]
        )

    def live_lease(self, alignment_id: int) -> LeaseRow | None:
        """The run's lease if it has not expired on the store's clock."""
        held = self._lease(alignment_id)
        return held if held is not None and held.expires_at > self.clock() else None

    def _lease(self, alignment_id: int) -> LeaseRow | None:
        row = self._tuple(
            "SELECT alignment_id, token, pid, host, renewed_at, expires_at FROM alignment_leases "
            "WHERE alignment_id = ?",
            [alignment_id],
        )
        return None if row is None else LeaseRow(*row)

    # ---- alignment runs ---------------------------------------------------------------------------------

    def create_alignment_run(
        self,
        evaluator: str,
        prompt_ref: str,
        version: int | None,
        prompt: str,
        judge: JudgeSettings,
        model: str,
        prompt_hash: str,
        split: str,
        examples: Sequence[tuple[str, Score]],
        *,
        comparison: bool = False,
    ) -> int:
        """Create a running alignment run, started now, and its pending examples (run id, human score) at once.

        A `comparison` run (one model of a model comparison) is never the evaluator's latest run.
        """
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO alignment_runs (evaluator, prompt_ref, version, prompt, judge, model, prompt_hash, split, "
                "status, started_at, total, comparison) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                [
                    evaluator,
                    prompt_ref,
                    version,
                    prompt,
                    judge.model_dump_json(),
                    model,
                    prompt_hash,
                    split,
                    now_iso(),
                    len(examples),
                    int(comparison),
                ],
            )
            aid = int(cur.lastrowid or 0)
            self.conn.executemany(
                "INSERT INTO alignment_results (alignment_id, run_id, human_score) VALUES (?, ?, ?)",
                [(aid, rid, dumps(score)) for rid, score in examples],
            )
        return aid

    def record_results(
        self, alignment_id: int, results: Iterable[NewResult], cache_entries: Iterable[CacheEntry] = ()
    ) -> None:
        """Persist finished examples (and new cache entries) in one short transaction."""
        with self.transaction():
            self.conn.executemany(
                "UPDATE alignment_results SET done = 1, judge_score = ?, reasoning = ?, error = ?, prompt_tokens = ?, "
                "completion_tokens = ?, cached_tokens = ?, latency_ms = ?, cached = ?, orders = ?, "
                # Added, not set: an example judged again after an error keeps the requests of its first try.
                "requests = requests + ?, reasks = reasks + ?, waited_s = waited_s + ? "
                "WHERE alignment_id = ? AND run_id = ? AND done = 0",
                [
                    (
                        None if r.judge_score is None else dumps(r.judge_score),
                        r.reasoning,
                        r.error,
                        r.prompt_tokens,
                        r.completion_tokens,
                        r.cached_tokens,
                        r.latency_ms,
                        int(r.cached),
                        None if r.orders is None else r.orders.model_dump_json(),
                        r.requests,
                        r.reasks,
                        r.waited_s,
                        alignment_id,
                        r.run_id,
                    )
                    for r in results
                ],
            )
            self.cache_put(cache_entries)

    def record_member_verdicts(self, alignment_id: int, verdicts: Iterable[MemberVerdict]) -> None:
        """Persist jury members' verdicts; a verdict judged again (after an error) replaces the earlier one."""
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO jury_verdicts (alignment_id, run_id, member, model, judge_score, reasoning, "
                "error, cached) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        alignment_id,
                        v.run_id,
                        v.member,
                        v.model,
                        None if v.judge_score is None else dumps(v.judge_score),
                        v.reasoning,
                        v.error,
                        int(v.cached),
                    )
                    for v in verdicts
                ],
            )

    def member_verdicts(self, alignment_id: int) -> list[MemberVerdict]:
        """A jury run's member verdicts, by run id then member."""
        return [
            MemberVerdict(
                rid, member, model, None if score is None else load_score(score), reasoning, error, bool(c)
            )
            for rid, member, model, score, reasoning, error, c in self._tuples(
                "SELECT run_id, member, model, judge_score, reasoning, error, cached FROM jury_verdicts "
                "WHERE alignment_id = ? ORDER BY run_id, member",
                [alignment_id],
            )
        ]

    def reset_errors(self, alignment_id: int) -> int:
        cur = self._write(
            "UPDATE alignment_results SET done = 0, judge_score = NULL, reasoning = NULL, error = NULL, orders = NULL "
            "WHERE alignment_id = ? AND done = 1 AND error IS NOT NULL",
            [alignment_id],
        )
        return cur.rowcount

    def reopen_alignment_run(self, alignment_id: int) -> None:
        """Mark a run running again (being judged or resumed), with no finish time."""
        self._write(
            "UPDATE alignment_runs SET status = 'running', finished_at = NULL WHERE id = ?", [alignment_id]
        )

    def finish_alignment_run(self, alignment_id: int, status: str, metrics: Metrics | None) -> None:
        """End a run with this status (completed or interrupted) and its metrics (None when nothing was judged)."""
        self._write(
            "UPDATE alignment_runs SET status = ?, finished_at = ?, metrics = ? WHERE id = ?",
            [status, now_iso(), None if metrics is None else metrics.model_dump_json(), alignment_id],
        )

    def set_alignment_baseline(self, alignment_id: int, baseline_id: int) -> None:
        """Record the run this one was compared with when it was started."""
        self._write("UPDATE alignment_runs SET baseline_id = ? WHERE id = ?", [baseline_id, alignment_id])

    def alignment_run_row(self, alignment_id: int) -> AlignmentRunRow | None:
        """The alignment run's own row, without the per-result totals of get_alignment_run."""
        row = self._tuple(f"SELECT {_RUN_COLUMNS} FROM alignment_runs a WHERE a.id = ?", [alignment_id])
        return None if row is None else _alignment_run(row)

    def get_alignment_run(self, alignment_id: int) -> AlignmentRunTotals | None:
        """The alignment run with the totals of its results: done, judged, errors, cache hits, HTTP requests,
        re-asks, seconds waited and tokens."""
        # One pass over the run's results for every counter (a correlated subquery each would read them n times).
        row = self._tuple(
            f"SELECT {_RUN_COLUMNS}, coalesce(s.judged, 0), coalesce(s.judge_calls, 0), "
            "coalesce(s.cache_hits, 0), coalesce(s.prompt_tokens, 0), coalesce(s.completion_tokens, 0), "
            "coalesce(s.errors, 0), coalesce(s.requests, 0), coalesce(s.reasks, 0), coalesce(s.waited_s, 0) "
            "FROM alignment_runs a, (SELECT sum(done = 1) AS judged, "
            "sum(done = 1 AND cached = 0 AND error IS NULL) AS judge_calls, sum(cached = 1) AS cache_hits, "
            "sum(CASE WHEN cached = 0 THEN prompt_tokens END) AS prompt_tokens, "
            "sum(CASE WHEN cached = 0 THEN completion_tokens END) AS completion_tokens, "
            "sum(done = 1 AND error IS NOT NULL) AS errors, sum(requests) AS requests, sum(reasks) AS reasks, "
            "sum(waited_s) AS waited_s "
            "FROM alignment_results WHERE alignment_id = ?) s WHERE a.id = ?",
            [alignment_id, alignment_id],
        )
        if row is None:
            return None
        judged, calls, hits, prompt_tokens, completion_tokens, errors, requests, reasks, waited = row[-9:]
        return AlignmentRunTotals(
            _alignment_run(row[:-9]),
            int(judged),
            int(calls),
            int(hits),
            int(prompt_tokens),
            int(completion_tokens),
            int(errors),
            int(requests),
            int(reasks),
            float(waited),
        )

    def alignment_run_ids(self, evaluator: str) -> list[int]:
        return [
            r["id"]
            for r in self._rows("SELECT id FROM alignment_runs WHERE evaluator = ? ORDER BY id", [evaluator])
        ]

    def latest_alignment_id(
        self,
        evaluator: str,
        prompt_ref: str | None = None,
        status: str | None = None,
        split: str | None = None,
    ) -> int | None:
        """The latest alignment run of the evaluator matching the filters; a model comparison's runs never count."""
        sql = "SELECT id FROM alignment_runs WHERE evaluator = ? AND comparison = 0"
        params: list[Any] = [evaluator]
        if prompt_ref is not None:
            sql += " AND prompt_ref = ?"
            params.append(prompt_ref)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        if split is not None:
            sql += " AND split = ?"
            params.append(split)
        value = self._scalar(sql + " ORDER BY id DESC LIMIT 1", params)
        return int(value) if value is not None else None

    def latest_run_of_prompt(self, evaluator: str, prompt: str, judge: JudgeSettings) -> int | None:
        """The latest completed, non-test alignment run of exactly this prompt text and judge settings.

        Settings are compared decoded, so a run still matches when its stored JSON is spelled differently (a
        field JudgeSettings gained since, with its default).
        """
        for aid, stored in self._tuples(
            "SELECT id, judge FROM alignment_runs WHERE evaluator = ? AND prompt = ? AND status = 'completed' "
            "AND split != 'test' ORDER BY id DESC",
            [evaluator, prompt],
        ):
            if judge_matches(stored, judge):
                return int(aid)
        return None

    def alignment_results(self, alignment_id: int, done_only: bool = True) -> list[ResultRow]:
        """An alignment run's examples by run id (only those judged, unless `done_only` is False)."""
        sql = f"SELECT {_RESULT_COLUMNS} FROM alignment_results r WHERE r.alignment_id = ?"
        if done_only:
            sql += " AND r.done = 1"
        return [_result_row(row) for row in self._tuples(sql + " ORDER BY r.run_id", [alignment_id])]

    def misaligned(
        self,
        alignment_id: int,
        evaluator: str,
        direction: str,
        by_severity: bool,
        offset: int,
        limit: int,
        may_hold_test: bool = True,
    ) -> tuple[int, list[ResultRow]]:
        """One page of judged, error-free, misaligned results, never from the evaluator's test split.

        `direction` is "any", "false_pass", "false_fail", "over", "under" or "mismatch". A dev run
        holds no test examples (`may_hold_test=False`), which spares a lookup per misaligned row.
        """
        condition = _MISALIGNED_SQL.get(direction)
        if condition is None:
            raise ValueError(
                f"unknown misaligned direction {direction!r}; known: {', '.join(_MISALIGNED_SQL)}"
            )
        where = (
            "r.alignment_id = ? AND r.done = 1 AND r.error IS NULL AND r.judge_score IS NOT NULL "
            f"AND r.judge_score != r.human_score AND ({condition})"
        )
        params: list[Any] = [alignment_id]
        if may_hold_test:
            where += (
                " AND NOT EXISTS (SELECT 1 FROM splits s WHERE s.evaluator = ? AND s.run_id = r.run_id "
                "AND s.split = 'test')"
            )
            params.append(evaluator)
        total = int(self._scalar(f"SELECT count(*) FROM alignment_results r WHERE {where}", params))
        order = "r.run_id"
        if by_severity:
            order = "abs(CAST(r.judge_score AS INTEGER) - CAST(r.human_score AS INTEGER)) DESC, r.run_id"
        rows = self._tuples(
            f"SELECT {_RESULT_COLUMNS} FROM alignment_results r WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return total, [_result_row(row) for row in rows]

    def pending_examples(self, alignment_id: int) -> list[tuple[str, Score]]:
        """An alignment run's examples not judged yet: (run id, human score), by run id."""
        return [
            (run_id, load_score(score))
            for run_id, score in self._tuples(
                "SELECT run_id, human_score FROM alignment_results WHERE alignment_id = ? AND done = 0 "
                "ORDER BY run_id",
                [alignment_id],
            )
        ]

    def judged_latencies(self, evaluator: str, prompt_hash: str) -> dict[str, float]:
        """Per run id, the latency (ms) of the latest verdict a judge call returned (not the cache) in the
        evaluator's alignment runs of this prompt hash."""
        return {
            run_id: float(latency)
            for run_id, latency in self._tuples(
                "SELECT r.run_id, r.latency_ms FROM alignment_results r JOIN alignment_runs a "
                "ON a.id = r.alignment_id WHERE a.evaluator = ? AND a.prompt_hash = ? AND r.done = 1 "
                "AND r.cached = 0 AND r.error IS NULL AND r.latency_ms IS NOT NULL ORDER BY r.alignment_id",
                [evaluator, prompt_hash],
            )
        }

    def runs_with_results(self, evaluator: str, prompt_hash: str) -> list[int]:
        return [
            r["id"]
            for r in self._rows(
                "SELECT id FROM alignment_runs WHERE evaluator = ? AND prompt_hash = ? ORDER BY id DESC",
                [evaluator, prompt_hash],
            )
        ]


@functools.cache
def known_migrations() -> tuple[str, ...]:
    """The names of every migration this align-mcp knows, in order."""
    return tuple(m.name for m in migrations.pending(Database(memory=True)))


@functools.cache
def schema_version() -> int:
    """The store's schema version: the number of the newest known migration (m007_... is 7), kept in
    PRAGMA user_version so an older align-mcp can tell a store it must not write."""
    return max(int(m.group(1)) for name in known_migrations() if (m := re.match(r"m(\d+)", name)))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _review_row(row: tuple[Any, ...]) -> ReviewRow:
    (
        review_id,
        run_id,
        status,
        reason,
        requested_at,
        resolved_at,
        first_id,
        second_id,
        final_id,
        first_score,
        first_labeler,
        second_score,
        second_labeler,
        final_score,
        final_labeler,
    ) = row
    return ReviewRow(
        id=review_id,
        run_id=run_id,
        status=status,
        reason=reason,
        requested_at=parse_time(requested_at),
        resolved_at=None if resolved_at is None else parse_time(resolved_at),
        first_label_id=first_id,
        second_label_id=second_id,
        final_label_id=final_id,
        first_score=load_score(first_score),
        first_labeler=first_labeler,
        second_score=None if second_score is None else load_score(second_score),
        second_labeler=second_labeler,
        final_score=None if final_score is None else load_score(final_score),
        final_labeler=final_labeler,
    )


_PROPOSAL_COLUMNS = (
    "id, evaluator, mode, alignment_id, analysis_id, base_prompt, prompt, seen_run_ids, result, created_at, "
    "applied_at"
)


def _proposal_row(row: tuple[Any, ...]) -> ProposalRow:
    (
        proposal_id,
        evaluator,
        mode,
        aid,
        analysis_id,
        base_prompt,
        prompt,
        seen,
        result,
        created_at,
        applied_at,
    ) = row
    return ProposalRow(
        id=proposal_id,
        evaluator=evaluator,
        mode=mode,
        alignment_id=aid,
        analysis_id=analysis_id,
        base_prompt=base_prompt,
        prompt=prompt,
        seen_run_ids=json.loads(seen),
        result=Proposal.model_validate(
            {
                **json.loads(result),
                "id": proposal_id,
                "status": "applied" if applied_at else "proposed",
                "applied_at": applied_at,
            }
        ),
        created_at=parse_time(created_at),
        applied_at=None if applied_at is None else parse_time(applied_at),
    )


_RESULT_COLUMNS = (
    "r.alignment_id, r.run_id, r.human_score, r.done, r.judge_score, r.reasoning, r.error, r.prompt_tokens, "
    "r.completion_tokens, r.cached_tokens, r.latency_ms, r.cached, r.orders"
)


def _result_row(row: tuple[Any, ...]) -> ResultRow:
    (
        aid,
        run_id,
        human,
        done,
        judge,
        reasoning,
        error,
        prompt_tokens,
        completion_tokens,
        cached_tokens,
        ms,
        cached,
        orders,
    ) = row
    return ResultRow(
        alignment_id=aid,
        run_id=run_id,
        human_score=load_score(human),
        done=bool(done),
        judge_score=None if judge is None else load_score(judge),
        reasoning=reasoning,
        error=error,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cached_tokens=cached_tokens,
        latency_ms=ms,
        cached=bool(cached),
        orders=None if orders is None else PairOrders.model_validate_json(orders),
    )


_LABEL_COLUMNS = "id, run_id, score, comment, labeler, created_at, rubric_version"


def _label_row(row: tuple[Any, ...], current: bool = True) -> LabelRow:
    label_id, run_id, score, comment, labeler, created_at, rubric = row
    return LabelRow(
        label_id,
        run_id,
        load_score(score),
        comment,
        labeler,
        parse_time(created_at),
        current,
        int(rubric or 0),
    )


_VERSION_COLUMNS = "evaluator, version, prompt, judge, message, created_at"


def _version_row(row: tuple[Any, ...]) -> VersionRow:
    evaluator, version, prompt, judge, message, created_at = row
    return VersionRow(
        evaluator, version, prompt, JudgeSettings.model_validate_json(judge), message, parse_time(created_at)
    )


def open_store(path: str | Path | None = None, clock: Callable[[], float] = time.time) -> Store:
    """Open the store at `path`, or at ALIGN_MCP_DB / the default data directory."""
    if path is None:
        from align_mcp.config import load

        path = load().db_path
    return Store(path, clock)


_RUN_COLUMNS = (
    "a.id, a.evaluator, a.prompt_ref, a.version, a.prompt, a.judge, a.model, a.prompt_hash, a.split, a.status, "
    "a.started_at, a.finished_at, a.total, a.metrics, a.baseline_id"
)


def _alignment_run(row: Sequence[Any]) -> AlignmentRunRow:
    (aid, evaluator, prompt_ref, version, prompt, judge, model, prompt_hash, split, status, started, finished,
     total, metrics, baseline_id) = row  # fmt: skip
    return AlignmentRunRow(
        id=aid,
        evaluator=evaluator,
        prompt_ref=prompt_ref,
        version=version,
        prompt=prompt,
        judge=JudgeSettings.model_validate_json(judge),
        model=model,
        prompt_hash=prompt_hash,
        split=split,
        status=status,
        started_at=parse_time(started),
        finished_at=parse_time(finished) if finished else None,
        total=total,
        metrics=Metrics.model_validate_json(metrics) if metrics else None,
        baseline_id=baseline_id,
    )


def _json_or_null(value: Any) -> str | None:
    return None if value is None else dumps(value)
