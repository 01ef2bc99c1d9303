"""Store scale: import throughput vs raw `sqlite-utils insert`, and read latency with 1M runs and 100k labels.

The import is timed as two CLI processes side by side (`align-mcp import` and `sqlite-utils insert --nl`) on the
same JSONL file, alternating, with each process's peak RSS from wait4. The read latencies are p50/p95 of
`list_queues` and `get_misaligned` (the Python API the MCP tools call) on a store with a real alignment run
over the dev split, its results filled from the judge cache so the 70k-example run needs no judge calls.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from _common import (
    FAKE_KEY,
    BenchResult,
    Figure,
    Timer,
    at_least,
    at_most,
    env,
    median,
    percentile,
    synthetic_runs,
)

NAME = "store"
DESCRIPTION = "import vs sqlite-utils insert; list_queues / get_misaligned p50/p95 at 1M runs, 100k labels"
BIN = Path(sys.executable).parent


# Linux keeps a process's peak RSS across fork and exec, so a child forked straight from this (large) process
# reports this process's size. A small launcher forks the command instead and reports its wait4() figures.
_LAUNCHER = r"""
import json, os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "wall_s": time.perf_counter() - started,
                  "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss}), file=sys.stderr)
"""


def _child(cmd: list[str]) -> tuple[float, float, float]:
    """Run a command; (wall s, CPU s, peak RSS MiB) of that process alone."""
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines = done.stderr.strip().splitlines()
    stats = json.loads(lines[-1]) if lines else {"code": done.returncode}
    if done.returncode != 0 or stats.get("code") != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    return float(stats["wall_s"]), float(stats["cpu_s"]), stats["maxrss_kb"] / 1024


def _import_vs_sqlite_utils(n: int, rounds: int, work: Path) -> tuple[list[Figure], dict[str, Any]]:
    data = work / "runs.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for start in range(0, n, 10_000):
            for run in synthetic_runs(min(10_000, n - start), start=start, labeled=False):
                f.write(json.dumps(run, ensure_ascii=False) + "\n")
    size_mb = data.stat().st_size / 1e6
    ours: list[tuple[float, float, float]] = []
    raw: list[tuple[float, float, float]] = []
    for r in range(rounds):
        jobs: list[tuple[list[str], list[tuple[float, float, float]]]] = [
            (
                [
                    sys.executable,
                    "-m",
                    "align_mcp.cli",
                    "--db",
                    str(work / f"ours{r}.db"),
                    "import",
                    str(data),
                    "--source",
                    "bench",
                ],
                ours,
            ),
            (
                [
                    str(BIN / "sqlite-utils"),
                    "insert",
                    str(work / f"raw{r}.db"),
                    "runs",
                    str(data),
                    "--nl",
                    "--pk",
                    "id",
                ],
                raw,
            ),
        ]
        for cmd, sink in jobs if r % 2 == 0 else jobs[::-1]:
            sink.append(_child(cmd))
        for p in work.glob(f"*{r}.db*"):
            p.unlink()
    idle = _child([sys.executable, "-m", "align_mcp.cli", "--version"])
    ratio = median([b[0] / a[0] for a, b in zip(ours, raw, strict=True)])
    figures = [
        Figure(
            f"import {n:,} runs ({size_mb:.0f} MB JSONL): align-mcp import wall",
            median([o[0] for o in ours]),
            "s",
        ),
        Figure("  raw sqlite-utils insert --nl --pk id wall", median([o[0] for o in raw]), "s"),
        Figure("import throughput: align-mcp / sqlite-utils", ratio, "×", "≥ 0.7×", at_least(ratio, 0.7)),
        Figure("import throughput: align-mcp", n / median([o[0] for o in ours]), "runs/s"),
        Figure("import peak memory (RSS): align-mcp", median([o[2] for o in ours]), "MiB"),
        Figure("  peak memory (RSS): sqlite-utils insert", median([o[2] for o in raw]), "MiB"),
        Figure("  peak memory (RSS): `align-mcp --version` (interpreter + imports)", idle[2], "MiB"),
    ]
    details = {
        "import_s": [o[0] for o in ours],
        "sqlite_utils_s": [o[0] for o in raw],
        "import_cpu_s": [o[1] for o in ours],
        "jsonl_mb": round(size_mb, 1),
    }
    return figures, details


def _timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _scale(
    n_runs: int, n_labels: int, n_pending: int, repeats: int, work: Path
) -> tuple[list[Figure], dict[str, Any]]:
    from align_mcp.core.models import ScoreType
    from align_mcp.engine import alignment as align
    from align_mcp.engine import evaluators, holdout, ingest, queues
    from align_mcp.llm.endpoint import Endpoint
    from align_mcp.llm.judge import build_messages, cache_key, response_schema
    from align_mcp.store import CacheEntry, Store
    from align_mcp.testing.fakejudge import FakeJudgeServer

    details: dict[str, Any] = {}
    figures: list[Figure] = []
    db = work / "scale.db"
    with (
        FakeJudgeServer() as srv,
        env(
            ALIGN_MCP_JUDGE_BASE_URL=srv.base_url, ALIGN_MCP_JUDGE_API_KEY=FAKE_KEY, ALIGN_MCP_JUDGE_MODEL="m"
        ),
        Store(db) as store,
    ):
        evaluators.create(store, "correctness", ScoreType(kind="binary"))
        with Timer() as t_import:
            for start in range(0, n_runs, 10_000):
                batch = synthetic_runs(min(10_000, n_runs - start), start=start, labeled=False)
                for i, run in enumerate(batch):
                    if start + i < n_labels:
                        run["feedback"] = {"correctness": {"score": (start + i) % 2, "comment": "bench"}}
                ingest.import_runs(store, "bench", runs=batch)
        details["build_import_s"] = round(t_import.wall, 1)
        with Timer() as t_queue:
            pending = [f"run-{i:07d}" for i in range(n_labels, n_labels + n_pending)]
            for start in range(0, len(pending), 10_000):
                queues.add_to_queue(store, "correctness", run_ids=pending[start : start + 10_000])
        details["build_queue_s"] = round(t_queue.wall, 1)
        holdout.ensure_split(store, "correctness")
        dev = holdout.split_ids(store, "correctness", "dev")
        # Fill the judge cache so the real alignment run below judges every dev example without a call:
        # every 10th example gets the opposite of its human score, so ~10% are misaligned.
        ev = evaluators.get(store, "correctness")
        endpoint = Endpoint(
            base_url=srv.base_url, api_key=FAKE_KEY, model="m"
        )  # the run's: the cache key names it
        schema = response_schema(ev.score_type, ev.judge.reasoning)
        human = dict(queues.reference_set(store, "correctness"))
        rows = []
        ids = sorted(dev)
        for start in range(0, len(ids), 10_000):
            chunk = ids[start : start + 10_000]
            runs = store.get_runs(chunk)
            for rid in chunk:
                key = cache_key(
                    endpoint,
                    ev.judge,
                    build_messages(ev.draft, runs[rid].as_dict(), ev.judge.reasoning),
                    schema,
                )
                n = int(rid.split("-")[1])
                score = human[rid] if n % 10 else 1 - int(human[rid])
                rows.append(CacheEntry(key, score, "bench " * 30, 400, 60, 0))
        store.cache_put(rows)
        with Timer() as t_align:
            report = anyio.run(lambda: align.run_alignment(store, "correctness", compare=False))
        assert srv.calls == 0, srv.calls
        details["align_from_cache_s"] = round(t_align.wall, 2)
        details["alignment_run"] = {
            "split": report.run.split,
            "total": report.run.total,
            "cache_hits": report.run.cache_hits,
        }
        misaligned = align.get_misaligned(store, "correctness")
        details["misaligned_total"] = misaligned.total
        lq = _timed(lambda: queues.list_queues(store), repeats)
        gm = _timed(lambda: align.get_misaligned(store, "correctness"), repeats)
        last = max(0, misaligned.total - 10)
        gm_last = _timed(lambda: align.get_misaligned(store, "correctness", offset=last), repeats)
    size_mb = db.stat().st_size / 1e6
    scale = f"{n_runs:,} runs, {n_labels:,} labels"
    for label, samples in (
        ("list_queues", lq),
        ("get_misaligned (first page)", gm),
        ("get_misaligned (last page)", gm_last),
    ):
        p95 = percentile(samples, 95)
        figures.append(Figure(f"{label} p50 ({scale})", percentile(samples, 50), "ms"))
        figures.append(Figure(f"{label} p95", p95, "ms", "≤ 20 ms", at_most(p95, 20)))
        figures.append(Figure(f"{label} p95 / 20 ms target", p95 / 20, "×"))
    figures.append(
        Figure(f"alignment run of {report.run.total:,} dev examples, all from the cache", t_align.wall, "s")
    )
    figures.append(
        Figure(
            f"building the store: import {n_runs:,} runs inline (10k per call)",
            n_runs / t_import.wall,
            "runs/s",
        )
    )
    details["db_mb"] = round(size_mb, 1)
    details["list_queues_ms"] = [round(x, 2) for x in lq]
    details["get_misaligned_ms"] = [round(x, 2) for x in gm]
    return figures, details


def run(quick: bool = False) -> BenchResult:
    result = BenchResult(NAME)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        work = Path(tmp)
        if quick:
            figs, det = _import_vs_sqlite_utils(2_000, 1, work)
        else:
            figs, det = _import_vs_sqlite_utils(100_000, 3, work)
        result.add(*figs)
        result.details["import"] = det
        if quick:
            figs, det = _scale(20_000, 2_000, 2_000, 5, work)
        else:
            figs, det = _scale(1_000_000, 100_000, 100_000, 50, work)
        result.add(*figs)
        result.details["scale"] = det
    return result


if __name__ == "__main__":
    out = run("--quick" in sys.argv)
    for f in out.figures:
        print(f"{f.name:70s} {f.shown()}")
    print(json.dumps(out.details, indent=1)[:3000])
