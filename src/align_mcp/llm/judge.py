"""The judge's protocol over the model client: the verdict schema, the messages, one verdict per example."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from align_mcp.core.models import JudgeSettings, Score, ScoreType
from align_mcp.core.templates import prompt_file, render
from align_mcp.core.text import strip_code_fence
from align_mcp.errors import InvalidInput
from align_mcp.llm.client import (
    CallFailed,
    Message,
    ModelClient,
    OnRequest,
    OnWait,
    ReplyError,
    Sleep,
    UnusableReply,
    json_schema_format,
    open_client,
)
from align_mcp.llm.endpoint import Endpoint

if TYPE_CHECKING:
    import httpx2

# The system message is the start of every request's shared prefix: constant, so providers cache it.
_PRINCIPLES = prompt_file("judge_system.md").strip()
SYSTEM_PROMPT = (
    _PRINCIPLES
    + "\n\nReply with a single JSON object that matches the given schema: first `reasoning` (two to "
    "five sentences grounded in the example), then `score`. Output nothing else."
)
SYSTEM_PROMPT_NO_REASONING = (
    _PRINCIPLES + "\n\nReply with a single JSON object that matches the given schema, holding only `score`. "
    "Output nothing else."
)


def response_schema(score_type: ScoreType, reasoning: bool) -> dict[str, Any]:
    """The verdict's `json_schema` response format: `reasoning` first (when asked for), then `score`."""
    score: dict[str, Any]
    if score_type.kind in ("categorical", "pairwise"):
        score = {"type": "string", "enum": [str(v) for v in score_type.values()]}
    else:
        score = {"type": "integer", "enum": score_type.values()}
    properties: dict[str, Any] = {}
    if reasoning:
        properties["reasoning"] = {"type": "string", "description": "Why, grounded in the example"}
    properties["score"] = {**score, "description": score_type.describe()}
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return json_schema_format("judgement", schema)


def build_messages(template: str, run: Mapping[str, Any], reasoning: bool) -> list[dict[str, str]]:
    """A constant system message, then the rendered template: instructions first, the example last."""
    system = SYSTEM_PROMPT if reasoning else SYSTEM_PROMPT_NO_REASONING
    return [{"role": "system", "content": system}, {"role": "user", "content": render(template, run)}]


def cache_key(
    endpoint: Endpoint, settings: JudgeSettings, messages: list[dict[str, str]], schema: dict[str, Any]
) -> str:
    """Identity of a judge call: any change to prompt, example, endpoint, model or sampling settings misses the
    cache (the same model name served elsewhere may judge differently)."""
    material = json.dumps(
        {
            "endpoint": endpoint.base_url.rstrip("/").lower(),
            "model": endpoint.model,
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "messages": messages,
            "schema": schema,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()


# ---- the verdict ------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """One example judged: its score and reasoning, or the error that kept it from being judged; what it cost."""

    score: Score | None
    reasoning: str | None
    error: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    latency_ms: float | None = None
    calls: int = 0
    """HTTP requests made (retries and the re-ask included)."""
    reasks: int = 0
    waited_s: float = 0.0
    """Seconds waited between attempts (rate limits, backoff)."""


MAX_REASONING_CHARS = 8000
"""The most of a verdict's reasoning kept in results and the cache; the rest is cut, and the cut is said."""


def cut_reasoning(reasoning: str) -> str:
    """`reasoning` within MAX_REASONING_CHARS, ending with a note of how much was cut when it was longer."""
    if len(reasoning) <= MAX_REASONING_CHARS:
        return reasoning
    return (
        reasoning[:MAX_REASONING_CHARS]
        + f" … [cut: the judge's reasoning was {len(reasoning):,} characters; the first {MAX_REASONING_CHARS:,} "
        "are kept]"
    )


def parse_reply(content: str | None, score_type: ScoreType) -> tuple[Score, str | None]:
    """The score (within the score type) and reasoning of a judge reply; ReplyError says what is wrong."""
    if not content or not content.strip():
        raise ReplyError("empty reply")
    try:
        data = json.loads(strip_code_fence(content))
    except json.JSONDecodeError:
        raise ReplyError(f"reply is not JSON: {content[:120]!r}") from None
    if not isinstance(data, dict) or "score" not in data:
        raise ReplyError(f"reply has no `score` field: {content[:120]!r}")
    try:
        score = score_type.validate_score(data["score"])
    except InvalidInput as e:
        raise ReplyError(
            f"score {data['score']!r} is outside the score type ({score_type.describe()})"
        ) from e
    reasoning = data.get("reasoning")
    return score, cut_reasoning(reasoning) if isinstance(reasoning, str) else None


class Judge:
    """The judge over a model client: every example is asked in the verdict schema and its reply parsed."""

    def __init__(self, client: ModelClient, score_type: ScoreType, reasoning: bool = True) -> None:
        self.client = client
        self.score_type = score_type
        self.schema = response_schema(score_type, reasoning)

    def parse(self, content: str | None) -> tuple[Score, str | None]:
        return parse_reply(content, self.score_type)

    async def judge_example(self, messages: list[Message]) -> Verdict:
        """Judge one example. Failures that concern it alone (after the client's retries, or an unparseable
        reply asked again once) become a Verdict with `error`; a judge nobody can reach raises AlignError."""
        started = time.perf_counter()
        try:
            answer = await self.client.structured(messages, self.schema, self.parse)
        except CallFailed as e:
            unusable = isinstance(e, UnusableReply)
            error = f"unparseable reply after a re-ask: {e.problem}" if unusable else e.problem
            usage = e.usage
            replied = unusable or bool(e.replies)  # token counts exist only when a reply came back
        else:
            score, reasoning = answer.value
            usage = answer.usage
            return Verdict(
                score=score,
                reasoning=reasoning,
                error=None,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                latency_ms=(time.perf_counter() - started) * 1000,
                calls=usage.requests,
                reasks=usage.reasks,
                waited_s=usage.waited_s,
            )
        return Verdict(
            score=None,
            reasoning=None,
            error=error,
            prompt_tokens=usage.prompt_tokens if replied else None,
            completion_tokens=usage.completion_tokens if replied else None,
            cached_tokens=usage.cached_tokens if replied else None,
            latency_ms=(time.perf_counter() - started) * 1000,
            calls=usage.requests,
            reasks=usage.reasks,
            waited_s=usage.waited_s,
        )


@asynccontextmanager
async def open_judge(
    endpoint: Endpoint,
    settings: JudgeSettings,
    score_type: ScoreType,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    sleep: Sleep = anyio.sleep,
    on_wait: OnWait | None = None,
    on_request: OnRequest | None = None,
) -> AsyncIterator[Judge]:
    """A Judge over its own model client, closed on exit even when the caller is cancelled."""
    async with open_client(
        endpoint, settings, transport=transport, sleep=sleep, on_wait=on_wait, on_request=on_request
    ) as client:
        yield Judge(client, score_type, settings.reasoning)
