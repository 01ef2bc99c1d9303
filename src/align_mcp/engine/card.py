"""The judge card of a saved version: its prompt and judge, its held-out figures, its labels and its dates."""

from __future__ import annotations

from datetime import UTC, datetime

from align_mcp import config
from align_mcp.core.cards import CardFigures, JudgeCard
from align_mcp.engine import alignment, holdout, rubrics
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.engine.evaluators import get_version
from align_mcp.engine.queues import balance
from align_mcp.engine.reviews import annotator_agreement
from align_mcp.errors import InvalidInput, NextStep, NotFound
from align_mcp.store import Store


def judge_card(store: Store, evaluator: str, version: int | None = None) -> JudgeCard:
    """The card of a saved version (default: the latest), built from what the store holds now."""
    ev = get_evaluator(store, evaluator)
    if version is None:
        if ev.latest_version is None:
            raise NotFound(
                f"Evaluator {evaluator!r} has no saved version, so it has no judge card yet.",
                NextStep("save_prompt", {"evaluator": evaluator}),
            )
        version = ev.latest_version
    v = get_version(store, evaluator, version)
    test = _figures(store, evaluator, version, "test")
    dev = _figures(store, evaluator, version, "dev") or _figures(store, evaluator, version, "all")
    split = holdout.info(store, evaluator)
    counts = store.rubric_counts(evaluator)
    current = store.current_labels(evaluator)
    try:
        agreement = annotator_agreement(store, evaluator)
    except InvalidInput:  # no run has a blind second label yet
        agreement = None
    notes = []
    if test is None:
        notes.append(
            f"No completed test-split run of v{version} yet: judge v{version} on the held-out test split to put "
            "figures on this card that no prompt edit has seen."
        )
    model = test.model if test else v.judge.model or config.load().judge_model
    return JudgeCard(
        evaluator=evaluator,
        feedback_key=ev.feedback_key,
        description=ev.description,
        score_type=ev.score_type.describe(),
        version=version,
        message=v.message,
        prompt=v.prompt,
        judge=v.judge,
        model=model,
        test=test,
        dev=dev,
        test_evaluations=split.test_evaluations if split else _test_evaluations(store, evaluator),
        holdout=split,
        few_shot=store.version_few_shot(evaluator, version),
        balance=balance(store, evaluator, ev.score_type),
        labels_by_rubric={str(r): n for r, n in sorted(counts.items())},
        stale_labels=rubrics.stale_count(store, evaluator),
        annotator_agreement=agreement,
        evaluator_created_at=ev.created_at,
        saved_at=v.created_at,
        first_label_at=min((x.created_at for x in current), default=None),
        last_label_at=max((x.created_at for x in current), default=None),
        generated_at=datetime.now(UTC),
        notes=notes,
    )


def _test_evaluations(store: Store, evaluator: str) -> int:
    row = store.get_evaluator(evaluator)
    return row.test_evaluations if row else 0


def _figures(store: Store, evaluator: str, version: int, split: str) -> CardFigures | None:
    aid = store.latest_alignment_id(evaluator, prompt_ref=f"v{version}", status="completed", split=split)
    if aid is None:
        return None
    run = alignment.summary(store, aid)
    if run.metrics is None:
        return None
    return CardFigures(
        alignment_run=run.id, split=run.split, model=run.model, judged_at=run.finished_at, metrics=run.metrics
    )
