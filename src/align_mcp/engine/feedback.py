"""Feedback imported with runs becomes human labels for the evaluators that read its key."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from align_mcp.core.models import Score, ScoreType
from align_mcp.engine.formats import FeedbackItem
from align_mcp.errors import ImportFormatError, InvalidInput
from align_mcp.store import NewLabel, SplitRow, Store

FeedbackLine = tuple[str, Any, str | None, str | None, int | None, dict[str, Any] | None]
"""(run_id, score, comment, labeler, line, details): one imported label, its details as the store keeps them."""


def details_of(item: FeedbackItem) -> dict[str, Any] | None:
    """What an exported label carries besides score, comment and labeler, as the store keeps it (or None)."""
    details: dict[str, Any] = {}
    if item.labeled_at is not None:
        details["labeled_at"] = item.labeled_at.isoformat()
    if item.rubric_version is not None:
        details["rubric_version"] = item.rubric_version
    if item.split is not None:
        details["split"] = item.split
    if item.history:
        details["history"] = [
            {
                "score": past.score,
                "comment": past.comment,
                "labeler": past.labeler,
                "labeled_at": None if past.labeled_at is None else past.labeled_at.isoformat(),
                "rubric_version": past.rubric_version,
            }
            for past in item.history
        ]
    return details or None


def apply_feedback(
    store: Store,
    evaluator: str,
    score_type: ScoreType,
    items: Sequence[FeedbackLine],
    consequence: str = "Nothing from this import was stored.",
) -> int:
    """Turn imported feedback into labels; unchanged labels are skipped. Returns how many runs got a label.

    A label that carries details (an export of align-mcp) restores its earlier labels as history, its date and
    rubric version, and its run's holdout split, which replaces a split assigned here. Call inside a transaction.
    Raises ImportFormatError naming the first score that does not fit.
    """
    current = {
        lab.run_id: (lab.score, lab.comment)
        for lab in store.current_labels(evaluator, [item[0] for item in items])
    }
    rows: list[NewLabel] = []
    splits: list[SplitRow] = []
    labeled = 0
    for run_id, score, comment, labeler, line, details in items:
        where = f"line {line}" if line else f"run {run_id!r}"
        valid = functools.partial(
            _valid, score_type, f"{where}: feedback for evaluator {evaluator!r}:", consequence
        )
        value = valid(score)
        details = details or {}
        for past in details.get("history") or ():
            valid(past["score"])
        if details.get("split") is not None:
            splits.append(SplitRow(run_id, details["split"], value))
        if current.get(run_id) == (value, comment):
            continue
        labeled += 1
        for past in details.get("history") or ():
            rows.append(
                NewLabel(
                    run_id,
                    valid(past["score"]),
                    past.get("comment"),
                    past.get("labeler") or "import",
                    _when(past.get("labeled_at")),
                    past.get("rubric_version"),
                )
            )
        rows.append(
            NewLabel(
                run_id,
                value,
                comment,
                labeler or "import",
                _when(details.get("labeled_at")),
                details.get("rubric_version"),
            )
        )
    if rows:
        store.insert_labels(evaluator, rows)
    if splits:
        store.set_splits(evaluator, splits)
    return labeled


def _valid(score_type: ScoreType, where: str, consequence: str, value: object) -> Score:
    try:
        return score_type.validate_score(value)
    except InvalidInput as e:
        raise ImportFormatError(f"{where} {e} {consequence}") from None


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def apply_stored_feedback(store: Store, evaluator: str, score_type: ScoreType, feedback_key: str) -> int:
    """Label a new evaluator's runs from feedback imported earlier under its feedback key."""
    items: list[FeedbackLine] = [
        (f.run_id, f.score, f.comment, f.labeler, None, f.details)
        for f in store.feedback_for_key(feedback_key)
    ]
    if not items:
        return 0
    return apply_feedback(
        store,
        evaluator,
        score_type,
        items,
        f"The evaluator was not created: pick the score type that matches the imported {feedback_key!r} feedback.",
    )
