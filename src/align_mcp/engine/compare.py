"""Compare judge models: one prompt over the same labeled examples, one pass per model, all within one
concurrency limit; agreement, cost and latency side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from align_mcp import config
from align_mcp.core import metrics
from align_mcp.core.comparison import (
    JudgeModel,
    ModelComparison,
    ModelPrice,
    ModelResult,
    ParetoBasis,
    PriceSource,
    cost_usd,
    pareto_front,
    percentile,
)
from align_mcp.core.models import JudgeSettings, Note, ScoreType
from align_mcp.engine import alignment, holdout
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.engine.evaluators import prompt_for
from align_mcp.errors import AlignError, InvalidInput, JudgeConfigError, NextStep
from align_mcp.llm.endpoint import Endpoint, resolve_endpoint
from align_mcp.llm.runner import Progress
from align_mcp.store import Store

MAX_MODELS = 10


@dataclass
class _Pass:
    """One model's pass: where it is judged, its run, and what became of it."""

    spec: JudgeModel
    label: str
    settings: JudgeSettings
    endpoint: Endpoint
    prompt_hash: str
    aid: int
    reused: bool
    failure: str | None = None


class _Combined:
    """One progress line over every model's pass: the sum of their counts, the latest message."""

    def __init__(self, on_progress: Progress, totals: list[int], done: list[int]) -> None:
        self.on_progress = on_progress
        self.totals = totals
        self.done = done

    def of(self, i: int) -> Progress:
        async def report(done: int, total: int, message: str) -> None:
            self.done[i] = done
            n, all_ = sum(self.done), sum(self.totals)
            await self.on_progress(n, all_, f"{len(self.totals)} models: {n}/{all_} judged; {message}")

        return report


def settings_for(base: JudgeSettings, spec: JudgeModel) -> JudgeSettings:
    """The evaluator's judge settings with this model as its one judge (a jury's members and rule dropped); its
    own endpoint (and key variable) when it names one."""
    single: dict[str, object] = {"model": spec.model, "members": [], "combine": None}
    if spec.base_url is not None:
        return base.model_copy(update={**single, "base_url": spec.base_url, "api_key_env": spec.api_key_env})
    return base.model_copy(update={**single, "api_key_env": spec.api_key_env or base.api_key_env})


def _labels(endpoints: Sequence[Endpoint]) -> list[str]:
    names = [e.model for e in endpoints]
    return [e.model if names.count(e.model) == 1 else f"{e.model} @ {e.base_url}" for e in endpoints]


async def compare_models(
    store: Store,
    evaluator: str,
    models: Sequence[JudgeModel],
    prompt: str | int = "draft",
    *,
    split: str = "auto",
    concurrency: int | None = None,
    on_progress: Progress | None = None,
    env: config.Settings | None = None,
    prices: Mapping[str, config.Price] | None = None,
    prices_file: Path | None = None,
) -> ModelComparison:
    """Judge the evaluator's labeled runs with one prompt (the draft by default) once per model, and report the
    models side by side: agreement, κ, TPR/TNR with intervals, errors, tokens, cost, latency p50/p95, McNemar
    against the best model, and which models are on the agreement–cost Pareto front.

    `split` is 'auto' (dev once a holdout exists, else every label), 'dev', 'test' (counted as a look at the
    held-out split) or 'all'. Every model's calls share one limit of `concurrency` calls in flight. Each model's
    verdicts are stored as an alignment run; a completed run of the same prompt, settings, model and endpoint
    over the same examples is reused, and verdicts already in the cache are not asked again. Prices come from
    each model's `price`, else `prices` (default: read from `prices_file`, else the prices file of the
    environment, see config.load_prices); a model without a price shows its tokens and no cost.
    """
    if not 2 <= len(models) <= MAX_MODELS:
        raise InvalidInput(
            f"{len(models)} model(s) given: compare between 2 and {MAX_MODELS} judge models at a time."
        )
    if concurrency is not None and concurrency < 1:
        raise InvalidInput(f"concurrency={concurrency}: parallel judge calls must be at least 1.")
    env = env or config.load()
    limit = concurrency or env.concurrency
    ev = get_evaluator(store, evaluator)
    prompt_ref, text, settings, version = prompt_for(store, evaluator, prompt)
    if prices is None:
        prices = config.load_prices(prices_file)
    chosen = [settings_for(settings, spec) for spec in models]
    endpoints = []
    for spec, judge in zip(models, chosen, strict=True):
        try:
            endpoints.append(resolve_endpoint(judge, env))
        except JudgeConfigError as problem:
            raise JudgeConfigError(f"Model {spec.model!r}: {problem}", *problem.next_steps) from problem
    seen: dict[tuple[str, str], str] = {}
    for endpoint in endpoints:
        where = (endpoint.model, endpoint.base_url.rstrip("/").lower())
        if where in seen:
            raise InvalidInput(
                f"Model {endpoint.model!r} at {endpoint.base_url} is given twice; name each model once."
            )
        seen[where] = endpoint.model
    used, examples = alignment.reference_examples(store, evaluator, split)
    if prompt_ref == "draft":
        # The draft's examples chosen now that the split surely exists, as run_alignment does: every model is
        # shown the same ones.
        text = prompt_for(store, evaluator, "draft")[1]
    if used in ("test", "all") and holdout.info(store, evaluator) is not None:
        store.count_test_evaluation(evaluator)

    passes = []
    for spec, judge, endpoint, label in zip(models, chosen, endpoints, _labels(endpoints), strict=True):
        digest = alignment.judge_hash(text, judge, endpoint)
        aid = alignment.covering_run(store, evaluator, examples, digest)
        reused = aid is not None
        if aid is None:
            aid = alignment.start_comparison_run(
                store, evaluator, prompt_ref, version, text, judge, endpoint, used, examples
            )
        passes.append(_Pass(spec, label, judge, endpoint, digest, aid, reused))

    await _judge_all(store, passes, ev.score_type, limit, len(examples), on_progress)
    named = prices_file or config.prices_path()
    return _comparison(store, evaluator, prompt_ref, used, len(examples), passes, prices, named)


async def _judge_all(
    store: Store,
    passes: list[_Pass],
    score_type: ScoreType,
    limit: int,
    n: int,
    on_progress: Progress | None,
) -> None:
    """Every pass at once under one limiter: a model that fails records why, and the others go on."""
    limiter = anyio.CapacityLimiter(limit)
    combined = None
    if on_progress is not None:
        combined = _Combined(on_progress, [n] * len(passes), [n if p.reused else 0 for p in passes])

    async def one(i: int, p: _Pass) -> None:
        try:
            await alignment.judge_run(
                store,
                p.aid,
                score_type,
                p.endpoint,
                limit,
                combined.of(i) if combined is not None else None,
                p.label,
                limiter=limiter,
            )
        except AlignError as e:
            p.failure = e.message

    async with anyio.create_task_group() as tg:
        for i, p in enumerate(passes):
            if not p.reused:
                tg.start_soon(one, i, p)


def _price(
    spec: JudgeModel, prices: Mapping[str, config.Price]
) -> tuple[ModelPrice | None, PriceSource | None]:
    if spec.price is not None:
        return spec.price, "given"
    found = prices.get(spec.model)
    if found is None:
        return None, None
    return ModelPrice(input=found.input, cached_input=found.cached_input, output=found.output), "prices file"


def _result(store: Store, evaluator: str, p: _Pass, prices: Mapping[str, config.Price]) -> ModelResult:
    s = alignment.summary(store, p.aid)
    results = store.alignment_results(p.aid)
    verdicts = [r for r in results if r.error is None]
    prompt_tokens = sum(r.prompt_tokens or 0 for r in results)
    cached_tokens = sum(r.cached_tokens or 0 for r in results)
    completion_tokens = sum(r.completion_tokens or 0 for r in results)
    price, source = _price(p.spec, prices)
    unmetered = any(r.prompt_tokens is None or r.completion_tokens is None for r in verdicts)
    cost = None
    if price is not None and not unmetered and verdicts:
        cost = cost_usd(price, prompt_tokens, cached_tokens, completion_tokens)
    ids = {r.run_id for r in verdicts}
    latencies = [ms for rid, ms in store.judged_latencies(evaluator, p.prompt_hash).items() if rid in ids]
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    return ModelResult(
        label=p.label,
        model=p.endpoint.model,
        base_url=p.endpoint.base_url,
        alignment_run=p.aid,
        status=s.status,
        failure=p.failure,
        metrics=s.metrics,
        judged=s.judged,
        errors=s.errors,
        cache_hits=s.cache_hits,
        prompt_tokens=prompt_tokens,
        cached_tokens=cached_tokens,
        completion_tokens=completion_tokens,
        price=price,
        price_source=source,
        cost_usd=cost,
        latency_p50_ms=None if p50 is None else round(p50, 1),
        latency_p95_ms=None if p95 is None else round(p95, 1),
        latency_n=len(latencies),
    )


def _correct(store: Store, aid: int) -> dict[str, bool]:
    return {
        r.run_id: r.judge_score == r.human_score
        for r in store.alignment_results(aid)
        if r.error is None and r.judge_score is not None
    }


def _agreement(r: ModelResult) -> float | None:
    return r.metrics.agreement.value if r.metrics is not None else None


def _comparison(
    store: Store,
    evaluator: str,
    prompt_ref: str,
    split: str,
    n: int,
    passes: list[_Pass],
    prices: Mapping[str, config.Price],
    prices_file: Path,
) -> ModelComparison:
    rows = [_result(store, evaluator, p, prices) for p in passes]
    notes: list[Note] = []
    # A model stopped part-way is scored on fewer examples than the others: it is not ranked with them.
    placed = [r for r in rows if r.status == "completed" and _agreement(r) is not None]
    priced = all(r.cost_usd is not None for r in placed)

    def spend(r: ModelResult) -> float:
        return r.cost_usd if priced and r.cost_usd is not None else float(r.tokens)

    best: ModelResult | None = None
    if placed:
        # Ties go to the cheaper model (in dollars when every one has a price, else in tokens), then the first.
        best = max(placed, key=lambda r: (_agreement(r) or 0.0, -spend(r)))
        best_correct = _correct(store, best.alignment_run)
        for r in placed:
            if r is not best:
                r.vs_best = metrics.flip_report(
                    best_correct, _correct(store, r.alignment_run), best.label, r.label
                )
    basis: ParetoBasis | None = None
    if len(placed) >= 2:
        basis = "cost" if priced else "tokens"
        for r, on_front in zip(
            placed, pareto_front([(_agreement(r) or 0.0, spend(r)) for r in placed]), strict=True
        ):
            r.pareto = on_front
    unpriced = [r.label for r in rows if r.price is None]
    if unpriced:
        notes.append(
            Note(
                text=f"No price for {', '.join(unpriced)}: tokens are shown, not a cost. Set USD per million "
                f'tokens in {prices_file} (one [models."NAME"] table with input, output and '
                "optionally cached_input) or give the model a price."
            )
        )
    unmetered = [r.label for r in rows if r.price is not None and r.cost_usd is None and r.judged]
    if unmetered:
        notes.append(
            Note(
                text=f"{', '.join(unmetered)}: the endpoint did not report token usage for every verdict, so no cost is given."
            )
        )
    if basis == "tokens":
        notes.append(
            Note(
                text="The Pareto front is over agreement and tokens (prompt + completion), because not every "
                "model has a price: tokens are not dollars, and models price them differently."
            )
        )
    hits = sum(r.cache_hits for r in rows)
    if hits:
        notes.append(
            Note(
                text=f"{hits} verdict(s) came from the cache: their tokens count in the cost of judging these "
                "examples, but no call was made for them now."
            )
        )
    for r in rows:
        if r.failure is not None:
            notes.append(
                Note(
                    text=f"{r.label} could not be judged on every example, so it is not ranked: {r.failure}",
                    next_steps=[NextStep("resume_alignment", {"alignment_run": r.alignment_run})],
                )
            )
        elif r.judged and r.latency_n == 0:
            notes.append(Note(text=f"{r.label}: no latency, as every verdict came from the cache."))
    if split == "test":
        info = holdout.info(store, evaluator)
        notes.append(
            Note(
                text=f"This comparison judged the held-out test split ({n} examples); the test split has been "
                f"evaluated {info.test_evaluations if info else 0} time(s) in all. Compare models on dev and "
                "check test rarely."
            )
        )
    return ModelComparison(
        evaluator=evaluator,
        prompt_ref=prompt_ref,
        split=split,
        examples=n,
        models=rows,
        best=best.label if best is not None else None,
        pareto_basis=basis,
        notes=notes,
    )
