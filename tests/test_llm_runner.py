"""The bounded runner (runner.py) every batch of model calls goes through: concurrency, progress, a fatal error
stopping the rest, cancellation keeping finished results, and the call budget. No model is called: the calls
are coroutines that record what happens to them."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from align_mcp.errors import JudgeUnreachable
from align_mcp.llm.runner import Budget, BudgetSpent, Tally, run_batch

pytestmark = pytest.mark.anyio


class Messages(list[tuple[int, int, str]]):
    """A progress callback that records every (done, total, message)."""

    async def __call__(self, done: int, total: int, message: str) -> None:
        self.append((done, total, message))


async def test_calls_in_flight_never_exceed_the_concurrency_and_every_item_runs_once() -> None:
    in_flight, peak, seen = 0, 0, []

    async def call(item: int) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        in_flight -= 1
        seen.append(item)

    await run_batch(list(range(10)), call, concurrency=3)

    assert peak == 3
    assert sorted(seen) == list(range(10))


async def test_progress_counts_from_the_items_done_before_with_a_fixed_or_computed_detail() -> None:
    messages = Messages()
    await run_batch(
        ["a", "b"],
        lambda item: anyio.lowlevel.checkpoint(),
        concurrency=1,
        progress=Tally(messages, 5, "draft", done=3, detail=" judged"),
    )
    assert messages == [(4, 5, "draft: 4/5 judged"), (5, 5, "draft: 5/5 judged")]

    finished: list[str] = []

    async def call(item: str) -> None:
        finished.append(item)

    counted = Messages()
    tally = Tally(counted, 2, "triage", detail=lambda: f" chunks ({len(finished)} of 2 cases)")
    await run_batch(["x", "y"], call, concurrency=1, progress=tally)
    assert [m for _, _, m in counted] == [
        "triage: 1/2 chunks (1 of 2 cases)",
        "triage: 2/2 chunks (2 of 2 cases)",
    ]


async def test_a_fatal_error_stops_the_rest_and_is_raised_as_itself() -> None:
    gone = JudgeUnreachable("Cannot reach the judge.")
    started: list[int] = []

    async def call(item: int) -> None:
        started.append(item)
        await anyio.lowlevel.checkpoint()
        if item == 3:
            raise gone

    with pytest.raises(JudgeUnreachable) as e:
        await run_batch(list(range(20)), call, concurrency=2)

    assert e.value is gone
    assert 3 in started and max(started) <= 4  # at most the item the other worker took meanwhile


async def test_a_cancelled_batch_keeps_the_results_finished_before_it() -> None:
    results: dict[int, str] = {}
    never = anyio.Event()

    async def call(item: int) -> None:
        if item >= 2:
            await never.wait()
        results[item] = "judged"

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: run_batch(list(range(6)), call, concurrency=3))
            while len(results) < 2:
                await anyio.sleep(0.001)
            tg.cancel_scope.cancel()

    assert results == {0: "judged", 1: "judged"}


async def test_a_budget_refusal_ends_only_its_item_when_refused_records_it() -> None:
    budget = Budget(3)
    outcome: dict[int, str] = {}

    async def call(item: int) -> None:
        budget.take("judge")
        outcome[item] = "judged"

    def refused(item: int) -> None:
        outcome[item] = "not judged: the budget ran out"

    await run_batch(list(range(5)), call, concurrency=2, refused=refused)

    assert sorted(outcome.values()) == ["judged"] * 3 + ["not judged: the budget ran out"] * 2
    assert (budget.used, budget.remaining, budget.counts["judge"]) == (3, 0, 3)


async def test_without_refused_a_budget_refusal_stops_the_batch() -> None:
    budget = Budget(1)

    async def call(item: int) -> None:
        budget.take("judge")
        await anyio.lowlevel.checkpoint()

    with pytest.raises(BudgetSpent, match=r"^judge: 1 of 1 model calls used$"):
        await run_batch(list(range(4)), call, concurrency=1)


def test_leaves_says_whether_a_request_keeps_the_reserve_and_a_taker_takes_each_request() -> None:
    budget = Budget(5)
    budget.take("analysis", 2)
    assert budget.leaves(2) is True  # 3 used after it, 2 left
    take = budget.taker("reflection")
    take()
    assert budget.leaves(2) is False  # would leave 1 of the 2 kept
    assert budget.leaves(0) is True
    take()
    assert (budget.used, budget.counts["reflection"]) == (4, 2)
    with pytest.raises(BudgetSpent):
        budget.take("judge", 2)


async def test_a_wait_is_reported_at_the_current_count_with_its_cause() -> None:
    messages = Messages()
    tally = Tally(messages, 4, "draft", done=1, detail=" judged")
    await tally.waiting(30, "HTTP 429 from the judge")
    await tally.advance()
    assert messages == [
        (1, 4, "draft: 1/4 judged; waiting 30.0s after HTTP 429 from the judge"),
        (2, 4, "draft: 2/4 judged"),
    ]
