"""Model comparison: 3 judge models × N labeled examples vs one model's alignment run over the same N, side by side.

Both judge against the same fake judge (its own process, fixed latency) at the same concurrency K, on fresh
copies of one store (nothing from the cache), in alternating order for several rounds; the ratio is per round,
then the median. The three models' requests share the one limit K, so the floor is ceil(3N/K) / ceil(N/K) ≈ 3×.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

from _common import (
    FAKE_KEY,
    BenchResult,
    Figure,
    JudgeProcess,
    Timer,
    at_most,
    copy_db,
    env,
    median,
    synthetic_runs,
)

NAME = "compare"
DESCRIPTION = "3 judge models × N examples vs one model's alignment run, sharing one concurrency limit"
MODELS = ("judge-a", "judge-b", "judge-c")


def _prepare(db: Path, n: int) -> None:
    from align_mcp.core.models import ScoreType
    from align_mcp.engine import evaluators, ingest
    from align_mcp.store import Store

    with Store(db) as store:
        evaluators.create(store, "correctness", ScoreType(kind="binary"))
        ingest.import_runs(store, "bench", runs=synthetic_runs(n))


async def _one_model(db: Path, k: int) -> dict[str, Any]:
    from align_mcp.engine import alignment
    from align_mcp.store import Store

    with Store(db) as store:
        report = await alignment.run_alignment(
            store, "correctness", split="all", compare=False, concurrency=k
        )
    return {"judged": report.run.judged}


async def _compare(db: Path, k: int) -> dict[str, Any]:
    from align_mcp.core.comparison import JudgeModel
    from align_mcp.engine.compare import compare_models
    from align_mcp.store import Store

    with Store(db) as store:
        c = await compare_models(
            store, "correctness", [JudgeModel(model=m) for m in MODELS], split="all", concurrency=k, prices={}
        )
    return {"judged": sum(r.judged for r in c.models), "errors": sum(r.errors for r in c.models)}


def run(quick: bool = False) -> BenchResult:
    n, latency, k, rounds = (24, 0.1, 8, 1) if quick else (400, 1.0, 32, 2)
    result = BenchResult(NAME)
    walls: dict[str, list[float]] = {"one": [], "three": []}
    checks: dict[str, Any] = {"n": n, "latency_s": latency, "concurrency": k, "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        work = Path(tmp)
        template = work / "template.db"
        _prepare(template, n)
        with (
            JudgeProcess(latency) as judge,
            env(
                ALIGN_MCP_JUDGE_BASE_URL=judge.base_url,
                ALIGN_MCP_JUDGE_API_KEY=FAKE_KEY,
                ALIGN_MCP_JUDGE_MODEL=MODELS[0],
            ),
        ):
            # Warm up both paths once (imports, first connections) outside the timed rounds.
            warm = work / "warm.db"
            _prepare(warm, k)
            for who, job in (("one", _one_model), ("three", _compare)):
                anyio.run(job, copy_db(warm, work / f"warm-{who}.db"), k)
            order = ["one", "three"]
            for r in range(rounds):
                for who in order[r % 2 :] + order[: r % 2]:
                    db = copy_db(template, work / f"{who}-{r}.db")
                    judge.reset()
                    with Timer() as t:
                        out = anyio.run(_one_model if who == "one" else _compare, db, k)
                    stats = judge.stats()
                    walls[who].append(t.wall)
                    checks.setdefault(who, []).append({**out, **stats, "wall_s": round(t.wall, 3)})
                    db.unlink(missing_ok=True)
    label = f"N={n}, L={latency:g}s, K={k}"
    ratio = median([b / a for a, b in zip(walls["one"], walls["three"], strict=True)])
    floor = math.ceil(len(MODELS) * n / k) / math.ceil(n / k)
    peak = max(s["max_in_flight"] for s in checks["three"])
    result.add(
        Figure(f"one model's alignment run wall ({label})", median(walls["one"]), "s"),
        Figure(f"{len(MODELS)} models compared, wall", median(walls["three"]), "s"),
        Figure(
            f"{len(MODELS)} models / one model",
            ratio,
            "×",
            "≤ 3.1×",
            at_most(ratio, 3.1),
            f"floor {floor:.3f}×",
        ),
        Figure(
            "requests in flight at the server during the comparison (max)", peak, "", f"= K ({k})", peak == k
        ),
    )
    result.details = checks
    return result


if __name__ == "__main__":
    out = run("--quick" in sys.argv)
    for f in out.figures:
        print(f"{f.name:70s} {f.shown()}  {f.note}")
