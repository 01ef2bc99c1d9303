"""Labels that remember their rubric (engine/rubrics.py): each label keeps the saved version it was given under;
a later change of instructions marks it possibly stale, counted in list_queues and the alignment report, and
add_to_queue(stale=True) sends it back for a blind relabel that keeps both labels in the history."""

from __future__ import annotations

from typing import Any

import pytest

from align_mcp.core.models import JudgeSettings, Note, ScoreType
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators
from align_mcp.engine.ingest import import_runs
from align_mcp.engine.queues import add_to_queue, label_history, next_items, submit_labels, summary
from align_mcp.errors import InvalidInput, NextStep
from align_mcp.optimize.few_shot_search import with_variable
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer

pytestmark = pytest.mark.anyio
NAME = "correctness"


def setup(store: Store, support_runs: list[dict[str, Any]]) -> None:
    evaluators.create(store, NAME, ScoreType(kind="binary"), judge=JudgeSettings(max_retries=0))
    import_runs(store, "support", runs=support_runs)  # 46 labels under v1


def test_a_label_remembers_the_latest_saved_version_when_it_was_given(
    store: Store, support_runs: list[dict[str, Any]]
) -> None:
    setup(store, support_runs)
    evaluators.update_draft(store, NAME, "Grade the answer strictly.\n{{inputs}}\n{{outputs}}")
    evaluators.save(store, NAME)
    evaluators.update_draft(store, NAME, "Grade the answer kindly.\n{{inputs}}\n{{outputs}}")  # a draft only

    submit_labels(store, NAME, [{"run_id": "pp-001", "score": 1}])

    assert [x.rubric_version for x in label_history(store, NAME, "pp-001")] == [1, 2]


def test_only_a_change_of_instructions_makes_labels_stale(
    store: Store, support_runs: list[dict[str, Any]]
) -> None:
    setup(store, support_runs)
    v1 = evaluators.get_version(store, NAME, 1).prompt
    evaluators.update_draft(store, NAME, v1, judge={"model": "other-model", "temperature": 0.5})
    evaluators.save(store, NAME, "new model")

    assert summary(store, NAME).stale == 0

    evaluators.update_draft(store, NAME, v1 + "\nA refund promise the policy does not allow is a fail.")
    evaluators.save(store, NAME, "refund rule")
    submit_labels(store, NAME, [{"run_id": "pp-001", "score": 0}])

    assert summary(store, NAME).stale == 45


def test_stale_labels_go_back_to_the_queue_blind_and_the_relabel_keeps_both(
    store: Store, support_runs: list[dict[str, Any]]
) -> None:
    setup(store, support_runs)
    evaluators.update_draft(store, NAME, "Only exact figures pass.\n{{inputs}}\n{{outputs}}")
    evaluators.save(store, NAME)
    submit_labels(store, NAME, [{"run_id": r["id"], "score": 1} for r in support_runs[:40]])

    report = add_to_queue(store, NAME, stale=True)

    assert (report.added, report.already_queued, report.pending) == (6, 0, 6)
    items = next_items(store, NAME, labeler="ana", limit=10)
    assert [i.run_id for i in items] == [r["id"] for r in support_runs[40:]]
    assert "feedback" not in items[0].model_dump() and "score" not in items[0].model_dump()
    first = support_runs[40]
    submit_labels(
        store, NAME, [{"run_id": first["id"], "score": 1 - first["feedback"][NAME]["score"]}], "ana"
    )
    history = label_history(store, NAME, first["id"])
    assert [(x.score, x.labeler, x.rubric_version, x.current) for x in history] == [
        (first["feedback"][NAME]["score"], "import", 1, False),
        (1 - first["feedback"][NAME]["score"], "ana", 2, True),
    ]
    assert (summary(store, NAME).stale, summary(store, NAME).pending) == (5, 5)


def test_queueing_stale_labels_refuses_other_selections_and_says_when_there_are_none(
    store: Store, support_runs: list[dict[str, Any]]
) -> None:
    setup(store, support_runs)

    with pytest.raises(InvalidInput) as none:
        add_to_queue(store, NAME, stale=True)
    with pytest.raises(InvalidInput) as mixed:
        add_to_queue(store, NAME, source="support", stale=True)

    assert str(none.value) == (
        f"No label of {NAME!r} is possibly stale: every label was given under the instructions of the latest "
        "saved version (or nothing was saved yet)."
    )
    assert str(mixed.value) == (
        "Queueing the possibly stale labels takes every one of them: give no source, run ids, metadata filter or "
        "sample with it."
    )


async def test_the_alignment_report_splits_agreement_by_rubric_and_counts_stale_labels(
    store: Store, support_runs: list[dict[str, Any]], judge: FakeJudgeServer
) -> None:
    setup(store, support_runs)
    evaluators.update_draft(store, NAME, evaluators.get(store, NAME).draft + "\nEvery figure must match.")
    evaluators.save(store, NAME)
    submit_labels(
        store, NAME, [{"run_id": r["id"], "score": r["feedback"][NAME]["score"]} for r in support_runs[:10]]
    )

    report = await align.run_alignment(store, NAME, split="all")

    assert [(g.rubric_version, g.n, g.stale) for g in report.by_rubric] == [(1, 36, True), (2, 10, False)]
    assert sum(g.agreement.k for g in report.by_rubric) == report.run.metrics.agreement.k  # type: ignore[union-attr]
    assert report.stale_labels == 36
    assert (
        Note(
            text="36 label(s) were given under instructions a later saved version changed; their agreement is "
            "shown by rubric version. Relabel them blind to check they still hold.",
            next_steps=[NextStep("add_to_queue", {"evaluator": NAME, "stale": True})],
        )
        in report.notes
    )


def test_the_migration_gives_existing_labels_the_version_saved_last_before_them(
    store: Store, support_runs: list[dict[str, Any]]
) -> None:
    import sqlite3

    from align_mcp.store import open_store

    setup(store, support_runs)
    evaluators.update_draft(store, NAME, "Stricter.\n{{inputs}}\n{{outputs}}")
    evaluators.save(store, NAME)
    submit_labels(store, NAME, [{"run_id": "pp-001", "score": 1}])
    path = store.path
    store.close()
    # The store as an align-mcp before m014 left it: no rubric column, no feedback details.
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        DROP TRIGGER labels_rubric_insert;
        DROP TRIGGER labels_rubric_update;
        DROP TRIGGER labels_rubric_delete;
        DROP TABLE rubric_tallies;
        DROP INDEX labels_rubric;
        ALTER TABLE labels DROP COLUMN rubric_version;
        ALTER TABLE feedback DROP COLUMN details;
        DELETE FROM _sqlite_migrations WHERE name = 'm014_label_rubric';
        UPDATE prompt_versions SET created_at = '2026-01-01T00:00:00+00:00' WHERE version = 1;
        UPDATE labels SET created_at = '2025-12-31T00:00:00+00:00' WHERE run_id = 'pp-002';
        """
    )
    conn.close()

    with open_store(path) as migrated:
        rubrics = {x.run_id: x.rubric_version for x in migrated.all_labels(NAME) if x.current}
        tallies = migrated.rubric_counts(NAME)
        submit_labels(migrated, NAME, [{"run_id": "pp-002", "score": 1}])
        after = migrated.rubric_counts(NAME)

    assert (rubrics["pp-001"], rubrics["pp-002"], rubrics["pp-003"]) == (2, 0, 1)
    assert tallies == {0: 1, 1: 44, 2: 1}
    assert after == {1: 44, 2: 2}


def test_showing_or_reselecting_few_shot_examples_leaves_labels_current(
    store: Store, support_runs: list[dict[str, Any]]
) -> None:
    setup(store, support_runs)
    v1 = evaluators.get_version(store, NAME, 1).prompt
    with_examples = with_variable(v1)
    assert with_examples != v1
    evaluators.update_draft(store, NAME, with_examples, few_shot_settings="k=2")
    evaluators.save(store, NAME, "show corrected examples")
    evaluators.update_draft(store, NAME, few_shot_settings="strategy=random,seed=4")
    evaluators.save(store, NAME, "other examples")

    assert summary(store, NAME).stale == 0

    evaluators.update_draft(
        store, NAME, with_examples + "\nA refund promise the policy does not allow is a fail."
    )
    evaluators.save(store, NAME, "refund rule")

    assert summary(store, NAME).stale == 46
