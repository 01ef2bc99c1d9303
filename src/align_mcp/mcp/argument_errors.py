"""How a refused argument or form answer reads: the argument, the value, what is allowed, and the next step.

The SDK validates a call's arguments (and a form's answer) with pydantic before the tool runs; its message
("1 validation error for next_itemsArguments … https://errors.pydantic.dev/…") is written for a Python
programmer. These functions reword it from the errors pydantic lists and the schema the model was shown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

MAX_SHOWN = 3
"""Refused arguments described in one message; more are counted."""

VALUE_CHARS = 60


def validation_error_in(error: BaseException) -> ValidationError | None:
    """The pydantic ValidationError behind an error (through its causes), if there is one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ValidationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def shown_value(value: Any) -> str:
    """A refused value as the model wrote it (JSON), cut short."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def given(path: str, value: Any) -> str:
    """An argument and the value it was given: `limit=500`, or `labels (a list of 10,001 items)` when long."""
    shown = shown_value(value)
    if len(shown) < VALUE_CHARS or not isinstance(value, list | dict):
        return f"{path}={shown}"
    if isinstance(value, list):
        return f"{path} (a list of {len(value):,} items)"
    return f"{path} (an object with {len(value):,} keys)"


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _subschema(schema: Mapping[str, Any], loc: Sequence[int | str]) -> Mapping[str, Any] | None:
    """The schema of the value at `loc` (property names and list indexes), following local $refs."""
    defs = schema.get("$defs", {})
    node: Mapping[str, Any] | None = schema
    for part in loc:
        while node is not None and "$ref" in node:
            node = defs.get(str(node["$ref"]).rsplit("/", 1)[-1])
        if node is None:
            return None
        node = node.get("items") if isinstance(part, int) else node.get("properties", {}).get(part)
    while node is not None and "$ref" in node:
        node = defs.get(str(node["$ref"]).rsplit("/", 1)[-1])
    return node


TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
}


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def allowed(schema: Mapping[str, Any]) -> str:
    """What a schema allows, in words: "a whole number from 1 to 20", "one of 'dev', 'test'"."""
    if "enum" in schema:
        return "one of " + ", ".join(shown_value(v) for v in schema["enum"])
    types = schema.get("type")
    names = [t for t in (types if isinstance(types, list) else [types]) if isinstance(t, str) and t != "null"]
    if "integer" in names and "number" in names:
        names.remove("integer")
    if not names:
        return "a valid value"
    words = " or ".join(TYPE_WORDS.get(name, name) for name in names)
    low, high = schema.get("minimum"), schema.get("maximum")
    if schema.get("exclusiveMinimum") is not None:
        words += f" above {_number(schema['exclusiveMinimum'])}"
        if high is not None:
            words += f" and at most {_number(high)}"
    elif low is not None and high is not None:
        words += f" from {_number(low)} to {_number(high)}"
    elif low is not None:
        words += f" of at least {_number(low)}"
    elif high is not None:
        words += f" of at most {_number(high)}"
    few, many = (
        schema.get("minItems", schema.get("minLength")),
        schema.get("maxItems", schema.get("maxLength")),
    )
    unit = "items" if "array" in names else "characters"
    if few is not None and many is not None:
        words += f" of {few} to {many} {unit}"
    elif few is not None:
        words += f" of at least {few} {unit}"
    elif many is not None:
        words += f" of at most {many} {unit}"
    return words


def _from_error(error: Mapping[str, Any]) -> str:
    """What pydantic says is allowed, when the schema does not say it (a nested value, a form)."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind == "literal_error" and "expected" in ctx:
        return f"one of {ctx['expected']}"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "less_than_equal": ("at most", "le"),
        "greater_than": ("above", "gt"),
        "less_than": ("below", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"a value {words} {ctx.get(key)}"
    for prefix, words in (("int", "a whole number"), ("float", "a number"), ("bool", "true or false")):
        if kind.startswith(prefix):
            return words
    if kind.startswith("string"):
        return "a string"
    if kind.startswith("list"):
        return "a list"
    if kind.startswith(("dict", "model")):
        return "an object"
    return str(error.get("msg", "a valid value")).rstrip(".").lower()


def argument_error(tool: str, error: ValidationError, schema: Mapping[str, Any]) -> str:
    """A call's refused arguments in the house style, from pydantic's errors and the tool's input schema."""
    missing: list[str] = []
    refused: list[str] = []
    paths: list[str] = []
    for item in error.errors():
        loc = [part for part in item["loc"] if isinstance(part, int | str)]
        path = _path(loc)
        sub = _subschema(schema, loc)
        if item["type"] == "missing":
            about = f" ({sub['description']})" if sub and sub.get("description") else ""
            missing.append(f"{path}{about}")
        else:
            what = allowed(sub) if sub is not None else "a valid value"
            if what == "a valid value":
                what = _from_error(item)
            refused.append(f"{given(path, item.get('input'))} is not allowed: {path} takes {what}")
        if path not in paths:
            paths.append(path)
    parts: list[str] = []
    if missing:
        parts.append(f"{tool} needs {', '.join(missing[:MAX_SHOWN])}.")
    for line in refused[:MAX_SHOWN]:
        parts.append(line + ".")
    extra = len(missing) + len(refused) - min(len(missing), MAX_SHOWN) - min(len(refused), MAX_SHOWN)
    if extra > 0:
        parts.append(f"({extra} more argument(s) refused.)")
    fixed = paths[0] if len(paths) == 1 else ", ".join(paths[:-1]) + " and " + paths[-1]
    parts.append(f"Call {tool} again with {fixed} fixed; nothing was done.")
    return " ".join(parts)


def form_error(error: ValidationError | None, what_is_allowed: str | None, retry: str) -> str:
    """A form answer the human gave that does not fit, in the house style, with the call to ask again."""
    if error is None:
        return f"The human's form answer could not be read; nothing was stored. Ask again with {retry}."
    parts = []
    for item in error.errors()[:MAX_SHOWN]:
        loc = [part for part in item["loc"] if isinstance(part, int | str)]
        field = _path(loc) or "answer"
        what = what_is_allowed if field == "score" and what_is_allowed else _from_error(item)
        if item["type"] == "missing":
            parts.append(f"The human's form answer has no {field}: it takes {what}.")
        else:
            shown = given(field, item.get("input"))
            parts.append(f"The human's form answer {shown} is not allowed: {field} takes {what}.")
    parts.append(
        f"Nothing was stored. Ask again with {retry}, or ask the human in the chat and pass the score."
    )
    return " ".join(parts)
