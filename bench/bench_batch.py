"""Batch path at scale: N unlabeled runs judged through the fake Batch API (instant replies), with peak memory.

Usage: .venv/bin/python bench/bench_batch.py [--runs 1000000]

A temporary store gets N small runs and a binary evaluator. The fake Batch API runs in its own process (so its
memory and CPU are not this process's). Timed phases: build (writing every JSONL input part alone, a separate
pass, parts kept on disk), upload + create (those parts sent to the fake, timed alone), then the engine end to
end on a fresh job: build + upload + create, and merge + store (streaming each ended batch's output file and
storing every verdict in the judge cache; timed from the read that saw a batch end to the next read). This
process's RSS is sampled from /proc every 50 ms in a thread. Not in run_all.py: a million requests take minutes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from align_mcp.core.models import ScoreType
from align_mcp.engine import evaluators
from align_mcp.engine.batches import BatchOptions, run_job
from align_mcp.llm.batch import BatchApi, write_parts
from align_mcp.llm.client import open_client
from align_mcp.llm.endpoint import Endpoint
from align_mcp.llm.judge import build_messages, cache_key, response_schema
from align_mcp.store import Store
from align_mcp.store import batches as jobs

CHUNK = 2000
FAKE = """
import sys, time
from align_mcp.testing.fakebatch import FakeBatchServer
srv = FakeBatchServer(in_progress_reads=0, background=True).start()
print(srv.base_url, flush=True)
sys.stdin.readline()
srv.stop()
"""


@dataclass
class Run:
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    reference_outputs: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    outputs_b: dict[str, Any] | None = None


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())


def ids(n: int) -> Iterator[list[str]]:
    for start in range(0, n, CHUNK):
        yield [f"u{i:07d}" for i in range(start, min(n, start + CHUNK))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    n = parser.parse_args().runs
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    store = Store(work / "align.db")
    t0 = time.perf_counter()
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    store.insert_source("prod", "project")
    for chunk in ids(n):
        runs = [Run(rid, {"question": f"What is {rid}?"}, {"answer": f"It is {rid}."}) for rid in chunk]
        with store.transaction():
            store.insert_runs("prod", runs)
    print(f"seeded {n:,} runs in {time.perf_counter() - t0:.1f}s", flush=True)

    ev = evaluators.get(store, "correctness")
    settings = ev.judge
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert fake.stdout is not None and fake.stdin is not None
    base_url = fake.stdout.readline().strip()
    endpoint = Endpoint(base_url, "sk-bench", "fake-judge")
    schema = response_schema(ev.score_type, settings.reasoning)

    def requests() -> Iterator[tuple[str, list[dict[str, str]]]]:
        for chunk in ids(n):
            runs = store.get_runs(chunk)
            for rid in chunk:
                messages = build_messages(ev.draft, runs[rid].as_dict(), settings.reasoning)
                yield cache_key(endpoint, settings, messages, schema), messages

    sampler = Sampler()
    sampler.start()
    base = rss_mb()

    async def no_wait(seconds: float) -> None:
        await anyio.sleep(0.01)

    with tempfile.TemporaryDirectory(prefix="bench-batch-parts-") as tmp:
        t = time.perf_counter()
        built = [part.path for part in write_parts(requests(), endpoint, settings, schema, Path(tmp))]
        build_s = time.perf_counter() - t

        async def upload_all() -> None:
            async with open_client(endpoint, settings) as client:
                api = BatchApi(client)
                for path in built:
                    file_id = await api.upload(path)
                    await api.create(file_id, {"bench": "upload"})
                    path.unlink()

        t = time.perf_counter()
        anyio.run(upload_all)
        upload_s = time.perf_counter() - t
    build_peak, sampler.peak = sampler.peak, 0.0

    # End to end through the engine: build + upload + create, then poll and merge each part as it ends.
    marks: list[tuple[float, str]] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        marks.append((time.perf_counter(), message))

    job = jobs.create_job(store, "pass_rate", "correctness", None, endpoint.base_url, endpoint.model)
    t = time.perf_counter()
    anyio.run(
        lambda: run_job(
            store,
            job,
            requests,
            endpoint,
            settings,
            ev.score_type,
            what="bench",
            on_progress=progress,
            options=BatchOptions(sleep=no_wait, first_wait=0.01),
        )
    )
    end = time.perf_counter()
    sampler.stop.set()
    sampler.join()
    fake.stdin.write("\n")
    fake.stdin.flush()
    fake.wait()
    submit_s = marks[0][0] - t
    # A part is merged between the read that saw it end and the next progress (the next part's first read).
    merge_s = 0.0
    for i, (at, message) in enumerate(marks):
        if " completed: " in message:
            merge_s += (marks[i + 1][0] if i + 1 < len(marks) else end) - at
    stored = store.read("SELECT count(*) FROM judge_cache")[0][0]
    errors = len(jobs.errors(store, job))
    print(
        f"runs {n:,}; parts {len(built)}; build {build_s:.1f}s ({n / build_s:,.0f} requests/s); upload+create "
        f"{upload_s:.1f}s; engine end to end {end - t:.1f}s (build+upload+create {submit_s:.1f}s, merge+store "
        f"{merge_s:.1f}s = {stored / merge_s:,.0f} results/s into the store); stored {stored:,}, errors {errors}; "
        f"RSS at start {base:.0f} MB, peak {build_peak:.0f} MB over build and upload, {sampler.peak:.0f} MB over "
        "the engine's run (target flat, < 300 MB)",
        flush=True,
    )
    store.close()
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
