"""Arize Phoenix exports: spans (REST JSON or a spans dataframe saved as JSON), experiment runs and dataset
examples, as runs; `HUMAN` annotations become feedback, `LLM` and `CODE` ones are kept in metadata."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from align_mcp.engine.formats import ParsedRun
from align_mcp.engine.platforms.common import Place, Scores, as_object, decoded, kind_of, make_run, text_id

WHAT = "an Arize Phoenix span, experiment run or dataset example"
_DATASET_EXAMPLE = {"id", "input", "output", "updated_at"}


def matches(record: dict[str, Any]) -> bool:
    """Whether the record is a Phoenix span, experiment run or dataset example."""
    context = record.get("context")
    return (
        (
            ((isinstance(context, dict) and "span_id" in context) or "span_id" in record)
            and "span_kind" in record
        )
        or "context.span_id" in record
        or ("example_id" in record and ("repetition_number" in record or "reference_output" in record))
        or record.keys() >= _DATASET_EXAMPLE
    )


def read(record: dict[str, Any], place: Place) -> Iterator[ParsedRun]:
    """The run of one span, experiment run or dataset example."""
    if "example_id" in record:
        yield _experiment_run(record, place)
    elif record.keys() >= _DATASET_EXAMPLE:
        yield _dataset_example(record, place)
    else:
        yield _span(record, place)


def _span(record: dict[str, Any], place: Place) -> ParsedRun:
    context = record.get("context")
    context = context if isinstance(context, dict) else {}
    # Phoenix versions put the ids in `context` (REST), in dataframe columns, or at the top level (older REST).
    span_id = text_id(
        context.get("span_id", record.get("context.span_id", record.get("span_id"))),
        place,
        "the span's context.span_id",
    )
    trace_id = context.get("trace_id", record.get("context.trace_id", record.get("trace_id")))
    inputs = _value(record, "input", place)
    outputs = _value(record, "output", place)
    metadata: dict[str, Any] = {}
    own = decoded(_attribute(record, "metadata"))
    if own is not None:
        metadata.update(as_object(own, "metadata"))
    metadata.update(
        {
            "trace_id": trace_id,
            "span_id": span_id,
            "parent_id": record.get("parent_id"),
            "name": record.get("name"),
            "span_kind": record.get("span_kind") or _attribute(record, "openinference.span.kind"),
            "status_code": record.get("status_code"),
            "start_time": record.get("start_time"),
            "model": _attribute(record, "llm.model_name"),
        }
    )
    scores = Scores(place)
    _annotations(record.get("annotations"), scores, place)
    return make_run(place, span_id, inputs, outputs, None, metadata, scores)


def _experiment_run(record: dict[str, Any], place: Place) -> ParsedRun:
    example_id = text_id(record.get("example_id"), place, "the experiment run's example_id")
    repetition = record.get("repetition_number")
    trace_id = record.get("trace_id")
    if trace_id:
        run_id = str(trace_id)
    else:
        run_id = example_id if repetition in (None, 1) else f"{example_id}#{repetition}"
    if record.get("input") is None:
        raise place.error("the experiment run has no input")
    if record.get("output") is None and record.get("error") is None:
        raise place.error("the experiment run has no output (and no error)")
    outputs = {} if record.get("output") is None else as_object(record["output"], "output")
    reference = record.get("reference_output")
    metadata = {
        "example_id": example_id,
        "repetition_number": repetition,
        "trace_id": trace_id,
        "error": record.get("error"),
        "latency_ms": record.get("latency_ms"),
        "start_time": record.get("start_time"),
    }
    scores = Scores(place)
    _annotations(record.get("annotations"), scores, place)
    return make_run(
        place,
        run_id,
        as_object(record["input"], "input"),
        outputs,
        None if reference is None else as_object(reference, "output"),
        metadata,
        scores,
    )


def _dataset_example(record: dict[str, Any], place: Place) -> ParsedRun:
    # A dataset example's output is the output recorded when the example was made (often from a traced span);
    # it is imported as the run's outputs, to be judged and labeled like any other.
    example_id = text_id(record.get("id"), place, "the example's id")
    if record.get("input") is None or record.get("output") is None:
        raise place.error("the dataset example needs both input and output")
    metadata: dict[str, Any] = {}
    if record.get("metadata") is not None:
        metadata.update(as_object(record["metadata"], "metadata"))
    metadata.update({"example_id": example_id, "updated_at": record.get("updated_at")})
    return make_run(
        place,
        example_id,
        as_object(record["input"], "input"),
        as_object(record["output"], "output"),
        None,
        metadata,
    )


def _attribute(record: dict[str, Any], dotted: str) -> Any:
    """A span attribute, whether attributes are flat ("input.value"), nested, or dataframe columns."""
    attributes = record.get("attributes")
    if isinstance(attributes, dict):
        if dotted in attributes:
            return attributes[dotted]
        node: Any = attributes
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return node
    return record.get(f"attributes.{dotted}")


def _value(record: dict[str, Any], field: str, place: Place) -> dict[str, Any]:
    value = _attribute(record, f"{field}.value")
    if value is None:
        raise place.error(
            f"the span has no {field}.value attribute; export spans whose {field} was recorded "
            "(OpenInference instrumentation sets input.value and output.value)"
        )
    if isinstance(value, str) and _attribute(record, f"{field}.mime_type") == "application/json":
        value = decoded(value)
    return as_object(value, field)


def _annotations(value: object, scores: Scores, place: Place) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise place.error(f"annotations must be an array (got {kind_of(value)})")
    for i, annotation in enumerate(value):
        at = place.child(f"annotations[{i}]")
        if not isinstance(annotation, dict):
            raise at.error(f"an annotation must be an object (got {kind_of(annotation)})")
        kind = annotation.get("annotator_kind")
        if kind is None:
            raise at.error('the annotation has no "annotator_kind" (HUMAN, LLM or CODE)')
        result = annotation.get("result")
        result = result if isinstance(result, dict) else annotation
        label, score = result.get("label"), result.get("score")
        scores.add(
            annotation.get("name"),
            label if label is not None else score,
            human=str(kind).upper() == "HUMAN",
            source=str(kind),
            comment=result.get("explanation"),
            labeler=annotation.get("user_id") or None,
            extra={"score": score} if label is not None and score is not None else None,
        )
