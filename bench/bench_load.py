"""Issue 16: one shared `align-mcp serve --http` under load, over MCP-over-HTTP and the label page on loopback.

Labelers reserve runs of one queue (`next_items`) and label each (`submit_label`); page labelers do the same
through the label page mounted at /ui (its `api/next` and `api/label` requests, as its script sends them, with
the page's Origin); readers list the queues and the misaligned cases; one client keeps an alignment running
against the fake judge (a new draft each round, so nothing comes from the cache). The server is a real
subprocess; every client is an MCP `Client` (or, for the page, an HTTP client) with its own HTTP connection.
Afterwards the store is read directly: every label stored exactly once, no run handed to two labelers (over MCP
or the page), no request failed. Read latency is measured at the client; the server's memory is its RSS from
/proc.

    .venv/bin/python bench/bench_load.py                  # 50 clients for 2 minutes
    .venv/bin/python bench/bench_load.py --soak           # 50 clients for 10 minutes: is the RSS flat?
    .venv/bin/python bench/bench_load.py --quick          # a few clients for a few seconds
    .venv/bin/python bench/bench_load.py --layers /tmp/x  # also time the server's layers into /tmp/x.layers.json

Adding a kind of client: write an `async def role(load, session, name)` that
loops `while load.running()`, times its requests with `load.timed(...)` or by appending to `load.latencies[kind]`
(and to `load.failures` when one fails), and records the runs it was handed and labeled in `load.reserved[name]`
and `load.labeled[name]` (the store check reads every label of a queued run). `session` is an MCP
client, or for a role in `PAGE_ROLES` an `httpx2.AsyncClient` of the page. Register the role in `ROLES`, give
it a count in `Mix` and deal it in `clients_of`; the checks after the run then cover it too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    FAKE_KEY,
    BenchResult,
    Figure,
    JudgeProcess,
    at_most,
    cpu_seconds,
    median,
    percentile,
    synthetic_runs,
)

DESCRIPTION = (
    "50 clients on one `align-mcp serve --http`: labelers over MCP and the label page, readers, an alignment"
)
EVALUATOR = "correctness"
STEADY = (
    "steady"  # the aligner's evaluator: the seed labels only, so every round judges the same number of runs
)
READ_P95_MS = 50.0
RSS_FLAT = 0.05  # the soak's RSS may grow by at most this share between its second minute and its end
READS = ("list_queues", "get_misaligned")


@dataclass(frozen=True)
class Mix:
    """How many clients of each kind, and how long they wait between their requests (a labeler's think time)."""

    labelers: int = 24
    page_labelers: int = 8
    readers: int = 17
    aligners: int = 1
    labeler_pause: float = 1.0
    reader_pause: float = 1.0
    batch: int = 5
    jitter: float = 0.5
    """Each pause is drawn from pause × [1 − jitter, 1 + jitter] (the mean stays), and each client starts within
    its first pause: people do not click in step. 0 keeps every client in step, all 50 asking at once."""

    @property
    def clients(self) -> int:
        return self.labelers + self.page_labelers + self.readers + self.aligners


@dataclass
class Load:
    """What the clients share while they run: the deadline, their sessions' timings, and what they were handed."""

    url: str
    deadline: float
    mix: Mix
    draft: str
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)
    reserved: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    labeled: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    alignments: list[dict[str, Any]] = field(default_factory=list)
    queue_emptied: bool = False
    server_cpu: float | None = None  # the server's CPU seconds over the measured window (set by the parent)
    client_cpu: float = 0.0  # the client processes' CPU seconds over the measured window
    idle_reads: list[float] = field(default_factory=list)  # one client's reads before the load (the floor)
    oversleep: list[float] = field(default_factory=list)  # how late a 10 ms sleep wakes up during the load

    def running(self) -> bool:
        return time.time() < self.deadline and not self.queue_emptied

    async def pause(self, seconds: float) -> None:
        """A client's think time: `seconds` on average, spread by the mix's jitter."""
        spread = self.mix.jitter
        await anyio.sleep(seconds * random.uniform(1 - spread, 1 + spread) if spread else seconds)

    def report(self) -> dict[str, Any]:
        """What this process's clients saw, as JSON for the parent."""
        return {
            "latencies": self.latencies,
            "failures": self.failures,
            "reserved": self.reserved,
            "labeled": self.labeled,
            "alignments": self.alignments,
            "queue_emptied": self.queue_emptied,
            "client_cpu": self.client_cpu,
        }

    def merge(self, other: dict[str, Any]) -> None:
        """Add another process's report to this one."""
        for tool, values in other["latencies"].items():
            self.latencies[tool].extend(values)
        self.failures.extend(other["failures"])
        for name, ids in other["reserved"].items():
            self.reserved[name].extend(ids)
        for name, ids in other["labeled"].items():
            self.labeled[name].extend(ids)
        self.alignments.extend(other["alignments"])
        self.queue_emptied = self.queue_emptied or other["queue_emptied"]
        self.client_cpu += other["client_cpu"]

    async def timed(self, session: Any, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """Call a tool, timing it; a tool error or an exception is a failure (recorded, and None returned)."""
        started = time.perf_counter()
        try:
            result = await session.call_tool(tool, arguments)
        except Exception as e:  # every failure is counted and shown, whatever its kind
            self.failures.append(f"{tool}: {type(e).__name__}: {e}")
            return None
        self.latencies[tool].append(time.perf_counter() - started)
        if result.is_error:
            text = result.content[0].text if result.content else ""
            self.failures.append(f"{tool}: {text}")
            return None
        content: dict[str, Any] = result.structured_content or {}
        return content


Role = Callable[[Load, Any, str], Awaitable[None]]


async def labeler(load: Load, session: Any, name: str) -> None:
    """Reserve a batch, label every run of it (pass or fail by the run's number), pause, repeat."""
    while load.running():
        page = await load.timed(
            session, "next_items", {"evaluator": EVALUATOR, "labeler": name, "limit": load.mix.batch}
        )
        if page is None:
            await load.pause(load.mix.labeler_pause)
            continue
        ids = [item["run_id"] for item in page["items"]]
        if not ids:
            load.queue_emptied = True
            return
        load.reserved[name].extend(ids)
        for run_id in ids:
            score = int(run_id.rsplit("-", 1)[1]) % 2
            stored = await load.timed(
                session,
                "submit_label",
                {"evaluator": EVALUATOR, "run_id": run_id, "score": score, "labeler": name},
            )
            if stored is not None:
                load.labeled[name].append(run_id)
            await load.pause(load.mix.labeler_pause)


async def reader(load: Load, session: Any, name: str) -> None:
    """List the queues, then a page of misaligned cases, pausing between them."""
    while load.running():
        await load.timed(session, "list_queues", {})
        await load.pause(load.mix.reader_pause)
        await load.timed(session, "get_misaligned", {"evaluator": EVALUATOR, "limit": 5})
        await load.pause(load.mix.reader_pause)


async def aligner(load: Load, session: Any, name: str) -> None:
    """Keep one alignment running: a new draft each round (so every example is judged), then run_alignment.

    It aligns a second evaluator over the seed labels, so every round does the same work and the server's memory
    over a soak shows leaks, not a reference set that grows with the labelers' work."""
    rounds = 0
    while load.running():
        rounds += 1
        prompt = f"{load.draft}\n\n(load round {rounds})"
        if await load.timed(session, "update_draft", {"evaluator": STEADY, "prompt": prompt}) is None:
            continue
        report = await load.timed(session, "run_alignment", {"evaluator": STEADY, "compare": False})
        if report is not None:
            run = report["run"]
            load.alignments.append({k: run[k] for k in ("id", "status", "judged", "total", "requests")})


async def page_request(load: Load, page: Any, kind: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """POST to one of the label page's endpoints, timing it; a refusal (status or `error`) is a failure."""
    started = time.perf_counter()
    try:
        response = await page.post(f"api/{kind.removeprefix('page_')}", json=body)
        answer: dict[str, Any] = response.json()
    except Exception as e:  # every failure is counted and shown, whatever its kind
        load.failures.append(f"{kind}: {type(e).__name__}: {e}")
        return None
    load.latencies[kind].append(time.perf_counter() - started)
    if response.status_code != 200 or "error" in answer:
        load.failures.append(f"{kind}: {response.status_code} {answer.get('error', answer)}")
        return None
    return answer


async def page_labeler(load: Load, page: Any, name: str) -> None:
    """The label page as its script drives it: ask for the next run, then label it (pass or fail by its number)
    with `then_next`, which stores the label and hands over the next run in one round trip; pause, repeat."""
    shown = await page_request(load, page, "page_next", {"evaluator": EVALUATOR, "labeler": name, "skip": []})
    while load.running():
        if shown is None:
            await load.pause(load.mix.labeler_pause)
            shown = await page_request(
                load, page, "page_next", {"evaluator": EVALUATOR, "labeler": name, "skip": []}
            )
            continue
        run_id = shown["run_id"]
        if run_id is None:
            load.queue_emptied = True
            return
        handed = load.reserved[name]
        if not handed or handed[-1] != run_id:  # given back after a failed label: the same reservation
            handed.append(run_id)
        await load.pause(load.mix.labeler_pause)
        score = int(run_id.rsplit("-", 1)[1]) % 2
        body = {"evaluator": EVALUATOR, "run_id": run_id, "score": score, "labeler": name, "then_next": True}
        answer = await page_request(load, page, "page_label", {**body, "skip": []})
        if answer is not None:
            load.labeled[name].append(run_id)
        shown = None if answer is None else answer["next"]


ROLES: dict[str, Role] = {
    "labeler": labeler,
    "page_labeler": page_labeler,
    "reader": reader,
    "aligner": aligner,
}
PAGE_ROLES = ("page_labeler",)
"""Roles whose `session` is an HTTP client of the label page at /ui rather than an MCP client."""


# ---- the server -----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PROFILED = """
import cProfile, json, os, signal, sys, threading, time
import anyio, anyio.to_thread
from align_mcp.cli import main
from align_mcp.mcp import transport
from align_mcp.store import database

out = sys.argv.pop(1)
with_cprofile = sys.argv.pop(1) == "cprofile"
sys.argv[0] = "align-mcp"
profile = cProfile.Profile()
layers = {"request": [], "lock_wait": [], "lock_hold": [], "thread_wait": [], "loop_lag": [], "gc": []}
gc_started = [0.0]
def gc_timer(phase, info):
    if phase == "start":
        gc_started[0] = time.perf_counter()
    else:
        layers["gc"].append(time.perf_counter() - gc_started[0])
        layers.setdefault("gc%d" % info["generation"], []).append(time.perf_counter() - gc_started[0])
import gc
gc.callbacks.append(gc_timer)
if os.environ.get("BENCH_SWITCH_INTERVAL"):  # an experiment: how long a thread may hold the GIL when asked
    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))

class TimedLock:
    def __init__(self):
        self.lock, self.depth = threading.RLock(), threading.local()
    def __enter__(self):
        started = time.perf_counter()
        self.lock.acquire()
        depth = getattr(self.depth, "n", 0)
        if depth == 0:
            layers["lock_wait"].append(time.perf_counter() - started)
            self.depth.since = time.perf_counter()
        self.depth.n = depth + 1
        return self
    def __exit__(self, *exc):
        self.depth.n -= 1
        if self.depth.n == 0:
            layers["lock_hold"].append(time.perf_counter() - self.depth.since)
        self.lock.release()

opened = database.Store.__init__
def store_init(self, *args, **kwargs):
    opened(self, *args, **kwargs)
    self._lock = TimedLock()
database.Store.__init__ = store_init

run_sync = anyio.to_thread.run_sync
async def timed_run_sync(fn, *args, **kwargs):
    queued = time.perf_counter()
    def started(*a):
        layers["thread_wait"].append(time.perf_counter() - queued)
        return fn(*a)
    return await run_sync(started, *args, **kwargs)
anyio.to_thread.run_sync = timed_run_sync

async def lag():
    while True:
        started = time.perf_counter()
        await anyio.sleep(0.01)
        layers["loop_lag"].append(time.perf_counter() - started - 0.01)

app_of = transport.http_app
def http_app(*args, **kwargs):
    app = app_of(*args, **kwargs)
    ticking = []
    async def timed(scope, receive, send):
        if not ticking and scope["type"] == "http":
            ticking.append(1)
            import asyncio
            asyncio.get_running_loop().create_task(lag())
        started = time.perf_counter()
        try:
            await app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                layers["request"].append(time.perf_counter() - started)
    return timed
transport.http_app = http_app

def stop(*_):
    profile.disable()
    if with_cprofile:
        profile.dump_stats(out)
    with open(out + ".layers.json", "w") as f:
        json.dump(layers, f)
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
if with_cprofile:
    profile.enable()
try:
    main()
finally:
    stop()
"""
"""The server with its layers timed (each HTTP request in the ASGI app, the store's lock waited for and held,
a worker thread waited for, the event loop's lag), written as JSON to `<path>.layers.json` when it is terminated;
with "cprofile" after the path, also under cProfile (its event loop's thread: the MCP SDK, the transport, the
rendering), the stats written to the path (`--profile`, `--layers`)."""


class Server:
    """`align-mcp serve --http` on a loopback port, as a subprocess on `db`, judging with `judge_url`."""

    def __init__(
        self, db: Path, judge_url: str, log: Path, profile: Path | None = None, cprofile: bool = False
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log = log.open("w")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIGN_MCP_", "OPENAI_"))}
        env.update(
            ALIGN_MCP_DB=str(db),
            ALIGN_MCP_TOOLS="all",
            ALIGN_MCP_JUDGE_MODEL="fake-judge",
            OPENAI_BASE_URL=judge_url,
            OPENAI_API_KEY=FAKE_KEY,
            PYTHONUNBUFFERED="1",
        )
        command = ["serve", "--http", "--port", str(self.port)]
        launch = (
            ["-m", "align_mcp.cli"]
            if profile is None
            else ["-c", PROFILED, str(profile), "cprofile" if cprofile else "layers"]
        )
        self.proc = subprocess.Popen(
            [sys.executable, *launch, *command],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start in 60 s: {log.read_text()}") from None
                time.sleep(0.05)

    def rss_mib(self) -> float | None:
        """The server process's resident set size now, from /proc (None where /proc is missing)."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def cpu_seconds(self) -> float | None:
        """User + system CPU the server process has used so far, from /proc (None where /proc is missing)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# ---- seeding and checking the store ---------------------------------------------------------------------------


def seed(db: Path, queue_runs: int, labeled_runs: int, judge_url: str) -> str:
    """A store with `labeled_runs` labeled runs (alternately pass and fail), one alignment run of them (the judge
    passes everything, so the fails are misaligned) and `queue_runs` unlabeled runs queued; returns the draft."""
    from align_mcp import config
    from align_mcp.core.models import ScoreType
    from align_mcp.engine import alignment, evaluators, ingest, queues
    from align_mcp.store import Store

    with Store(db) as store:
        ingest.import_runs(store, "seed", runs=synthetic_runs(labeled_runs))
        for start in range(
            labeled_runs, labeled_runs + queue_runs, 10_000
        ):  # inline imports take 10k at most
            count = min(10_000, labeled_runs + queue_runs - start)
            ingest.import_runs(store, "queue", runs=synthetic_runs(count, start=start, labeled=False))
        evaluators.create(store, EVALUATOR, ScoreType(kind="binary"))
        evaluators.create(store, STEADY, ScoreType(kind="binary"), feedback_key=EVALUATOR)
        queues.add_to_queue(store, EVALUATOR, source="queue")
        settings = config.Settings(
            db_path=db,
            judge_model="fake-judge",
            judge_base_url=judge_url,
            judge_api_key=FAKE_KEY,
            judge_base_url_var=config.ENV_JUDGE_BASE_URL,
            judge_api_key_var=config.ENV_JUDGE_API_KEY,
            concurrency=8,
        )
        anyio.run(lambda: alignment.run_alignment(store, EVALUATOR, compare=False, env=settings))
        return evaluators.get(store, STEADY).draft


def check_store(db: Path, load: Load) -> dict[str, Any]:
    """What the store holds after the run, against what the clients were handed and stored."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT run_id, labeler, count(*) FROM labels WHERE evaluator = ? AND labeler != 'warm-up' "
            "AND run_id IN (SELECT id FROM runs WHERE source = 'queue') GROUP BY run_id",
            [EVALUATOR],
        ).fetchall()
    finally:
        conn.close()
    stored = {run_id: labeler for run_id, labeler, _ in rows}
    duplicates = sorted(run_id for run_id, _, n in rows if n > 1)
    submitted = {run_id: name for name, ids in load.labeled.items() for run_id in ids}
    handed: dict[str, list[str]] = defaultdict(list)
    for name, ids in load.reserved.items():
        for run_id in ids:
            handed[run_id].append(name)
    return {
        "labels_stored": len(stored),
        "labels_submitted": sum(len(ids) for ids in load.labeled.values()),
        "labels_stored_twice": duplicates,
        "labels_missing": sorted(set(submitted) - set(stored)),
        "labels_unexpected": sorted(set(stored) - set(submitted)),
        "labels_by_someone_else": sorted(r for r, name in submitted.items() if stored.get(r, name) != name),
        "runs_reserved_twice": sorted(r for r, names in handed.items() if len(names) > 1),
        "runs_reserved": len(handed),
    }


# ---- one run --------------------------------------------------------------------------------------------------


async def _client(url: str, stack: AsyncExitStack) -> Any:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = await stack.enter_async_context(httpx2.AsyncClient(timeout=120))
    return await stack.enter_async_context(Client(streamable_http_client(url, http_client=http), cache=None))


async def _page_client(url: str, stack: AsyncExitStack) -> Any:
    """An HTTP client of the label page mounted at /ui by `serve --http`, sending the page's own Origin (the
    page refuses a change from any other)."""
    import httpx2

    origin = url.removesuffix("/mcp")
    return await stack.enter_async_context(
        httpx2.AsyncClient(base_url=f"{origin}/ui/", headers={"Origin": origin}, timeout=120)
    )


async def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One client process: connect its clients, say "ready", wait for the start time on stdin, run them."""
    mix = Mix(**spec["mix"])
    load = Load(url=spec["url"], deadline=float("inf"), mix=mix, draft=spec["draft"])
    async with AsyncExitStack() as stack:
        sessions = [
            await (_page_client if kind in PAGE_ROLES else _client)(load.url, stack)
            for kind, _ in spec["clients"]
        ]
        for (kind, _), session in zip(spec["clients"], sessions, strict=True):
            if kind not in PAGE_ROLES:
                # The client checks each result against the tool's output schema, listing the tools on its
                # first call; list them now so that happens before the measured window (as a host does when
                # it connects).
                await session.list_tools()
        print("ready", flush=True)
        start, end = json.loads(await anyio.to_thread.run_sync(sys.stdin.readline))
        load.deadline = end
        await anyio.sleep(max(0.0, start - time.time()))
        cpu = cpu_seconds()
        async with anyio.create_task_group() as tg:
            for (kind, name), session in zip(spec["clients"], sessions, strict=True):
                tg.start_soon(_guarded, ROLES[kind], load, session, name)
        load.client_cpu = cpu_seconds() - cpu
    return load.report()


async def _guarded(role: Role, load: Load, session: Any, name: str) -> None:
    """Run one client; if it dies, say which one and why on stderr first (the task group's error nests the
    cause under one exception group per client, too deep for the traceback to show it)."""
    try:
        if load.mix.jitter:
            await anyio.sleep(random.uniform(0, load.mix.labeler_pause))
        await role(load, session, name)
    except BaseException as e:
        import traceback

        sys.stderr.write(f"client {name} died:\n{''.join(traceback.format_exception(e))}\n")
        raise


async def warm_up(url: str, draft: str, idle_reads: list[float]) -> None:
    """Call every tool the clients use once, so the measured window starts with the server's modules loaded
    (a tool imports its engine code on first use) rather than with 50 requests queued behind those imports."""
    async with AsyncExitStack() as stack:
        session = await _client(url, stack)
        calls: list[tuple[str, dict[str, Any]]] = [
            ("list_queues", {}),
            ("get_misaligned", {"evaluator": EVALUATOR, "limit": 5}),
            ("update_draft", {"evaluator": STEADY, "prompt": draft}),
            ("run_alignment", {"evaluator": STEADY, "compare": False}),
        ]
        for tool, arguments in calls:
            result = await session.call_tool(tool, arguments)
            if result.is_error:
                raise RuntimeError(f"warm-up {tool}: {result.content}")
        for _ in range(20):  # the same reads by one client on an idle server: the floor under the figures
            for tool, arguments in calls[:2]:
                started = time.perf_counter()
                await session.call_tool(tool, arguments)
                idle_reads.append(time.perf_counter() - started)
        page = await session.call_tool(
            "next_items", {"evaluator": EVALUATOR, "labeler": "warm-up", "limit": 1}
        )
        for item in (page.structured_content or {}).get("items", []):
            await session.call_tool(
                "submit_label",
                {"evaluator": EVALUATOR, "run_id": item["run_id"], "score": 1, "labeler": "warm-up"},
            )


def clients_of(mix: Mix, per_process: int) -> list[list[tuple[str, str]]]:
    """(kind, name) of every client, dealt into client processes of at most `per_process` each."""
    kinds = [
        ("aligner", mix.aligners),
        ("labeler", mix.labelers),
        ("page_labeler", mix.page_labelers),
        ("reader", mix.readers),
    ]
    everyone = [(kind, f"{kind}-{i:02d}") for kind, n in kinds for i in range(1, n + 1)]
    groups = max(1, -(-len(everyone) // per_process))
    return [everyone[g::groups] for g in range(groups)]


def _oversleep(load: Load) -> None:
    """How late this machine wakes a thread that sleeps 10 ms, all through the load: a CPU shared with other
    work delays every request by about this much at each hop (client, server loop, worker thread)."""
    while load.running():
        started = time.perf_counter()
        time.sleep(0.01)
        load.oversleep.append(time.perf_counter() - started - 0.01)


def _stderr(proc: subprocess.Popen[str]) -> str:
    """The last lines a finished client process wrote to stderr (its traceback)."""
    if proc.stderr is None:
        return ""
    lines = [line for line in proc.stderr.read().splitlines() if line.strip(" |+-^")]
    died = [i for i, line in enumerate(lines) if line.startswith("client ") and line.endswith(" died:")]
    if died:  # the first client's own traceback, which the nested groups at the end hide
        end = next(
            (i for i in range(died[0] + 1, len(lines)) if not lines[i].startswith((" ", "Trace"))), None
        )
        return "\n".join(lines[died[0] : None if end is None else end + 1])
    return "\n".join(lines[-12:])


def drive(
    load: Load,
    server: Server,
    seconds: float,
    rss: list[tuple[float, float]],
    rss_every: float,
    per_process: int,
) -> None:
    """Start the client processes, let them all connect, run them for `seconds`, sample the server's RSS."""
    anyio.run(warm_up, load.url, load.draft, load.idle_reads)
    spec = {"url": load.url, "mix": load.mix.__dict__, "draft": load.draft}
    procs = []
    for clients in clients_of(load.mix, per_process):
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({**spec, "clients": clients}) + "\n")
        proc.stdin.flush()
        procs.append(proc)
    try:
        for proc in procs:
            assert proc.stdout is not None
            said = proc.stdout.readline().strip()
            if said != "ready":
                raise RuntimeError(f"a client process said {said!r} instead of 'ready': {_stderr(proc)}")
        start = time.time() + 0.5
        load.deadline = start + seconds
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps([start, load.deadline]) + "\n")
            proc.stdin.close()
        time.sleep(max(0.0, start - time.time()))
        load.server_cpu = server.cpu_seconds()
        threading.Thread(target=_oversleep, args=(load,), daemon=True).start()
        while time.time() < load.deadline:
            value = server.rss_mib()
            if value is not None:
                rss.append((time.time() - start, value))
            time.sleep(rss_every)
        cpu = server.cpu_seconds()
        if cpu is not None and load.server_cpu is not None:
            load.server_cpu = cpu - load.server_cpu
        for proc in procs:
            assert proc.stdout is not None
            out = proc.stdout.read()
            proc.wait(timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"a client process failed with status {proc.returncode}: {_stderr(proc)}")
            load.merge(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None and not pipe.closed:
                    pipe.close()


def measure(
    seconds: float,
    mix: Mix,
    queue_runs: int,
    labeled_runs: int = 200,
    judge_latency: float = 0.02,
    rss_every: float = 1.0,
    per_process: int = 10,
    profile: Path | None = None,
    cprofile: bool = False,
) -> dict[str, Any]:
    """Run the load for `seconds` and return the figures and the checks (plain data, for the bench and a test);
    with `profile`, the server runs under cProfile and its stats are written there."""
    with tempfile.TemporaryDirectory() as tmp, JudgeProcess(judge_latency) as judge:
        db = Path(tmp) / "align.db"
        draft = seed(db, queue_runs, labeled_runs, judge.base_url)
        server = Server(db, judge.base_url, Path(tmp) / "server.log", profile, cprofile)
        try:
            rss: list[tuple[float, float]] = []
            idle = server.rss_mib()
            load = Load(url=server.url, deadline=float("inf"), mix=mix, draft=draft)
            wall = time.monotonic()
            drive(load, server, seconds, rss, rss_every, per_process)
            wall = time.monotonic() - wall
            after = server.rss_mib()
            log = (Path(tmp) / "server.log").read_text()
        finally:
            server.close()
        checks = check_store(db, load)
    reads = [x for tool in READS for x in load.latencies.get(tool, [])]
    requests = sum(len(v) for v in load.latencies.values()) + len(load.failures)
    return {
        "seconds": seconds,
        "wall": wall,
        "clients": mix.clients,
        "mix": mix.__dict__,
        "requests": requests,
        "failures": load.failures[:20],
        "failure_count": len(load.failures),
        "queue_emptied": load.queue_emptied,
        "server_cpu_s": load.server_cpu,
        "client_cpu_s": load.client_cpu,
        "load_average": os.getloadavg(),
        "latency_ms": {
            tool: {
                "n": len(v),
                "p50": 1000 * median(v),
                "p95": 1000 * percentile(v, 95),
                "max": 1000 * max(v),
            }
            for tool, v in sorted(load.latencies.items())
            if v
        },
        "read_p95_ms": 1000 * percentile(reads, 95) if reads else None,
        "idle_read_p50_ms": 1000 * median(load.idle_reads),
        "idle_read_p95_ms": 1000 * percentile(load.idle_reads, 95),
        "oversleep_p50_ms": 1000 * median(load.oversleep) if load.oversleep else None,
        "oversleep_p95_ms": 1000 * percentile(load.oversleep, 95) if load.oversleep else None,
        "read_p50_ms": 1000 * median(reads) if reads else None,
        "alignments": load.alignments,
        "rss_idle_mib": idle,
        "rss_mib": [(round(t, 1), round(v, 1)) for t, v in rss],
        "rss_after_mib": after,
        "server_log_tail": log[-2000:],
        **checks,
    }


def rss_growth(samples: list[tuple[float, float]]) -> tuple[float | None, float | None]:
    """(MiB, share) the RSS grew from the median of its second tenth to the median of its last tenth."""
    if len(samples) < 20:
        return None, None
    values = [v for _, v in samples]
    tenth = len(values) // 10
    early = median(values[tenth : 2 * tenth])
    late = median(values[-tenth:])
    return late - early, (late - early) / early


def figures(m: dict[str, Any], result: BenchResult, soak: bool = False) -> None:
    rate = m["requests"] / m["seconds"]
    result.add(
        Figure(
            "clients",
            m["clients"],
            note=f"{m['mix']['labelers']} MCP labelers, {m['mix']['page_labelers']} page labelers, "
            f"{m['mix']['readers']} readers, "
            f"{m['mix']['aligners']} alignment; think time {m['mix']['labeler_pause']} s "
            f"± {100 * m['mix']['jitter']:.0f}%",
        ),
        Figure("requests per second (all clients)", rate, "req/s"),
        Figure(
            "server CPU per request",
            None if m["server_cpu_s"] is None else 1000 * m["server_cpu_s"] / max(1, m["requests"]),
            "ms",
            note=f"server busy {100 * (m['server_cpu_s'] or 0) / m['seconds']:.0f}% of one core; machine load "
            f"average {m['load_average'][0]:.1f} at the end",
        ),
        Figure(
            "client CPU per request (MCP client: HTTP, SSE, output-schema check)",
            1000 * m["client_cpu_s"] / max(1, m["requests"]),
            "ms",
        ),
        Figure("failed requests", m["failure_count"], target="0", met=m["failure_count"] == 0),
        Figure(
            "labels stored twice",
            len(m["labels_stored_twice"]),
            target="0",
            met=not m["labels_stored_twice"],
        ),
        Figure(
            "labels submitted but missing, or stored under another labeler",
            len(m["labels_missing"]) + len(m["labels_by_someone_else"]) + len(m["labels_unexpected"]),
            target="0",
            met=not (m["labels_missing"] or m["labels_by_someone_else"] or m["labels_unexpected"]),
        ),
        Figure(
            "runs reserved by two labelers",
            len(m["runs_reserved_twice"]),
            target="0",
            met=not m["runs_reserved_twice"],
        ),
        Figure("labels stored", m["labels_stored"], note=f"{m['runs_reserved']} runs reserved"),
        Figure(
            "read p95 (list_queues + get_misaligned)",
            m["read_p95_ms"],
            "ms",
            target=f"≤ {READ_P95_MS:g} ms",
            met=at_most(m["read_p95_ms"], READ_P95_MS),
            note=f"p50 {m['read_p50_ms']:.1f} ms" if m["read_p50_ms"] is not None else "",
        ),
    )
    result.add(
        Figure(
            "the same reads by one client on the idle server, p50 / p95",
            f"{m['idle_read_p50_ms']:.1f} / {m['idle_read_p95_ms']:.1f}",
            "ms",
            note="before the load: the floor of an MCP-over-HTTP call on this machine",
        )
    )
    if m["oversleep_p50_ms"] is not None:
        result.add(
            Figure(
                "machine: a 10 ms sleep wakes late by, p50 / p95",
                f"{m['oversleep_p50_ms']:.1f} / {m['oversleep_p95_ms']:.1f}",
                "ms",
                note="during the load; each request waits about this long at every hop when the CPU is shared",
            )
        )
    for tool, lat in m["latency_ms"].items():
        result.add(
            Figure(f"{tool} p50 / p95", f"{lat['p50']:.1f} / {lat['p95']:.1f}", "ms", note=f"n = {lat['n']}")
        )
    done = [a for a in m["alignments"] if a["status"] == "completed"]
    result.add(
        Figure(
            "alignment runs completed during the load",
            len(done),
            note=f"{sum(a['requests'] for a in done)} judge requests",
        )
    )
    rss = [v for _, v in m["rss_mib"]]
    if rss:
        result.add(
            Figure(
                "server RSS idle → peak → end",
                f"{m['rss_idle_mib']:.0f} → {max(rss):.0f} → {rss[-1]:.0f}",
                "MiB",
            )
        )
    grew, share = rss_growth(m["rss_mib"])
    if grew is not None and share is not None:
        result.add(
            Figure(
                "server RSS growth, second tenth → last tenth" + (" (10-minute soak)" if soak else ""),
                100 * share,
                "%",
                target=f"≤ {100 * RSS_FLAT:g}% (flat)" if soak else None,
                met=share <= RSS_FLAT if soak else None,
                note=f"{grew:+.1f} MiB",
            )
        )


def run(
    quick: bool = False,
    soak: bool = False,
    seconds: float | None = None,
    mix: Mix | None = None,
    profile: Path | None = None,
    cprofile: bool = False,
) -> BenchResult:
    result = BenchResult("load")
    if quick:
        mix = mix or Mix(
            labelers=3, page_labelers=2, readers=2, aligners=1, labeler_pause=0.05, reader_pause=0.05
        )
        m = measure(seconds or 4.0, mix, queue_runs=400, labeled_runs=40, profile=profile, cprofile=cprofile)
    else:
        m = measure(
            seconds or (600.0 if soak else 120.0),
            mix or Mix(),
            queue_runs=40_000,
            profile=profile,
            cprofile=cprofile,
        )
    figures(m, result, soak=soak)
    result.details = {k: v for k, v in m.items() if k != "rss_mib"} | {"rss_mib": m["rss_mib"][::5]}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few clients for a few seconds")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--soak", action="store_true", help="10 minutes instead of 2: is the server's RSS flat?"
    )
    parser.add_argument(
        "--seconds", type=float, help="how long the load lasts (default 120, or 600 with --soak)"
    )
    parser.add_argument("--labelers", type=int, default=Mix.labelers)
    parser.add_argument("--page-labelers", type=int, default=Mix.page_labelers)
    parser.add_argument("--readers", type=int, default=Mix.readers)
    parser.add_argument("--aligners", type=int, default=Mix.aligners)
    parser.add_argument("--pause", type=float, default=Mix.labeler_pause, help="each client's think time (s)")
    parser.add_argument(
        "--jitter",
        type=float,
        default=Mix.jitter,
        help="spread of each think time, as a share of it (0: every client in step)",
    )
    parser.add_argument(
        "--layers",
        type=Path,
        help="time the server's layers (request, store lock, worker threads, loop lag) into <this>.layers.json",
    )
    parser.add_argument(
        "--profile", type=Path, help="as --layers, and run the server under cProfile with its stats here"
    )
    parser.add_argument("--json", type=Path, help="also write every figure and detail to this file")
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(sys.stdin.readline())
        print(json.dumps(anyio.run(worker, spec)), flush=True)
        return 0
    mix = Mix(
        labelers=args.labelers,
        page_labelers=args.page_labelers,
        readers=args.readers,
        aligners=args.aligners,
        labeler_pause=args.pause,
        reader_pause=args.pause,
        jitter=args.jitter,
    )
    result = run(
        quick=args.quick,
        soak=args.soak,
        seconds=args.seconds,
        mix=None if args.quick else mix,
        profile=args.profile or args.layers,
        cprofile=args.profile is not None,
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_json(), indent=1, default=str))
    for f in result.figures:
        verdict = "" if f.met is None else ("  met" if f.met else "  NOT MET")
        target = f"  target {f.target}" if f.target else ""
        print(f"{f.name:<62} {f.shown():>22}{target}{verdict}{'  (' + f.note + ')' if f.note else ''}")
    print(json.dumps({k: result.details[k] for k in ("failures", "alignments")}, indent=1)[:3000])
    return 0 if all(f.met is not False for f in result.figures) else 1


if __name__ == "__main__":
    sys.exit(main())
