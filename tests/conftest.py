"""Shared fixtures and helpers: store and environment, clock, fake judge, MCP server in memory, labeler processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from align_mcp.core.models import ScoreType
from align_mcp.engine import evaluators, ingest
from align_mcp.store import Store, open_store
from align_mcp.testing.fakejudge import FakeJudgeServer, prompt_text, section, simulated_responder

if TYPE_CHECKING:
    from mcp import Client
    from mcp.server import MCPServer

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
    "ALIGN_MCP_PRICES",
)


# ---- environment and store --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ALIGN_MCP_DB points at a fresh temporary file; no real data directory, key or endpoint is reachable."""
    path = tmp_path / "align.db"
    monkeypatch.setenv("ALIGN_MCP_DB", str(path))
    # platformdirs resolves the default store under XDG_DATA_HOME on Linux: keep it inside the test's tmp dir.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    # ...and the tool listings a server remembers when the shipped ones are stale under XDG_CACHE_HOME.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    # ...and the model prices file under XDG_CONFIG_HOME.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
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


def snapshot(db: Path) -> list[str]:
    """Every row of every table, to check that a failed call changed nothing."""
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def write_jsonl(path: Path, *records: Any) -> Path:
    """Write one JSON document per line (records may be any JSON value, to test what the reader refuses)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# ---- the fake judge ---------------------------------------------------------------------------------------


@pytest.fixture
def judge(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJudgeServer]:
    """The fake judge on loopback, answering like the simulated judge, as the environment's OpenAI endpoint
    (model `simulated-judge`); set `judge.responder` to script it. Stopped after the test."""
    with FakeJudgeServer(responder=simulated_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", "simulated-judge")
        yield srv


def rid_of(body: dict[str, Any]) -> str:
    """The run id of the example in a judge request: its inputs carry it as `rid`."""
    return str(json.loads(section(prompt_text(body), "inputs") or "{}")["rid"])


# ---- the MCP server in memory -----------------------------------------------------------------------------
# Importing the MCP SDK takes about a second, so only the tests that use these fixtures load it.


@pytest.fixture
def server(db_path: Path) -> MCPServer[Any]:
    """The align-mcp MCP server on the test's store, listing every tool (ALIGN_MCP_TOOLS=all)."""
    from align_mcp.mcp.server import create_server

    return create_server(db_path, tools=["all"])


@pytest.fixture
async def client(server: MCPServer[Any]) -> AsyncIterator[Client]:
    """An MCP client connected to `server` in memory."""
    from mcp import Client

    async with Client(server, cache=None) as c:
        yield c


# ---- processes --------------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: none of the user's judge keys, endpoints or align-mcp settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIGN_MCP_", "OPENAI_"))}
    env.update(extra)
    return env


LABELER_PROCESS = r"""
import json, sys
from align_mcp.engine import queues
from align_mcp.store import Store

db, evaluator, name, most, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
got, relabeled = [], 0
with Store(db) as store:

    def take():
        limit = batch if most == 0 else min(batch, most - len(got))
        return queues.next_items(store, evaluator, labeler=name, limit=limit) if limit else []

    print("ready", flush=True)
    sys.stdin.readline()
    items = take()
    print("holding", flush=True)
    sys.stdin.readline()
    while items:
        ids = [i.run_id for i in items]
        receipts = queues.submit_labels(store, evaluator, [{"run_id": r, "score": 1} for r in ids], labeler=name)
        got.extend(ids)
        relabeled += sum(r.relabeled for r in receipts)
        items = take()
print(json.dumps({"got": got, "relabeled": relabeled}), flush=True)
"""


def run_labeler_processes(
    db: Path,
    evaluator: str,
    names: Sequence[str],
    most: int | None = None,
    batch: int = 5,
    timeout: float = 120,
) -> dict[str, dict[str, Any]]:
    """Run one labeler process per name on `db`, all reserving their first items at once, then labeling freely.

    Each takes up to `batch` items from the queue at a time (next_items), labels them pass, and stops after
    `most` items or when the queue is empty. Every process holds its first items before any labels, so all of
    them take part however the OS schedules them. Returns, per name, {"got": run ids in order, "relabeled": n}.
    """
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", LABELER_PROCESS, str(db), evaluator, name, str(most or 0), str(batch)],
            env=clean_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    }
    try:
        for step in ("ready", "holding"):
            for proc in procs.values():
                assert proc.stdout is not None and proc.stderr is not None
                said = proc.stdout.readline().strip()
                if said != step:
                    proc.wait(timeout=timeout)
                    raise AssertionError(f"a labeler said {said!r} instead of {step!r}: {proc.stderr.read()}")
            for proc in procs.values():
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
        done: dict[str, dict[str, Any]] = {}
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err
            done[name] = json.loads(out.strip().splitlines()[-1])
        return done
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (its own browser download is not reachable here)."""
    from webserver import CHROMIUM

    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()
