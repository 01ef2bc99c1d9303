"""A fake OpenAI Batch API on loopback, for tests and the batch benchmark: files, batches, scripted endings.

It serves ``POST /v1/files`` (purpose ``batch``), ``GET /v1/files/{id}/content``, ``POST /v1/batches``,
``GET /v1/batches/{id}`` and ``POST /v1/batches/{id}/cancel``. Files live on disk in a temporary directory, so a
million-request batch never sits in memory. A batch goes validating → in_progress → its ending (``completed`` by
default, or ``expired`` / ``failed``) over successive reads, answering its lines within the read that ends it
(or, with ``background``, in a thread while reads see ``finalizing``); ``hold`` keeps it in progress until ``release()``.
Each input line is answered like the fake judge answers a chat request: by ``responder(body)`` (a ``Reply``,
default a pass verdict). A reply with a status other than 200 becomes an error-file line, as the real API does.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from align_mcp.testing.completions import JsonDict, Reply
from align_mcp.testing.fakejudge import completion_body

__all__ = ["FakeBatch", "FakeBatchServer"]

Responder = Callable[[JsonDict], Reply]
_CHUNK = 1 << 20


@dataclass
class FakeBatch:
    """One batch as the fake holds it."""

    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, str]
    status: str = "validating"
    reads: int = 0
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "object": "batch",
                "endpoint": self.endpoint,
                "errors": {"object": "list", "data": self.errors} if self.errors else None,
                "input_file_id": self.input_file_id,
                "completion_window": "24h",
                "status": self.status,
                "output_file_id": self.output_file_id,
                "error_file_id": self.error_file_id,
                "created_at": int(time.time()),
                "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
                "metadata": self.metadata,
            }
        ).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeBatchServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request log line."""

    def send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status: int, message: str) -> None:
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
        self.send(status, json.dumps(body).encode())

    def body_to(self, out: Any) -> int:
        """Copy the request body to `out` in chunks (Content-Length or chunked); its size."""
        n = 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return n
                left = size
                while left:
                    data = self.rfile.read(min(left, _CHUNK))
                    out.write(data)
                    left -= len(data)
                n += size
                self.rfile.readline()
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(left, _CHUNK))
            if not data:
                break
            out.write(data)
            left -= len(data)
            n += len(data)
        return n

    def json_body(self) -> Any:
        with tempfile.SpooledTemporaryFile() as buf:
            self.body_to(buf)
            buf.seek(0)
            raw = buf.read()
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return None

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.record("GET", path)
        if m := re.fullmatch(r"/v1/files/([^/]+)/content", path):
            file = self.server.file_path(m.group(1))
            if file is None:
                self.error(404, f"No such file: {m.group(1)}")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/jsonl")
            self.send_header("Content-Length", str(file.stat().st_size))
            self.end_headers()
            with open(file, "rb") as f:
                shutil.copyfileobj(f, self.wfile, _CHUNK)
        elif m := re.fullmatch(r"/v1/batches/([^/]+)", path):
            batch = self.server.read_batch(m.group(1))
            if batch is None:
                self.error(404, f"No such batch: {m.group(1)}")
            else:
                self.send(200, batch)
        else:
            self.error(404, f"Unknown request GET {path}")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.record("POST", path)
        if path == "/v1/files":
            self.send(200, self.server.upload(self))
        elif path == "/v1/batches":
            body = self.json_body()
            if not isinstance(body, dict) or not isinstance(body.get("input_file_id"), str):
                self.error(400, "input_file_id is required")
                return
            if self.server.file_path(body["input_file_id"]) is None:
                self.error(404, f"No such file: {body['input_file_id']}")
                return
            self.send(200, self.server.create_batch(body))
        elif m := re.fullmatch(r"/v1/batches/([^/]+)/cancel", path):
            self.json_body()
            batch = self.server.cancel(m.group(1))
            if batch is None:
                self.error(404, f"No such batch: {m.group(1)}")
            else:
                self.send(200, batch)
        else:
            self.error(404, f"Unknown request POST {path}")


class FakeBatchServer(ThreadingHTTPServer):
    """The fake Batch API. `responder` answers each request line (default: a pass verdict); `ending` is how
    batches end (``completed``, ``expired``: only the first `expire_after` lines are answered and the rest go to
    the error file as ``batch_expired``; ``failed``: validation fails, no line is answered); `in_progress_reads`
    is how many reads a batch stays in progress; `hold` keeps it there until `release()`; `background` answers
    its lines in a thread (for benchmarks: a read never waits for a whole batch)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        ending: str = "completed",
        expire_after: int = 0,
        in_progress_reads: int = 1,
        hold: bool = False,
        background: bool = False,
        port: int = 0,
    ) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.responder = responder
        self.ending = ending
        self.expire_after = expire_after
        self.in_progress_reads = in_progress_reads
        self.background = background
        self.released = threading.Event()
        if not hold:
            self.released.set()
        self.dir = Path(tempfile.mkdtemp(prefix="fakebatch-"))
        self.files: dict[str, Path] = {}
        self.batches: dict[str, FakeBatch] = {}
        self.uploads = 0
        self.requests: list[tuple[str, str]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> FakeBatchServer:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> FakeBatchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def release(self) -> None:
        """Let held batches finish."""
        self.released.set()

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def file_path(self, file_id: str) -> Path | None:
        with self._lock:
            return self.files.get(file_id)

    def _new_file(self) -> tuple[str, Path]:
        with self._lock:
            file_id = f"file-fake{next(self._ids):06d}"
            path = self.dir / file_id
            self.files[file_id] = path
        return file_id, path

    def upload(self, handler: _Handler) -> bytes:
        """Store a multipart upload's file part on disk (streamed); the file object."""
        file_id, path = self._new_file()
        raw = path.with_suffix(".upload")
        with open(raw, "wb") as out:
            handler.body_to(out)
        boundary = handler.headers.get("Content-Type", "").split("boundary=")[-1].strip('"').encode()
        with open(raw, "rb") as f:
            head = f.read(65536)
            at = head.find(b'filename="')
            start = head.find(b"\r\n\r\n", at) + 4
            size = raw.stat().st_size
            tail_len = min(size, 65536)
            f.seek(size - tail_len)
            tail = f.read()
            end = size - tail_len + tail.rfind(b"\r\n--" + boundary)
            f.seek(start)
            with open(path, "wb") as out:
                left = end - start
                while left > 0:
                    data = f.read(min(left, _CHUNK))
                    out.write(data)
                    left -= len(data)
        raw.unlink()
        with self._lock:
            self.uploads += 1
        return json.dumps(
            {
                "id": file_id,
                "object": "file",
                "bytes": path.stat().st_size,
                "created_at": int(time.time()),
                "filename": "input.jsonl",
                "purpose": "batch",
                "status": "processed",
            }
        ).encode()

    def create_batch(self, body: JsonDict) -> bytes:
        with self._lock:
            batch_id = f"batch_fake{next(self._ids):06d}"
            batch = FakeBatch(
                batch_id, body["input_file_id"], str(body.get("endpoint")), body.get("metadata") or {}
            )
            self.batches[batch_id] = batch
        return batch.body()

    def cancel(self, batch_id: str) -> bytes | None:
        with self._lock:
            batch = self.batches.get(batch_id)
        if batch is None:
            return None
        if batch.status not in ("completed", "failed", "expired", "cancelled"):
            self._finish(batch, "cancelled")
        return batch.body()

    def read_batch(self, batch_id: str) -> bytes | None:
        """A batch's state, advanced one step by the read."""
        with self._lock:
            batch = self.batches.get(batch_id)
        if batch is None:
            return None
        batch.reads += 1
        if batch.status == "validating":
            if self.ending == "failed":
                batch.errors = [
                    {"code": "invalid_request", "message": "The input file is invalid.", "line": 1}
                ]
                batch.status = "failed"
            else:
                batch.status = "in_progress"
                batch.total = self._count(batch)
        elif (
            batch.status == "in_progress" and batch.reads > self.in_progress_reads and self.released.is_set()
        ):
            if (
                self.background
            ):  # answered meanwhile, as a provider does: reads see `finalizing` until it ends
                batch.status = "finalizing"
                threading.Thread(target=self._finish, args=(batch, self.ending), daemon=True).start()
            else:
                self._finish(batch, self.ending)
        return batch.body()

    def _count(self, batch: FakeBatch) -> int:
        with open(self.files[batch.input_file_id], "rb") as f:
            return sum(1 for line in f if line.strip())

    def _finish(self, batch: FakeBatch, status: str) -> None:
        """Answer the batch's lines into an output and an error file (streamed), and end it with `status`."""
        out_id, out_path = self._new_file()
        err_id, err_path = self._new_file()
        n = 0
        with (
            open(self.files[batch.input_file_id], "rb") as lines,
            open(out_path, "wb") as out,
            open(err_path, "wb") as err,
        ):
            for raw in lines:
                if not raw.strip():
                    continue
                request = json.loads(raw)
                custom_id = request["custom_id"]
                n += 1
                if status != "completed" and n > self.expire_after:
                    code = "batch_expired" if status == "expired" else "batch_cancelled"
                    message = f"This request could not be executed before the batch {status}."
                    error = {"code": code, "message": message}
                    err.write(
                        json.dumps(
                            {"id": f"req_{n}", "custom_id": custom_id, "response": None, "error": error}
                        ).encode()
                        + b"\n"
                    )
                    batch.failed += 1
                    continue
                body = request.get("body") or {}
                reply = self.responder(body) if self.responder is not None else Reply()
                if reply.status != 200:
                    message = f"The fake batch returned HTTP {reply.status} as scripted."
                    response = {
                        "status_code": reply.status,
                        "request_id": f"req_{n}",
                        "body": {"error": {"message": message, "type": "server_error"}},
                    }
                    err.write(
                        json.dumps(
                            {"id": f"req_{n}", "custom_id": custom_id, "response": response, "error": None}
                        ).encode()
                        + b"\n"
                    )
                    batch.failed += 1
                    continue
                out.write(
                    b'{"id":"req_%d","custom_id":%s,"response":{"status_code":200,"request_id":"req_%d","body":%s},'
                    b'"error":null}\n'
                    % (n, json.dumps(custom_id).encode(), n, completion_body(body, reply, n))
                )
                batch.completed += 1
        batch.output_file_id = out_id if out_path.stat().st_size else None
        batch.error_file_id = err_id if err_path.stat().st_size else None
        batch.status = status
