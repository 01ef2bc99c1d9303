"""The bounded runner for batches of model calls: concurrency, progress, cancellation and a call budget."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio

from align_mcp.core.models import JudgeSettings, OptimizerBudget, ScoreType
from align_mcp.errors import AlignError
from align_mcp.llm.endpoint import Endpoint
from align_mcp.llm.judge import Judge

T = TypeVar("T")

Progress = Callable[[int, int, str], Awaitable[None]]
"""An async progress callback: (done, total, message)."""


class Tally:
    """Progress over a known number of steps, reported through an optional async callback."""

    def __init__(self, on_progress: Progress | None, total: int, what: str) -> None:
        self.on_progress, self.total, self.what, self.done = on_progress, total, what, 0

    async def advance(self, detail: str = "") -> None:
        self.done += 1
        if self.on_progress is not None:
            await self.on_progress(self.done, self.total, f"{self.what}: {self.done}/{self.total}{detail}")


@asynccontextmanager
async def open_judge(
    endpoint: Endpoint, settings: JudgeSettings, score_type: ScoreType
) -> AsyncIterator[Judge]:
    judge = Judge(endpoint, settings, score_type)
    try:
        yield judge
    finally:
        with anyio.CancelScope(shield=True):
            await judge.aclose()


async def bounded(items: Sequence[T], concurrency: int, fn: Callable[[T], Awaitable[None]]) -> None:
    """Run `fn` over items, `concurrency` at a time; the first AlignError stops the rest and is raised."""
    failure: list[AlignError] = []
    queue = iter(items)

    async def worker(scope: anyio.CancelScope) -> None:
        for item in queue:
            try:
                await fn(item)
            except AlignError as e:
                failure.append(e)
                scope.cancel()
                return

    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, len(items))):
            tg.start_soon(worker, tg.cancel_scope)
    if failure:
        raise failure[0]


class BudgetSpent(Exception):
    """A model call was refused because the budget is spent."""


class Budget:
    """Counts model calls by kind and refuses the one that would go over the limit (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: Counter[str] = Counter()
        self.cache_hits = 0
        self.requests = 0
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

    def report(self, stopped: bool) -> OptimizerBudget:
        return OptimizerBudget(
            budget=self.limit,
            used=self.used,
            judge_calls=self.counts["judge"],
            reflection_calls=self.counts["reflection"],
            analysis_calls=self.counts["analysis"],
            cache_hits=self.cache_hits,
            stopped_by_budget=stopped,
        )
