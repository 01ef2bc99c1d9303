"""What tools/list carries: schemas without what pydantic generates for Python's sake, in as few characters as
the model (input schemas) and the client (output schemas) need.

Input schemas are what the model reads: no titles, and an optional argument is simply not required (a null
sent anyway is still accepted). Output schemas are what a client validates structured content against: the
same types and structure, without the documentation (titles, descriptions, defaults) no validator reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mcp.types import Tool

SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
"""Keywords whose value maps names to schemas: a key there is a name, not a keyword (a field may be `title`)."""

NULL = {"type": "null"}
DOCUMENTATION = ("title", "description", "default", "examples")


def _rewrite(schema: Any, drop: tuple[str, ...], node: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Every subschema bottom-up: keywords in `drop` removed (names under SCHEMA_MAPS kept), then `node` applied."""
    if isinstance(schema, list):
        return [_rewrite(item, drop, node) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _rewrite(sub, drop, node) for name, sub in value.items()}
        elif key not in drop or (key == "title" and not isinstance(value, str)):
            out[key] = _rewrite(value, drop, node)
    return node(out)


def _fold_types(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf` of bare types -> one `type` list: `{"type": ["string", "null"]}`."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or len(options) < 2:
        return schema
    if not all(isinstance(o, dict) and set(o) == {"type"} and isinstance(o["type"], str) for o in options):
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {"type": [o["type"] for o in options], **rest}


def _not_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional argument (`anyOf: [..., null]`, default null) without its null: the model omits it."""
    types = schema.get("type")
    if isinstance(types, list) and "null" in types and schema.get("default") is None:
        kept = [t for t in types if t != "null"]
        others = {key: value for key, value in schema.items() if key not in ("type", "default")}
        return {"type": kept[0] if len(kept) == 1 else kept, **others}
    options = schema.get("anyOf")
    if not (isinstance(options, list) and NULL in options and schema.get("default") is None):
        return schema
    rest = [option for option in options if option != NULL]
    merged = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    if len(rest) == 1:
        return {**rest[0], **merged}
    return _fold_types({"anyOf": rest, **merged})


def _argument_node(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties")
    if isinstance(properties, dict):
        schema = {**schema, "properties": {name: _not_nullable(sub) for name, sub in properties.items()}}
    return _fold_types(schema)


def input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool's input schema as the model reads it: no titles, optional arguments without their null."""
    cleaned: dict[str, Any] = _rewrite(schema, ("title",), _argument_node)
    return cleaned


def output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool's output schema as a client validates against it: types and structure, no documentation."""
    cleaned: dict[str, Any] = _rewrite(schema, DOCUMENTATION, _fold_types)
    return cleaned


def result_kind(schema: dict[str, Any] | None) -> str | None:
    """The name of the result model a tool returns (the title pydantic gives its output schema)."""
    title = None if schema is None else schema.get("title")
    return title if isinstance(title, str) else None


def _shape(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A field's schema down to its JSON types: scalars keep their schema, objects and arrays their type."""
    if "$ref" in schema:
        target = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
        return _shape(target, defs) if "$ref" not in target else {"type": "object"}
    if "anyOf" in schema:
        types: list[str] = []
        for option in schema["anyOf"]:
            shaped = _shape(option, defs).get("type", [])
            for t in shaped if isinstance(shaped, list) else [shaped]:
                if t not in types:
                    types.append(t)
        return {"type": types[0] if len(types) == 1 else types} if types else {}
    t = schema.get("type")
    if t in ("object", "array"):
        return {"type": t}
    if isinstance(t, list) and ("object" in t or "array" in t):
        return {"type": t}
    return schema


def shared_output_schema(schema: dict[str, Any], kind: str) -> dict[str, Any]:
    """A tool's output schema as listed: the result's top-level fields with their JSON types, and where the
    full schema of its result kind is (one resource per kind, shared by every tool that returns it)."""
    full = output_schema(schema)
    defs = full.get("$defs", {})
    properties = {name: _shape(sub, defs) for name, sub in full.get("properties", {}).items()}
    out: dict[str, Any] = {"type": "object", "description": f"{kind}: align://schemas/{kind}"}
    out["properties"] = properties
    if full.get("required"):
        out["required"] = full["required"]
    return out


def without_titles(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema without the titles pydantic generates from class and field names."""
    cleaned: dict[str, Any] = _rewrite(schema, ("title",), lambda node: node)
    return cleaned


@dataclass(frozen=True)
class ListingSize:
    """How big a tools/list answer is, in characters of compact JSON."""

    tools: int
    wire: int
    """The whole `{"tools": [...]}` result as sent."""
    visible: int
    """What a host shows the model: each tool's name, description and input schema."""


def listing_size(tools: Sequence[Tool]) -> ListingSize:
    """The size of a tools/list answer carrying these tools."""
    listed = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]
    wire = len(json.dumps({"tools": listed}, separators=(",", ":"), ensure_ascii=False))
    visible = sum(
        len(tool.name)
        + len(tool.description or "")
        + len(json.dumps(tool.input_schema, separators=(",", ":"), ensure_ascii=False))
        for tool in tools
    )
    return ListingSize(len(tools), wire, visible)
