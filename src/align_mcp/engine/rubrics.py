"""Labels that remember their rubric: which saved version each label was given under, and which labels the
instructions have changed since (possibly stale, worth a blind relabel)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from align_mcp.core import metrics
from align_mcp.core.models import RubricAgreement, Score
from align_mcp.core.templates import FEW_SHOT
from align_mcp.store import Store

_FEW_SHOT = re.compile(r"\s*\{\{\s*" + FEW_SHOT + r"\s*\}\}\s*")


def instructions(prompt: str) -> str:
    """A saved prompt's instructions: its text without {{few_shot_examples}}. The examples a version shows are
    the humans' own labels, not instructions to them, so adding the variable or changing which examples it
    shows leaves labels current."""
    return _FEW_SHOT.sub("\n\n", prompt).strip()


def stale_rubrics(store: Store, evaluator: str, given: Sequence[int] | None = None) -> list[int]:
    """The rubric versions whose labels are possibly stale: the instructions (the prompt text, see `instructions`)
    of the version they were given under differ from the latest saved version's. A change of judge model or
    temperature, or of the few-shot examples alone, leaves labels current.

    Labels given before the first save count as given under v1 (the rubric being written while they were made).
    A version the store does not hold (a label imported from another store) is never called stale.
    """
    versions = {v.version: instructions(v.prompt) for v in store.versions(evaluator)}
    if not versions:
        return []
    latest = versions[max(versions)]
    rubrics = store.rubric_counts(evaluator) if given is None else given
    return sorted(r for r in rubrics if (prompt := versions.get(max(r, 1))) is not None and prompt != latest)


def stale_count(store: Store, evaluator: str) -> int:
    """How many current labels were given under instructions the latest saved version has changed."""
    counts = store.rubric_counts(evaluator)
    return sum(counts[r] for r in stale_rubrics(store, evaluator, list(counts)))


def stale_run_ids(store: Store, evaluator: str) -> list[str]:
    """The runs whose current label is possibly stale, by run id."""
    return store.runs_labeled_under(evaluator, stale_rubrics(store, evaluator))


def agreement_by_rubric(
    store: Store, evaluator: str, results: Sequence[tuple[str, Score, Score | None]]
) -> list[RubricAgreement]:
    """Agreement of judged (run_id, human, judge) pairs split by the rubric version of each run's current label,
    oldest rubric first; errors (judge None) are left out."""
    labels = store.current_label_rows(evaluator, [rid for rid, _, _ in results])
    stale = set(stale_rubrics(store, evaluator, sorted({lab.rubric_version for lab in labels.values()})))
    groups: dict[int, list[bool]] = {}
    for run_id, human, judge in results:
        label = labels.get(run_id)
        if judge is None or label is None:
            continue
        groups.setdefault(label.rubric_version, []).append(human == judge)
    return [
        RubricAgreement(
            rubric_version=rubric,
            n=len(hits),
            agreement=metrics.rate(sum(hits), len(hits)),
            stale=rubric in stale,
        )
        for rubric, hits in sorted(groups.items())
    ]
