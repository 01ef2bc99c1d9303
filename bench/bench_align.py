"""Alignment throughput: align-mcp vs the physical limit, a bare AsyncOpenAI loop and DSPy Evaluate, side by side.

All three judge the same N labeled examples against the same fake judge (its own process, fixed latency) at
the same concurrency K, in rotating order, for several rounds; ratios are per round, then the median.
"""

from __future__ import annotations

import json
import logging
import math
import os
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

NAME = "align"
DESCRIPTION = "alignment throughput vs ceil(N/K)·L, a bare AsyncOpenAI loop and DSPy Evaluate"
MODEL = "fake-judge"


def _prepare(db: Path, n: int) -> None:
    from align_mcp.core.models import ScoreType
    from align_mcp.engine import evaluators, ingest
    from align_mcp.store import Store

    with Store(db) as store:
        evaluators.create(store, "correctness", ScoreType(kind="binary"))
        runs = synthetic_runs(n)
        for i in range(0, n, 10_000):
            ingest.import_runs(store, "bench", runs=runs[i : i + 10_000])


def _requests(db: Path) -> tuple[list[list[dict[str, str]]], dict[str, Any], list[dict[str, Any]]]:
    """The messages align-mcp sends for each labeled run, its response_format, and the runs with labels."""
    from align_mcp.engine import evaluators, queues
    from align_mcp.llm.judge import build_messages, response_schema
    from align_mcp.store import Store

    with Store(db) as store:
        ev = evaluators.get(store, "correctness")
        labeled = dict(queues.reference_set(store, "correctness"))
        runs = store.get_runs(sorted(labeled))
    messages = [build_messages(ev.draft, runs[rid].as_dict(), ev.judge.reasoning) for rid in sorted(labeled)]
    rows = [{**runs[rid].as_dict(), "label": labeled[rid]} for rid in sorted(labeled)]
    return messages, response_schema(ev.score_type, ev.judge.reasoning), rows


async def _align_mcp(db: Path, k: int) -> dict[str, Any]:
    from align_mcp.engine import alignment as align
    from align_mcp.store import Store

    with Store(db) as store:
        report = await align.run_alignment(store, "correctness", split="all", compare=False, concurrency=k)
    m = report.run.metrics
    return {"judged": report.run.judged, "errors": m.errors if m else None, "calls": report.run.requests}


async def _bare(base_url: str, messages: list[list[dict[str, str]]], schema: dict[str, Any], k: int) -> int:
    """The practical floor: AsyncOpenAI + a semaphore, the same requests, the reply parsed as JSON."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key=FAKE_KEY, base_url=base_url, max_retries=0)
    sem = anyio.Semaphore(k)
    scores: list[Any] = []

    async def one(msgs: list[dict[str, str]]) -> None:
        async with sem:
            r = await client.chat.completions.create(
                model=MODEL,
                messages=msgs,  # type: ignore[arg-type]
                temperature=0,
                response_format=schema,  # type: ignore[arg-type]
            )
            scores.append(json.loads(r.choices[0].message.content or "{}")["score"])

    async with anyio.create_task_group() as tg:
        for msgs in messages:
            tg.start_soon(one, msgs)
    await client.close()
    return len(scores)


class _Dspy:
    """An equivalent DSPy judge program: the same rubric, the example's fields in, reasoning and score out."""

    def __init__(self, base_url: str, rubric: str, rows: list[dict[str, Any]], k: int) -> None:
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="bench-dspy-"))
        import dspy

        logging.getLogger("dspy").setLevel(logging.WARNING)
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
        self.dspy = dspy

        class Judgement(dspy.Signature):  # type: ignore[misc]
            inputs: str = dspy.InputField()
            outputs: str = dspy.InputField()
            reference_outputs: str = dspy.InputField()
            reasoning: str = dspy.OutputField()
            score: int = dspy.OutputField(desc="1 = pass, 0 = fail")

        self.program = dspy.Predict(Judgement.with_instructions(rubric))
        self.lm = dspy.LM(
            f"openai/{MODEL}", api_base=base_url, api_key=FAKE_KEY, temperature=0.0, cache=False
        )
        self.devset = [
            dspy.Example(
                inputs=json.dumps(r["inputs"], ensure_ascii=False),
                outputs=json.dumps(r["outputs"], ensure_ascii=False),
                reference_outputs=json.dumps(r["reference_outputs"], ensure_ascii=False),
                label=r["label"],
            ).with_inputs("inputs", "outputs", "reference_outputs")
            for r in rows
        ]
        self.k = k

    def __call__(self, devset: list[Any] | None = None) -> float:
        dspy = self.dspy
        evaluate = dspy.Evaluate(
            devset=devset if devset is not None else self.devset,
            metric=lambda ex, pred, trace=None: int(pred.score == ex.label),
            num_threads=self.k,
            display_progress=False,
        )
        with dspy.context(lm=self.lm, adapter=dspy.JSONAdapter()):
            return float(evaluate(self.program).score)


def _rubric(template: str) -> str:
    """The grading instructions of the template, without the example placeholders (DSPy adds the fields)."""
    return template.split("<inputs>")[0].strip()


def _variant(
    name: str, n: int, latency: float, k: int, rounds: int, work: Path, with_dspy: bool
) -> tuple[list[Figure], dict[str, Any]]:
    ceiling = math.ceil(n / k) * latency
    template = work / f"{name}-template.db"
    _prepare(template, n)
    messages, schema, rows = _requests(template)
    walls: dict[str, list[float]] = {"align-mcp": [], "bare": [], "dspy": []}
    cpus: dict[str, list[float]] = {"align-mcp": [], "bare": [], "dspy": []}
    checks: dict[str, Any] = {}
    with JudgeProcess(latency) as judge:
        checks["listen_backlog"] = judge.backlog
        dspy_run: _Dspy | None = None
        if with_dspy:
            try:
                from align_mcp.core.models import ScoreType
                from align_mcp.core.templates import default_prompt

                dspy_run = _Dspy(
                    judge.base_url, _rubric(default_prompt(ScoreType(kind="binary"), "correctness")), rows, k
                )
            except ImportError as e:
                checks["dspy"] = f"not installed ({e}); pip install 'align-mcp[optimize]'"
        with env(
            ALIGN_MCP_JUDGE_BASE_URL=judge.base_url,
            ALIGN_MCP_JUDGE_API_KEY=FAKE_KEY,
            ALIGN_MCP_JUDGE_MODEL=MODEL,
        ):
            # Warm up every client once (imports, first connections) outside the timed rounds.
            anyio.run(_bare, judge.base_url, messages[:k], schema, k)
            if dspy_run is not None:
                dspy_run(dspy_run.devset[:k])
            order = ["align-mcp", "bare", "dspy"]
            for r in range(rounds):
                for who in order[r % 3 :] + order[: r % 3]:
                    if who == "dspy" and dspy_run is None:
                        continue
                    db = copy_db(template, work / f"{name}-round{r}.db")
                    judge.reset()
                    with Timer() as t:
                        if who == "align-mcp":
                            out = anyio.run(_align_mcp, db, k)
                        elif who == "bare":
                            out = {"judged": anyio.run(_bare, judge.base_url, messages, schema, k)}
                        else:
                            assert dspy_run is not None
                            out = {"score": dspy_run()}
                    stats = judge.stats()
                    walls[who].append(t.wall)
                    cpus[who].append(t.cpu)
                    checks.setdefault(who, []).append({**out, **stats, "wall_s": round(t.wall, 3)})
                    db.unlink(missing_ok=True)
    fig: list[Figure] = []
    ours = walls["align-mcp"]
    label = f"N={n}, L={latency:g}s, K={k}"
    fig.append(Figure(f"{name}: align-mcp wall ({label})", median(ours), "s"))
    fig.append(Figure(f"{name}: physical limit ceil(N/K)·L", ceiling, "s"))
    fig.append(Figure(f"{name}: bare AsyncOpenAI loop wall", median(walls["bare"]), "s"))
    ratio_ceiling = median([a / ceiling for a in ours])
    ratio_floor = median([a / b for a, b in zip(ours, walls["bare"], strict=True)])
    fig.append(Figure(f"{name}: align-mcp / physical limit", ratio_ceiling, "×"))
    if name == "latency-1s":
        fig.append(
            Figure(
                f"{name}: align-mcp / bare loop (floor)",
                ratio_floor,
                "×",
                "≤ 1.05×",
                at_most(ratio_floor, 1.05),
            )
        )
    else:
        fig.append(Figure(f"{name}: align-mcp / bare loop (floor)", ratio_floor, "×"))
    if walls["dspy"]:
        ratio_dspy = median([a / b for a, b in zip(ours, walls["dspy"], strict=True)])
        fig.append(Figure(f"{name}: DSPy Evaluate wall", median(walls["dspy"]), "s"))
        fig.append(
            Figure(
                f"{name}: align-mcp / DSPy Evaluate",
                ratio_dspy,
                "×",
                "≤ 1.0× (not slower)" if name == "latency-1s" else None,
                at_most(ratio_dspy, 1.0) if name == "latency-1s" else None,
            )
        )
    else:
        fig.append(Figure(f"{name}: align-mcp / DSPy Evaluate", None, "×", note=str(checks.get("dspy", ""))))
    for who in ("align-mcp", "bare", "dspy"):
        if cpus[who]:
            fig.append(Figure(f"{name}: {who} CPU per judged example", median(cpus[who]) * 1000 / n, "ms"))
    if cpus["bare"]:
        fig.append(
            Figure(
                f"{name}: align-mcp CPU / bare loop CPU",
                median([a / b for a, b in zip(cpus["align-mcp"], cpus["bare"], strict=True)]),
                "×",
            )
        )
    backlog = int(checks["listen_backlog"])
    fig.append(Figure(f"{name}: fake judge listen backlog", backlog, "", f"≥ K ({k})", backlog >= k))
    peak = max(s["max_in_flight"] for s in checks["align-mcp"])
    fig.append(
        Figure(f"{name}: align-mcp requests in flight at the server (max)", peak, "", f"= K ({k})", peak == k)
    )
    return fig, checks


def run(quick: bool = False) -> BenchResult:
    result = BenchResult(NAME)
    with tempfile.TemporaryDirectory(prefix="bench-align-") as tmp:
        work = Path(tmp)
        if quick:
            plans = [("latency-1s", 24, 0.1, 8, 1), ("high-rate", 24, 0.02, 8, 1)]
        else:
            plans = [("latency-1s", 400, 1.0, 32, 3), ("high-rate", 400, 0.15, 16, 3)]
        for name, n, latency, k, rounds in plans:
            figures, checks = _variant(name, n, latency, k, rounds, work, with_dspy=True)
            result.add(*figures)
            result.details[name] = {
                "n": n,
                "latency_s": latency,
                "concurrency": k,
                "rounds": rounds,
                **checks,
            }
    return result


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    out = run(quick)
    for f in out.figures:
        print(f"{f.name:70s} {f.shown()}")
