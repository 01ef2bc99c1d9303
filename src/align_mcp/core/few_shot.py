"""Few-shot examples from human corrections: the settings, the selection strategies and the rendered block."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from align_mcp.core.models import Model, Score, ScoreType
from align_mcp.errors import InvalidInput

Strategy = Literal["recent", "random", "cover"]
STRATEGIES: tuple[Strategy, ...] = ("recent", "random", "cover")
DEFAULT_K = 5
MAX_K = 50


class FewShotSettings(Model):
    """How the draft picks its corrected examples for {{few_shot_examples}}."""

    k: int = Field(default=DEFAULT_K, ge=1, le=MAX_K, description="How many corrected examples to show")
    strategy: Strategy = Field(
        default="recent",
        description="recent (latest labels first), random (seeded) or cover (one per failure mode, then recent)",
    )
    seed: int = Field(default=0, description="The seed of the random strategy")

    def describe(self) -> str:
        seed = f",seed={self.seed}" if self.strategy == "random" else ""
        return f"k={self.k},strategy={self.strategy}{seed}"


class FrozenFewShot(Model):
    """The examples a saved version shows: frozen when it was saved, so the version always judges the same way."""

    settings: FewShotSettings
    run_ids: list[str] = Field(description="The corrected dev runs shown, in order")
    block: str = Field(description="The rendered text that fills {{few_shot_examples}}")


def parse_settings(text: str, base: FewShotSettings | None = None) -> FewShotSettings:
    """Settings from 'k=5,strategy=random,seed=1' (any subset; the rest from `base`, else the defaults)."""
    values: dict[str, Any] = (base or FewShotSettings()).model_dump()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or key not in ("k", "strategy", "seed"):
            raise InvalidInput(
                f"Few-shot setting {part!r} is not understood: write k=N, strategy=recent|random|cover and "
                "seed=N, separated by commas (e.g. 'k=5,strategy=random,seed=1')."
            )
        if key == "strategy":
            if value not in STRATEGIES:
                raise InvalidInput(f"Few-shot strategy {value!r} is not one of {', '.join(STRATEGIES)}.")
            values[key] = value
            continue
        try:
            values[key] = int(value)
        except ValueError:
            raise InvalidInput(f"Few-shot {key}={value!r} is not a whole number.") from None
    if not 1 <= values["k"] <= MAX_K:
        raise InvalidInput(f"Few-shot k={values['k']} must be from 1 to {MAX_K}.")
    return FewShotSettings.model_validate(values)


@dataclass(frozen=True)
class Correction:
    """A dev run where the human's label differs from the judge's score: the example and the human's word on it."""

    run_id: str
    run: Mapping[str, Any]
    human_score: Score
    judge_score: Score
    comment: str | None
    labeled_at: datetime


def select(
    corrections: Sequence[Correction],
    settings: FewShotSettings,
    modes: Sequence[Sequence[str]] = (),
) -> list[Correction]:
    """Up to k corrections by the strategy. `cover` takes the most recent of each failure mode (`modes`: run ids
    per mode), then fills by recency; without modes it is recency."""
    recent = sorted(corrections, key=lambda c: (c.labeled_at, c.run_id), reverse=True)
    if settings.strategy == "random":
        pool = sorted(corrections, key=lambda c: c.run_id)
        return random.Random(settings.seed).sample(pool, min(settings.k, len(pool)))
    if settings.strategy == "recent" or not modes:
        return recent[: settings.k]
    rank = {c.run_id: i for i, c in enumerate(recent)}
    chosen: list[Correction] = []
    for mode in modes:
        best = min((rank[rid] for rid in mode if rid in rank), default=None)
        if best is None:
            continue
        first = recent[best]
        if first not in chosen and len(chosen) < settings.k:
            chosen.append(first)
    chosen += [c for c in recent if c not in chosen][: settings.k - len(chosen)]
    return chosen


ExampleView = Callable[[Mapping[str, Any]], str]


def _show(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def example_view(run: Mapping[str, Any]) -> str:
    """How one example reads inside the block: its input, output and reference output (when it has one)."""
    parts = [f"Input:\n{_show(run.get('inputs'))}", f"Output:\n{_show(run.get('outputs'))}"]
    if run.get("reference_outputs") is not None:
        parts.append(f"Reference output:\n{_show(run.get('reference_outputs'))}")
    return "\n\n".join(parts)


def pairwise_view(run: Mapping[str, Any]) -> str:
    """How one pairwise example reads inside the block: its input, output A and output B in the run's own order
    (as the first order of a pairwise prompt shows them), and its reference output (when it has one)."""
    parts = [
        f"Input:\n{_show(run.get('inputs'))}",
        f"Output A:\n{_show(run.get('outputs_a', run.get('outputs')))}",
        f"Output B:\n{_show(run.get('outputs_b'))}",
    ]
    if run.get("reference_outputs") is not None:
        parts.append(f"Reference output:\n{_show(run.get('reference_outputs'))}")
    return "\n\n".join(parts)


def view_for(score_type: ScoreType) -> ExampleView:
    """The view of an example for this score type: both outputs for a pairwise evaluator, else the one output."""
    return pairwise_view if score_type.kind == "pairwise" else example_view


BLOCK_INTRO = (
    "Examples a human expert graded where an earlier judge got it wrong. Each shows the expert's score and "
    "explanation: grade like the expert."
)


def render_block(chosen: Sequence[Correction], view: ExampleView = example_view) -> str:
    """The text that fills {{few_shot_examples}}: every chosen example through `view`, with the expert's score and
    comment as the explanation. Empty when nothing is chosen."""
    if not chosen:
        return ""
    items = []
    for i, c in enumerate(chosen, 1):
        explanation = c.comment.strip() if c.comment and c.comment.strip() else "(no comment given)"
        items.append(
            f'<example n="{i}">\n{view(c.run)}\n\nExpert score: {json.dumps(c.human_score)}\n'
            f"Expert explanation: {explanation}\n</example>"
        )
    return BLOCK_INTRO + "\n\n" + "\n\n".join(items)
