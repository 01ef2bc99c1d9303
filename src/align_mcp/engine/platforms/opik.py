"""Opik exports: traces and spans with their feedback scores, as runs; scores given in the Opik UI (source
`ui`) become feedback, those logged by the SDK or online LLM-as-judge rules (`sdk`, `online_scoring`) metadata."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from align_mcp.engine.formats import ParsedRun
from align_mcp.engine.platforms.common import Place, Scores, as_object, kind_of, make_run, text_id

WHAT = "an Opik trace or span"
_KEPT = ("name", "project_name", "project_id", "thread_id", "tags", "start_time", "model", "provider", "type")
_HUMAN_SOURCES = {"ui"}


def matches(record: dict[str, Any]) -> bool:
    """Whether the record is an Opik trace or span (snake_case fields with `feedback_scores`)."""
    return "feedback_scores" in record or {"project_id", "start_time", "last_updated_at"} <= record.keys()


def read(record: dict[str, Any], place: Place) -> Iterator[ParsedRun]:
    """The run of one trace or span."""
    span = "trace_id" in record
    what = "span" if span else "trace"
    run_id = text_id(record.get("id"), place, f"the {what}'s id")
    fields = {}
    for field in ("input", "output"):
        if record.get(field) is None:
            raise place.error(f"the {what} has no {field}; export {what}s whose {field} is set")
        fields[field] = as_object(record[field], field)
    metadata: dict[str, Any] = {}
    if record.get("metadata") is not None:
        metadata.update(as_object(record["metadata"], "metadata"))
    if span:
        metadata.update(
            {
                "trace_id": record.get("trace_id"),
                "span_id": run_id,
                "parent_span_id": record.get("parent_span_id"),
            }
        )
    else:
        metadata["trace_id"] = run_id
    metadata.update({k: record.get(k) for k in _KEPT})
    scores = Scores(place)
    _feedback_scores(record.get("feedback_scores"), scores, place)
    yield make_run(place, run_id, fields["input"], fields["output"], None, metadata, scores)


def _feedback_scores(value: object, scores: Scores, place: Place) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise place.error(f"feedback_scores must be an array (got {kind_of(value)})")
    for i, entry in enumerate(value):
        at = place.child(f"feedback_scores[{i}]")
        if not isinstance(entry, dict):
            raise at.error(f"a feedback score must be an object (got {kind_of(entry)})")
        source = entry.get("source")
        if source is None:
            raise at.error('the feedback score has no "source" (ui, sdk or online_scoring)')
        category = entry.get("category_name")
        scores.add(
            entry.get("name"),
            category if category is not None else entry.get("value"),
            human=str(source).lower() in _HUMAN_SOURCES,
            source=str(source),
            comment=entry.get("reason"),
            labeler=entry.get("last_updated_by") or entry.get("created_by"),
            extra={"score": entry.get("value")} if category is not None else None,
        )
