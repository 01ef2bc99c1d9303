"""Replies asked for as pydantic models: their response format, and the parser the client re-asks with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from align_mcp.core.text import strip_code_fence
from align_mcp.llm.client import Answer, Message, ModelClient, ReplyError, json_schema_format

R = TypeVar("R", bound="StructuredReply")


class StructuredReply(BaseModel):
    """Base of the replies asked for with a JSON schema."""

    model_config = ConfigDict(extra="forbid")  # strict JSON-schema mode wants additionalProperties: false


def reply_format(name: str, reply: type[StructuredReply]) -> dict[str, Any]:
    """The strict `json_schema` response format asking for a `reply`."""
    return json_schema_format(name, reply.model_json_schema())


def parse_model(content: str | None, reply: type[R]) -> R:
    """The reply validated as `reply` (a ```json fence is allowed); ReplyError says where it does not match."""
    text = content or ""
    try:
        return reply.model_validate_json(strip_code_fence(text))
    except ValidationError as e:
        problem = e.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise ReplyError(
            f"the reply does not match the schema ({where + ': ' if where else ''}{problem['msg']}): "
            f"{text[:120]!r}"
        ) from None


async def ask(
    client: ModelClient,
    messages: list[Message],
    name: str,
    reply: type[R],
    *,
    may_reask: Callable[[], bool] | None = None,
) -> Answer[R]:
    """One structured call for a `reply` model, asked again once when the reply does not validate.

    Raises what ModelClient.structured raises: UnusableReply, CallFailed, or a fatal AlignError.
    """
    return await client.structured(
        messages, reply_format(name, reply), lambda content: parse_model(content, reply), may_reask=may_reask
    )
