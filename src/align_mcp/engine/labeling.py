"""A labeler's session: the next runs to show (long strings cut) and labels stored with the queue's new balance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from align_mcp.core.models import Note
from align_mcp.core.text import clip
from align_mcp.core.views import LabelResult, LabelsResult, NextItems
from align_mcp.engine import evaluators, queues
from align_mcp.errors import NextStep
from align_mcp.store import Store


def next_page(
    store: Store, evaluator: str, labeler: str, limit: int = 5, max_chars: int | None = None
) -> NextItems:
    """The next unlabeled runs of a queue, reserved for `labeler`, with strings cut at `max_chars` (if given)."""
    items = queues.next_items(store, evaluator, labeler, limit)
    cut = False
    shown = []
    for item in items:
        if max_chars is None:
            shown.append(item)
            continue
        fields: dict[str, Any] = {}
        for name in ("inputs", "outputs", "outputs_b", "reference_outputs"):
            fields[name], was_cut = clip(getattr(item, name), max_chars)
            cut = cut or was_cut
        shown.append(item.model_copy(update=fields))
    score_type = evaluators.score_type_of(store, evaluator)
    notes = []
    if not items:
        notes.append(
            Note(
                text="Nothing left to label in this queue.",
                next_steps=[NextStep("add_to_queue", {"evaluator": evaluator})],
            )
        )
    else:
        notes.append(
            Note(
                text=f"Scores: {score_type.describe()}. The labels are the human's verdicts.",
                next_steps=[NextStep("label", {"evaluator": evaluator})],
            )
        )
    if cut:
        notes.append(
            Note(text=f"Long strings were cut at {max_chars} characters.", next_steps=[NextStep("show_run")])
        )
    return NextItems(
        evaluator=evaluator,
        score_type=score_type.describe(),
        labeler=labeler,
        items=shown,
        pending=queues.summary(store, evaluator).pending,
        notes=notes,
    )


def store_label(
    store: Store,
    evaluator: str,
    run_id: str,
    score: object,
    comment: str | None = None,
    labeler: str | None = None,
) -> LabelResult:
    """Store one human label and report the queue's new counts and label balance."""
    receipt = queues.submit_label(store, evaluator, run_id, score, comment, labeler)
    verb = "Relabeled" if receipt.relabeled else "Labeled"
    disputed = " (disputed: out of the reference set until settled)" if receipt.disputed else ""
    return LabelResult(
        status="stored",
        receipt=receipt,
        balance=queues.balance(store, evaluator),
        message=f"{verb} {run_id} = {receipt.score}{disputed}; {receipt.labeled} labeled, "
        f"{receipt.pending} pending.",
    )


def store_labels(
    store: Store, evaluator: str, labels: Sequence[dict[str, Any]], labeler: str | None = None
) -> LabelsResult:
    """Store many human labels, all or nothing, and report the queue's new counts and label balance."""
    receipts = queues.submit_labels(store, evaluator, labels, labeler)
    last = receipts[-1]
    return LabelsResult(
        evaluator=evaluator,
        stored=len(receipts),
        relabeled=sum(1 for r in receipts if r.relabeled),
        labeled=last.labeled,
        pending=last.pending,
        balance=queues.balance(store, evaluator),
        disputed=[r.run_id for r in receipts if r.disputed],
        notes=[note for r in receipts for note in r.notes],
    )
