"""The pages served for real on loopback (uvicorn in a thread), and the system Chromium for browser tests."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str | None:
    """Debian's chromium (what .ci/run installs), or another system Chromium on PATH."""
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM = chromium_path()
NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: install Debian's package (apt-get install -y chromium); .ci/run does",
)
"""The mark of a browser test: it skips, saying why, only where no system Chromium can be found."""

READY = "([n]) => document.body.dataset.state === 'ready' && Number(document.body.dataset.renders || 0) > n"
"""True once the page (or view) has shown something new after render number n, and takes keys again."""

PAYLOADS = {
    "script": "<script>window.__pwned = 'script'</script>",
    "img": "<img src=x onerror=\"window.__pwned = 'img'\">",
    "link": "[click me](javascript:window.__pwned='link')",
    "markdown": "**bold <svg onload=\"window.__pwned='svg'\">** and `<script>window.__pwned='code'</script>`",
    "html-link": "<a href=\"javascript:window.__pwned='a'\">tap</a>",
    "attr": '" onmouseover="window.__pwned=\'attr\'" x="',
    "iframe": "<iframe src=\"javascript:window.__pwned='iframe'\"></iframe>",
    "entity": "&lt;script&gt;window.__pwned='entity'&lt;/script&gt;",
}
"""Hostile run contents: each would set window.__pwned if the page or the view let it run."""


@contextmanager
def live_server(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve an ASGI app on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as `align-mcp ui` does
    sock.bind((host, 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the page server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as a test artifact (test-artifacts/, ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
