"""Text helpers for what people and assistants read: clipped values, short id lists, fenced JSON."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def shown(ids: Sequence[str], at_most: int = 5) -> str:
    """A short, quoted list of ids: the first few, then an ellipsis."""
    return ", ".join(repr(i) for i in ids[:at_most]) + (" …" if len(ids) > at_most else "")


def strip_code_fence(text: str) -> str:
    """A model reply without the ```json fence some models wrap around JSON."""
    text = text.strip()
    if text.startswith("```"):
        text = _FENCE.sub("", text)
    return text


def clip(value: Any, max_chars: int) -> tuple[Any, bool]:
    """Shorten long strings inside a JSON value; returns (value, whether anything was cut)."""
    if isinstance(value, str):
        if len(value) > max_chars:
            return value[:max_chars] + f"… [{len(value) - max_chars} more characters]", True
        return value, False
    if isinstance(value, dict):
        out, cut = {}, False
        for k, v in value.items():
            out[k], c = clip(v, max_chars)
            cut = cut or c
        return out, cut
    if isinstance(value, list):
        items, cut = [], False
        for v in value[:50]:
            item, c = clip(v, max_chars)
            items.append(item)
            cut = cut or c
        if len(value) > 50:
            items.append(f"… [{len(value) - 50} more items]")
            cut = True
        return items, cut
    return value, False
