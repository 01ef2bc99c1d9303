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
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "FakeJudgeServer",
    "ReceivedRequest",
    "Reply",
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
    "wrong_shape",
]

JsonDict = dict[str, Any]
Responder = Callable[[JsonDict], "Reply"]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
SIMULATED_PREFIX = "[simulated judge] "


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


def _error_body(message: str, type_: str, code: str | None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


def _tokens(text: str) -> int:
    return len(text) // 4


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


def _section_span(text: str, tag: str) -> tuple[int, int, int, int] | None:
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
    span = _section_span(text, tag)
    return None if span is None else text[span[1] : span[2]].strip()


def _schema_properties(body: JsonDict) -> dict[str, Any] | None:
    """The ``properties`` of the request's ``response_format`` JSON schema, if it has one."""
    fmt = body.get("response_format")
    json_schema = fmt.get("json_schema") if isinstance(fmt, dict) else None
    schema = json_schema.get("schema") if isinstance(json_schema, dict) else None
    props = schema.get("properties") if isinstance(schema, dict) else None
    return props if isinstance(props, dict) else None


def _reasoning_requested(body: JsonDict) -> bool:
    """False only when the request's schema has properties but no ``reasoning``."""
    props = _schema_properties(body)
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
        """Answer one chat completion request as the script, responder or default says."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
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
            with self._lock:
                self.in_flight -= 1


# --- The simulated judge -------------------------------------------------------------------------------------
#
# A deterministic stand-in for an LLM judge, for the offline demo. Its base behaviour is a naive judge: it fails
# refusals and hand-offs as "does not answer", and otherwise passes outputs that share enough words with the
# reference output. Two instructions in the prompt switch on stricter rules: checking numbers against the
# reference, and accepting a hand-off when the reference also declines.

_HANDOFF = re.compile(
    r"\bi\s*(?:can'?t|cannot|can not|am not able|'?m not able|am unable|'?m unable)\b"
    r"|\b(?:not able|unable) to (?:help|give|advise|assist|answer|provide|offer|check|see)\b"
    r"|\bconnect you with\b|\bcontact our (?:team|staff|station)\b|\bplease contact\b"
    r"|\boutside (?:of )?what i can\b|\bnot something i can\b",
    re.IGNORECASE,
)
_NUMBER_RULE_WORDS = re.compile(
    r"\b(?:numbers?|numeric(?:al)?|prices?|amounts?|figures?|durations?|quantit(?:y|ies)|fees?)\b",
    re.IGNORECASE,
)
_NUMBER_RULE_ANCHORS = re.compile(
    r"\b(?:reference|match(?:es|ed|ing)?|exact(?:ly)?|identical|agree\w*|contradict\w*|consistent|differ\w*"
    r"|wrong|incorrect|(?:in)?accura\w+|check\w*|verif\w+|compar\w+)\b",
    re.IGNORECASE,
)
_HANDOFF_RULE = re.compile(
    r"refus|declin|hand.?off|hand(?:s|ing|ed)?[ -](?:it |them |the (?:customer|user) )?(?:off|over)"
    r"|escalat|out[ -]of[ -]scope",
    re.IGNORECASE,
)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?;])\s+|\n\s*\n|\n\s*(?:[-*+]|\d+[.)])\s+")
_NUMBER = re.compile(r"(?<![\w.])([$€£]\s?)?(\d+(?:[.,:]\d+)*)(?:[\s-]*(%|[a-z]+))?", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers him his how i if in into is it its itself just let me more most my no nor not now of off on once only or
    other our ours out over own per please same she should so some such than that the their theirs them then there
    these they this those through to too under until up very was we were what when where which while who whom why
    will with would yes you your yours hi hello thanks thank best regards dear team pedalpoint""".split()  # noqa: SIM905
)
# Fail an answer below this share of the reference output's key words as not answering what was asked.
OVERLAP_THRESHOLD = 0.3


@dataclass(frozen=True)
class _Rules:
    numbers: bool
    handoffs: bool


def _instruction_text(text: str) -> str:
    for tag in ("inputs", "outputs", "reference_outputs"):
        span = _section_span(text, tag)
        if span is not None:
            text = text[: span[0]] + text[span[3] :]
    return text


def _rules(text: str) -> _Rules:
    instructions = _instruction_text(text)
    sentences = [" ".join(s.split()) for s in _SENTENCE_BREAK.split(instructions)]
    numbers = any(_NUMBER_RULE_WORDS.search(s) and _NUMBER_RULE_ANCHORS.search(s) for s in sentences)
    return _Rules(numbers=numbers, handoffs=_HANDOFF_RULE.search(instructions) is not None)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if value is None or isinstance(value, bool):
        return []
    return [str(value)]


def _section_value(text: str, tag: str) -> str | None:
    raw = section(text, tag)
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw.replace("’", "'")
    return "\n".join(_strings(parsed)).replace("’", "'")


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _key_words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 1}


def overlap(output: str, reference: str) -> float:
    """Share of the reference output's key words (stemmed, stopwords dropped) that the output also uses."""
    ref = _key_words(reference)
    return len(ref & _key_words(output)) / len(ref) if ref else 1.0


def _normalize_number(raw: str) -> str:
    if ":" in raw:
        hours, _, minutes = raw.partition(":")
        return str(int(hours)) if minutes.strip("0") == "" else f"{int(hours)}:{minutes}"
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", raw):
        raw = raw.replace(",", "")
    raw = raw.replace(",", ".")
    try:
        value = float(raw)
    except ValueError:
        return raw
    return str(int(value)) if value.is_integer() else str(value)


_UNITS = frozenset(
    """minute minutes min mins hour hours hrs h day days week weeks month months year years km kilometres kilometers
    euro euros eur percent am pm bikes bike people riders business""".split()  # noqa: SIM905
)
_SINGULAR_UNITS = frozenset(["minute", "hour", "day", "week", "month", "year", "euro"])


def numbers(text: str) -> dict[str, str]:
    """The numbers a text states, normalized (``€25.00`` -> ``25``, ``9:00`` -> ``9``), mapped to how they read."""
    found: dict[str, str] = {}
    for match in _NUMBER.finditer(text):
        currency, digits, unit = match.group(1) or "", match.group(2), match.group(3) or ""
        display = currency.strip() + digits
        if unit == "%":
            display += "%"
        elif unit.lower() in _UNITS:
            # "a 45-minute grace period" reads as "45 minutes" in a verdict.
            plural = unit.lower() in _SINGULAR_UNITS and _normalize_number(digits) != "1"
            display += " " + unit + ("s" if plural else "")
        found.setdefault(_normalize_number(digits), display)
    return found


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _score_values(body: JsonDict) -> tuple[object, object]:
    """The (pass, fail) scores the request's schema allows: 1/0 for binary, ends of an enum or integer range."""
    props = _schema_properties(body)
    score = props.get("score") if props is not None else None
    if isinstance(score, dict):
        enum = score.get("enum")
        if isinstance(enum, list) and enum:
            if all(isinstance(v, int) for v in enum):
                return max(enum), min(enum)
            return enum[0], enum[-1]
        low, high = score.get("minimum"), score.get("maximum")
        if isinstance(low, int) and isinstance(high, int):
            return high, low
    return 1, 0


def _judge(text: str) -> tuple[bool, str]:
    rules = _rules(text)
    output = _section_value(text, "outputs")
    if output is None:
        return True, "The prompt has no <outputs> section to judge, so the output passes by default."
    reference = _section_value(text, "reference_outputs")
    if reference is not None and reference.strip() in ("", "null", "{}"):
        reference = None
    output_hands_off = _HANDOFF.search(output) is not None
    reference_hands_off = reference is not None and _HANDOFF.search(reference) is not None

    if output_hands_off:
        if rules.handoffs and reference_hands_off:
            return True, (
                "The request is out of scope and the output declines it and points the customer elsewhere, as "
                "the reference output also does; declining is the correct answer here."
            )
        if rules.handoffs and reference is not None:
            return False, (
                "The output hands the customer off, but this request is in scope: the reference output answers "
                f'it ("{_quote(reference)}").'
            )
        return False, (
            f'The output does not answer the question; it declines or hands the customer off ("{_quote(output)}").'
        )
    if reference is None:
        return True, "The output answers the question; there is no reference output to compare it with."
    if rules.handoffs and reference_hands_off:
        return False, (
            "The reference output declines this request as out of scope, but the output answers it anyway "
            f'("{_quote(output)}").'
        )
    if rules.numbers:
        stated, expected = numbers(output), numbers(reference)
        wrong = [v for k, v in stated.items() if k not in expected]
        missing = [v for k, v in expected.items() if k not in stated]
        if wrong:
            says = f"the reference says {', '.join(missing)}" if missing else "the reference does not say so"
            return (
                False,
                f"The output states {', '.join(wrong)} but {says}; a wrong number makes it incorrect.",
            )
        if missing:
            return False, f"The output leaves out {', '.join(missing)}, which the reference output gives."
    share = overlap(output, reference)
    if share < OVERLAP_THRESHOLD:
        return False, (
            f"The output shares little with the reference output ({share:.0%} of its key words); it does not "
            "address what was asked."
        )
    checked = " and its numbers match the reference" if rules.numbers and numbers(output) else ""
    return True, (
        f"The output covers the reference output's key points ({share:.0%} of its key words){checked}, answers "
        "the question, and contradicts nothing in the reference."
    )


def simulated_responder(body: JsonDict) -> Reply:
    """A deterministic rule-based judge for offline demos; every reasoning starts with ``[simulated judge] ``.

    Base behaviour: fail refusals and hand-offs as not answering the question; otherwise pass an output that
    shares at least 30% of the reference output's key words, and fail one that does not. Two instructions in the
    prompt (anywhere outside the example, matched case-insensitively) make it stricter:

    - a sentence naming numbers / prices / amounts / figures / durations / fees / quantities together with a
      word such as "reference", "match", "exact", "wrong" or "check": every number in the output must appear in
      the reference output and vice versa;
    - a mention of refusing, declining, hand-offs, escalation or out-of-scope requests: a hand-off passes when
      the reference output also declines, and an answer fails when the reference output declines.
    """
    passed, reasoning = _judge(prompt_text(body))
    pass_score, fail_score = _score_values(body)
    return Reply(score=pass_score if passed else fail_score, reasoning=SIMULATED_PREFIX + reasoning)


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
