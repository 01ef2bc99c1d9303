"""Judge requests through an OpenAI-compatible Batch API: JSONL input parts, upload, polling, result lines.

The request body of each line is the online judge's (`client.request_body`), so a batch judges exactly what an
online call would. A reply that cannot be parsed becomes that example's error: a batch cannot ask again, and the
example can be judged again online afterwards (resume with retry_errors).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from align_mcp import config
from align_mcp.core.models import JudgeSettings
from align_mcp.errors import InvalidInput, JudgeConfigError, JudgeFailed, JudgeUnreachable
from align_mcp.llm.client import (
    BadBody,
    Message,
    ModelClient,
    ReplyError,
    Sleep,
    Usage,
    backoff_seconds,
    completion_of,
    request_body,
)
from align_mcp.llm.endpoint import Endpoint

if TYPE_CHECKING:
    from openai.types import Batch

T = TypeVar("T")

BATCH_URL: Final = "/v1/chat/completions"
COMPLETION_WINDOW: Final = "24h"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
"""Batch statuses after which nothing more happens: merge what came back."""
BATCH_PRICE_FACTOR = 0.5
"""A batch request's price as a share of the same request online: OpenAI bills Batch API tokens at half price.
Applied only to a price known for the model (none is invented); ALIGN_MCP_BATCH_PRICE_FACTOR overrides it for
a provider that discounts otherwise."""
ENV_PRICE_FACTOR = "ALIGN_MCP_BATCH_PRICE_FACTOR"
ENV_POLL_S = "ALIGN_MCP_BATCH_POLL_S"
FIRST_POLL_S = 5.0
MAX_POLL_S = 60.0
API_ATTEMPTS = 4
"""Tries of each Batch API call (upload, create, retrieve, download) on rate limits and server errors."""


@dataclass(frozen=True)
class Limits:
    """Where input files are split: the Batch API takes at most 50,000 requests and 200 MB per file."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 2**20


@dataclass(frozen=True)
class Part:
    """One JSONL input file written: its path, its requests' custom ids in order, and its size in bytes."""

    index: int
    path: Path
    custom_ids: list[str]
    size: int


@dataclass(frozen=True)
class BatchState:
    """A provider batch as last retrieved: status, request counts and the files it produced."""

    id: str
    status: str
    completed: int
    failed: int
    total: int
    output_file_id: str | None
    error_file_id: str | None
    errors: str | None
    """The batch's own errors (a failed validation), joined."""


@dataclass(frozen=True)
class Outcome:
    """One result line: the request's custom id and its parsed value, or the error that stands for it."""

    custom_id: str
    value: object | None
    error: str | None
    usage: Usage


def price_factor() -> float:
    """BATCH_PRICE_FACTOR, or ALIGN_MCP_BATCH_PRICE_FACTOR when set (a number between 0 and 1)."""
    raw = os.environ.get(ENV_PRICE_FACTOR)
    if not raw:
        return BATCH_PRICE_FACTOR
    try:
        factor = float(raw)
    except ValueError:
        factor = -1.0
    if not 0 <= factor <= 1:
        raise InvalidInput(f"{ENV_PRICE_FACTOR}={raw!r} must be a number between 0 and 1, e.g. 0.5.")
    return factor


def batch_cost(online_cost: float | None) -> float | None:
    """What requests that would cost `online_cost` online cost in a batch; None when no price is known."""
    return None if online_cost is None else online_cost * price_factor()


def poll_seconds() -> float:
    """The first wait between polls (ALIGN_MCP_BATCH_POLL_S, default 5 s); later waits double up to 60 s."""
    raw = os.environ.get(ENV_POLL_S)
    if not raw:
        return FIRST_POLL_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise InvalidInput(f"{ENV_POLL_S}={raw!r} must be a positive number of seconds, e.g. 5.")
    return seconds


def request_line(custom_id: str, body: Mapping[str, Any]) -> bytes:
    """One line of a Batch API input file."""
    line = {"custom_id": custom_id, "method": "POST", "url": BATCH_URL, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def write_parts(
    requests: Iterable[tuple[str, list[Message]]],
    endpoint: Endpoint,
    settings: JudgeSettings,
    response_format: Mapping[str, Any],
    directory: Path,
    limits: Limits = Limits(),
    first_index: int = 0,
) -> Iterator[Part]:
    """Stream (custom id, messages) into JSONL input files split at `limits`; each Part is yielded once its file
    is closed, so a caller that uploads and deletes it holds one file at a time. A custom id already in the part
    being written is left out (the API wants them unique per file; identical requests share one answer)."""
    index = first_index
    out = None
    ids: list[str] = []
    in_part: set[str] = set()
    size = 0
    try:
        for custom_id, messages in requests:
            if custom_id in in_part:
                continue
            line = request_line(custom_id, request_body(endpoint, settings, messages, response_format))
            if out is not None and (len(ids) >= limits.max_requests or size + len(line) > limits.max_bytes):
                out.close()
                yield Part(index, directory / f"batch-{index:04d}.jsonl", ids, size)
                index, out, ids, size = index + 1, None, [], 0
                in_part = set()
            if out is None:
                out = open(directory / f"batch-{index:04d}.jsonl", "wb")  # noqa: SIM115  # closed per part
            out.write(line)
            ids.append(custom_id)
            in_part.add(custom_id)
            size += len(line)
        if out is not None:
            out.close()
            out = None
            yield Part(index, directory / f"batch-{index:04d}.jsonl", ids, size)
    finally:
        if out is not None:
            out.close()


def parse_line(line: bytes | str, parse: Callable[[str | None], T]) -> Outcome:
    """A line of a batch's output or error file as an Outcome: the reply parsed by `parse` (the online path's
    parser), or the error that stands for the request (a refused request, an unparseable reply)."""
    try:
        data = json.loads(line)
    except ValueError:
        raise BadBody(f"a result line that is not JSON: {str(line)[:120]!r}") from None
    custom_id = data.get("custom_id") if isinstance(data, dict) else None
    if not isinstance(custom_id, str):
        raise BadBody(f"a result line without a custom_id: {str(line)[:120]!r}")
    error = data.get("error")
    response = data.get("response")
    if isinstance(error, dict):
        message = error.get("message") or error.get("code") or "failed"
        return Outcome(custom_id, None, f"the batch request failed: {message}", Usage(requests=1))
    if not isinstance(response, dict):
        return Outcome(custom_id, None, "the batch returned no response for this request", Usage(requests=1))
    status = response.get("status_code")
    body = response.get("body")
    if status != 200:
        detail = body.get("error", {}).get("message") if isinstance(body, dict) else None
        return Outcome(
            custom_id, None, f"HTTP {status} from the judge in the batch: {detail or 'no message'}", Usage(1)
        )
    try:
        content, usage = completion_of(json.dumps(body).encode())
    except BadBody as e:
        return Outcome(custom_id, None, f"HTTP 200 from the judge in the batch with {e}", Usage(requests=1))
    usage.requests = 1
    try:
        value = parse(content)
    except ReplyError as e:
        return Outcome(custom_id, None, f"unparseable reply in the batch (not asked again): {e}", usage)
    return Outcome(custom_id, value, None, usage)


def _state(batch: Batch) -> BatchState:
    counts = batch.request_counts
    errors = batch.errors.data if batch.errors is not None else None
    return BatchState(
        id=batch.id,
        status=batch.status,
        completed=counts.completed if counts else 0,
        failed=counts.failed if counts else 0,
        total=counts.total if counts else 0,
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        errors="; ".join(e.message or e.code or "" for e in errors) if errors else None,
    )


class BatchApi:
    """The Batch API of the judge's endpoint, over a ModelClient's SDK client (its key, timeouts and TLS)."""

    def __init__(self, client: ModelClient) -> None:
        self.client = client
        self.api = client.client

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """One Batch API call, retried on rate limits, server errors and dropped connections; mapped errors."""
        import openai

        base = self.client.endpoint.base_url
        problem = ""
        for attempt in range(API_ATTEMPTS):
            try:
                return await call()
            except openai.APIConnectionError as e:
                problem = self.client.redact(str(e.__cause__ or e)) or type(e).__name__
                if attempt == API_ATTEMPTS - 1:
                    raise JudgeUnreachable(
                        f"Cannot reach the Batch API at {base} ({what}): {problem}. Check that the server is "
                        "running; the batch ids are stored, so resuming picks up where this stopped."
                    ) from None
            except openai.APIStatusError as e:
                status = e.status_code
                if status in (401, 403):
                    raise JudgeConfigError(
                        f"The judge at {base} rejected the API key ({status}) for the Batch API. Check "
                        f"OPENAI_API_KEY / {config.ENV_JUDGE_API_KEY}."
                    ) from None
                if status in (404, 405):
                    raise JudgeConfigError(
                        f"The judge at {base} answered {status} to {what}: it does not serve the Batch API "
                        "(/v1/files and /v1/batches). Judge without batch, or point the judge at a server that "
                        "implements it."
                    ) from None
                problem = f"HTTP {status}: {self.client.redact(e.message)}"
                if not (status in (408, 409, 429) or status >= 500):
                    raise JudgeFailed(f"The Batch API at {base} refused {what}: {problem}.") from None
            if attempt < API_ATTEMPTS - 1:
                await self.client.sleep(backoff_seconds(attempt))
        raise JudgeFailed(f"The Batch API at {base} failed {what} {API_ATTEMPTS} times: {problem}.")

    async def upload(self, path: Path) -> str:
        """Upload an input file (streamed from disk, never read whole); its file id."""

        async def call() -> str:
            with open(path, "rb") as f:
                uploaded = await self.api.files.create(file=(path.name, f), purpose="batch")
            return uploaded.id

        return await self._call(f"the upload of {path.name}", call)

    async def create(self, input_file_id: str, metadata: Mapping[str, str]) -> BatchState:
        async def call() -> BatchState:
            batch = await self.api.batches.create(
                input_file_id=input_file_id,
                endpoint=BATCH_URL,
                completion_window=COMPLETION_WINDOW,
                metadata=dict(metadata),
            )
            return _state(batch)

        return await self._call("creating a batch", call)

    async def retrieve(self, batch_id: str) -> BatchState:
        async def call() -> BatchState:
            return _state(await self.api.batches.retrieve(batch_id))

        return await self._call(f"reading batch {batch_id}", call)

    async def cancel(self, batch_id: str) -> BatchState:
        async def call() -> BatchState:
            return _state(await self.api.batches.cancel(batch_id))

        return await self._call(f"cancelling batch {batch_id}", call)

    async def lines(self, file_id: str) -> AsyncIterator[str]:
        """The lines of a result file, streamed (never held whole)."""
        import openai

        try:
            async with self.api.files.with_streaming_response.content(file_id) as response:
                async for line in response.iter_lines():
                    if line.strip():
                        yield line
        except (openai.APIConnectionError, openai.APIStatusError) as e:
            detail = self.client.redact(str(e))
            raise JudgeUnreachable(
                f"Reading result file {file_id} from {self.client.endpoint.base_url} failed: {detail}. The batch "
                "ids are stored: resume to read it again (results already stored are not stored twice)."
            ) from None


async def wait_for(
    api: BatchApi,
    batch_id: str,
    *,
    sleep: Sleep,
    on_state: Callable[[BatchState], Awaitable[None]],
    first_wait: float | None = None,
) -> BatchState:
    """Poll a batch until it ends (completed, failed, expired, cancelled), waiting longer each time (doubling up
    to MAX_POLL_S); `on_state` is told every state read."""
    wait = first_wait if first_wait is not None else poll_seconds()
    while True:
        state = await api.retrieve(batch_id)
        await on_state(state)
        if state.status in TERMINAL:
            return state
        await sleep(wait)
        wait = min(wait * 2, MAX_POLL_S)
