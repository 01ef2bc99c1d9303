"""Structured model calls: one JSON-schema request to the judge endpoint, its reply validated as a model."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from align_mcp import config
from align_mcp.core.models import Evaluator
from align_mcp.errors import JudgeConfigError, JudgeUnreachable
from align_mcp.llm.endpoint import Endpoint

R = TypeVar("R", bound="StructuredReply")


class StructuredReply(BaseModel):
    """Base of the replies asked for with a JSON schema."""

    model_config = ConfigDict(extra="forbid")  # strict JSON-schema mode wants additionalProperties: false


class ReplyProblem(Exception):
    """The model answered, but not with the JSON object asked for (or the call failed for this request only)."""


async def structured_call(
    endpoint: Endpoint, ev: Evaluator, messages: list[dict[str, str]], name: str, reply: type[R]
) -> R:
    """One JSON-schema call to the judge endpoint; endpoint-wide failures raise the judge's errors."""
    import openai

    settings = ev.judge
    client = openai.AsyncOpenAI(
        api_key=endpoint.api_key,
        base_url=endpoint.base_url,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
    )
    schema = {"name": name, "strict": True, "schema": reply.model_json_schema()}
    kwargs: dict[str, Any] = {
        "model": endpoint.model,
        "messages": messages,
        "temperature": settings.temperature,
        "response_format": {"type": "json_schema", "json_schema": schema},
    }
    try:
        response = await client.chat.completions.create(**kwargs)
    except openai.APITimeoutError as e:
        raise ReplyProblem(f"the call timed out after {settings.timeout:g}s") from e
    except openai.APIConnectionError as e:
        raise JudgeUnreachable(
            f"Cannot reach the judge model at {endpoint.base_url}: {e.__cause__ or e}. Check that the server is "
            "running and the base URL is right."
        ) from e
    except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as e:
        raise JudgeConfigError(
            f"The judge endpoint {endpoint.base_url} refused model {endpoint.model!r} ({e.status_code}). Check the "
            f"API key and {config.ENV_JUDGE_MODEL}."
        ) from e
    except openai.APIStatusError as e:
        raise ReplyProblem(f"HTTP {e.status_code} from the model") from e
    finally:
        await client.close()
    content = (response.choices[0].message.content if response.choices else None) or ""
    text = content.strip()
    if text.startswith("```"):
        text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text)
    try:
        return reply.model_validate_json(text)
    except ValidationError as e:
        problem = e.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise ReplyProblem(
            f"the reply does not match the schema ({where + ': ' if where else ''}{problem['msg']}): "
            f"{content[:120]!r}"
        ) from None
