"""Batch path at scale: N unlabeled runs judged through the fake Batch API (instant replies), with peak memory.

Usage: .venv/bin/python bench/bench_batch.py [--runs 1000000] [--pass-rate-only]

First, end to end: `corrected_pass_rate(source=..., batch=True)` over the N unlabeled runs (200 labeled runs give
the test split; the fake's verdict follows the run number, so the judge agrees with every label), with this
process's peak RSS sampled over the whole call and the time of each phase (counting the unlabeled runs and the
test split before the first poll of the unlabeled runs' batches, build + upload + create, merge + store, then
counting the verdicts and the estimate). Then the machinery alone (skipped with --pass-rate-only):

A temporary store gets N small runs and a binary evaluator. The fake Batch API runs in its own process (so its
memory and CPU are not this process's). Timed phases: build (writing every JSONL input part alone, a separate
pass, parts kept on disk), upload + create (those parts sent to the fake, timed alone), then the engine end to
end on a fresh job: build + upload + create, and merge + store (streaming each ended batch's output file and
storing every verdict in the judge cache; timed from the read that saw a batch end to the next read). This
process's RSS is sampled from /proc every 50 ms in a thread. Not in run_all.py: a million requests take minutes.
"""

from __future__ import annotations

import argparse
import os
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
from align_mcp.diagnose.pass_rate import corrected_pass_rate
from align_mcp.engine import evaluators, ingest
from align_mcp.engine.batches import BatchOptions, run_job
from align_mcp.llm.batch import BatchApi, write_parts
from align_mcp.llm.client import open_client
from align_mcp.llm.endpoint import Endpoint
from align_mcp.llm.judge import build_messages, cache_key, response_schema
from align_mcp.store import Store
from align_mcp.store import batches as jobs

CHUNK = 2000
LABELED = 200
MODEL = "fake-judge"
FAKE = """
import sys, time
from align_mcp.testing.fakebatch import FakeBatchServer
from align_mcp.testing.completions import Reply, prompt_text, section

def verdict(body):
    outputs = section(prompt_text(body), "outputs") or ""
    return Reply(score=1 if int(outputs.rsplit(".", 1)[0][-1]) < 7 else 0, reasoning="r")

srv = FakeBatchServer(verdict, in_progress_reads=0, background=True).start()
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
    parser.add_argument("--pass-rate-only", action="store_true")
    args = parser.parse_args()
    n = args.runs
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    store = Store(work / "align.db")
    t0 = time.perf_counter()
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    store.insert_source("prod", "project")
    for chunk in ids(n):
        runs = [Run(rid, {"question": f"What is {rid}?"}, {"answer": f"It is {rid}."}) for rid in chunk]
        with store.transaction():
            store.insert_runs("prod", runs)
    labeled = [
        {
            "id": f"l{i:07d}",
            "inputs": {"question": f"What is l{i:07d}?"},
            "outputs": {"answer": f"It is l{i:07d}."},
            "feedback": {"correctness": {"score": 1 if i % 10 < 7 else 0}},
        }
        for i in range(LABELED)
    ]
    ingest.import_runs(store, "labeled", runs=labeled)
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
    os.environ.update(
        {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-bench", "ALIGN_MCP_JUDGE_MODEL": MODEL}
    )
    e2e = pass_rate_end_to_end(store, sampler)
    print(e2e, flush=True)
    if args.pass_rate_only:
        finish(fake, store, work)
        return

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
    stop_fake(fake)
    submit_s = marks[0][0] - t
    # A part is merged between the read that saw it end and the next progress (the next part's first read).
    merge_s = 0.0
    for i, (at, message) in enumerate(marks):
        if " completed: " in message:
            merge_s += (marks[i + 1][0] if i + 1 < len(marks) else end) - at
    errors = len(jobs.errors(store, job))
    row = jobs.get_job(store, job)
    stored = (row.requests if row is not None else 0) - errors
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


def stop_fake(fake: subprocess.Popen[str]) -> None:
    assert fake.stdin is not None
    if fake.poll() is None:
        fake.stdin.write("\n")
        fake.stdin.flush()
        fake.wait()


def finish(fake: subprocess.Popen[str], store: Store, work: Path) -> None:
    stop_fake(fake)
    store.close()
    shutil.rmtree(work)


def pass_rate_end_to_end(store: Store, sampler: Sampler) -> str:
    """corrected_pass_rate(batch=True) over the source's unlabeled runs, timed by phase, peak RSS over the call."""
    marks: list[tuple[float, str]] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        marks.append((time.perf_counter(), message))

    async def no_wait(seconds: float) -> None:
        await anyio.sleep(0.01)

    sampler.peak = 0.0
    start_rss = rss_mb()
    t = time.perf_counter()
    report = anyio.run(
        lambda: corrected_pass_rate(
            store,
            "correctness",
            source="prod",
            prompt="draft",
            on_progress=progress,
            batch=BatchOptions(sleep=no_wait, first_wait=0.01),
        )
    )
    end = time.perf_counter()
    peak = max(sampler.peak, rss_mb())
    ours = [(at, m) for at, m in marks if m.startswith("unlabeled runs")]
    first_poll = ours[0][0] if ours else end
    merge_s = 0.0
    last_merged = first_poll
    for i, (at, message) in enumerate(ours):
        if " completed: " in message:
            nxt = ours[i + 1][0] if i + 1 < len(ours) else None
            last_merged = nxt if nxt is not None else last_merged
            merge_s += (nxt if nxt is not None else at) - at
    # The last part's merge ends when counting begins; counting the verdicts takes the rest of the call.
    n = report.n_unlabeled + report.unlabeled_errors
    return (
        f"pass rate end to end over {n:,} unlabeled runs: {end - t:.1f}s, {n / (end - t):,.0f} runs/s; before the "
        f"first poll (count the unlabeled runs, judge the test split, build + upload + create) "
        f"{first_poll - t:.1f}s; polls and merges up to the last part's end {last_merged - first_poll:.1f}s "
        f"(merge + store of the parts before the last: {merge_s:.1f}s); the last part's merge, counting the "
        f"verdicts and the estimate {end - last_merged:.1f}s; requests {report.requests:,}, observed "
        f"{report.observed:.3f}, corrected {report.corrected:.3f} ({report.ci.low:.3f}-{report.ci.high:.3f}), "
        f"errors {report.unlabeled_errors}; RSS at the call's start {start_rss:.0f} MB, peak over the call "
        f"{peak:.0f} MB (target flat, < 300 MB)"
    )


if __name__ == "__main__":
    main()
