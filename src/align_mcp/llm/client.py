"""Every model call's one path: retries, Retry-After, timeouts, error mapping, usage, structured replies."""

from __future__ import annotations

import email.utils
import functools
import json
import random
import re
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
    import ssl

    import httpx2
    from openai import APIConnectionError, APIStatusError, AsyncOpenAI

T = TypeVar("T")

Message = dict[str, str]
Sleep = Callable[[float], Awaitable[None]]
"""Waits the given number of seconds; injected so that tests never wait for a backoff."""
Clock = Callable[[], float]
"""The current time as a Unix timestamp (for Retry-After given as an HTTP date)."""

MAX_RETRY_AFTER_S = 60.0
MAX_REPLY_BYTES = 16 * 2**20
"""The most of a reply body read: a larger one ends the request as an error (16 MiB)."""
MAX_REASK_ECHO_CHARS = 2000
"""The most of an unusable reply shown back to the model when it is asked again."""
REASK = (
    "That reply was invalid ({problem}). Reply again with only the JSON object that matches the schema{hint}."
)
OnWait = Callable[[float, str], Awaitable[None]]
"""Told before each wait between attempts: (seconds, why), e.g. (30.0, "HTTP 429 from the judge")."""
OnRequest = Callable[[], None]
"""Called before every HTTP request (retries and re-asks included), e.g. to take it from a budget; whatever it
raises ends the call there, before the request is sent."""

REDACTED = "[redacted]"
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s'\"]+")
_ILLEGAL_HEADER = re.compile(
    r"(?i)(illegal header value)\s*(?:b?'(?:[^'\\]|\\.)*'|b?\"(?:[^\"\\]|\\.)*\"|\S+)"
)
_MIN_SECRET_CHARS = 6


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """`text` without any of `secrets` (e.g. the API key), bearer tokens, or header values quoted in an error."""
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_CHARS:
            text = text.replace(secret, REDACTED)
    text = _ILLEGAL_HEADER.sub(rf"\1 {REDACTED}", text)
    return _BEARER.sub(rf"\1 {REDACTED}", text)


class BadBody(Exception):
    """An HTTP 200 whose body is not a chat completion (empty, truncated, an HTML page, too large)."""


@dataclass
class Usage:
    """What calls cost: every HTTP request (transport retries and re-asks included) and the tokens billed."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasks: int = 0
    """Requests that asked again after an unusable reply (counted in `requests` too)."""
    waited_s: float = 0.0
    """Seconds spent waiting between attempts (rate limits, backoff)."""

    def add(self, other: Usage) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.reasks += other.reasks
        self.waited_s += other.waited_s


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


def request_body(
    endpoint: Endpoint,
    settings: JudgeSettings,
    messages: Sequence[Message],
    response_format: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON body of one chat completion request: the same online and in a Batch API input line."""
    body: dict[str, Any] = {
        "model": endpoint.model,
        "messages": messages,
        "temperature": settings.temperature,
        "response_format": response_format,
    }
    if settings.max_tokens is not None:
        body["max_completion_tokens"] = settings.max_tokens
    return body


class ModelClient:
    """An OpenAI-compatible chat endpoint called with one set of settings; share one across a batch of calls.

    `transport` (an httpx2 async transport) replaces the network, so tests can answer in-process; `sleep`
    performs every backoff wait and `clock` dates Retry-After, so tests never wait for real; `on_wait` is told
    of each wait before it starts (to report a rate limit in progress); `on_request` is called before every
    request is sent (to count it against a budget, which may refuse it by raising).

    `settings.timeout` bounds each request as a whole, reading the reply included. Every text that comes back
    from the HTTP layer or the model (errors, reply content) has the API key and header values redacted.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        settings: JudgeSettings,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        sleep: Sleep = anyio.sleep,
        clock: Clock = time.time,
        on_wait: OnWait | None = None,
        on_request: OnRequest | None = None,
    ) -> None:
        # Imported here: start-up never pays for the openai client.
        import httpx2
        import openai

        problem = config.api_key_problem(endpoint.api_key)
        if problem is not None:
            raise JudgeConfigError(f"The judge API key {problem}, so it cannot be sent in an HTTP header.")
        self.endpoint = endpoint
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        self.on_wait = on_wait
        self.on_request = on_request
        self._secrets = (endpoint.api_key,)
        self._connect_error = httpx2.ConnectError
        self._transport_errors = (httpx2.TransportError,)
        self._read_timeout = httpx2.TimeoutException
        self._failures = (openai.APIConnectionError, openai.APIStatusError)  # timeouts are connection errors
        self._raw = httpx2.Response
        http_client = (
            openai.DefaultAsyncHttpxClient(transport=transport)
            if transport is not None
            else openai.DefaultAsyncHttpxClient(verify=tls_context())
        )
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

    def redact(self, text: str) -> str:
        """`text` without the API key or any header value."""
        return redact(text, self._secrets)

    async def complete(self, messages: Sequence[Message], response_format: Mapping[str, Any]) -> Completion:
        """One chat completion, retried with backoff on rate limits, server errors, timeouts, dropped
        connections and 200 replies that are not a completion (empty, truncated, an HTML page).

        Raises JudgeUnreachable / JudgeConfigError for failures that would hit every call alike (a refused
        connection, a rejected key, an unknown model), and CallFailed for those that concern this call only.
        """
        body = request_body(self.endpoint, self.settings, messages, response_format)
        attempts = self.settings.max_retries + 1
        usage = Usage()
        problem = ""
        for attempt in range(attempts):
            if self.on_request is not None:
                self.on_request()
            usage.requests += 1
            wait: float | None = None
            try:
                # The whole request, the reply's last byte included: a judge that dribbles its reply times out.
                with anyio.fail_after(self.settings.timeout):
                    content, tokens = await self._post(body)
            except TimeoutError:
                problem = f"timed out after {self.settings.timeout:g}s"
            except self._failures as e:
                problem, wait = self.failure(e, last=attempt == attempts - 1, usage=usage)
            except self._read_timeout:
                problem = f"timed out after {self.settings.timeout:g}s"
            except self._transport_errors as e:  # the connection failed while the reply was being read
                problem = f"connection failed ({self.redact(str(e)) or type(e).__name__})"
            except BadBody as e:
                problem = f"HTTP 200 from the judge with {e}"
            else:
                usage.prompt_tokens += tokens.prompt_tokens
                usage.completion_tokens += tokens.completion_tokens
                usage.cached_tokens += tokens.cached_tokens
                return Completion(None if content is None else self.redact(content), usage)
            if attempt < attempts - 1:
                seconds = min(backoff_seconds(attempt) if wait is None else wait, MAX_RETRY_AFTER_S)
                usage.waited_s += seconds
                if self.on_wait is not None:
                    await self.on_wait(seconds, problem)
                await self.sleep(seconds)
        raise CallFailed(f"{problem} (after {attempts} attempt{'s' if attempts > 1 else ''})", usage)

    async def _post(self, body: dict[str, Any]) -> tuple[str | None, Usage]:
        """Send one request and read its reply, at most MAX_REPLY_BYTES of it: (message content, tokens)."""
        # client.post skips the SDK's per-call TypedDict transform of the params (plain JSON here): about 1 ms of
        # CPU per request. The body is streamed and read here, bounded, rather than read whole and parsed by the
        # SDK, which fails with a traceback on a 200 that is not a completion.
        streaming = True
        response = await self.client.post("/chat/completions", body=body, cast_to=self._raw, stream=streaming)
        # cast_to=Response makes the SDK return the response itself: this narrows the SDK's union type.
        if not isinstance(response, self._raw):  # pragma: no cover
            raise TypeError(f"expected an HTTP response, got {type(response).__name__}")
        try:
            raw = bytearray()
            async for chunk in response.aiter_bytes():
                raw += chunk
                if len(raw) > MAX_REPLY_BYTES:
                    raise BadBody(f"a body larger than {MAX_REPLY_BYTES:,} bytes")
        finally:
            await response.aclose()
        return completion_of(bytes(raw), self.redact)

    def failure(
        self, e: APIConnectionError | APIStatusError, *, last: bool, usage: Usage
    ) -> tuple[str, float | None]:
        """The one error mapping. Returns (problem, seconds the server asked to wait) for a failure worth a
        retry; raises AlignError for one that stops every call, CallFailed for one that ends this call.

        Every text taken from the error is redacted, and the SDK's exception is not chained (`from None`): its
        message and body may quote the key, and a chained cause reaches any traceback that is logged.
        """
        import openai

        base_url = self.endpoint.base_url
        if isinstance(e, openai.APITimeoutError):
            return f"timed out after {self.settings.timeout:g}s", None
        if isinstance(e, openai.APIConnectionError):
            # A dropped connection's cause often has an empty message (ReadError('')): name its type then.
            cause = e.__cause__ or e
            detail = self.redact(str(cause)) or type(cause).__name__
            # Refused or unresolvable: nothing can be judged, so stop. A connection dropped mid-reply concerns
            # this request only: the call ends as an error and the others go on.
            if last and isinstance(cause, self._connect_error):
                raise JudgeUnreachable(
                    f"Cannot reach the judge at {base_url}: {detail}. Check that the server is running and the "
                    "base URL is right."
                ) from None
            return f"connection failed ({detail})", None
        if isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError):
            raise JudgeConfigError(
                f"The judge at {base_url} rejected the API key ({e.status_code}). Check OPENAI_API_KEY / "
                f"{config.ENV_JUDGE_API_KEY}."
            ) from None
        if isinstance(e, openai.NotFoundError):
            raise JudgeConfigError(
                f"The judge at {base_url} answered 404 for model {self.endpoint.model!r}. Check the model name "
                f"({config.ENV_JUDGE_MODEL}) and the base URL (it usually ends in /v1)."
            ) from None
        status = e.status_code
        if status in (408, 429) or status >= 500:
            return f"HTTP {status} from the judge", retry_after_seconds(e.response.headers, self.clock)
        raise CallFailed(f"HTTP {status} from the judge: {self.redact(e.message)}", usage) from None

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
            usage.reasks += 1
            echo = (completion.content or "")[:MAX_REASK_ECHO_CHARS]
            convo = [
                *messages,
                {"role": "assistant", "content": echo},
                {"role": "user", "content": REASK.format(problem=rejected[-1], hint=reask_hint)},
            ]
        raise UnusableReply(str(rejected[-1]), usage, rejected)


def _tokens(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _excerpt(raw: bytes, redact: Callable[[str], str]) -> str:
    text = " ".join(raw[:200].decode("utf-8", errors="replace").split())
    return repr(redact(text)[:80])


def completion_of(raw: bytes, redact: Callable[[str], str] = lambda text: text) -> tuple[str | None, Usage]:
    """The message content (None when there is none) and token usage of a chat completion body; BadBody says
    what the body is instead (empty, truncated JSON, an HTML page, JSON of another shape), quoting its start."""
    text = raw.strip()
    if not text:
        raise BadBody("an empty body")
    try:
        data = json.loads(text)
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        if text[:1] == b"<":
            kind = "an HTML page" if re.match(rb"(?i)<(!doctype html|html|head|body)", text) else "markup"
        elif text[:1] in (b"{", b"["):
            kind = "truncated or invalid JSON"
        else:
            kind = "a body that is not JSON"
        raise BadBody(f"{kind}: {_excerpt(text, redact)}") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list):
        raise BadBody(f"JSON that is not a chat completion: {_excerpt(text, redact)}")
    usage = Usage()
    tokens = data.get("usage")
    if isinstance(tokens, dict):
        usage.prompt_tokens = _tokens(tokens, "prompt_tokens")
        usage.completion_tokens = _tokens(tokens, "completion_tokens")
        details = tokens.get("prompt_tokens_details")
        if isinstance(details, dict):
            usage.cached_tokens = _tokens(details, "cached_tokens")
    first = choices[0] if choices else None
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    return (content if isinstance(content, str) else None), usage


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS context every model client of this process verifies servers with (the CAs httpx2 would load).

    Building one reads the CA bundle, about 30 ms, and a client is opened per alignment run on the event loop of
    a shared server: a new context each time stopped every other request for that long."""
    import httpx2

    return httpx2.create_ssl_context()


@asynccontextmanager
async def open_client(
    endpoint: Endpoint,
    settings: JudgeSettings,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    sleep: Sleep = anyio.sleep,
    on_wait: OnWait | None = None,
    on_request: OnRequest | None = None,
) -> AsyncIterator[ModelClient]:
    """A ModelClient, closed on exit even when the caller is cancelled."""
    client = ModelClient(
        endpoint, settings, transport=transport, sleep=sleep, on_wait=on_wait, on_request=on_request
    )
    try:
        yield client
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
