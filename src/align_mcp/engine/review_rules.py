"""The blind-review rules every label write applies: who may give a run's next label, and what a label settles."""

from __future__ import annotations

from collections.abc import Sequence

from align_mcp.core.models import Note, Score
from align_mcp.errors import Conflict, InvalidInput, NextStep
from align_mcp.store import NewLabel, Store

# The adjudication rule. request_review puts labeled runs back in the queue; the first label stays in the
# reference set while the review is pending. The second label must come from a different, named labeler
# (next_items never shows the first label). When the two agree, the label stands (status agreed); when they
# differ, the run leaves the reference set (status disputed) and goes back to the queue for an adjudicating
# third label from someone other than both reviewers, or an explicit adjudicate(); that label is final
# (status adjudicated) and the run rejoins the reference set with it. Every label stays in the history.
# This module is all a label write needs of reviews, so it loads neither the review reports nor the metrics.

UNNAMED = {"", "anonymous"}


def person(labeler: str | None) -> str | None:
    """A comparable identity for a labeler, or None when the label does not say who gave it."""
    if labeler is None or labeler.strip().casefold() in UNNAMED:
        return None
    return labeler.strip().casefold()


def check_review_labels(store: Store, evaluator: str, labels: Sequence[NewLabel]) -> None:
    """Refuse labels that would break a blind review. queues.submit_labels calls it in its write transaction.

    A run waiting for its second review needs a named labeler other than the first; a disputed run needs one
    other than both reviewers (or adjudicate).
    """
    open_reviews = {
        r.run_id: r for r in store.reviews(evaluator, [row.run_id for row in labels], open_only=True)
    }
    for label in labels:
        run_id, labeler = label.run_id, label.labeler
        review = open_reviews.get(run_id)
        if review is None:
            continue
        disputed = review.status == "disputed"
        who = person(labeler)
        if who is None:
            waiting = "needs an adjudicating label" if disputed else "is waiting for a blind second review"
            raise InvalidInput(
                f"Run {run_id!r} {waiting} for {evaluator!r}: say who is labeling (labeler=...), so this "
                "label can be told apart from the earlier one."
            )
        earlier = [review.first_labeler, *([review.second_labeler] if disputed else [])]
        if who in {person(name) for name in earlier}:
            settle = NextStep("adjudicate_label", {"evaluator": evaluator, "run_id": run_id})
            if disputed:
                raise Conflict(
                    f"Run {run_id!r} needs an adjudicating label for {evaluator!r} from someone other than "
                    f"its two reviewers ({', '.join(repr(n) for n in earlier)}), or a final label settling it.",
                    settle,
                )
            raise Conflict(
                f"Run {run_id!r} is waiting for a blind second review for {evaluator!r}, and {labeler!r} "
                "gave the first label; the second must come from a different labeler, or a final label can "
                "overrule the first.",
                settle,
            )


def settle_reviews(store: Store, evaluator: str, run_ids: Sequence[str]) -> dict[str, Note]:
    """Apply the adjudication rule to open reviews of runs that just got a label.

    queues.submit_labels calls it after it writes, in the same transaction as check_review_labels. Returns, by
    run id, a note for every run this write put in dispute: it left the reference set and needs a final label.
    """
    open_reviews = store.reviews(evaluator, run_ids, open_only=True)
    if not open_reviews:
        return {}
    current = store.current_label_rows(evaluator, [r.run_id for r in open_reviews])
    disputed: dict[str, Note] = {}
    for review in open_reviews:
        label = current.get(review.run_id)
        if label is None:
            continue
        if review.status == "pending" and label.id != review.first_label_id:
            if label.score == review.first_score:
                store.agree_review(review.id, label.id)
            else:
                store.dispute_review(review.id, label.id)
                store.requeue(evaluator, [review.run_id])
                disputed[review.run_id] = dispute_note(
                    evaluator, review.run_id, review.first_score, review.first_labeler, label.score
                )
        elif review.status == "disputed" and label.id != review.second_label_id:
            store.adjudicate_review(review.id, label.id)
    return disputed


def dispute_note(evaluator: str, run_id: str, first: Score, first_labeler: str | None, second: Score) -> Note:
    """What a label that disputes a run says: it left the reference set, and how to settle it."""
    by = f" by {first_labeler!r}" if person(first_labeler) else ""
    return Note(
        text=f"Run {run_id!r} is now disputed for {evaluator!r}: this blind second label ({second}) differs "
        f"from the first ({first}{by}), so the run left the reference set and is back in the queue until a "
        "final label settles it.",
        next_steps=[NextStep("adjudicate_label", {"evaluator": evaluator, "run_id": run_id})],
    )
