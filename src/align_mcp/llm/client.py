"""Every model call's one path: retries, Retry-After, timeouts, error mapping, usage, structured replies."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from align_mcp import config
from align_mcp.core.models import JudgeSettings
from align_mcp.errors import JudgeConfigError, JudgeUnreachable
from align_mcp.llm.endpoint import Endpoint

if TYPE_CHECKING:
    import httpx2
    from openai import APIConnectionError, APIStatusError, AsyncOpenAI

T = TypeVar("T")

Message = dict[str, str]
Sleep = Callable[[float], Awaitable[None]]
"""Waits the given number of seconds; injected so that tests never wait for a backoff."""
Clock = Callable[[], float]
"""The current time as a Unix timestamp (for Retry-After given as an HTTP date)."""

MAX_RETRY_AFTER_S = 60.0
REASK = (
    "That reply was invalid ({problem}). Reply again with only the JSON object that matches the schema{hint}."
)


@dataclass
class Usage:
    """What calls cost: every HTTP request (transport retries and re-asks included) and the tokens billed."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens


class ReplyError(ValueError):
    """The model answered, but not with what was asked; the message says what is wrong and is shown to it."""


class CallFailed(Exception):
    """A call failed in a way that concerns it alone (timeout, server errors after every retry, a refused
    request, unusable replies): that call ends with `problem`, and other calls go on.

    `replies` holds what was wrong with each reply that came back, for callers that keep partial answers.
    """

    def __init__(self, problem: str, usage: Usage, replies: Sequence[ReplyError] = ()) -> None:
        super().__init__(problem)
        self.problem = problem
        self.usage = usage
        self.replies = list(replies)


class UnusableReply(CallFailed):
    """The model answered, and was asked again, and neither answer could be used."""


@dataclass(frozen=True)
class Completion:
    """One chat completion: the message content (None when there is none) and what it cost."""

    content: str | None
    usage: Usage


@dataclass(frozen=True)
class Answer(Generic[T]):
    """A structured reply, parsed, and what it cost (the re-ask included)."""

    value: T
    usage: Usage


def retry_after_seconds(headers: Mapping[str, str] | None, clock: Clock = time.time) -> float | None:
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
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - clock())


def backoff_seconds(attempt: int) -> float:
    """The wait before retry `attempt + 1` when the server names none: exponential, capped, jittered."""
    return min(8.0, 0.5 * 2.0**attempt) * (0.5 + random.random() / 2)


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A strict `json_schema` response format for a JSON schema."""
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


class ModelClient:
    """An OpenAI-compatible chat endpoint called with one set of settings; share one across a batch of calls.

    `transport` (an httpx2 async transport) replaces the network, so tests can answer in-process; `sleep`
    performs every backoff wait and `clock` dates Retry-After, so tests never wait for real.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        settings: JudgeSettings,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        sleep: Sleep = anyio.sleep,
        clock: Clock = time.time,
    ) -> None:
        # Imported here: start-up never pays for the openai client.
        import httpx2
        import openai
        from openai.types.chat import ChatCompletion

        self.endpoint = endpoint
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        self._connect_error = httpx2.ConnectError
        self._completion = ChatCompletion
        self._failures = (openai.APIConnectionError, openai.APIStatusError)  # timeouts are connection errors
        http_client = openai.DefaultAsyncHttpxClient(transport=transport) if transport is not None else None
        self.client: AsyncOpenAI = openai.AsyncOpenAI(
            api_key=endpoint.api_key,
            base_url=endpoint.base_url,
            timeout=settings.timeout,
            max_retries=0,  # retries are ours: Retry-After, the error mapping and the usage count see each one
            http_client=http_client,
        )

    async def aclose(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def complete(self, messages: Sequence[Message], response_format: Mapping[str, Any]) -> Completion:
        """One chat completion, retried with backoff on rate limits, server errors, timeouts and dropped
        connections.

        Raises JudgeUnreachable / JudgeConfigError for failures that would hit every call alike (a refused
        connection, a rejected key, an unknown model), and CallFailed for those that concern this call only.
        """
        body: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": messages,
            "temperature": self.settings.temperature,
            "response_format": response_format,
        }
        if self.settings.max_tokens is not None:
            body["max_completion_tokens"] = self.settings.max_tokens
        attempts = self.settings.max_retries + 1
        usage = Usage()
        problem = ""
        for attempt in range(attempts):
            usage.requests += 1
            try:
                # client.post skips the SDK's per-call TypedDict transform of the params (plain JSON here):
                # about 1 ms of CPU per request, which is most of the client's cost at high request rates.
                response = await self.client.post("/chat/completions", body=body, cast_to=self._completion)
            except self._failures as e:
                problem, wait = self.failure(e, last=attempt == attempts - 1, usage=usage)
            else:
                tokens = response.usage
                if tokens is not None:
                    usage.prompt_tokens += tokens.prompt_tokens
                    usage.completion_tokens += tokens.completion_tokens
                    if tokens.prompt_tokens_details is not None:
                        usage.cached_tokens += tokens.prompt_tokens_details.cached_tokens or 0
                content = response.choices[0].message.content if response.choices else None
                return Completion(content, usage)
            if attempt < attempts - 1:
                await self.sleep(min(backoff_seconds(attempt) if wait is None else wait, MAX_RETRY_AFTER_S))
        raise CallFailed(f"{problem} (after {attempts} attempt{'s' if attempts > 1 else ''})", usage)

    def failure(
        self, e: APIConnectionError | APIStatusError, *, last: bool, usage: Usage
    ) -> tuple[str, float | None]:
        """The one error mapping. Returns (problem, seconds the server asked to wait) for a failure worth a
        retry; raises AlignError for one that stops every call, CallFailed for one that ends this call."""
        import openai

        base_url = self.endpoint.base_url
        if isinstance(e, openai.APITimeoutError):
            return f"timed out after {self.settings.timeout:g}s", None
        if isinstance(e, openai.APIConnectionError):
            # A dropped connection's cause often has an empty message (ReadError('')): name its type then.
            cause = e.__cause__ or e
            detail = str(cause) or type(cause).__name__
            # Refused or unresolvable: nothing can be judged, so stop. A connection dropped mid-reply concerns
            # this request only: the call ends as an error and the others go on.
            if last and isinstance(cause, self._connect_error):
                raise JudgeUnreachable(
                    f"Cannot reach the judge at {base_url}: {detail}. Check that the server is running and the "
                    "base URL is right."
                ) from e
            return f"connection failed ({detail})", None
        if isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError):
            raise JudgeConfigError(
                f"The judge at {base_url} rejected the API key ({e.status_code}). Check OPENAI_API_KEY / "
                f"{config.ENV_JUDGE_API_KEY}."
            ) from e
        if isinstance(e, openai.NotFoundError):
            raise JudgeConfigError(
                f"The judge at {base_url} answered 404 for model {self.endpoint.model!r}. Check the model name "
                f"({config.ENV_JUDGE_MODEL}) and the base URL (it usually ends in /v1)."
            ) from e
        status = e.status_code
        if status in (408, 429) or status >= 500:
            return f"HTTP {status} from the judge", retry_after_seconds(e.response.headers, self.clock)
        raise CallFailed(f"HTTP {status} from the judge: {e.message}", usage) from e

    async def structured(
        self,
        messages: Sequence[Message],
        response_format: Mapping[str, Any],
        parse: Callable[[str | None], T],
        *,
        reask_hint: str = "",
        may_reask: Callable[[], bool] | None = None,
    ) -> Answer[T]:
        """Ask for a reply in `response_format` and parse it; a reply `parse` rejects (ReplyError) is shown
        to the model with the problem and asked again once.

        `reask_hint` ends the re-ask's instruction (e.g. ", classifying each run once"); `may_reask` is
        consulted before the re-ask (to take it from a budget, say) and False ends the call there. Raises
        UnusableReply when no reply could be used, CallFailed when a request failed, and the fatal errors of
        `complete`.
        """
        usage = Usage()
        rejected: list[ReplyError] = []
        convo = list(messages)
        for attempt in range(2):
            try:
                completion = await self.complete(convo, response_format)
            except CallFailed as e:
                usage.add(e.usage)
                e.usage, e.replies = usage, rejected
                raise
            usage.add(completion.usage)
            try:
                return Answer(parse(completion.content), usage)
            except ReplyError as e:
                rejected.append(e)
            if attempt == 1 or (may_reask is not None and not may_reask()):
                break
            convo = [
                *messages,
                {"role": "assistant", "content": completion.content or ""},
                {"role": "user", "content": REASK.format(problem=rejected[-1], hint=reask_hint)},
            ]
        raise UnusableReply(str(rejected[-1]), usage, rejected)


@asynccontextmanager
async def open_client(
    endpoint: Endpoint,
    settings: JudgeSettings,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    sleep: Sleep = anyio.sleep,
) -> AsyncIterator[ModelClient]:
    """A ModelClient, closed on exit even when the caller is cancelled."""
    client = ModelClient(endpoint, settings, transport=transport, sleep=sleep)
    try:
        yield client
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
