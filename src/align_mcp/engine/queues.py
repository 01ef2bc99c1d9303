"""Annotation queues and human labels: what waits for a label, who holds it, and the reference set."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from align_mcp.core.models import (
    AddToQueueReport,
    Balance,
    LabelReceipt,
    QueueItem,
    QueueSummary,
    Score,
    ScoreType,
)
from align_mcp.engine import rubrics
from align_mcp.engine.evaluators import check_name, score_type_of
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.engine.review_rules import check_review_labels, settle_reviews
from align_mcp.errors import InvalidInput, NextStep, NotFound
from align_mcp.store import LabelRow, NewLabel, Store

MIN_LABELS = 20
MIN_CLASS_SHARE = 0.20
DEFAULT_RESERVATION_S = 30 * 60
MAX_BATCH = 10_000
MAX_COMMENT_CHARS = 20_000


def add_to_queue(
    store: Store,
    evaluator: str,
    source: str | None = None,
    run_ids: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    sample: int | None = None,
    stratify_by: str | None = None,
    seed: int = 0,
    stale: bool = False,
) -> AddToQueueReport:
    """Queue runs by ids, or by source and metadata filter, optionally a random or stratified sample of N.

    A pairwise evaluator takes only runs with two outputs, and any other evaluator only runs with one.

    `stale` queues instead the runs whose label was given under instructions a later saved version changed, for a
    blind relabel: the queue shows the run without its label, and the relabel joins the label history.
    """
    ev = get_evaluator(store, evaluator)
    if stale:
        return _queue_stale(store, evaluator, source, run_ids, metadata, sample)
    if sample is not None and sample < 1:
        raise InvalidInput(
            f"sample={sample}: the sample size must be a positive number of runs (at least 1)."
        )
    if run_ids:
        if source is not None or metadata:
            raise InvalidInput("Give run ids, or a source/metadata filter, not both.")
        ids = list(dict.fromkeys(run_ids))
        known = store.existing_run_ids(ids)
        missing = [rid for rid in ids if rid not in known]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5]) + (" …" if len(missing) > 5 else "")
            raise NotFound(
                f"{len(missing)} run id(s) are not in the store: {shown}.", NextStep("import_runs")
            )
    else:
        if source is None and not metadata:
            raise InvalidInput(
                'Say which runs to queue: run ids, a source name, or a metadata filter (e.g. {"topic": "billing"}).'
            )
        if source is not None and store.get_source(source) is None:
            sources = [s.name for s in store.list_sources()]
            raise NotFound(
                f"No source named {source!r}. Known: {', '.join(sources) or 'none'}.", NextStep("import_runs")
            )
        ids = store.run_ids(
            source=source, metadata=metadata, exclude_queued_for=evaluator if sample else None
        )
        if not ids:
            raise NotFound(f"No runs match source={source!r} metadata={json.dumps(metadata or {})}.")
    if sample is not None:
        ids = _sample(store, ids, sample, stratify_by, seed)
    elif stratify_by:
        raise InvalidInput("stratify_by needs sample=N (how many runs to draw).")
    pairwise = ev.score_type.kind == "pairwise"
    wrong = store.run_ids_by_outputs(ids, two=not pairwise)
    if wrong and pairwise:
        raise InvalidInput(
            f"{len(wrong)} of these runs have one output ({', '.join(repr(w) for w in wrong[:5])}"
            f"{' …' if len(wrong) > 5 else ''}), and pairwise evaluator {evaluator!r} compares two: import runs "
            "with outputs_a and outputs_b, or pair two sources."
        )
    if wrong:
        raise InvalidInput(
            f"{len(wrong)} of these runs are pairwise, with two outputs ({', '.join(repr(w) for w in wrong[:5])}"
            f"{' …' if len(wrong) > 5 else ''}), and {ev.score_type.kind} evaluator {evaluator!r} judges one: "
            "queue them for a pairwise evaluator."
        )
    added = store.enqueue(evaluator, ids)
    counts = store.queue_counts(evaluator)
    return AddToQueueReport(
        evaluator=evaluator, added=added, already_queued=len(ids) - added, pending=counts.pending
    )


def _queue_stale(
    store: Store,
    evaluator: str,
    source: str | None,
    run_ids: Sequence[str] | None,
    metadata: dict[str, Any] | None,
    sample: int | None,
) -> AddToQueueReport:
    if source is not None or run_ids or metadata or sample is not None:
        raise InvalidInput(
            "Queueing the possibly stale labels takes every one of them: give no source, run ids, metadata "
            "filter or sample with it."
        )
    ids = rubrics.stale_run_ids(store, evaluator)
    if not ids:
        raise InvalidInput(
            f"No label of {evaluator!r} is possibly stale: every label was given under the instructions of the "
            "latest saved version (or nothing was saved yet)."
        )
    with store.transaction():
        waiting = set(store.pending_ids(evaluator))
        store.requeue(evaluator, ids)
        counts = store.queue_counts(evaluator)
    added = sum(1 for rid in ids if rid not in waiting)
    return AddToQueueReport(
        evaluator=evaluator, added=added, already_queued=len(ids) - added, pending=counts.pending
    )


def _sample(store: Store, ids: list[str], n: int, stratify_by: str | None, seed: int) -> list[str]:
    rng = random.Random(seed)
    if n >= len(ids):
        return ids
    if not stratify_by:
        return rng.sample(ids, n)
    groups: dict[str, list[str]] = defaultdict(list)
    for rid, value in store.run_metadata(ids, stratify_by).items():
        groups[json.dumps(value)].append(rid)
    # Proportional allocation with largest remainders (a very small stratum may get none).
    quotas = {k: n * len(v) / len(ids) for k, v in groups.items()}
    alloc = {k: int(q) for k, q in quotas.items()}
    for k in sorted(groups, key=lambda k: quotas[k] - alloc[k], reverse=True)[: n - sum(alloc.values())]:
        alloc[k] += 1
    chosen: list[str] = []
    for k in sorted(groups):
        chosen.extend(rng.sample(groups[k], min(alloc[k], len(groups[k]))))
    return chosen


def next_items(
    store: Store,
    evaluator: str,
    labeler: str = "anonymous",
    limit: int = 5,
    reserve_seconds: float = DEFAULT_RESERVATION_S,
) -> list[QueueItem]:
    """The next unlabeled runs for a labeler, reserved for them so two labelers never get the same item."""
    get_evaluator(store, evaluator)
    if not 1 <= limit <= 100:
        raise InvalidInput(f"limit={limit} must be between 1 and 100.")
    if reserve_seconds <= 0:
        raise InvalidInput(f"reserve_seconds={reserve_seconds} must be positive.")
    ids = store.reserve(evaluator, labeler, limit, reserve_seconds)
    runs = store.get_runs(ids)
    reservations = store.reservations(evaluator, ids)
    items = []
    for rid in ids:
        run = runs.get(rid)
        if run is None:  # stored but unreadable (see Store.get_runs): never hand a labeler a broken item
            continue
        held = reservations.get(rid)
        items.append(
            QueueItem(
                run_id=rid,
                source=run.source,
                inputs=run.inputs,
                outputs=run.outputs,
                outputs_b=run.outputs_b,
                reference_outputs=run.reference_outputs,
                metadata=run.metadata,
                reserved_until=None if held is None else held.reserved_until,
            )
        )
    return items


def submit_labels(
    store: Store, evaluator: str, labels: Sequence[dict[str, Any]], labeler: str | None = None
) -> list[LabelReceipt]:
    """Store many labels atomically: {run_id, score, comment?, labeler?}. All are validated before any is written."""
    score_type = score_type_of(store, evaluator)
    if not labels:
        raise InvalidInput("No labels given. Pass a list of {run_id, score, comment?}.")
    if len(labels) > MAX_BATCH:
        raise InvalidInput(f"{len(labels)} labels in one call; send at most {MAX_BATCH} per call.")
    # Every read that decides this write (the runs, the open blind reviews, the labels a relabel replaces) runs in
    # the write transaction, so no other labeler or review request can change them between the check and the write.
    with store.transaction():
        rows = _label_rows(store, score_type, labels, labeler)
        check_review_labels(store, evaluator, rows)
        relabeled = store.insert_labels(evaluator, rows)
        disputed = settle_reviews(store, evaluator, [row.run_id for row in rows])
        counts = store.queue_counts(evaluator)
    return [
        LabelReceipt(
            evaluator=evaluator,
            run_id=row.run_id,
            score=row.score,
            relabeled=again,
            labeled=counts.labeled,
            pending=counts.pending,
            disputed=row.run_id in disputed,
            notes=[disputed[row.run_id]] if row.run_id in disputed else [],
        )
        for row, again in zip(rows, relabeled, strict=True)
    ]


def _label_rows(
    store: Store, score_type: ScoreType, labels: Sequence[dict[str, Any]], labeler: str | None
) -> list[NewLabel]:
    """Validate labels in order and turn them into rows to store."""
    rows: list[NewLabel] = []
    run_ids = [str(item.get("run_id", "")) for item in labels]
    known = store.existing_run_ids(run_ids)
    for i, item in enumerate(labels):
        rid = run_ids[i]
        if rid not in known:
            raise NotFound(f"Label {i + 1}: no run with id {rid!r}. Check the id.", NextStep("import_runs"))
        if "score" not in item or item["score"] is None:
            raise InvalidInput(f"Label {i + 1} (run {rid!r}) has no score. Allowed: {score_type.describe()}.")
        try:
            score = score_type.validate_score(item["score"])
        except InvalidInput as e:
            raise type(e)(f"Label {i + 1} (run {rid!r}): {e}") from None
        comment = item.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise InvalidInput(f"Label {i + 1} (run {rid!r}): comment must be text.")
        if comment is not None and len(comment) > MAX_COMMENT_CHARS:
            raise InvalidInput(
                f"Label {i + 1} (run {rid!r}): the comment is {len(comment):,} characters; keep it under "
                f"{MAX_COMMENT_CHARS:,} (say why the score is right, not the whole case)."
            )
        rows.append(NewLabel(rid, score, comment or None, item.get("labeler") or labeler))
    return _one_per_run(rows)


def _one_per_run(rows: list[NewLabel]) -> list[NewLabel]:
    """The labels with exact repeats dropped; two different labels for one run in one batch are refused, since
    neither can be told to be the one meant."""
    first: dict[str, int] = {}
    kept: list[NewLabel] = []
    for i, row in enumerate(rows):
        j = first.get(row.run_id)
        if j is None:
            first[row.run_id] = i
            kept.append(row)
            continue
        earlier = rows[j]
        if (earlier.score, earlier.comment, earlier.labeler) != (row.score, row.comment, row.labeler):
            what = (
                f"scores {earlier.score!r} and {row.score!r}"
                if earlier.score != row.score
                else "the same score with different comments or labelers"
            )
            raise InvalidInput(
                f"Labels {j + 1} and {i + 1} both label run {row.run_id!r}, with {what}. Send one label per run "
                "(a later batch can relabel it; history is kept)."
            )
    return kept


def submit_label(
    store: Store,
    evaluator: str,
    run_id: str,
    score: object,
    comment: str | None = None,
    labeler: str | None = None,
) -> LabelReceipt:
    return submit_labels(store, evaluator, [{"run_id": run_id, "score": score, "comment": comment}], labeler)[
        0
    ]


def balance(store: Store, evaluator: str, score_type: ScoreType | None = None) -> Balance:
    """Label counts per score value, with the guidance: at least 20 labels, every class at least 20%."""
    score_type = score_type or score_type_of(store, evaluator)
    raw = store.label_counts(evaluator)
    counts = {str(v): raw.get(v, 0) for v in score_type.values()}
    total = sum(counts.values())
    warnings: list[str] = []
    if total < MIN_LABELS:
        warnings.append(
            f"Only {total} labeled run(s); label at least {MIN_LABELS} before trusting the alignment score."
        )
    if score_type.kind == "binary" and total:
        names = {"1": "pass", "0": "fail"}
        for value, n in counts.items():
            if n == 0:
                warnings.append(
                    f"No '{names[value]}' ({value}) labels: the judge cannot be checked on that class."
                )
            elif n / total < MIN_CLASS_SHARE:
                warnings.append(
                    f"'{names[value]}' ({value}) is {n / total:.0%} of labels (under {MIN_CLASS_SHARE:.0%}): "
                    "agreement will be dominated by the other class; label more of these."
                )
    elif score_type.kind == "categorical" and total:
        missing = [k for k, n in counts.items() if n == 0]
        if missing:
            warnings.append(f"No labels yet for: {', '.join(missing)}.")
    return Balance(counts=counts, total=total, warnings=warnings)


def summary(store: Store, evaluator: str) -> QueueSummary:
    ev = get_evaluator(store, evaluator)
    counts = store.queue_counts(evaluator)
    return QueueSummary(
        evaluator=evaluator,
        feedback_key=ev.feedback_key,
        score_type=ev.score_type.describe(),
        pending=counts.pending,
        reserved=counts.reserved,
        labeled=counts.labeled,
        balance=balance(store, evaluator, ev.score_type),
        stale=rubrics.stale_count(store, evaluator),
    )


def list_queues(store: Store) -> list[QueueSummary]:
    return [summary(store, name) for name in store.evaluator_names()]


def reference_set(store: Store, evaluator: str) -> list[tuple[str, Score]]:
    """The labeled runs: (run_id, current human score), sorted by run id.

    Runs whose blind second review disagreed with the first label are left out until adjudicated (diagnose).
    """
    disputed = store.disputed_run_ids(evaluator)
    return [(run_id, score) for run_id, score in store.reference_scores(evaluator) if run_id not in disputed]


def label_history(store: Store, evaluator: str, run_id: str) -> list[LabelRow]:
    """Every label the run got for the evaluator, oldest first; the last current one counts."""
    check_name(evaluator)
    get_evaluator(store, evaluator)
    rows = store.label_history(evaluator, run_id)
    if not rows:
        raise NotFound(f"Run {run_id!r} has no label for {evaluator!r}.")
    return rows
