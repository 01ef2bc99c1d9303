"""A fake OpenAI-compatible judge server on loopback: scripted for tests, timed for benchmarks, simulated for demos.

Tests script it reply by reply (verdicts, latency, 429/500, garbage, dropped connections); benchmarks give it a
fixed latency; ``python -m align_mcp.testing.fakejudge --simulated`` serves a deterministic rule-based judge that reads
the prompt's instructions, so editing a judge prompt offline visibly changes its verdicts.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from align_mcp.testing.completions import JsonDict, Reply, prompt_text, schema_properties, section
from align_mcp.testing.simulated import numbers, overlap, simulated_responder

__all__ = [
    "FakeJudgeServer",
    "ReceivedRequest",
    "Reply",
    "completion_body",
    "dribble",
    "echo_key",
    "empty_body",
    "garbage",
    "hang",
    "html_page",
    "main",
    "numbers",
    "overlap",
    "prompt_text",
    "rate_limited",
    "reset",
    "section",
    "server_error",
    "simulated_responder",
    "truncated_json",
    "verdict",
    "when_shown",
    "wrong_shape",
]

Responder = Callable[[JsonDict], Reply]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"


@dataclass
class ReceivedRequest:
    """One HTTP request the fake judge received; header names are lower-cased, ``body`` is the parsed JSON or None."""

    path: str
    headers: dict[str, str]
    body: Any
    received_at: float
    method: str = "POST"


def verdict(score: object, reasoning: str = "The output is correct.") -> Reply:
    """A well-formed judgement with this score."""
    return Reply(score=score, reasoning=reasoning)


def rate_limited(retry_after: float = 1) -> Reply:
    """HTTP 429 with a ``Retry-After`` header and an OpenAI rate-limit error body."""
    seconds = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
    return Reply(
        status=429,
        headers={"Retry-After": seconds},
        body=_error_body(
            f"Rate limit reached for fake-judge. Please try again in {seconds}s.",
            "requests",
            "rate_limit_exceeded",
        ),
    )


def server_error(status: int = 500) -> Reply:
    """An HTTP error status (500 by default) with an OpenAI server-error body."""
    return Reply(
        status=status,
        body=_error_body(f"The fake judge returned HTTP {status} as scripted.", "server_error", None),
    )


def garbage(text: str = "not json at all") -> Reply:
    """A 200 completion whose message content is not JSON."""
    return Reply(content=text)


def wrong_shape() -> Reply:
    """A 200 completion whose message content is JSON without a ``score``."""
    return Reply(content=json.dumps({"reasoning": "The output looks fine.", "verdict": "pass"}))


def hang(seconds: float) -> Reply:
    """Answer (a pass verdict) only after ``seconds``: a slow judge or, with a shorter client timeout, a timeout."""
    return Reply(delay=seconds)


def reset() -> Reply:
    """Close the connection without sending any response."""
    return Reply(reset=True)


def empty_body() -> Reply:
    """HTTP 200 with an empty body."""
    return Reply(body=b"")


def html_page() -> Reply:
    """HTTP 200 with an HTML page, as a proxy or captive portal in front of the judge may send."""
    page = (
        b"<!DOCTYPE html><html><head><title>Gateway</title></head><body><h1>Please sign in</h1></body></html>"
    )
    return Reply(body=page, headers={"Content-Type": "text/html; charset=utf-8"})


def truncated_json() -> Reply:
    """HTTP 200 with a chat completion cut off mid-way (a complete response of incomplete JSON)."""
    return Reply(
        body=b'{"id": "chatcmpl-cut", "object": "chat.completion", "choices": [{"index": 0, "message": {"ro',
        headers={"Content-Type": "application/json"},
    )


def dribble(interval: float = 0.5) -> Reply:
    """A pass verdict whose body is sent one byte every ``interval`` seconds (each read is quick; the whole is
    not)."""
    return Reply(dribble=interval)


def echo_key() -> Reply:
    """HTTP 400 whose error message quotes the API key the request carried."""
    return Reply(status=400, echo_key=True)


def when_shown(
    rules: Sequence[tuple[str, str, Reply, Reply]], otherwise: Responder | None = None
) -> Responder:
    """A responder that answers per example, depending on what else the prompt shows.

    Each rule is (example, text, then, without): a request whose judged output (the last ``<outputs>`` section)
    contains ``example`` gets ``then`` when ``text`` occurs anywhere in the prompt, else ``without``. The first
    matching rule wins; a request no rule matches goes to ``otherwise`` (a pass verdict when None).
    """

    def respond(body: JsonDict) -> Reply:
        prompt = prompt_text(body)
        judged = section(prompt, "outputs") or ""
        for example, text, then, without in rules:
            if example in judged:
                return then if text in prompt else without
        return otherwise(body) if otherwise is not None else Reply()

    return respond


def _error_body(message: str, type_: str, code: str | None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


def _tokens(text: str) -> int:
    return len(text) // 4


def _reasoning_requested(body: JsonDict) -> bool:
    """False only when the request's schema has properties but no ``reasoning``."""
    props = schema_properties(body)
    return props is None or "reasoning" in props


def _completion(body: JsonDict, reply: Reply, n: int) -> bytes:
    if reply.content is not None:
        content = reply.content
    elif _reasoning_requested(body):
        content = json.dumps({"reasoning": reply.reasoning, "score": reply.score})
    else:
        content = json.dumps({"score": reply.score})
    prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else _tokens(prompt_text(body))
    completion_tokens = reply.completion_tokens if reply.completion_tokens is not None else _tokens(content)
    payload = {
        "id": f"chatcmpl-fake{n:06d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model") or "fake-judge"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    return json.dumps(payload).encode()


def completion_body(body: JsonDict, reply: Reply, n: int) -> bytes:
    """The chat completion the fake judge sends for `reply` to the request `body` (its n-th reply)."""
    return _completion(body, reply, n)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeJudgeServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and the client's
        # delayed ACK add ~40 ms to every response on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request log line on stderr."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Send a complete response; Content-Length always, so keep-alive connections stay usable."""
        extra = dict(headers or {})
        self.send_response(status)
        if not any(k.lower() == "content-type" for k in extra):
            self.send_header("Content-Type", "application/json")
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def send_slowly(self, status: int, body: bytes, interval: float, stopping: threading.Event) -> None:
        """Send the headers at once, then the body one byte every `interval` seconds (until stopped)."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        for i in range(len(body)):
            if stopping.wait(interval):
                self.abort()
                return
            self.wfile.write(body[i : i + 1])
            self.wfile.flush()

    def abort(self) -> None:
        """Drop the connection without a response: SO_LINGER 0 makes the close a TCP reset."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _not_found(self) -> None:
        message = (
            f"Unknown request {self.command} {self.path}; the fake judge serves "
            f"POST {CHAT_PATH} and GET {MODELS_PATH}."
        )
        self.send(404, _error_body(message, "invalid_request_error", "unknown_url"))

    def _handle(self) -> None:
        raw = self._read_body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        path = self.path.split("?", 1)[0]
        is_chat = self.command == "POST" and path == CHAT_PATH
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.record(self.command, path, headers, body, is_chat)
        if is_chat:
            if not isinstance(body, dict):
                self.send(
                    400, _error_body("The request body must be a JSON object.", "invalid_request_error", None)
                )
                return
            self.server.answer_chat(self, body)
        elif self.command == "GET" and path == MODELS_PATH:
            self.send(200, self.server.models_body())
        else:
            self._not_found()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class FakeJudgeServer(ThreadingHTTPServer):
    """A local OpenAI-compatible Chat Completions server that answers as scripted.

    Each chat request is answered by the next ``script`` reply if any is left, else by ``responder(body)`` if set,
    else with a pass verdict. Use it as a context manager (``with FakeJudgeServer() as srv:``) or call
    ``start()`` / ``stop()``; point a client at ``srv.base_url``. Every request is recorded in ``srv.requests``.
    """

    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(
        self,
        script: Iterable[Reply] = (),
        responder: Responder | None = None,
        *,
        port: int = 0,
        latency: float = 0.0,
        model: str = "fake-judge",
    ) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.script: list[Reply] = list(script)
        self.responder: Responder | None = responder
        self.latency = latency
        self.model = model
        self.requests: list[ReceivedRequest] = []
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give a client, e.g. ``http://127.0.0.1:54321/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_bodies(self) -> list[JsonDict]:
        """The JSON bodies of the chat completion requests received, in order."""
        with self._lock:
            return [r.body for r in self.requests if r.path == CHAT_PATH and isinstance(r.body, dict)]

    def push(self, *replies: Reply) -> None:
        """Append replies to the script; they answer the next chat requests in order."""
        with self._lock:
            self.script.extend(replies)

    def start(self) -> FakeJudgeServer:
        """Serve in a background daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-judge", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed replies, drop open connections and close the listening socket."""
        self._stopping.set()
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.server_close()

    def __enter__(self) -> FakeJudgeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # socketserver hooks: track live connections so stop() can end idle keep-alive handlers promptly.
    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-reply (a timeout, a cancelled task, stop()) is expected; report anything else."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def record(self, method: str, path: str, headers: dict[str, str], body: Any, is_chat: bool) -> None:
        """Store one received request (called by the request handler)."""
        received = ReceivedRequest(path, headers, body, time.monotonic(), method)
        with self._lock:
            self.requests.append(received)
            if is_chat:
                self.calls += 1

    def models_body(self) -> bytes:
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "align-mcp"}
        return json.dumps({"object": "list", "data": [model]}).encode()

    def _next_reply(self, body: JsonDict) -> Reply:
        with self._lock:
            if self.script:
                return self.script.pop(0)
            responder = self.responder
        return responder(body) if responder is not None else Reply()

    def answer_chat(self, handler: _Handler, body: JsonDict) -> None:
        """Answer one chat completion request as the script, responder or default says.

        The request stops counting as in flight once its answer is decided, before it is written: a client reads
        the answer and may send its next request before this thread would get back to its bookkeeping."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        answered = False

        def done() -> None:
            nonlocal answered
            if not answered:
                answered = True
                with self._lock:
                    self.in_flight -= 1

        try:
            try:
                reply = self._next_reply(body)
            except Exception as e:  # a broken test responder: surface it to the client, not a silent hang
                message = f"The fake judge's responder raised {e!r}."
                handler.send(500, _error_body(message, "server_error", None))
                return
            delay = reply.delay + self.latency
            if delay > 0 and self._stopping.wait(delay):
                handler.abort()
                return
            if reply.dribble <= 0:  # a dribbled reply is in flight while it trickles out
                done()
            if reply.reset:
                handler.abort()
                return
            if reply.echo_key:
                auth = handler.headers.get("Authorization", "")
                key = auth.removeprefix("Bearer ").strip()
                message = f"Invalid request for key {key}: the model does not accept this response_format."
                handler.send(400, _error_body(message, "invalid_request_error", None))
            elif reply.dribble > 0:
                body_bytes = _completion(body, reply, next(self._ids))
                handler.send_slowly(200, body_bytes, reply.dribble, self._stopping)
            elif reply.body is not None:
                headers = dict(reply.headers)
                if reply.body[:1] not in (b"{", b"[") and not any(
                    k.lower() == "content-type" for k in headers
                ):
                    headers["Content-Type"] = "text/plain; charset=utf-8"
                handler.send(reply.status, reply.body, headers)
            elif reply.status != 200:
                message = f"The fake judge returned HTTP {reply.status} as scripted."
                handler.send(reply.status, _error_body(message, "server_error", None), reply.headers)
            else:
                handler.send(200, _completion(body, reply, next(self._ids)), reply.headers)
        finally:
            done()


def _always_pass(body: JsonDict) -> Reply:
    return Reply()


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: ``python -m align_mcp.testing.fakejudge [--simulated] [--port N] [--latency S]``."""
    parser = argparse.ArgumentParser(
        prog="python -m align_mcp.testing.fakejudge",
        description=(
            "Serve a fake OpenAI-compatible judge on 127.0.0.1 for offline demos and tests. Prints the base URL "
            "to use as ALIGN_MCP_JUDGE_BASE_URL (any API key is accepted), then serves until Ctrl-C."
        ),
    )
    parser.add_argument(
        "--simulated",
        action="store_true",
        help="Judge with the deterministic rule-based simulated judge (reacts to the prompt's instructions); "
        "without it every output passes.",
    )
    parser.add_argument("--port", type=int, default=0, help="Port to listen on (default: a free port).")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="Seconds to wait before answering each request (default: 0).",
    )
    args = parser.parse_args(argv)
    if args.latency < 0:
        parser.error(f"--latency must be zero or more seconds, got {args.latency}.")
    responder = simulated_responder if args.simulated else _always_pass
    try:
        server = FakeJudgeServer(responder=responder, port=args.port, latency=args.latency)
    except OSError as e:
        parser.error(
            f"cannot listen on 127.0.0.1:{args.port} ({e.strerror}); pick another --port or 0 for any."
        )
    # Stop cleanly on SIGTERM too (e.g. `kill` from a demo script), as on Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with server:
        print(server.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
