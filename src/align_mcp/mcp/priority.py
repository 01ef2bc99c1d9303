"""People first on a shared server: while a request someone is waiting on is being answered (a label, the next
items, a queue or a page), background judging (an alignment, a comparison, the optimizer) starts no new judge
call, for at most MAX_WAIT_S at a time.

Judging shares the server's one event loop and GIL with every other request; against a fast judge it can keep the
whole core busy, and a read then waits behind its callbacks. Holding back only the *start* of each judge call,
and never for long, costs the judging little (a person's request takes a few milliseconds) and keeps it going
under any load."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_WAIT_S = 0.05
"""The longest background judging waits, each time, for the requests in flight to finish."""


@dataclass
class Ticket:
    """One HTTP request as the count sees it: counted until it ends or turns out to be background work."""

    counted: bool = True


class Foreground:
    """How many requests people are waiting on are in flight, and a way to wait until there are none."""

    def __init__(self) -> None:
        self.active = 0
        self._idle: anyio.Event | None = None

    def enter(self) -> Ticket:
        self.active += 1
        return Ticket()

    def leave(self, ticket: Ticket) -> None:
        if not ticket.counted:
            return
        ticket.counted = False
        self.active -= 1
        if self.active == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def wait(self) -> None:
        """Return when no request is in flight, or after MAX_WAIT_S."""
        if self.active == 0:
            return
        if self._idle is None:
            self._idle = anyio.Event()
        with anyio.move_on_after(MAX_WAIT_S):
            await self._idle.wait()


FOREGROUND = Foreground()
"""The process's count (a server's requests all run on its one event loop)."""

_ticket: ContextVar[Ticket | None] = ContextVar("align_mcp_foreground_ticket", default=None)


class ForegroundRequests:
    """ASGI middleware counting the requests people wait on: every POST (MCP calls, the label page's API) and the
    pages' GETs. An MCP GET is the client's long-lived stream for server messages, not a request anyone waits on."""

    def __init__(self, app: ASGIApp, pages: str) -> None:
        self.app = app
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            scope["method"] != "POST" and not str(scope["path"]).startswith(self.pages)
        ):
            await self.app(scope, receive, send)
            return
        ticket = FOREGROUND.enter()
        token = _ticket.set(ticket)
        try:
            await self.app(scope, receive, send)
        finally:
            _ticket.reset(token)
            FOREGROUND.leave(ticket)


@contextmanager
def background() -> Iterator[None]:
    """Run the current request as background work: it no longer counts as someone waiting, and the judge calls it
    starts give way to those who are."""
    from align_mcp.llm.runner import yield_to  # on first use: a server starts without the model-call layer

    ticket = _ticket.get()
    if ticket is not None:
        FOREGROUND.leave(ticket)
    token = yield_to.set(FOREGROUND.wait)
    try:
        yield
    finally:
        yield_to.reset(token)


__all__ = ["FOREGROUND", "MAX_WAIT_S", "Foreground", "ForegroundRequests", "background"]
