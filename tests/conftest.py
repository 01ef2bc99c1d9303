"""Shared fixtures: every test gets its own store file and an environment with no judge keys or endpoints."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from align_mcp.core.models import ScoreType
from align_mcp.engine import evaluators, ingest
from align_mcp.store import Store, open_store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_RUNS = ROOT / "examples" / "support_runs.jsonl"

CLEARED_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ALIGN_MCP_JUDGE_MODEL",
    "ALIGN_MCP_JUDGE_BASE_URL",
    "ALIGN_MCP_JUDGE_API_KEY",
    "ALIGN_MCP_CONCURRENCY",
    "ALIGN_MCP_TOKEN",
)


@pytest.fixture(autouse=True)
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ALIGN_MCP_DB points at a fresh temporary file; no real data directory, key or endpoint is reachable."""
    path = tmp_path / "align.db"
    monkeypatch.setenv("ALIGN_MCP_DB", str(path))
    # platformdirs resolves the default store under XDG_DATA_HOME on Linux: keep it inside the test's tmp dir.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    # ...and the tool listings a server remembers when the shipped ones are stale under XDG_CACHE_HOME.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    for name in CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ManualClock:
    """A time source (seconds since the epoch, like time.time) that moves only when a test advances it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    """The test stores' clock. It starts at the real time, so a store on the real clock agrees with it until the
    test advances it."""
    return ManualClock(time.time())


@pytest.fixture
def store(db_path: Path, clock: ManualClock) -> Iterator[Store]:
    """An empty store at ALIGN_MCP_DB on the test's clock, closed after the test."""
    with open_store(clock=clock) as s:
        yield s


@pytest.fixture
def support_runs() -> list[dict[str, Any]]:
    """The 46 PedalPoint support runs of examples/support_runs.jsonl (each with `correctness` feedback)."""
    return [json.loads(line) for line in EXAMPLE_RUNS.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture
def runs_store(store: Store, support_runs: list[dict[str, Any]]) -> Store:
    """The example runs without their feedback in source 'support', and a binary evaluator 'correctness'."""
    bare = [{k: v for k, v in run.items() if k != "feedback"} for run in support_runs]
    ingest.import_runs(store, "support", runs=bare)
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    return store
