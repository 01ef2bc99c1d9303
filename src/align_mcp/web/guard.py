"""The pages' guard: loopback Host names, the token login cookie, same-origin writes, and strict headers."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlsplit

from starlette.datastructures import URL, Headers
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from align_mcp import config

TOKEN_COOKIE = "align_mcp_token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = ("/login", "/static/")
"""Paths served without the token: the login form and the stylesheet and script it uses."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""No inline script or style, nothing from elsewhere: a run's contents cannot load or run anything."""

HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make form posts send Origin: null
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def cookie_value(token: str) -> str:
    """What the login cookie holds: a digest of the token, so the cookie never carries the token itself."""
    return hmac.new(token.encode(), b"align-mcp page login", hashlib.sha256).hexdigest()


class PageGuard:
    """ASGI middleware in front of the pages.

    - Bound to loopback, only loopback Host names are served (another site's name resolving to 127.0.0.1
      cannot read the pages: DNS rebinding).
    - With a token (required off loopback, like `serve --http`), every request but the login form needs the
      token cookie the login sets (HttpOnly, SameSite=Strict) or `Authorization: Bearer <token>`.
    - A request that changes anything (any method but GET/HEAD/OPTIONS) must carry an Origin equal to the
      page's own, so no other site can submit labels through a visitor's browser.
    - Every response carries a Content-Security-Policy without inline script, and no-sniff/no-frame headers.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, host: str) -> None:
        self.app = app
        self.token = token
        self.loopback = config.is_loopback(host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in HEADERS]
                headers.extend((k.encode(), v.encode()) for k, v in HEADERS.items())
                message = {**message, "headers": headers}
            await send(message)

        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        url = URL(scope=scope)
        host = (url.hostname or "").lower()
        if self.loopback and host not in LOOPBACK_HOSTS:
            return _refuse(
                scope, 403, f"Host {host or '(none)'} is not served here: open the page at 127.0.0.1."
            )
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is None or not same_origin(origin, url):
                return _refuse(
                    scope,
                    403,
                    f"Refused a change from origin {origin or '(none)'}: labels are only taken from this page.",
                )
        if self.token is None:
            return None
        path = route_path(scope)
        if path.startswith(OPEN_PATHS):
            return None
        scheme, _, credentials = (headers.get("authorization") or "").partition(" ")
        cookie = _cookie(headers.get("cookie"), TOKEN_COOKIE)
        if token_matches(cookie, cookie_value(self.token)) or (
            scheme.lower() == "bearer" and token_matches(credentials.strip(), self.token)
        ):
            return None
        if scope["method"] == "GET" and not path.startswith("/api/"):
            root = scope.get("root_path", "")
            target = quote(path + (f"?{url.query}" if url.query else ""), safe="")
            return RedirectResponse(f"{root}/login?next={target}", status_code=303)
        return _refuse(
            scope, 401, f"Log in with {config.ENV_TOKEN} first: open the page and enter the token."
        )


def route_path(scope: Scope) -> str:
    """The request's path inside this app (without the prefix it is mounted under, e.g. /ui)."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


def same_origin(origin: str, url: URL) -> bool:
    """True when the Origin header names this server as the request reached it (scheme, host and port)."""
    parts = urlsplit(origin)
    default = {"http": 80, "https": 443}
    try:
        port = parts.port or default.get(parts.scheme)
    except ValueError:
        return False
    own_port = url.port or default.get(url.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), port) == (
        url.scheme,
        (url.hostname or "").lower(),
        own_port,
    )


def _cookie(header: str | None, name: str) -> str | None:
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _refuse(scope: Scope, status: int, text: str) -> Response:
    if route_path(scope).startswith("/api/"):
        return JSONResponse({"error": text}, status_code=status)
    return HTMLResponse(
        f"<!doctype html><title>align-mcp</title><p class=refused>{_esc(text)}</p>", status_code=status
    )


def _esc(text: str) -> str:
    from align_mcp.web.markup import esc

    return esc(text)


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve the pages beyond this machine without a token (the rule `serve --http` follows)."""
    config.refuse_open_bind(host, token, "the pages", "a token")
