"""Judge sampling shared by the diagnostics: prompts, cached verdicts, fresh verdicts, repeated samples."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from align_mcp import config
from align_mcp.core.models import JudgeSettings, Score, ScoreType
from align_mcp.engine import swap
from align_mcp.engine.evaluators import prompt_for
from align_mcp.errors import AlignError, InvalidInput, NextStep
from align_mcp.llm.endpoint import Endpoint, resolve_endpoint
from align_mcp.llm.judge import Verdict, build_messages, cache_key, open_judge, response_schema
from align_mcp.llm.runner import Tally, run_batch
from align_mcp.store import CacheEntry, NewSample, RunRow, Store


@dataclass(frozen=True)
class Prompt:
    """A prompt of an evaluator, ready to judge with: its ref ('draft', 'v2'), text, settings and endpoint."""

    ref: str
    text: str
    settings: JudgeSettings
    endpoint: Endpoint


@dataclass(frozen=True)
class Job:
    """A run to judge: the messages and judge-cache key of each call it takes (one per order it is shown in:
    two for a position-swapped pairwise evaluator, whose verdicts are combined)."""

    run_id: str
    orders: list[tuple[list[dict[str, str]], str]]


def resolve(
    store: Store, evaluator: str, prompt: str | int, env: config.Settings, temperature: float | None = None
) -> Prompt:
    ref, text, settings, _ = prompt_for(store, evaluator, prompt)
    if settings.members:
        seated = ", ".join(m.model for m in settings.members)
        raise InvalidInput(
            f"The {ref} of {evaluator!r} is a jury ({seated}; {settings.combine}), and repeated samples, label "
            "suggestions and the corrected pass rate judge with a single model. Measure the jury with an "
            "alignment run, whose report shows each member's agreement and how often they split.",
            NextStep("run_alignment", {"evaluator": evaluator}),
        )
    if temperature is not None:
        settings = settings.model_copy(update={"temperature": temperature})
    return Prompt(ref, text, settings, resolve_endpoint(settings, env))


def lookup(
    store: Store, score_type: ScoreType, prompt: Prompt, runs: dict[str, RunRow]
) -> tuple[dict[str, Score], list[Job]]:
    """Cached verdicts of `prompt` on `runs`, and the judge calls still needed for the rest."""
    schema = response_schema(score_type, prompt.settings.reasoning)
    jobs = []
    for rid, run in runs.items():
        shown = [
            build_messages(prompt.text, view, prompt.settings.reasoning)
            for view in swap.views(score_type, run.as_dict())
        ]
        jobs.append(Job(rid, [(m, cache_key(prompt.endpoint, prompt.settings, m, schema)) for m in shown]))
    hits = store.cache_get([key for job in jobs for _, key in job.orders])
    found: dict[str, Score] = {}
    for job in jobs:
        if all(key in hits for _, key in job.orders):
            verdict, _ = swap.combine([swap.from_cache(hits[key]) for _, key in job.orders])
            if verdict.score is not None:
                found[job.run_id] = verdict.score
    return found, [job for job in jobs if job.run_id not in found]


async def judge_jobs(
    store: Store,
    score_type: ScoreType,
    prompt: Prompt,
    jobs: Sequence[Job],
    concurrency: int,
    tally: Tally,
) -> dict[str, Verdict]:
    """Judge each job once, caching successful verdicts exactly as alignment runs do."""
    verdicts: dict[str, Verdict] = {}
    if not jobs:
        return verdicts
    async with open_judge(prompt.endpoint, prompt.settings, score_type, on_wait=tally.waiting) as judge:

        async def one(job: Job) -> None:
            hits = store.cache_get([key for _, key in job.orders])
            judged = []
            for messages, key in job.orders:
                hit = hits.get(key)
                judged.append(swap.from_cache(hit) if hit else await judge.judge_example(messages))
                if hit is None and judged[-1].error is None:
                    store.cache_put([CacheEntry.of(key, judged[-1])])
            verdicts[job.run_id], _ = swap.combine(judged)

        await run_batch(jobs, one, concurrency=concurrency, progress=tally)
    return verdicts


def most_common(valid: Sequence[Score]) -> Score:
    """The score given most often (the first of those given equally often)."""
    return Counter(valid).most_common(1)[0][0]


async def sample_repeatedly(
    store: Store,
    evaluator: str,
    score_type: ScoreType,
    prompt: Prompt,
    run_ids: Sequence[str],
    k: int,
    concurrency: int,
    tally: Tally,
) -> int:
    """Judge every run k times with independent calls (never the cache); store the verdicts as a check."""
    runs = store.get_runs(run_ids)
    messages = {
        rid: [
            build_messages(prompt.text, view, prompt.settings.reasoning)
            for view in swap.views(score_type, runs[rid].as_dict())
        ]
        for rid in run_ids
    }
    check_id = store.create_consistency_check(
        evaluator,
        prompt.ref,
        prompt.text,
        prompt.settings,
        prompt.endpoint.model,
        prompt.settings.temperature,
        k,
    )
    jobs = [(rid, i) for i in range(k) for rid in run_ids]
    status = "interrupted"
    try:
        async with open_judge(prompt.endpoint, prompt.settings, score_type, on_wait=tally.waiting) as judge:

            async def one(job: tuple[str, int]) -> None:
                rid, i = job
                verdict, _ = swap.combine([await judge.judge_example(m) for m in messages[rid]])
                store.record_samples(
                    check_id,
                    [
                        NewSample(
                            run_id=rid,
                            sample=i,
                            judge_score=verdict.score,
                            reasoning=verdict.reasoning,
                            error=verdict.error,
                            prompt_tokens=verdict.prompt_tokens,
                            completion_tokens=verdict.completion_tokens,
                            latency_ms=verdict.latency_ms,
                            requests=verdict.calls,
                            reasks=verdict.reasks,
                        )
                    ],
                )

            await run_batch(jobs, one, concurrency=concurrency, progress=tally)
        status = "completed"
    except AlignError as e:
        kept = len(store.consistency_samples(check_id))
        raise type(e)(f"{e} Consistency check {check_id}: {kept} of {len(jobs)} samples kept.") from e
    finally:
        with anyio.CancelScope(shield=True):
            store.finish_consistency_check(check_id, status)
    return check_id
