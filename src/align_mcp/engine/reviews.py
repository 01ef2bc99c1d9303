"""Blind second reviews of human labels: request, adjudicate and list them, and inter-annotator agreement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from align_mcp.core import metrics
from align_mcp.core.models import (
    AnnotatorAgreement,
    ReviewItem,
    ReviewReport,
    ReviewRequestReport,
    ReviewStatus,
    Score,
)
from align_mcp.core.text import shown
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.engine.ingest import check_run_ids
from align_mcp.engine.review_rules import person
from align_mcp.errors import Conflict, InvalidInput, NextStep
from align_mcp.store import NewLabel, NewReview, ReviewRow, Store

STATUSES: tuple[str, ...] = get_args(ReviewStatus)

# The adjudication rule is in review_rules.py, which every label write applies.


def request_review(
    store: Store, evaluator: str, run_ids: Sequence[str], reason: str | None = None
) -> ReviewRequestReport:
    """Send labeled runs back to the queue for a blind second review by a different labeler.

    Use it for cases triage marks label_error, or any label you doubt. The runs reappear in next_items without
    their labels; the second label must come from someone other than the first labeler. Until it arrives the
    first label keeps counting; if the two labels agree it stands, if they disagree the run leaves the
    reference set until a third labeler (or adjudicate) settles it. `reason` is kept with the review (default:
    the latest triage reason). All run ids are checked before anything changes.
    """
    get_evaluator(store, evaluator)
    ids = check_run_ids(store, run_ids)
    # The review pins the current label as its first one: read it in the transaction that opens the review, so a
    # relabel arriving meanwhile is either that first label or a label the review's rules apply to.
    with store.transaction():
        labels = store.current_label_rows(evaluator, ids)
        unlabeled = [rid for rid in ids if rid not in labels]
        if unlabeled:
            raise InvalidInput(
                f"Run(s) without a label for {evaluator!r}: {shown(unlabeled)}. Only labeled runs can get a "
                "second review.",
                NextStep("label", {"evaluator": evaluator}),
            )
        already = [r.run_id for r in store.reviews(evaluator, ids, open_only=True)]
        if already:
            raise Conflict(
                f"Run(s) already under review for {evaluator!r}: {shown(already)}.",
                NextStep("list_reviews", {"evaluator": evaluator}),
                NextStep("adjudicate_label", {"evaluator": evaluator}),
            )
        triaged = store.latest_triage(evaluator, ids)
        rows = []
        for rid in ids:
            why = reason
            if why is None and rid in triaged:
                why = f"triage: {triaged[rid].category}: {triaged[rid].reason}"
            rows.append(NewReview(rid, labels[rid].id, why))
        store.insert_reviews(evaluator, rows)
    first = sorted({str(labels[rid].labeler) for rid in ids if person(labels[rid].labeler)})
    notes = [
        "The runs are back in the queue, shown without their labels. Until the second label "
        "arrives the first one keeps counting in the reference set.",
        f"The second label must come from a labeler other than the first ({', '.join(first) or 'unnamed'}) "
        "and must name who gives it.",
    ]
    pending = len(store.reviews(evaluator, open_only=True))
    return ReviewRequestReport(evaluator=evaluator, requested=ids, pending_reviews=pending, notes=notes)


def adjudicate(
    store: Store, evaluator: str, run_id: str, score: object, labeler: str, comment: str | None = None
) -> ReviewItem:
    """Settle an open review with a final label: it replaces the current label and the review is closed.

    Works while the review is pending (overruling without a second label) or disputed. The adjudicator may be
    anyone, named in `labeler`; the earlier labels stay in the history.
    """
    score_type = get_evaluator(store, evaluator).score_type
    if person(labeler) is None:
        raise InvalidInput("Say who adjudicates (labeler=...): the final label records its author.")
    check_run_ids(store, [run_id], "run_id")
    with store.transaction():
        reviews = store.reviews(evaluator, [run_id], open_only=True)
        if not reviews:
            raise InvalidInput(
                f"Run {run_id!r} has no open review for {evaluator!r}, so there is nothing to adjudicate. A new "
                "label replaces its current one; the history is kept.",
                NextStep("label", {"evaluator": evaluator, "run_id": run_id}),
            )
        value = score_type.validate_score(score)
        store.insert_labels(evaluator, [NewLabel(run_id, value, comment, labeler)])
        label = store.current_label_rows(evaluator, [run_id])[run_id]
        store.adjudicate_review(reviews[0].id, label.id)
    return _review_items(store, evaluator, store.reviews(evaluator, [run_id]))[-1]


def _review_items(store: Store, evaluator: str, rows: Sequence[ReviewRow]) -> list[ReviewItem]:
    current = store.current_label_rows(evaluator, [r.run_id for r in rows])
    disputed = store.disputed_run_ids(evaluator)
    items = []
    for r in rows:
        label = current.get(r.run_id)
        counted = label is not None and r.run_id not in disputed
        items.append(
            ReviewItem(
                run_id=r.run_id,
                status=r.status,
                reason=r.reason,
                first_score=r.first_score,
                first_labeler=r.first_labeler,
                second_score=r.second_score,
                second_labeler=r.second_labeler,
                final_score=r.final_score,
                final_labeler=r.final_labeler,
                in_reference_set=counted,
                reference_score=label.score if counted and label is not None else None,
                requested_at=r.requested_at,
                resolved_at=r.resolved_at,
            )
        )
    return items


def list_reviews(store: Store, evaluator: str, status: ReviewStatus | None = None) -> ReviewReport:
    """Second reviews and where they stand, with inter-annotator agreement when runs have two labelers.

    This view shows every label: it is for whoever coordinates labeling, never for the second labeler.
    """
    get_evaluator(store, evaluator)
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status={status!r} is not one of {', '.join(STATUSES)}.")
    rows = store.reviews(evaluator)
    counts = {name: sum(1 for r in rows if r.status == name) for name in STATUSES}
    shown = [r for r in rows if status is None or r.status == status]
    agreement = annotator_agreement(store, evaluator) if _label_pairs(store, evaluator) else None
    return ReviewReport(
        evaluator=evaluator,
        counts=counts,
        reviews=_review_items(store, evaluator, shown),
        agreement=agreement,
    )


def _label_pairs(store: Store, evaluator: str) -> list[tuple[str, Score, Score]]:
    """(run_id, first label, blind second label) of every review that received its second label."""
    return [
        (r.run_id, r.first_score, r.second_score)
        for r in store.reviews(evaluator)
        if r.second_label_id is not None and r.second_score is not None
    ]


def annotator_agreement(store: Store, evaluator: str) -> AnnotatorAgreement:
    """Inter-annotator agreement (raw and Cohen's κ) over runs with a first label and a blind second label.

    Pairs come from request_review: the first label against the second reviewer's, who never saw it.
    Adjudicating labels and ordinary relabels are left out (a relabel made after seeing the judge's verdict
    is not independent). Quadratic-weighted κ for ordinal score types.
    """
    score_type = get_evaluator(store, evaluator).score_type
    pairs = _label_pairs(store, evaluator)
    if not pairs:
        raise InvalidInput(
            f"No run of {evaluator!r} has a blind second label yet, so there is no inter-annotator "
            "agreement to report; labeled runs need a blind second review first.",
            NextStep("request_review", {"evaluator": evaluator}),
        )
    scored = [(a, b) for _, a, b in pairs]
    values = score_type.values()
    kappa = metrics.cohen_kappa(scored, values)
    unweighted = None
    if score_type.kind == "ordinal":
        unweighted = kappa
        kappa = metrics.weighted_kappa([(int(a), int(b)) for a, b in scored], [int(v) for v in values])
    agree = sum(a == b for a, b in scored)
    notes = []
    if len(pairs) < 20:
        notes.append(f"Only {len(pairs)} doubly labeled run(s): κ is rough; review more runs to firm it up.")
    if kappa is not None and kappa < 0.6:
        notes.append(
            f"κ = {kappa:.2f}: the labelers themselves often disagree, which caps how well any judge can "
            "agree with them; write down the labeling rule the disagreements turn on."
        )
    return AnnotatorAgreement(
        evaluator=evaluator,
        n=len(pairs),
        agreement=metrics.rate(agree, len(pairs)),
        kappa=kappa,
        unweighted_kappa=unweighted,
        disagreements=[rid for rid, a, b in pairs if a != b],
        notes=notes,
    )
