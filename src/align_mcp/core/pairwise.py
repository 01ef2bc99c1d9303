"""Pairwise comparisons: the two orders a pair is shown in, mapping a verdict back, the combined verdict, and
each order's agreement and the position consistency of a judge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from align_mcp.core.metrics import rate
from align_mcp.core.models import Model, Note, PairOrders, PairwiseFigures, Score

VERDICTS: list[Score] = ["A", "B", "tie"]
"""Every verdict a pairwise run may end with: a judge that names different winners in the two orders ends in a
tie even when the evaluator allows none (so that tie is then always a disagreement with the human)."""

TIE = "tie"


def shown(run: Mapping[str, Any], swapped: bool) -> dict[str, Any]:
    """A pairwise run as a template sees it: `outputs_a` is the output shown first and `outputs_b` the second;
    swapped, the run's B is shown first. `outputs` is the output shown first too, so a plain template still reads."""
    first, second = run.get("outputs"), run.get("outputs_b")
    if swapped:
        first, second = second, first
    return {**run, "outputs": first, "outputs_a": first, "outputs_b": second}


def map_back(score: Score) -> Score:
    """A verdict given with the outputs exchanged, in the run's own A and B."""
    return {"A": "B", "B": "A"}.get(str(score), score)


def combined(original: Score | None, swapped: Score | None) -> Score | None:
    """The verdict of both orders: the winner both named, otherwise a tie; None when either order failed."""
    if original is None or swapped is None:
        return None
    return original if original == swapped else TIE


def figures(pairs: Sequence[tuple[Score, PairOrders]]) -> PairwiseFigures:
    """Per-order agreement, their mean and the position consistency over (human score, both orders) pairs;
    an order that failed is left out of its own rate, and a pair with a failed order out of the consistency."""
    first = [(h, o.original) for h, o in pairs if o.original is not None]
    second = [(h, o.swapped) for h, o in pairs if o.swapped is not None]
    both = [o for _, o in pairs if o.original is not None and o.swapped is not None]
    original = rate(sum(h == j for h, j in first), len(first))
    swapped = rate(sum(h == j for h, j in second), len(second))
    mean = (
        (original.value + swapped.value) / 2
        if original.value is not None and swapped.value is not None
        else None
    )
    consistent = rate(sum(o.original == o.swapped for o in both), len(both))
    return PairwiseFigures(original=original, swapped=swapped, mean=mean, consistency=consistent)


class PairReport(Model):
    """Two sources (two experiments over one dataset) paired into pairwise runs by a shared example key."""

    source: str = Field(description="The source holding the pairwise runs")
    source_a: str = Field(description="The source whose outputs are output A")
    source_b: str = Field(description="The source whose outputs are output B")
    key: str = Field(
        description="The dotted path both runs of a pair share, e.g. metadata.reference_example_id"
    )
    pairs: int = Field(description="Pairs made")
    inserted: int = Field(description="New pairwise runs stored (a pair already stored is kept as it is)")
    unmatched_a: list[str] = Field(
        default_factory=list, description="Run ids of source A whose key no run of source B has (left out)"
    )
    unmatched_b: list[str] = Field(
        default_factory=list, description="Run ids of source B whose key no run of source A has (left out)"
    )
    inputs_differ: list[str] = Field(
        default_factory=list,
        description="Pairwise run ids whose two runs have different inputs (the pair keeps those of A)",
    )
    notes: list[Note] = Field(default_factory=list)
