"""Langfuse exports: traces (with their scores and observations) and observations, as runs and feedback.

A trace or observation becomes one run; its `ANNOTATION` scores (made by people in Langfuse) become feedback,
and its `API` and `EVAL` scores (from code, SDK calls and LLM-as-judge evaluators) are kept in metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from align_mcp.engine.formats import ParsedRun
from align_mcp.engine.platforms.common import Place, Scores, as_object, kind_of, make_run, text_id

WHAT = "a Langfuse trace or observation"
_TRACE_MARKERS = {"htmlPath", "totalCost", "sessionId", "userId"}
_TRACE_KEPT = {
    "name": "name",
    "sessionId": "session_id",
    "userId": "user_id",
    "tags": "tags",
    "release": "release",
    "version": "version",
    "environment": "environment",
    "timestamp": "timestamp",
    "htmlPath": "langfuse_path",
}
_OBSERVATION_KEPT = {
    "type": "type",
    "name": "name",
    "model": "model",
    "startTime": "start_time",
    "level": "level",
    "environment": "environment",
}
_HUMAN_SOURCES = {"ANNOTATION"}


def matches(record: dict[str, Any]) -> bool:
    """Whether the record is a Langfuse trace or observation (camelCase fields only Langfuse writes)."""
    is_trace = "id" in record and bool(_TRACE_MARKERS & record.keys()) and "timestamp" in record
    is_observation = "traceId" in record and "startTime" in record and "type" in record
    return is_trace or is_observation


def read(record: dict[str, Any], place: Place) -> Iterator[ParsedRun]:
    """The run of one trace or observation."""
    observation = "traceId" in record and "startTime" in record
    what = "observation" if observation else "trace"
    run_id = text_id(record.get("id"), place, f"the {what}'s id")
    inputs = _content(record, "input", what, place)
    outputs = _content(record, "output", what, place)
    reference = None
    if record.get("expectedOutput") is not None:
        reference = as_object(record["expectedOutput"], "output")
    metadata: dict[str, Any] = {}
    own = record.get("metadata")
    if own is not None:
        metadata.update(as_object(own, "metadata"))
    if observation:
        metadata.update({"trace_id": record.get("traceId"), "span_id": run_id})
        metadata["parent_span_id"] = record.get("parentObservationId")
        metadata.update({new: record.get(old) for old, new in _OBSERVATION_KEPT.items()})
    else:
        metadata["trace_id"] = run_id
        metadata.update({new: record.get(old) for old, new in _TRACE_KEPT.items()})
    scores = Scores(place)
    _read_scores(record.get("scores"), None if not observation else run_id, scores, place)
    yield make_run(place, run_id, inputs, outputs, reference, metadata, scores)


def _content(record: dict[str, Any], field: str, what: str, place: Place) -> dict[str, Any]:
    value = record.get(field)
    if value is None:
        raise place.error(
            f"the {what} has no {field} (it is {'missing' if field not in record else 'null'}); runs need an "
            f"{field}: export traces whose {field} is set, or their GENERATION observations"
        )
    return as_object(value, field)


def _read_scores(value: object, observation_id: str | None, scores: Scores, place: Place) -> None:
    """Scores of this trace (or observation) in `scores`; one on another observation goes to metadata only."""
    if value is None:
        return
    if not isinstance(value, list):
        raise place.error(f"scores must be an array of score objects (got {kind_of(value)})")
    for i, score in enumerate(value):
        if isinstance(score, str):
            continue  # a list of score ids (the traces list endpoint): nothing to read
        at = place.child(f"scores[{i}]")
        if not isinstance(score, dict):
            raise at.error(f"a score must be an object (got {kind_of(score)})")
        source = score.get("source")
        if source is None:
            raise at.error('the score has no "source" (ANNOTATION, API or EVAL)')
        own = score.get("observationId") or None
        human = str(source).upper() in _HUMAN_SOURCES and own == observation_id
        scores.add(
            score.get("name"),
            _value(score, at),
            human=human,
            source=str(source),
            comment=score.get("comment"),
            labeler=score.get("authorUserId"),
            extra={
                "data_type": score.get("dataType"),
                "observation_id": own if own != observation_id else None,
            },
        )


def _value(score: dict[str, Any], at: Place) -> object:
    """The score's value in the type its dataType says: a category's label, a boolean, or a number."""
    data_type = str(score.get("dataType") or "NUMERIC").upper()
    value = score.get("value")
    if data_type == "CATEGORICAL":
        return score.get("stringValue") if score.get("stringValue") is not None else value
    if data_type == "BOOLEAN":
        if isinstance(value, int | float) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
        if isinstance(value, bool):
            return value
        raise at.error(f"a BOOLEAN score's value must be 1 or 0 (got {value!r})")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise at.error(f"a {data_type} score's value must be a number (got {kind_of(value)})")
    return value
