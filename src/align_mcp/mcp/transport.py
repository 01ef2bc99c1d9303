"""How the MCP server is reached: stdio, or streamable HTTP behind Host/Origin checks and a bearer token."""

from __future__ import annotations

import gc
import hmac
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from align_mcp import config
from align_mcp.config import is_loopback
from align_mcp.mcp.priority import ForegroundRequests
from align_mcp.mcp.server import create_server

UI_PREFIX = "/ui"
"""Where `serve --http` mounts the labeling and review pages when it is given them."""


class HttpGuard:
    """ASGI middleware in front of the MCP endpoint: refuse foreign browser origins (403) and, when a token is
    configured, requests without `Authorization: Bearer <token>` (401)."""

    def __init__(self, app: ASGIApp, *, token: str | None, host: str) -> None:
        self.app = app
        self.token = token
        self.hosts = {"127.0.0.1", "localhost", "::1", host.strip("[]").lower()}

    def origin_allowed(self, origin: str) -> bool:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and (parts.hostname or "").lower() in self.hosts

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, credentials = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self.token.encode()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["path"] + "/").startswith(UI_PREFIX + "/"):
            await self.app(scope, receive, send)  # the pages have their own guard (login cookie, Origin, CSP)
            return
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None and not self.origin_allowed(origin):
                response = PlainTextResponse(f"Origin {origin} is not allowed.", status_code=403)
                await response(scope, receive, send)
                return
            if not self.authorized(headers.get("authorization")):
                response = PlainTextResponse(
                    f"Missing or wrong bearer token: send Authorization: Bearer ${config.ENV_TOKEN}.",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="align-mcp"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def http_app(
    server: MCPServer[Any], *, host: str = "127.0.0.1", token: str | None = None, ui: ASGIApp | None = None
) -> ASGIApp:
    """The streamable HTTP app at /mcp with Host/Origin validation and the optional bearer token, and the pages
    (`ui`, guarded by themselves) under /ui."""
    if is_loopback(host):
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", f"{host}:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
    else:
        # Clients reach a public bind under names we cannot know, so the Host check is off; the bearer token
        # (required off loopback) is what keeps other sites' pages out, and HttpGuard still checks Origin.
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(host=host, transport_security=security)
    if ui is not None:
        from starlette.routing import Mount

        app.router.routes.append(Mount(UI_PREFIX, app=ui))
    return HttpGuard(ForegroundRequests(app, UI_PREFIX), token=token, host=host)


PRELOADED = (
    "align_mcp.engine",
    "align_mcp.llm",
    "align_mcp.diagnose",
    "align_mcp.optimize",
    "align_mcp.store",
    "align_mcp.mcp",
    "openai",
)
"""What the tools import on first use, loaded up front by a shared server (packages: with every module in them).
DSPy is left out: only the optimizer's GEPA loads it, and it is large."""


SWITCH_INTERVAL_S = 0.001
"""How long a thread of a shared server may keep the GIL once another asks for it (Python's default: 5 ms)."""


def settle_heap(packages: Sequence[str] = PRELOADED) -> None:
    """Load what the tools would load on first use, then take every object alive now out of the cyclic garbage
    collector's sight (`gc.freeze`).

    A full collection walks every tracked object; with the MCP SDK, pydantic, the openai client and the engine
    loaded that is about 150,000 objects and 110–170 ms with every request of a shared server stopped. Modules,
    classes, schemas and validators live as long as the process, so the collector never needs to see them; after
    this, a full collection walks only what was made since. A module that needs an optional package that is not
    installed is left to fail where it is used, as it did before."""
    for name in packages:
        module = importlib.import_module(name)
        if name != "openai":  # openai loads its own submodules as it needs them
            for info in pkgutil.walk_packages(getattr(module, "__path__", []), f"{name}."):
                try:
                    importlib.import_module(info.name)
                except ModuleNotFoundError as e:
                    if (e.name or "").startswith("align_mcp"):
                        raise
    gc.collect()
    gc.freeze()


MALLOC_ARENAS = 2
"""The most malloc arenas a shared server's threads spread their C allocations over (SQLite, pydantic-core, TLS)."""
M_ARENA_MAX = -8
"""glibc's mallopt parameter number for the arena limit."""


def bound_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX does) before the server starts its worker threads.

    glibc gives threads their own arenas, up to eight per core, and memory freed in one is reused only by the
    threads of that arena: with a worker thread per concurrent tool call, a shared server's resident memory kept
    creeping up under a steady load (bench/README.md, row 8). Set before any worker thread exists, every thread
    shares `arenas` arenas. Returns whether the limit was set (only on glibc; elsewhere nothing is done). An
    explicit MALLOC_ARENA_MAX in the environment wins."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    return bool(mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(arenas)))


def check_http_bind(host: str, token: str | None) -> None:
    """Refuse to serve HTTP beyond this machine without a bearer token."""
    config.refuse_open_bind(host, token, "HTTP", "a bearer token")


def serve(
    db: Path | None = None,
    http: bool = False,
    host: str = "127.0.0.1",
    port: int = 8765,
    ui: Callable[[str | None], ASGIApp] | None = None,
) -> None:
    """Run the server: stdio by default, or streamable HTTP at http://host:port/mcp (and, given `ui`, a factory
    of the pages taking the token, those at /ui)."""
    if not http:
        create_server(db).run("stdio")
        return
    token = os.environ.get(config.ENV_TOKEN) or None
    check_http_bind(host, token)
    import uvicorn

    shown = f"[{host}]" if ":" in host else host
    auth = "bearer token required" if token else "no token, loopback only"
    sys.stderr.write(f"align-mcp: MCP over streamable HTTP at http://{shown}:{port}/mcp ({auth})\n")
    if not is_loopback(host) and not os.environ.get(config.ENV_IMPORT_ROOT):
        sys.stderr.write(
            f"align-mcp: warning: import_runs can read any file this user can read; set {config.ENV_IMPORT_ROOT} "
            "to the directory clients may import from.\n"
        )
    if ui is not None:
        sys.stderr.write(f"align-mcp: labeling and review pages at http://{shown}:{port}{UI_PREFIX}/\n")
    bound_malloc_arenas()
    app = http_app(create_server(db), host=host, token=token, ui=None if ui is None else ui(token))
    settle_heap()
    # The event loop and the worker threads running the tools share one GIL, and a worker holding the store hands
    # it back after every SQLite call: at the default 5 ms each hand-over could keep every other request waiting
    # that long. A 1 ms interval lowered the read p95 of the shared-server bench (bench/README.md, row 8).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = [
    "MALLOC_ARENAS",
    "PRELOADED",
    "SWITCH_INTERVAL_S",
    "UI_PREFIX",
    "HttpGuard",
    "bound_malloc_arenas",
    "check_http_bind",
    "http_app",
    "is_loopback",
    "serve",
    "settle_heap",
]
