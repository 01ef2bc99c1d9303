"""MLflow traces (`Trace.to_json()`: `info` + `data.spans`), as runs: the root span's inputs and outputs,
expectations as reference outputs, `HUMAN` feedback as feedback, `LLM_JUDGE` and `CODE` feedback as metadata."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from align_mcp.engine.formats import ParsedRun
from align_mcp.engine.platforms.common import Place, Scores, as_object, decoded, kind_of, make_run, text_id

WHAT = 'an MLflow trace (an "info" object with a trace_id)'
_INFO_KEPT = ("request_time", "timestamp_ms", "state", "status", "execution_duration", "client_request_id")


def matches(record: dict[str, Any]) -> bool:
    """Whether the record is an MLflow trace: an `info` object with a trace id, and `data` when present."""
    info = record.get("info")
    return (
        isinstance(info, dict)
        and ("trace_id" in info or "request_id" in info)
        and isinstance(record.get("data", {}), dict)
    )


def read(record: dict[str, Any], place: Place) -> Iterator[ParsedRun]:
    """The run of one trace."""
    info = record["info"]
    run_id = text_id(info.get("trace_id", info.get("request_id")), place, "info.trace_id")
    data = record.get("data") or {}
    root = _root_span(data.get("spans"), place)
    root_attributes = root.get("attributes") if isinstance(root, dict) else None
    root_attributes = root_attributes if isinstance(root_attributes, dict) else {}
    trace_metadata = info.get("trace_metadata", info.get("request_metadata"))
    trace_metadata = trace_metadata if isinstance(trace_metadata, dict) else {}
    inputs = _content(
        place,
        "inputs",
        root_attributes.get("mlflow.spanInputs"),
        data.get("request"),
        trace_metadata.get("mlflow.traceInputs"),
        info.get("request_preview"),
    )
    outputs = _content(
        place,
        "outputs",
        root_attributes.get("mlflow.spanOutputs"),
        data.get("response"),
        trace_metadata.get("mlflow.traceOutputs"),
        info.get("response_preview"),
    )
    metadata: dict[str, Any] = {k: v for k, v in trace_metadata.items() if not str(k).startswith("mlflow.")}
    tags = info.get("tags")
    if isinstance(tags, dict):
        user_tags = {k: v for k, v in tags.items() if not str(k).startswith("mlflow.")}
        if user_tags:
            metadata["tags"] = user_tags
    metadata["trace_id"] = run_id
    metadata["span_id"] = _span_id(root) if isinstance(root, dict) else None
    metadata.update({k: info.get(k) for k in _INFO_KEPT})
    scores = Scores(place)
    reference = _assessments(info.get("assessments"), scores, place.child("info"))
    yield make_run(place, run_id, inputs, outputs, reference or None, metadata, scores)


def _root_span(spans: object, place: Place) -> dict[str, Any] | None:
    if spans is None:
        return None
    if not isinstance(spans, list):
        raise place.error(f"data.spans must be an array (got {kind_of(spans)})")
    for span in spans:
        if isinstance(span, dict) and not (span.get("parent_id") or span.get("parent_span_id")):
            return span
    return None


def _span_id(span: dict[str, Any]) -> Any:
    context = span.get("context")
    return context.get("span_id") if isinstance(context, dict) else span.get("span_id")


def _content(place: Place, what: str, *candidates: object) -> dict[str, Any]:
    """The first recorded value (root span attribute, trace data, trace metadata, then preview), as an object."""
    for candidate in candidates:
        if candidate is not None and candidate != "":
            return as_object(decoded(candidate), what[:-1])
    raise place.error(
        f"the trace has no {what} (no root span mlflow.span{what.capitalize()} attribute, and no "
        f"info.{'request' if what == 'inputs' else 'response'}_preview)"
    )


def _assessments(value: object, scores: Scores, place: Place) -> dict[str, Any]:
    """Feedback into `scores`; the expectations, which are ground truth, returned as reference outputs."""
    reference: dict[str, Any] = {}
    if value is None:
        return reference
    if not isinstance(value, list):
        raise place.error(f"assessments must be an array (got {kind_of(value)})")
    for i, assessment in enumerate(value):
        at = place.child(f"assessments[{i}]")
        if not isinstance(assessment, dict):
            raise at.error(f"an assessment must be an object (got {kind_of(assessment)})")
        if assessment.get("valid") is False:
            continue  # overridden by a later assessment
        name = assessment.get("assessment_name", assessment.get("name"))
        source = assessment.get("source")
        source_type = source.get("source_type") if isinstance(source, dict) else None
        if assessment.get("expectation") is not None:
            expectation = assessment["expectation"]
            if not isinstance(name, str) or not name:
                raise at.error("the expectation has no assessment_name")
            reference[name] = expectation.get("value") if isinstance(expectation, dict) else expectation
            continue
        feedback = assessment.get("feedback")
        if not isinstance(feedback, dict):
            raise at.error(
                f'the assessment has neither "feedback" nor "expectation" (feedback is {kind_of(feedback)})'
            )
        if source_type is None:
            raise at.error('the assessment has no "source.source_type" (HUMAN, LLM_JUDGE or CODE)')
        scores.add(
            name,
            feedback.get("value"),
            human=str(source_type).upper() == "HUMAN",
            source=str(source_type),
            comment=assessment.get("rationale"),
            labeler=source.get("source_id") if isinstance(source, dict) else None,
        )
    return reference
