"""OpenTelemetry GenAI spans in OTLP JSON (`resourceSpans[].scopeSpans[].spans[]`), as runs: every span that
carries `gen_ai.*` input or output content (attributes or events, old and new conventions) becomes one run.

OTLP has no notion of a human label, so `gen_ai.evaluation.result` events are kept in metadata, never as labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from align_mcp.engine.formats import MAX_DEPTH, ParsedRun
from align_mcp.engine.platforms.common import Place, Scores, decoded, kind_of, make_run, text_id

WHAT = 'an OTLP JSON trace export (a "resourceSpans" array)'
NOTHING = (
    "no span carries gen_ai input or output content (gen_ai.input.messages / gen_ai.output.messages, "
    "gen_ai.prompt / gen_ai.completion, or their events); turn on content capture in the instrumentation "
    "(e.g. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true) and export again"
)
_INDEXED = re.compile(r"gen_ai\.(prompt|completion)\.(\d+)\.(\w+)")
_CONTENT_KEYS = {
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.prompt",
    "gen_ai.completion",
}
_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_ERROR_STATUS = (2, "STATUS_CODE_ERROR")


def matches(record: dict[str, Any]) -> bool:
    """Whether the record is an OTLP JSON trace export (an ExportTraceServiceRequest)."""
    return isinstance(record.get("resourceSpans"), list)


def read(record: dict[str, Any], place: Place) -> Iterator[ParsedRun]:
    """The runs of every GenAI span in one export request, in file order."""
    for r, resource_spans in enumerate(record["resourceSpans"]):
        at_resource = place.child(f"resourceSpans[{r}]")
        if not isinstance(resource_spans, dict):
            raise at_resource.error(f"not an object (got {kind_of(resource_spans)})")
        resource = resource_spans.get("resource")
        resource_attributes = (
            _attributes(resource.get("attributes"), at_resource.child("resource"))
            if isinstance(resource, dict)
            else {}
        )
        scope_spans = _list(resource_spans, "scopeSpans", at_resource)
        for s, scope in enumerate(scope_spans):
            at_scope = at_resource.child(f"scopeSpans[{s}]")
            if not isinstance(scope, dict):
                raise at_scope.error(f"not an object (got {kind_of(scope)})")
            for i, span in enumerate(_list(scope, "spans", at_scope)):
                at_span = at_scope.child(f"spans[{i}]")
                if not isinstance(span, dict):
                    raise at_span.error(f"a span must be an object (got {kind_of(span)})")
                run = _span(span, resource_attributes, at_span)
                if run is not None:
                    yield run


def _list(parent: dict[str, Any], key: str, place: Place) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise place.error(f"{key} must be an array (got {kind_of(value)})")
    return value


def _span(span: dict[str, Any], resource: dict[str, Any], place: Place) -> ParsedRun | None:
    attributes = _attributes(span.get("attributes"), place)
    events = _events(span.get("events"), place)
    inputs = _inputs(attributes, events)
    outputs = _outputs(attributes, events)
    if inputs is None and outputs is None:
        return None
    span_id = text_id(span.get("spanId"), place, "the span's spanId")
    status = span.get("status")
    error = None
    if isinstance(status, dict) and status.get("code") in _ERROR_STATUS:
        error = str(status.get("message") or "error")
    if inputs is None:
        raise place.error(
            "the span has gen_ai output content but no input (gen_ai.input.messages or gen_ai.prompt)"
        )
    if outputs is None and error is None:
        raise place.error(
            "the span has gen_ai input content but no output (gen_ai.output.messages or gen_ai.completion) "
            "and its status is not an error"
        )
    metadata: dict[str, Any] = {
        "trace_id": span.get("traceId"),
        "span_id": span_id,
        "parent_span_id": span.get("parentSpanId") or None,
        "name": span.get("name"),
        "service_name": resource.get("service.name"),
        "start_time_unix_nano": span.get("startTimeUnixNano"),
    }
    metadata["error"] = error
    metadata.update(
        {
            key: value
            for key, value in attributes.items()
            if key.startswith("gen_ai.") and key not in _CONTENT_KEYS and not _INDEXED.fullmatch(key)
        }
    )
    scores = Scores(place)
    for name, event in events:
        if name == "gen_ai.evaluation.result":
            label = event.get("gen_ai.evaluation.score.label")
            value = event.get("gen_ai.evaluation.score.value")
            scores.add(
                event.get("gen_ai.evaluation.name"),
                label if label is not None else value,
                human=False,
                source="gen_ai.evaluation.result",
                comment=event.get("gen_ai.evaluation.explanation"),
                extra={"score": value} if label is not None else None,
            )
    return make_run(place, span_id, inputs, outputs or {}, None, metadata, scores)


def _inputs(attributes: dict[str, Any], events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
    found: dict[str, Any] = {}
    if "gen_ai.system_instructions" in attributes:
        found["system_instructions"] = decoded(attributes["gen_ai.system_instructions"])
    if "gen_ai.input.messages" in attributes:
        found["messages"] = decoded(attributes["gen_ai.input.messages"])
    elif "gen_ai.prompt" in attributes:
        found["prompt"] = decoded(attributes["gen_ai.prompt"])
    elif indexed := _indexed(attributes, "prompt"):
        found["messages"] = indexed
    else:
        messages = [
            {"role": _MESSAGE_EVENTS[name], **{k: decoded(v) for k, v in event.items()}}
            for name, event in events
            if name in _MESSAGE_EVENTS
        ]
        prompts = [
            decoded(e["gen_ai.prompt"])
            for n, e in events
            if n == "gen_ai.content.prompt" and "gen_ai.prompt" in e
        ]
        if messages:
            found["messages"] = messages
        elif prompts:
            found["prompt"] = prompts[0] if len(prompts) == 1 else prompts
    return found or None


def _outputs(attributes: dict[str, Any], events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
    if "gen_ai.output.messages" in attributes:
        return {"messages": decoded(attributes["gen_ai.output.messages"])}
    if "gen_ai.completion" in attributes:
        return {"completion": decoded(attributes["gen_ai.completion"])}
    if indexed := _indexed(attributes, "completion"):
        return {"messages": indexed}
    choices = [{k: decoded(v) for k, v in event.items()} for name, event in events if name == "gen_ai.choice"]
    if choices:
        return {"choices": choices}
    completions = [
        decoded(e["gen_ai.completion"])
        for n, e in events
        if n == "gen_ai.content.completion" and "gen_ai.completion" in e
    ]
    if completions:
        return {"completion": completions[0] if len(completions) == 1 else completions}
    return None


def _indexed(attributes: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Messages flattened as gen_ai.prompt.0.role / gen_ai.prompt.0.content (OpenLLMetry), in index order."""
    messages: dict[int, dict[str, Any]] = {}
    for key, value in attributes.items():
        found = _INDEXED.fullmatch(key)
        if found is not None and found.group(1) == kind:
            messages.setdefault(int(found.group(2)), {})[found.group(3)] = value
    return [messages[i] for i in sorted(messages)]


def _events(value: object, place: Place) -> list[tuple[str, dict[str, Any]]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise place.error(f"events must be an array (got {kind_of(value)})")
    events = []
    for i, event in enumerate(value):
        at = place.child(f"events[{i}]")
        if not isinstance(event, dict):
            raise at.error(f"an event must be an object (got {kind_of(event)})")
        events.append((str(event.get("name", "")), _attributes(event.get("attributes"), at)))
    return events


def _attributes(value: object, place: Place, depth: int = 0) -> dict[str, Any]:
    """OTLP key/value attributes as a plain dict."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise place.error(f'attributes must be an array of {{"key", "value"}} objects (got {kind_of(value)})')
    out: dict[str, Any] = {}
    for i, item in enumerate(value):
        at = place.child(f"attributes[{i}]")
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            raise at.error('an attribute must be an object with a non-empty "key" and a "value"')
        out[item["key"]] = _any_value(item.get("value"), at, depth + 1)
    return out


def _any_value(value: object, place: Place, depth: int = 1) -> Any:
    """One OTLP AnyValue ({"stringValue": ...}, {"intValue": "3"}, {"arrayValue": {"values": [...]}}...)."""
    if value is None or value == {}:
        return None
    if depth > MAX_DEPTH:
        raise place.error(
            f"an attribute value nests arrays and key/value lists more than {MAX_DEPTH} levels deep; at most "
            f"{MAX_DEPTH} levels are accepted"
        )
    if not isinstance(value, dict):
        raise place.error(
            f'an attribute value must be an object like {{"stringValue": "..."}} (got {kind_of(value)})'
        )
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        try:
            return int(value["intValue"])
        except (TypeError, ValueError):
            raise place.error(f"intValue {value['intValue']!r} is not an integer") from None
    if "doubleValue" in value:
        try:
            return float(value["doubleValue"])
        except (TypeError, ValueError):
            raise place.error(f"doubleValue {value['doubleValue']!r} is not a number") from None
    if "arrayValue" in value:
        array = value["arrayValue"] or {}
        items = (array.get("values") or []) if isinstance(array, dict) else None
        if not isinstance(items, list):
            raise place.error("arrayValue must hold a values array")
        return [_any_value(item, place, depth + 1) for item in items]
    if "kvlistValue" in value:
        kvlist = value["kvlistValue"] or {}
        pairs = (kvlist.get("values") or []) if isinstance(kvlist, dict) else None
        if not isinstance(pairs, list):
            raise place.error("kvlistValue must hold a values array")
        return _attributes(pairs, place, depth + 1)
    if "bytesValue" in value:
        return value["bytesValue"]
    raise place.error(f"unknown attribute value type {', '.join(sorted(map(str, value)))}")
