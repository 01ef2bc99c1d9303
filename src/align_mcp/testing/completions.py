"""The chat-completion messages the fake judge reads and the replies it sends: the pieces its server and the
simulated judge share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["JsonDict", "Reply", "prompt_text", "schema_name", "schema_properties", "section", "section_span"]

JsonDict = dict[str, Any]


@dataclass
class Reply:
    """How the fake judge answers one chat completion request.

    By default a 200 ``chat.completion`` whose message content is ``{"reasoning": ..., "score": ...}``.
    ``content`` replaces that message content verbatim, ``body`` replaces the whole HTTP body, ``status`` and
    ``headers`` shape the HTTP response, ``delay`` sleeps first, and ``reset`` drops the connection unanswered.
    ``dribble`` sends the body one byte every that many seconds; ``echo_key`` answers HTTP 400 with an error
    message that quotes the request's API key (as some gateways do).
    """

    score: object = 1
    reasoning: str = "The output is correct."
    content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay: float = 0.0
    reset: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    dribble: float = 0.0
    echo_key: bool = False


def _message_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def prompt_text(body: JsonDict) -> str:
    """All message contents of a chat completion request, joined by blank lines."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    texts = [_message_text(m.get("content")) for m in messages if isinstance(m, dict)]
    return "\n\n".join(t for t in texts if t)


def section_span(text: str, tag: str) -> tuple[int, int, int, int] | None:
    """Where the last ``<tag>``...``</tag>`` pair is: (open start, content start, content end, close end)."""
    # The example comes last in a judge prompt, so take the last closing tag and the last opening tag before it:
    # an instruction that merely mentions <outputs> earlier in the prompt is not mistaken for the example.
    close = text.rfind(f"</{tag}>")
    if close < 0:
        return None
    open_ = text.rfind(f"<{tag}>", 0, close)
    if open_ < 0:
        return None
    return open_, open_ + len(tag) + 2, close, close + len(tag) + 3


def section(text: str, tag: str) -> str | None:
    """The stripped text between ``<tag>`` and ``</tag>`` (the last such pair), or None when absent."""
    span = section_span(text, tag)
    return None if span is None else text[span[1] : span[2]].strip()


def schema_properties(body: JsonDict) -> dict[str, Any] | None:
    """The ``properties`` of the request's ``response_format`` JSON schema, if it has one."""
    fmt = body.get("response_format")
    json_schema = fmt.get("json_schema") if isinstance(fmt, dict) else None
    schema = json_schema.get("schema") if isinstance(json_schema, dict) else None
    props = schema.get("properties") if isinstance(schema, dict) else None
    return props if isinstance(props, dict) else None


def schema_name(body: JsonDict) -> str | None:
    """The ``name`` of the request's ``response_format`` JSON schema (e.g. ``judgement``, ``triage``), if any."""
    fmt = body.get("response_format")
    json_schema = fmt.get("json_schema") if isinstance(fmt, dict) else None
    name = json_schema.get("name") if isinstance(json_schema, dict) else None
    return name if isinstance(name, str) else None
