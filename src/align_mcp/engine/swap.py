"""Position swap: the orders a run is judged in, and one verdict made of the verdicts of both orders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from align_mcp.core import pairwise
from align_mcp.core.models import PairOrders, ScoreType
from align_mcp.llm.judge import Verdict
from align_mcp.store import CacheEntry


def views(score_type: ScoreType, run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run as each judgement shows it: once for a run judged alone; for a pairwise evaluator A first, then
    (with position swap, the default) B first."""
    if score_type.kind != "pairwise":
        return [dict(run)]
    orders = [pairwise.shown(run, swapped=False)]
    if score_type.swap:
        orders.append(pairwise.shown(run, swapped=True))
    return orders


def judgements_per_run(score_type: ScoreType) -> int:
    """How many judge calls one run takes: two for a position-swapped pairwise evaluator, else one."""
    return 2 if score_type.kind == "pairwise" and score_type.swap else 1


def from_cache(hit: CacheEntry) -> Verdict:
    """A cached judgement as a verdict that cost nothing this time."""
    return Verdict(
        score=hit.judge_score,
        reasoning=hit.reasoning,
        error=None,
        prompt_tokens=hit.prompt_tokens,
        completion_tokens=hit.completion_tokens,
        cached_tokens=hit.cached_tokens,
        latency_ms=0.0,
    )


def combine(verdicts: Sequence[Verdict]) -> tuple[Verdict, PairOrders | None]:
    """One verdict per example: a single judgement as it is; two (A first, then B first) as the consistent
    winner or else a tie, with each order's verdict mapped back to the run's A and B. Either order failing makes
    the example an error (never a tie). Costs add up."""
    if len(verdicts) == 1:
        return verdicts[0], None
    first, second = verdicts
    orders = PairOrders(
        original=first.score,
        swapped=None if second.score is None else pairwise.map_back(second.score),
        original_reasoning=first.reasoning,
        swapped_reasoning=second.reasoning,
    )
    errors = [
        f"{name}: {v.error}" for name, v in (("A shown first", first), ("B shown first", second)) if v.error
    ]
    reasoning = None
    if first.reasoning is not None or second.reasoning is not None:
        reasoning = (
            f"A shown first: {first.reasoning or '(none)'}\n\n"
            f"B shown first (the judge's 'A' is this run's B): {second.reasoning or '(none)'}"
        )
    verdict = Verdict(
        score=None if errors else pairwise.combined(orders.original, orders.swapped),
        reasoning=None if errors else reasoning,
        error="; ".join(errors) or None,
        prompt_tokens=_sum(first.prompt_tokens, second.prompt_tokens),
        completion_tokens=_sum(first.completion_tokens, second.completion_tokens),
        cached_tokens=_sum(first.cached_tokens, second.cached_tokens),
        latency_ms=(first.latency_ms or 0.0) + (second.latency_ms or 0.0),
        calls=first.calls + second.calls,
        reasks=first.reasks + second.reasks,
        waited_s=first.waited_s + second.waited_s,
    )
    return verdict, orders


def _sum(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else a + b
