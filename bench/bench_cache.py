"""The judge cache: re-running an unchanged prompt over unchanged labels makes no judge calls.

One cold run over N labeled examples fills the cache; the re-run (alone, then with the default comparison
against the last saved version) is timed next to it, and the fake judge counts the calls it receives.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import anyio

from _common import FAKE_KEY, BenchResult, Figure, Timer, env, synthetic_runs

NAME = "cache"
DESCRIPTION = "judge calls and wall time of a re-run with unchanged prompt and labels"


def run(quick: bool = False) -> BenchResult:
    from align_mcp.core.models import AlignmentReport, ScoreType
    from align_mcp.engine import alignment as align
    from align_mcp.engine import evaluators, ingest
    from align_mcp.store import Store
    from align_mcp.testing.fakejudge import FakeJudgeServer

    n = 60 if quick else 1000
    latency = 0.01 if quick else 0.05
    concurrency = 16
    result = BenchResult(NAME)
    with (
        tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp,
        FakeJudgeServer(latency=latency) as srv,
        env(
            ALIGN_MCP_JUDGE_BASE_URL=srv.base_url, ALIGN_MCP_JUDGE_API_KEY=FAKE_KEY, ALIGN_MCP_JUDGE_MODEL="m"
        ),
        Store(Path(tmp) / "cache.db") as store,
    ):
        evaluators.create(store, "correctness", ScoreType(kind="binary"))
        ingest.import_runs(store, "bench", runs=synthetic_runs(n))

        async def align_once(compare: bool) -> AlignmentReport:
            return await align.run_alignment(
                store, "correctness", split="all", compare=compare, concurrency=concurrency
            )

        with Timer() as cold:
            first = anyio.run(align_once, False)
        calls_cold = srv.calls
        with Timer() as warm:
            again = anyio.run(align_once, False)
        calls_warm = srv.calls - calls_cold
        with Timer() as compared:
            third = anyio.run(align_once, True)
        calls_compared = srv.calls - calls_cold - calls_warm
    assert first.run.judged == n and again.run.judged == n, (first.run, again.run)
    result.add(
        Figure(f"cold run: judge calls (N={n})", calls_cold, "", f"= N ({n})", calls_cold == n),
        Figure(f"cold run wall (judge latency {latency:g}s, K={concurrency})", cold.wall, "s"),
        Figure("re-run: judge calls", calls_warm, "", "0", calls_warm == 0),
        Figure(
            "re-run: cache hits reported", again.run.cache_hits, "", f"= N ({n})", again.run.cache_hits == n
        ),
        Figure(f"re-run wall ({n} examples)", warm.wall, "s"),
        Figure("re-run wall / cold run wall", warm.wall / cold.wall, "×"),
        Figure("re-run CPU per example", warm.cpu * 1000 / n, "ms"),
        Figure(
            "re-run with comparison to the saved version: judge calls",
            calls_compared,
            "",
            "0",
            calls_compared == 0,
        ),
        Figure("re-run with comparison: wall", compared.wall, "s"),
    )
    result.details = {
        "n": n,
        "latency_s": latency,
        "concurrency": concurrency,
        "baseline_cache_hits": third.baseline.cache_hits if third.baseline else None,
    }
    return result


if __name__ == "__main__":
    out = run("--quick" in sys.argv)
    for f in out.figures:
        print(f"{f.name:70s} {f.shown()}")
