"""The one bounded runner for batches of model calls: concurrency, progress, cancellation, a call budget."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import TypeVar

import anyio

from align_mcp.core.models import OptimizerBudget
from align_mcp.errors import AlignError

T = TypeVar("T")

Progress = Callable[[int, int, str], Awaitable[None]]
"""An async progress callback: (done, total, message)."""

yield_to: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar("align_mcp_yield_to", default=None)
"""Awaited by every batch before it starts each item, when set: how a shared server lets the requests of people
waiting on it go before background judging (see mcp/priority.py). Unset, batches never wait."""


class Tally:
    """Progress over a known number of steps, reported through an optional async callback.

    Each step reports `"{what}: {done}/{total}{detail}"`; `detail` is a fixed suffix or a function giving it
    at that moment, and `done` may start above 0 (steps finished earlier, e.g. from the cache).
    """

    def __init__(
        self,
        on_progress: Progress | None,
        total: int,
        what: str,
        *,
        done: int = 0,
        detail: str | Callable[[], str] = "",
    ) -> None:
        self.on_progress = on_progress
        self.total = total
        self.what = what
        self.done = done
        self.detail = detail

    async def waiting(self, seconds: float, why: str) -> None:
        """Report a wait between attempts at the current count (a ModelClient `on_wait`)."""
        if self.on_progress is not None:
            detail = self.detail if isinstance(self.detail, str) else self.detail()
            message = f"{self.what}: {self.done}/{self.total}{detail}; waiting {seconds:.1f}s after {why}"
            await self.on_progress(self.done, self.total, message)

    async def advance(self, detail: str | None = None) -> None:
        self.done += 1
        if self.on_progress is not None:
            if detail is None:
                detail = self.detail if isinstance(self.detail, str) else self.detail()
            await self.on_progress(self.done, self.total, f"{self.what}: {self.done}/{self.total}{detail}")


async def run_batch(
    items: Sequence[T],
    call: Callable[[T], Awaitable[None]],
    *,
    concurrency: int,
    progress: Tally | None = None,
    refused: Callable[[T], None] | None = None,
    limiter: anyio.CapacityLimiter | None = None,
) -> None:
    """Run `call` over items, at most `concurrency` at a time, in order; `progress` advances after each item.

    `call` keeps its own results (stores them, fills a dict) as each one completes, so a cancelled batch keeps
    every result finished before the cancellation. The first AlignError (a judge nobody can reach, a rejected
    key) stops the calls still running, starts no more, and is raised. A call the budget refuses (BudgetSpent)
    ends its item only when `refused` records it, and the batch goes on; without `refused` it stops the batch
    like an AlignError. A `limiter` shared by several batches running at once bounds their calls together
    (e.g. one judge pass per model, all within one concurrency limit).
    """
    stop: list[AlignError | BudgetSpent] = []
    queue = iter(items)

    pace = yield_to.get()

    async def worker(scope: anyio.CancelScope) -> None:
        for item in queue:
            if pace is not None:
                await pace()
            try:
                if limiter is None:
                    await call(item)
                else:
                    async with limiter:
                        await call(item)
            except BudgetSpent as e:
                if refused is None:
                    stop.append(e)
                    scope.cancel()
                    return
                refused(item)
            except AlignError as e:
                stop.append(e)
                scope.cancel()
                return
            if progress is not None:
                await progress.advance()

    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, len(items))):
            tg.start_soon(worker, tg.cancel_scope)
    if stop:
        raise stop[0]


class BudgetSpent(Exception):
    """A model call was refused because the budget is spent."""


class Budget:
    """Counts model requests by kind and refuses the one that would go over the limit (thread-safe).

    Every HTTP request counts, retries and re-asks included: give `take` to a ModelClient as its `on_request`.
    `judged` (examples judged by a request), `reasks` and `cache_hits` (free) are tallied for the report.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: Counter[str] = Counter()
        self.cache_hits = 0
        self.judged = 0
        self.reasks = 0
        self.refused = 0
        """Items a batch left unjudged because the budget refused their requests."""
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return sum(self.counts.values())

    @property
    def remaining(self) -> int:
        return self.limit - self.used

    def take(self, kind: str, n: int = 1) -> None:
        with self._lock:
            if self.used + n > self.limit:
                raise BudgetSpent(f"{kind}: {self.used} of {self.limit} model calls used")
            self.counts[kind] += n

    def taker(self, kind: str) -> Callable[[], None]:
        """A ModelClient `on_request` that takes each request from this budget as `kind`."""
        return lambda: self.take(kind)

    def leaves(self, keep: int) -> bool:
        """Whether one more request leaves at least `keep` of the budget (nothing is taken)."""
        with self._lock:
            return self.used + 1 <= self.limit - keep

    def report(self, stopped: bool) -> OptimizerBudget:
        return OptimizerBudget(
            budget=self.limit,
            used=self.used,
            judge_calls=self.counts["judge"],
            reflection_calls=self.counts["reflection"],
            analysis_calls=self.counts["analysis"],
            examples_judged=self.judged,
            reasks=self.reasks,
            cache_hits=self.cache_hits,
            stopped_by_budget=stopped,
        )
