"""Runs in: stream a JSONL/CSV file (or an inline list) into a named source, all or nothing, idempotent by id."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from align_mcp.core.models import ImportedFeedback, ImportFormat, ImportReport, Note, Run, Source, SourceKind
from align_mcp.core.text import clip, shown
from align_mcp.core.views import RunDetail
from align_mcp.engine.evaluators import check_name, score_type_of
from align_mcp.engine.feedback import apply_feedback, details_of
from align_mcp.engine.formats import ParsedRun, parse_record
from align_mcp.engine.platforms import read_file
from align_mcp.errors import Conflict, ImportFormatError, InvalidInput, NextStep, NotFound
from align_mcp.store import FeedbackRow, Store

BATCH = 2000
MAX_INLINE = 10_000


def import_runs(
    store: Store,
    source: str,
    path: str | Path | None = None,
    runs: Sequence[dict[str, Any]] | None = None,
    kind: SourceKind = "experiment",
    fmt: ImportFormat | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import runs into `source` (created on first use) from a file path or an inline list.

    `fmt` names the file's format (JSONL, CSV or a platform export: see platforms.read_file); by default it is
    detected from the extension and the content. The whole import is one transaction: a bad record raises
    ImportFormatError with its line number (or JSON path) and nothing of the import is stored. Runs whose id is already stored are skipped (idempotent re-import);
    `feedback` becomes human labels for every evaluator with that feedback key, now or created later.
    """
    check_name(source, "source")
    if kind not in ("experiment", "project"):
        raise InvalidInput(
            f"Source kind {kind!r} is not 'experiment' (offline) or 'project' (online tracing)."
        )
    if (path is None) == (runs is None):
        raise InvalidInput("Give either a file path or an inline list of runs, not both and not neither.")
    records: Iterable[ParsedRun]
    if path is not None:
        records = read_file(Path(path).expanduser(), fmt)
    else:
        assert runs is not None
        if len(runs) > MAX_INLINE:
            raise InvalidInput(
                f"{len(runs)} inline runs; send at most {MAX_INLINE} per call, or a file path."
            )
        records = (parse_record(obj, i + 1, "runs") for i, obj in enumerate(runs))
    existing = store.get_source(source)
    if existing is not None and existing.kind != kind:
        raise Conflict(
            f"Source {source!r} already exists with kind {existing.kind!r}, not {kind!r}. Use kind="
            f"{existing.kind!r} or another source name."
        )
    where = "runs" if path is None else str(Path(path).expanduser())
    inserted = seen = duplicates = 0
    feedback_counts: dict[str, int] = defaultdict(int)
    label_counts: dict[str, int] = defaultdict(int)
    pending: list[ParsedRun] = []
    with store.transaction():
        if existing is None:
            store.insert_source(source, kind)
        store.start_import_ids()
        for record in records:
            pending.append(record)
            if len(pending) >= BATCH:
                batch = _drop_repeats(store, pending, path, fmt, where)
                duplicates += len(pending) - len(batch)
                inserted += _flush(store, source, batch, feedback_counts, label_counts)
                seen += len(batch)
                pending = []
                if on_progress is not None:
                    on_progress(seen)
        if pending:
            batch = _drop_repeats(store, pending, path, fmt, where)
            duplicates += len(pending) - len(batch)
            inserted += _flush(store, source, batch, feedback_counts, label_counts)
            seen += len(batch)
        if seen == 0 and duplicates == 0:
            raise ImportFormatError(
                f"{path or 'runs'}: no runs found (the input is empty). Nothing was stored."
            )
    if on_progress is not None:
        on_progress(seen)
    feedback = [
        ImportedFeedback(key=key, count=n, evaluators=store.evaluators_for_key(key))
        for key, n in sorted(feedback_counts.items())
    ]
    return ImportReport(
        source=source,
        kind=kind,
        inserted=inserted,
        skipped=seen - inserted,
        duplicates=duplicates,
        labels=sum(label_counts.values()),
        feedback=feedback,
        unmatched_feedback_keys=[f.key for f in feedback if not f.evaluators],
    )


def _flush(
    store: Store,
    source: str,
    batch: list[ParsedRun],
    feedback_counts: dict[str, int],
    label_counts: dict[str, int],
) -> int:
    inserted = store.insert_runs(source, batch)
    # Only feedback that is new or changed since the last import becomes a label: re-importing a file
    # must not undo a relabel made by hand in the meantime.
    rows = []
    lines: dict[str, int] = {}
    for r in batch:
        for fb in r.feedback:
            feedback_counts[fb.key] += 1
            rows.append(FeedbackRow(r.id, fb.key, fb.score, fb.comment, fb.labeler, details_of(fb)))
            lines[r.id] = r.line if r.at is None else 0
    by_key: dict[str, list[FeedbackRow]] = defaultdict(list)
    for row in store.insert_feedback(rows):
        by_key[row.key].append(row)
    for key, items in by_key.items():
        for evaluator in store.evaluators_for_key(key):
            label_counts[evaluator] += apply_feedback(
                store,
                evaluator,
                score_type_of(store, evaluator),
                [(f.run_id, f.score, f.comment, f.labeler, lines[f.run_id], f.details) for f in items],
            )
    return inserted


def _drop_repeats(
    store: Store, records: list[ParsedRun], path: str | Path | None, fmt: ImportFormat | None, where: str
) -> list[ParsedRun]:
    """The records whose id is new to this import; a repeat of an earlier record (in this batch or an earlier
    one) is dropped when it stores the same, and refused naming both lines when it does not.

    The ids seen so far live in the store's import scratch table, so a long import holds no growing index here.
    """
    earlier = store.import_ids_seen([r.id for r in records])
    kept: list[ParsedRun] = []
    new_ids: list[tuple[str, int, bytes]] = []
    for record in records:
        digest = record.fingerprint or _content_digest(record)
        first = earlier.get(record.id)
        if first is not None:
            first_line, first_digest = first
            if first_digest != digest and not _same_as_line(path, fmt, first_line, record):
                raise _duplicate_error(where, record, first_line)
            continue
        earlier[record.id] = (record.line, digest)
        new_ids.append((record.id, record.line, digest))
        kept.append(record)
    store.note_import_ids(new_ids)
    return kept


def _same_as_line(path: str | Path | None, fmt: ImportFormat | None, line: int, record: ParsedRun) -> bool:
    """Whether the file's record on `line` stores exactly what `record` does: read again only when two lines
    with one id differ as text (key order, spacing), which is rare."""
    if path is None or record.fingerprint is None:
        return False  # inline and CSV records are compared by content digest already
    for first in read_file(Path(path).expanduser(), fmt):
        if first.line == line:
            return _content_digest(first) == _content_digest(record)
    return False


def _content_digest(record: ParsedRun) -> bytes:
    """A fingerprint of everything a record stores, to tell a repeated record from a different one with its id."""
    material = [
        record.inputs,
        record.outputs,
        record.reference_outputs,
        record.metadata,
        [
            [f.key, f.score, f.comment, f.labeler, f.split, f.labeled_at, f.rubric_version, f.history]
            for f in record.feedback
        ],
    ]
    if record.outputs_b is not None:
        material.append(record.outputs_b)
    text = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def _duplicate_error(where: str, record: ParsedRun, first_line: int) -> ImportFormatError:
    if record.at is not None:
        return ImportFormatError(
            f"{where}: {record.at}: id {record.id!r} is already used by an earlier record with different content; "
            "give each run its own id (or drop one of the two records). Fix that record and import again; nothing "
            "from this import was stored."
        )
    if record.derived_id:
        problem = (
            f"this record has the same inputs, outputs and reference outputs as line {first_line} (so the same "
            f"derived id {record.id!r}) but a different metadata or feedback; give the two runs their own ids"
        )
    else:
        problem = (
            f"id {record.id!r} is already used on line {first_line} by a record with different content; give "
            "each run its own id (or drop one of the two records)"
        )
    return ImportFormatError(
        f"{where}:{record.line}: {problem}. Fix that line and import again; nothing from this import was stored."
    )


def get_run(store: Store, run_id: str) -> Run:
    """One stored run in full."""
    row = store.get_runs([run_id]).get(run_id)
    if row is None and (problem := store.unreadable_run(run_id)) is not None:
        raise InvalidInput(
            f"Run {run_id!r} is stored but cannot be shown: {problem}. Re-import it flattened."
        )
    if row is None:
        raise NotFound(f"No run with id {run_id!r}. Check the id.", NextStep("import_runs"))
    return Run.model_validate(row.as_dict())


def run_detail(store: Store, run_id: str, max_chars: int | None = None) -> RunDetail:
    """One stored run, with every string inside it cut at `max_chars` (when given) and a note when cut."""
    run = get_run(store, run_id)
    if max_chars is None:
        return RunDetail(**run.model_dump())
    fields: dict[str, Any] = {}
    longest = 0
    for name in ("inputs", "outputs", "outputs_b", "reference_outputs", "metadata"):
        fields[name], was_cut = clip(getattr(run, name), max_chars)
        if was_cut:
            longest = max(longest, _longest_string(getattr(run, name)))
    notes = []
    if longest:
        notes.append(
            Note(
                text=f"Strings were cut at {max_chars} characters; the longest has {longest}.",
                next_steps=[NextStep("show_run", {"run_id": run_id, "max_chars": longest})],
            )
        )
    return RunDetail(id=run.id, source=run.source, **fields, notes=notes)


def _longest_string(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return max((_longest_string(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((_longest_string(v) for v in value), default=0)
    return 0


def list_sources(store: Store) -> list[Source]:
    """Every source with its kind and number of runs, by name."""
    return [
        Source(name=row.name, kind=row.kind, runs=row.runs, created_at=row.created_at)
        for row in store.list_sources()
    ]


def check_run_ids(store: Store, run_ids: Sequence[str], what: str = "run_ids") -> list[str]:
    """The given run ids without repeats; raises NotFound naming the ids the store does not hold."""
    ids = list(dict.fromkeys(run_ids))
    if not ids:
        raise InvalidInput(f"{what} is empty; pass at least one run id.")
    known = store.existing_run_ids(ids)
    missing = [rid for rid in ids if rid not in known]
    if missing:
        raise NotFound(
            f"{len(missing)} run id(s) are not in the store: {shown(missing)}. Check the ids.",
            NextStep("import_runs"),
        )
    return ids
