"""Exports of an evaluator's reference set: JSONL and CSV in the import format (so they import again with their
label history, labelers, comments, dates, rubric versions and dev/test split), and a LangSmith dataset file."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from align_mcp.core.exports import EXPORT_FORMATS, ExportFormat, ExportReport
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.errors import Conflict, InvalidInput, StoreError
from align_mcp.store import LabelRow, RunRow, Store

CHUNK = 500


def export_reference_set(
    store: Store,
    evaluator: str,
    fmt: ExportFormat = "jsonl",
    path: str | Path | None = None,
    overwrite: bool = False,
    max_inline: int | None = None,
) -> ExportReport:
    """Write the evaluator's reference set to `path` (atomically), or return it as `content` when no path is given.

    One record per labeled run, in run id order: the run, its current label (score, comment, labeler, when, the
    rubric version it was given under), its earlier labels oldest first, and its holdout split. Runs disputed by a
    blind second label are not in the reference set and are left out (counted in `left_out`). An existing file
    is replaced only with `overwrite`; inline content longer than `max_inline` characters is refused.
    """
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(f"Export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}.")
    ev = get_evaluator(store, evaluator)
    labels: dict[str, list[LabelRow]] = defaultdict(list)
    for label in store.all_labels(evaluator):
        labels[label.run_id].append(label)
    disputed = store.disputed_run_ids(evaluator)
    splits = {row.run_id: row.split for row in store.split_rows(evaluator)}
    run_ids = [rid for rid, rows in labels.items() if rows[-1].current and rid not in disputed]
    left_out = sum(1 for rid, rows in labels.items() if rows[-1].current and rid in disputed)
    records = _records(store, ev.feedback_key, run_ids, labels, splits, fmt)
    report = ExportReport(
        evaluator=evaluator,
        feedback_key=ev.feedback_key,
        format=fmt,
        records=len(run_ids),
        labels=sum(len(labels[rid]) for rid in run_ids),
        dev=sum(1 for rid in run_ids if splits.get(rid) == "dev"),
        test=sum(1 for rid in run_ids if splits.get(rid) == "test"),
        left_out=left_out,
    )
    if path is None:
        text = _text(records, fmt)
        if max_inline is not None and len(text) > max_inline:
            raise InvalidInput(
                f"The export of {evaluator!r} is {len(text):,} characters, more than the {max_inline:,} returned "
                "inline; give a file path to write it to."
            )
        return report.model_copy(update={"content": text})
    target = Path(path).expanduser()
    _write(target, records, fmt, overwrite)
    return report.model_copy(update={"path": str(target)})


def _records(
    store: Store,
    key: str,
    run_ids: list[str],
    labels: dict[str, list[LabelRow]],
    splits: Mapping[str, str],
    fmt: ExportFormat,
) -> Iterator[dict[str, Any]]:
    for start in range(0, len(run_ids), CHUNK):
        chunk = run_ids[start : start + CHUNK]
        runs = store.get_runs(chunk)
        for rid in chunk:
            run = runs.get(rid)
            if run is None:
                raise StoreError(
                    f"Run {rid!r} is labeled but cannot be read ({store.unreadable_run(rid)}); re-import it "
                    "flattened, then export again."
                )
            history = labels[rid]
            if fmt == "langsmith":
                yield _langsmith_example(run, key, history[-1], splits.get(rid))
            else:
                yield _record(run, key, history, splits.get(rid))


def _label(label: LabelRow) -> dict[str, Any]:
    return {
        "score": label.score,
        "comment": label.comment,
        "labeler": label.labeler,
        "labeled_at": label.created_at.isoformat(),
        "rubric_version": label.rubric_version,
    }


def _record(run: RunRow, key: str, history: list[LabelRow], split: str | None) -> dict[str, Any]:
    """One run in the import format, its feedback carrying what an import needs to restore the label."""
    feedback = _label(history[-1])
    if split is not None:
        feedback["split"] = split
    if len(history) > 1:
        feedback["history"] = [_label(label) for label in history[:-1]]
    record: dict[str, Any] = {"id": run.id, "inputs": run.inputs, **_outputs(run)}
    if run.reference_outputs is not None:
        record["reference_outputs"] = run.reference_outputs
    record["metadata"] = run.metadata
    record["feedback"] = {key: feedback}
    return record


def _outputs(run: RunRow) -> dict[str, Any]:
    """The run's output, or a pairwise run's two outputs as the pairwise import format names them."""
    if run.outputs_b is None:
        return {"outputs": run.outputs}
    return {"outputs_a": run.outputs, "outputs_b": run.outputs_b}


def _langsmith_example(run: RunRow, key: str, label: LabelRow, split: str | None) -> dict[str, Any]:
    """A LangSmith dataset example for an evaluator: what the judge reads as inputs, the human label as the
    reference output, the run's provenance in metadata (`dataset_split` as LangSmith names splits)."""
    inputs: dict[str, Any] = {"inputs": run.inputs, **_outputs(run)}
    if run.reference_outputs is not None:
        inputs["reference_outputs"] = run.reference_outputs
    outputs: dict[str, Any] = {key: label.score}
    if label.comment is not None:
        outputs["comment"] = label.comment
    metadata: dict[str, Any] = {
        "run_id": run.id,
        "source": run.source,
        "labeler": label.labeler,
        "labeled_at": label.created_at.isoformat(),
        "rubric_version": label.rubric_version,
    }
    if split is not None:
        metadata["dataset_split"] = [split]
    return {"inputs": inputs, "outputs": outputs, "metadata": metadata}


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


_CSV_PARTS = ("score", "comment", "labeler", "labeled_at", "rubric_version", "split", "history")


def _csv_rows(records: Iterator[dict[str, Any]]) -> Iterator[list[str]]:
    """The records as CSV rows: JSON cells for inputs, outputs (`outputs_a` and `outputs_b` for pairwise runs)
    and reference outputs, one column per metadata key (text as is, other values as JSON), and
    `feedback.<key>.<part>` columns with history as a JSON cell."""
    rows = list(records)
    meta_keys = sorted({k for r in rows for k in r["metadata"]})
    key = next(iter(rows[0]["feedback"])) if rows else "feedback"
    outputs = [name for name in ("outputs", "outputs_a", "outputs_b") if any(name in r for r in rows)] or [
        "outputs"
    ]
    yield [
        "id",
        "inputs",
        *outputs,
        "reference_outputs",
        *(f"metadata.{k}" for k in meta_keys),
        *(f"feedback.{key}.{part}" for part in _CSV_PARTS),
    ]
    for r in rows:
        feedback = r["feedback"][key]
        yield [
            r["id"],
            _cell(r["inputs"]),
            *(_cell(r.get(name)) for name in outputs),
            "" if r.get("reference_outputs") is None else _cell(r["reference_outputs"]),
            *(_cell(r["metadata"].get(k)) for k in meta_keys),
            *(_cell(feedback.get(part)) for part in _CSV_PARTS),
        ]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _text(records: Iterator[dict[str, Any]], fmt: ExportFormat) -> str:
    out = io.StringIO()
    _emit(out, records, fmt)
    return out.getvalue()


def _emit(out: IO[str], records: Iterator[dict[str, Any]], fmt: ExportFormat) -> None:
    if fmt == "csv":
        csv.writer(out, lineterminator="\n").writerows(_csv_rows(records))
        return
    for record in records:
        out.write(_json_line(record))


def _write(target: Path, records: Iterator[dict[str, Any]], fmt: ExportFormat, overwrite: bool) -> None:
    """Write through a temporary file in the same directory, renamed into place when complete."""
    if target.is_dir():
        raise InvalidInput(f"Export path {str(target)!r} is a directory; give a file name inside it.")
    if target.exists() and not overwrite:
        raise Conflict(f"{str(target)!r} already exists; give another file name (nothing was written).")
    if not target.parent.is_dir():
        raise InvalidInput(
            f"Export path {str(target)!r}: the directory {str(target.parent)!r} does not exist; create it first."
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            _emit(f, records, fmt)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
