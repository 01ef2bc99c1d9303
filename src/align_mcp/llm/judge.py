"""The judge's protocol: the verdict schema, the messages, one judge call with retries, and its verdict."""

from __future__ import annotations

import email.utils
import hashlib
import json
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from align_mcp import config
from align_mcp.core.models import JudgeSettings, Score, ScoreType
from align_mcp.core.templates import prompt_file, render
from align_mcp.errors import InvalidInput, JudgeConfigError, JudgeUnreachable
from align_mcp.llm.endpoint import Endpoint

if TYPE_CHECKING:
    from openai import AsyncOpenAI

MAX_RETRY_AFTER_S = 60.0

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
    score: dict[str, Any]
    if score_type.kind == "categorical":
        score = {"type": "string", "enum": list(score_type.labels or [])}
    else:
        score = {"type": "integer", "enum": score_type.values()}
    properties: dict[str, Any] = {}
    if reasoning:
        properties["reasoning"] = {"type": "string", "description": "Why, grounded in the example"}
    properties["score"] = {**score, "description": score_type.describe()}
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "judgement",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            },
        },
    }


def build_messages(template: str, run: Mapping[str, Any], reasoning: bool) -> list[dict[str, str]]:
    """A constant system message, then the rendered template: instructions first, the example last."""
    system = SYSTEM_PROMPT if reasoning else SYSTEM_PROMPT_NO_REASONING
    return [{"role": "system", "content": system}, {"role": "user", "content": render(template, run)}]


def cache_key(
    model: str, settings: JudgeSettings, messages: list[dict[str, str]], schema: dict[str, Any]
) -> str:
    """Identity of a judge call: any change to prompt, example, model or sampling settings misses the cache."""
    material = json.dumps(
        {
            "model": model,
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "messages": messages,
            "schema": schema,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()


# ---- the call ---------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    score: Score | None
    reasoning: str | None
    error: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    latency_ms: float | None = None
    calls: int = 0


class ReplyError(ValueError):
    """The judge replied, but not with a valid verdict."""


def parse_reply(content: str | None, score_type: ScoreType) -> tuple[Score, str | None]:
    if not content or not content.strip():
        raise ReplyError("empty reply")
    text = content.strip()
    if text.startswith("```"):
        text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text)
    try:
        data = json.loads(text)
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
    return score, reasoning if isinstance(reasoning, str) else None


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` / `Retry-After` (delta seconds or an HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


class Judge:
    """An async judge bound to one endpoint and settings; share one instance across an alignment run."""

    def __init__(self, endpoint: Endpoint, settings: JudgeSettings, score_type: ScoreType) -> None:
        from openai import AsyncOpenAI  # imported here: start-up never pays for the openai client

        self.endpoint = endpoint
        self.settings = settings
        self.score_type = score_type
        self.schema = response_schema(score_type, settings.reasoning)
        self.client: AsyncOpenAI = AsyncOpenAI(
            api_key=endpoint.api_key, base_url=endpoint.base_url, timeout=settings.timeout, max_retries=0
        )

    async def aclose(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> Judge:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def judge(self, messages: list[dict[str, str]]) -> Verdict:
        """Judge one example. Transport failures retry with backoff; one re-ask on an unparseable reply."""
        started = time.perf_counter()
        total_calls = 0
        tokens = [0, 0, 0]
        convo = list(messages)
        problem = ""
        for attempt in range(2):
            content, usage, calls = await self._call(convo)
            total_calls += calls
            for i, value in enumerate(usage):
                tokens[i] += value
            try:
                score, reasoning = parse_reply(content, self.score_type)
            except ReplyError as e:
                problem = str(e)
                if attempt == 0:
                    convo = [
                        *messages,
                        {"role": "assistant", "content": content or ""},
                        {
                            "role": "user",
                            "content": f"That reply was invalid ({problem}). Reply again with only the JSON object "
                            "that matches the schema.",
                        },
                    ]
                continue
            return Verdict(
                score=score,
                reasoning=reasoning,
                error=None,
                prompt_tokens=tokens[0],
                completion_tokens=tokens[1],
                cached_tokens=tokens[2],
                latency_ms=(time.perf_counter() - started) * 1000,
                calls=total_calls,
            )
        return Verdict(
            score=None,
            reasoning=None,
            error=f"unparseable reply after a re-ask: {problem}",
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
            cached_tokens=tokens[2],
            latency_ms=(time.perf_counter() - started) * 1000,
            calls=total_calls,
        )

    async def _call(self, messages: list[dict[str, str]]) -> tuple[str | None, tuple[int, int, int], int]:
        """One logical call with transport retries. Returns (content, (prompt, completion, cached) tokens, calls).

        Raises JudgeUnreachable / JudgeConfigError for failures that would hit every example alike, and
        PerExampleFailure for those that concern this example only (recorded as its `error`).
        """
        import httpx2
        import openai
        from openai.types.chat import ChatCompletion

        kwargs: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": messages,
            "temperature": self.settings.temperature,
            "response_format": self.schema,
        }
        if self.settings.max_tokens is not None:
            kwargs["max_completion_tokens"] = self.settings.max_tokens
        attempts = self.settings.max_retries + 1
        calls = 0
        last_problem = ""
        for attempt in range(attempts):
            calls += 1
            wait: float | None = None
            try:
                # client.post skips the SDK's per-call TypedDict transform of the params (plain JSON here):
                # about 1 ms of CPU per request, which is most of the client's cost at high request rates.
                response = await self.client.post("/chat/completions", body=kwargs, cast_to=ChatCompletion)
            except openai.APITimeoutError:
                last_problem = f"timed out after {self.settings.timeout:g}s"
            except openai.APIConnectionError as e:
                # A dropped connection's cause often has an empty message (ReadError('')): name its type then.
                cause = e.__cause__ or e
                detail = str(cause) or type(cause).__name__
                last_problem = f"connection failed ({detail})"
                # Refused or unresolvable: nothing can be judged, so stop the run. A connection dropped
                # mid-reply concerns this request only: the example ends as an error and the run goes on.
                if attempt == attempts - 1 and isinstance(cause, httpx2.ConnectError):
                    raise JudgeUnreachable(
                        f"Cannot reach the judge at {self.endpoint.base_url}: {detail}. Check that the "
                        "server is running and the base URL is right; results so far are kept — resume the "
                        "alignment run to finish."
                    ) from e
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                raise JudgeConfigError(
                    f"The judge at {self.endpoint.base_url} rejected the API key ({e.status_code}). Check "
                    f"OPENAI_API_KEY / {config.ENV_JUDGE_API_KEY}; results so far are kept."
                ) from e
            except openai.NotFoundError as e:
                raise JudgeConfigError(
                    f"The judge at {self.endpoint.base_url} answered 404 for model {self.endpoint.model!r}. Check "
                    f"the model name ({config.ENV_JUDGE_MODEL}) and the base URL (it usually ends in /v1)."
                ) from e
            except openai.APIStatusError as e:
                status = e.status_code
                if status == 429 or status >= 500 or status == 408:
                    last_problem = f"HTTP {status} from the judge"
                    wait = retry_after_seconds(e.response.headers)
                else:
                    raise PerExampleFailure(f"HTTP {status} from the judge: {e.message}", calls) from e
            else:
                usage = response.usage
                cached = 0
                if usage is not None and usage.prompt_tokens_details is not None:
                    cached = usage.prompt_tokens_details.cached_tokens or 0
                content = response.choices[0].message.content if response.choices else None
                return (
                    content,
                    (usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0, cached),
                    calls,
                )
            if attempt < attempts - 1:
                if wait is None:
                    wait = min(8.0, 0.5 * 2**attempt) * (0.5 + random.random() / 2)
                await anyio.sleep(min(wait, MAX_RETRY_AFTER_S))
        raise PerExampleFailure(
            f"{last_problem} (after {attempts} attempt{'s' if attempts > 1 else ''})", calls
        )


class PerExampleFailure(Exception):
    def __init__(self, problem: str, calls: int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.calls = calls


async def judge_example(judge: Judge, messages: list[dict[str, str]]) -> Verdict:
    """Judge one example; per-example failures become a Verdict with `error`, never an exception."""
    started = time.perf_counter()
    try:
        return await judge.judge(messages)
    except PerExampleFailure as e:
        return Verdict(
            score=None,
            reasoning=None,
            error=e.problem,
            latency_ms=(time.perf_counter() - started) * 1000,
            calls=e.calls,
        )
