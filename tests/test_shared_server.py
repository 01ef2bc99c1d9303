"""What one store shared by many requests needs: reservations that do not sort the queue inside the write lock,
and an alignment that never stops the event loop while another request holds the store."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from align_mcp.core.models import ScoreType
from align_mcp.engine import alignment, evaluators, ingest, queues
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer
from conftest import EXAMPLE_RUNS, clean_env

pytestmark = pytest.mark.anyio


def vm_steps(store: Store, work: Any) -> int:
    """SQLite virtual-machine instructions (in thousands) that `work()` makes the store's connection run."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    store.conn.set_progress_handler(count, 1000)
    try:
        work()
    finally:
        store.conn.set_progress_handler(None, 1000)
    return steps[0]


def test_reserving_from_a_long_queue_reads_only_the_head_of_it(store: Store) -> None:
    runs = [{"id": f"r{i:05d}", "inputs": {"q": i}, "outputs": {"a": i}} for i in range(20_000)]
    for start in range(0, len(runs), 10_000):
        ingest.import_runs(store, "big", runs=runs[start : start + 10_000])
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    queues.add_to_queue(store, "correctness", source="big")
    for name in ("ana", "bo", "cy"):
        queues.next_items(store, "correctness", labeler=name, limit=5)

    # A labeler asking again gets their own items back first, then the oldest free ones; ordering by "ours first"
    # in one query sorted all 20,000 pending items inside the write lock (about 2,000k steps; now under 20k).
    again: list[Any] = []
    steps = vm_steps(
        store, lambda: again.extend(queues.next_items(store, "correctness", labeler="bo", limit=8))
    )
    assert steps < 20
    assert [i.run_id for i in again] == [*(f"r{i:05d}" for i in range(5, 10)), "r00015", "r00016", "r00017"]
    fresh: list[Any] = []
    steps = vm_steps(
        store, lambda: fresh.extend(queues.next_items(store, "correctness", labeler="dee", limit=5))
    )
    assert steps < 20
    assert [i.run_id for i in fresh] == [f"r{i:05d}" for i in range(18, 23)]


async def test_an_alignment_keeps_the_event_loop_running_while_another_request_holds_the_store(
    store: Store, judge: FakeJudgeServer
) -> None:
    ingest.import_runs(store, "support", path=EXAMPLE_RUNS)
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    judge.latency = 0.1  # the 33 dev examples at 8 in flight: the run lasts about half a second
    held = threading.Event()

    def hold_the_store() -> None:
        while judge.calls == 0:
            time.sleep(0.005)
        with store.transaction():  # a label write, say, from a worker thread of the server
            held.set()
            time.sleep(1.0)

    gaps: list[float] = []
    done = anyio.Event()

    async def heartbeat() -> None:
        last = time.monotonic()
        while not done.is_set():
            await anyio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    holder = threading.Thread(target=hold_the_store)
    holder.start()
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        report = await alignment.run_alignment(store, "correctness", compare=False)
        done.set()
    holder.join()

    assert held.is_set() and report.run.status == "completed" and report.run.judged == 33
    # Writing a result waited for the store on the event loop itself: every task stopped for the whole second.
    assert max(gaps) < 0.5, f"the event loop stalled for {max(gaps):.2f} s"


SERVE_UNTIL_UVICORN = r"""
import gc, json, sys
import uvicorn
from align_mcp.mcp import transport

bounded = []
real_bound = transport.bound_malloc_arenas
transport.bound_malloc_arenas = lambda: bounded.append(real_bound()) or bounded[-1]

def run(app, **kwargs):
    print(json.dumps({
        "arenas_bounded": bounded,
        "frozen": gc.get_freeze_count(),
        "tracked": len(gc.get_objects()),
        "loaded": sorted(m for m in sys.modules if m.startswith(("align_mcp.", "openai", "dspy"))),
        "bind": [kwargs["host"], kwargs["port"]],
        "switch_interval": sys.getswitchinterval(),
    }))

uvicorn.run = run
transport.serve(db=None, http=True, host="127.0.0.1", port=8765)
"""


def test_a_shared_server_loads_what_its_tools_need_hides_it_from_the_collector_and_shortens_gil_turns(
    db_path: Path,
) -> None:
    # A full garbage collection walked every object the SDK, pydantic, openai and the engine made (about 150k,
    # 110-170 ms) with every request of `serve --http` waiting: the read p95's tail under load. The server now
    # loads the tools' modules up front and freezes what is alive, so a full collection walks only newer objects.
    env = clean_env(ALIGN_MCP_DB=str(db_path))
    env.pop("MALLOC_ARENA_MAX", None)
    out = subprocess.run(
        [sys.executable, "-c", SERVE_UNTIL_UVICORN],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["bind"] == ["127.0.0.1", 8765]
    # The event loop and the tools' worker threads share the GIL: a thread asked to hand it over keeps it 1 ms at
    # most, not Python's default 5 ms, so a worker holding the store does not keep every other request waiting.
    assert seen["switch_interval"] == pytest.approx(0.001)
    # glibc's malloc arenas are capped before any worker thread exists: with one arena per thread (up to eight
    # per core) the server's resident memory crept up over a 10-minute soak.
    assert seen["arenas_bounded"] == [True]
    assert seen["frozen"] > 50_000
    assert seen["tracked"] < seen["frozen"] // 100
    loaded = set(seen["loaded"])
    behind_the_tools = {
        "align_mcp.engine.queues",
        "align_mcp.engine.labeling",
        "align_mcp.engine.alignment",
        "align_mcp.engine.overview",
        "align_mcp.llm.judge",
        "align_mcp.diagnose.triage",
        "openai",
    }
    assert behind_the_tools <= loaded, behind_the_tools - loaded
    assert not any(m == "dspy" or m.startswith("dspy.") for m in loaded)


def test_an_explicit_malloc_arena_max_in_the_environment_is_left_to_win(db_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SERVE_UNTIL_UVICORN],
        env=clean_env(ALIGN_MCP_DB=str(db_path), MALLOC_ARENA_MAX="4"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["arenas_bounded"] == [False]


async def test_every_judge_client_of_a_process_verifies_with_one_tls_context() -> None:
    # Each alignment run opens a judge client; each client built its own TLS context, reading the CA bundle
    # (about 30 ms) on the shared server's event loop while every other request waited.
    from align_mcp.core.models import JudgeSettings
    from align_mcp.llm.client import open_client
    from align_mcp.llm.endpoint import Endpoint

    contexts: list[Any] = []
    for key in ("sk-one", "sk-two"):
        endpoint = Endpoint("https://judge.example/v1", key, "gpt-x")
        async with open_client(endpoint, JudgeSettings()) as client:
            http: Any = client.client._client  # the httpx2 client under openai, and its connection pool
            contexts.append(http._transport._pool._ssl_context)
    assert contexts[0] is contexts[1]
    assert contexts[0].verify_mode.name == "CERT_REQUIRED" and contexts[0].check_hostname


def test_settling_the_heap_leaves_a_module_that_needs_a_missing_optional_package_to_fail_where_it_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from align_mcp.mcp.transport import settle_heap

    package = tmp_path / "align_mcp_extra_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plain.py").write_text("LOADED = True\n")
    (package / "charts.py").write_text("import a_package_nobody_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        settle_heap(["align_mcp_extra_probe"])
    finally:
        gc.unfreeze()
    assert "align_mcp_extra_probe.plain" in sys.modules
    assert "align_mcp_extra_probe.charts" not in sys.modules
