"""The pending examples of an alignment run as the judge will be shown them, or why one cannot be judged."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from align_mcp.store import RunRow, Store

T = TypeVar("T")


def shown(
    store: Store, run_ids: Sequence[str], show: Callable[[RunRow], T]
) -> tuple[list[tuple[str, T]], list[tuple[str, str]]]:
    """What `show` makes of each run (the messages for the judge), in order; and the runs kept from the judge with
    their problem: gone from the store, unreadable as stored, or nested too deeply to be shown. No stored record
    may make judging fail for the others: each problem becomes that one example's error."""
    runs = store.get_runs(run_ids)
    views: list[tuple[str, T]] = []
    problems: list[tuple[str, str]] = []
    for rid in run_ids:
        run = runs.get(rid)
        if run is None:
            unreadable = store.unreadable_run(rid)
            gone = "run no longer in the store"
            problems.append(
                (rid, gone if unreadable is None else f"the stored run cannot be read: {unreadable}")
            )
            continue
        try:
            views.append((rid, show(run)))
        except RecursionError:
            problems.append((rid, "the run nests objects and arrays too deeply to be shown to the judge"))
    return views, problems
