"""People first on a shared server: requests people wait on are counted, background judging (the async, judging
tools) is not, and a batch of judge calls starts no item while such a request is in flight, for a bounded time."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from align_mcp.llm.runner import run_batch, yield_to
from align_mcp.mcp import priority
from align_mcp.mcp.priority import MAX_WAIT_S, Foreground, ForegroundRequests

pytestmark = pytest.mark.anyio


async def test_waiting_returns_at_once_when_idle_when_the_last_request_ends_or_after_the_bound() -> None:
    fg = Foreground()
    with anyio.fail_after(1):  # idle: nothing to wait for (the bound is MAX_WAIT_S only when someone waits)
        await fg.wait()

    ticket = fg.enter()
    async with anyio.create_task_group() as tg:

        async def end_soon() -> None:
            await anyio.sleep(0.01)
            fg.leave(ticket)
            fg.leave(ticket)  # a ticket is let go once

        tg.start_soon(end_soon)
        started = time.perf_counter()
        await fg.wait()
        waited = time.perf_counter() - started
    assert waited > 0.005 and fg.active == 0

    fg.enter()
    started = time.perf_counter()
    await fg.wait()  # nobody leaves: judging goes on after the bound
    assert MAX_WAIT_S * 0.9 < time.perf_counter() - started < 5  # returns, however busy the machine


async def test_a_batch_starts_no_item_while_a_person_is_waiting_and_resumes_when_they_are_answered() -> None:
    fg = Foreground()
    started: list[float] = []

    async def call(item: int) -> None:
        started.append(time.perf_counter())

    ticket = fg.enter()
    token = yield_to.set(fg.wait)
    try:
        async with anyio.create_task_group() as tg:

            async def answer() -> None:
                await anyio.sleep(0.02)
                fg.leave(ticket)

            tg.start_soon(answer)
            began = time.perf_counter()
            await run_batch([1, 2, 3], call, concurrency=2)
    finally:
        yield_to.reset(token)
    assert len(started) == 3 and min(started) - began >= 0.015

    started.clear()
    await run_batch([1, 2, 3], call, concurrency=2)  # outside a shared server nothing is set: no waiting
    assert len(started) == 3


async def test_the_middleware_counts_posts_and_pages_but_not_the_mcp_stream_nor_background_work() -> None:
    seen: list[tuple[str, int]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["path"], priority.FOREGROUND.active))
        if scope["path"] == "/mcp/judging":
            with priority.background():
                seen.append(("background", priority.FOREGROUND.active))
                assert yield_to.get() == priority.FOREGROUND.wait

    middleware = ForegroundRequests(app, "/ui")

    async def request(method: str, path: str) -> None:
        await middleware({"type": "http", "method": method, "path": path}, None, None)

    await request("POST", "/mcp")
    await request("GET", "/mcp")
    await request("GET", "/ui/label")
    await request("POST", "/mcp/judging")
    assert seen == [("/mcp", 1), ("/mcp", 0), ("/ui/label", 1), ("/mcp/judging", 1), ("background", 0)]
    assert priority.FOREGROUND.active == 0 and yield_to.get() is None
