"""Judge models compared on the same prompt and examples: the types, the cost of tokens, the Pareto front."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from align_mcp.core.models import FlipReport, Metrics, Model, Note

PER_MILLION = 1_000_000


class ModelPrice(Model):
    """What a model's tokens cost, in US dollars per million tokens."""

    input: float = Field(ge=0, description="USD per million input (prompt) tokens")
    cached_input: float | None = Field(
        default=None, ge=0, description="USD per million cached input tokens; omitted: the input price"
    )
    output: float = Field(ge=0, description="USD per million output (completion) tokens")


class JudgeModel(Model):
    """One judge model to compare: its name, optionally where it is served and the variable holding its key."""

    model: str = Field(min_length=1, description="Model name as the endpoint knows it")
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL; omitted: the evaluator's or the environment's"
    )
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding this endpoint's API key (never the key)"
    )
    price: ModelPrice | None = Field(
        default=None, description="USD per million tokens; omitted: the prices file's entry for the model"
    )


PriceSource = Literal["given", "prices file"]


class ModelResult(Model):
    """One model's pass over the examples: agreement, what it cost, how fast it answered."""

    label: str = Field(description="The model, with its endpoint when two compared models share a name")
    model: str
    base_url: str
    alignment_run: int = Field(description="The alignment run holding its verdicts")
    status: str = Field(description="completed, interrupted or failed (every example in error)")
    failure: str | None = Field(default=None, description="Why the model could not be judged, when it failed")
    metrics: Metrics | None = None
    judged: int = Field(default=0, description="Examples with a verdict")
    errors: int = Field(default=0, description="Examples whose judge call failed (excluded from every rate)")
    cache_hits: int = Field(
        default=0, description="Verdicts reused from the cache (no new call, no new cost)"
    )
    prompt_tokens: int = Field(default=0, description="Input tokens of every verdict, cached or not")
    cached_tokens: int = Field(
        default=0, description="Of those, input tokens the provider served from its cache"
    )
    completion_tokens: int = 0
    price: ModelPrice | None = None
    price_source: PriceSource | None = None
    cost_usd: float | None = Field(
        default=None, description="Cost of judging these examples once at `price`; null when no price is set"
    )
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_n: int = Field(default=0, description="Judge calls the latency figures are taken over")
    vs_best: FlipReport | None = Field(
        default=None, description="McNemar's test against the best model on the examples both judged"
    )
    pareto: bool | None = Field(
        default=None, description="On the agreement–cost Pareto front; null when not placed (no agreement)"
    )

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


ParetoBasis = Literal["cost", "tokens"]


class ModelComparison(Model):
    """The same prompt judged by several models over the same labeled examples, side by side."""

    evaluator: str
    prompt_ref: str = Field(description="'draft' or 'v<N>'")
    split: str = Field(description="Which labeled examples: all, dev or test")
    examples: int = Field(description="Labeled examples each model judged")
    models: list[ModelResult]
    best: str | None = Field(default=None, description="Label of the model with the highest agreement")
    pareto_basis: ParetoBasis | None = Field(
        default=None,
        description="cost when every placed model has a price; tokens when some have none (tokens are not "
        "dollars: models price them differently)",
    )
    notes: list[Note] = Field(default_factory=list)


def cost_usd(price: ModelPrice, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
    """The dollars of these tokens at `price` (cached input at its own price, else the input price)."""
    cached = min(cached_tokens, prompt_tokens)
    cached_price = price.input if price.cached_input is None else price.cached_input
    dollars = (
        (prompt_tokens - cached) * price.input + cached * cached_price + completion_tokens * price.output
    ) / PER_MILLION
    return round(dollars, 6)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0–1) of `values` by the nearest-rank method; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each (agreement, cost) point, whether no other point has agreement ≥ and cost ≤ with one strictly
    better."""
    return [
        not any(a2 >= a and c2 <= c and (a2 > a or c2 < c) for j, (a2, c2) in enumerate(points) if j != i)
        for i, (a, c) in enumerate(points)
    ]
