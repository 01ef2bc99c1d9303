"""Feedback imported with runs becomes human labels for the evaluators that read its key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from align_mcp.core.models import ScoreType
from align_mcp.errors import ImportFormatError, InvalidInput
from align_mcp.store import NewLabel, Store


def apply_feedback(
    store: Store,
    evaluator: str,
    score_type: ScoreType,
    items: Sequence[tuple[str, Any, str | None, str | None, int | None]],
    consequence: str = "Nothing from this import was stored.",
) -> int:
    """Turn imported feedback (run_id, score, comment, labeler, line) into labels; unchanged labels are skipped.

    Call inside a transaction. Raises ImportFormatError naming the first score that does not fit.
    """
    current = {
        lab.run_id: (lab.score, lab.comment)
        for lab in store.current_labels(evaluator, [item[0] for item in items])
    }
    rows: list[NewLabel] = []
    for run_id, score, comment, labeler, line in items:
        try:
            value = score_type.validate_score(score)
        except InvalidInput as e:
            where = f"line {line}" if line else f"run {run_id!r}"
            raise ImportFormatError(
                f"{where}: feedback for evaluator {evaluator!r}: {e} {consequence}"
            ) from None
        if current.get(run_id) == (value, comment):
            continue
        rows.append(NewLabel(run_id, value, comment, labeler or "import"))
    if rows:
        store.insert_labels(evaluator, rows)
    return len(rows)


def apply_stored_feedback(store: Store, evaluator: str, score_type: ScoreType, feedback_key: str) -> int:
    """Label a new evaluator's runs from feedback imported earlier under its feedback key."""
    items = [(f.run_id, f.score, f.comment, f.labeler, None) for f in store.feedback_for_key(feedback_key)]
    if not items:
        return 0
    return apply_feedback(
        store,
        evaluator,
        score_type,
        items,
        f"The evaluator was not created: pick the score type that matches the imported {feedback_key!r} feedback.",
    )
