"""Queues and labels: selection, reservations, scores, relabels, balance, review races, what a label loads."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from align_mcp.core.models import ScoreType
from align_mcp.engine import evaluators, queues, reviews
from align_mcp.errors import Conflict, InvalidInput, InvalidScore, NextStep, NotFound
from align_mcp.store import Store
from conftest import ManualClock

TONE = ScoreType(kind="categorical", labels=["good", "ok", "bad"])
QUALITY = ScoreType(kind="ordinal", min=1, max=5)


def pending(store: Store, evaluator: str = "correctness") -> list[str]:
    return store.pending_ids(evaluator)


def channels(store: Store, ids: list[str]) -> Counter[str]:
    return Counter(str(v) for v in store.run_metadata(ids, "channel").values())


def label_n(store: Store, passes: int, fails: int) -> None:
    ids = store.run_ids(source="support")
    labels = [{"run_id": rid, "score": 1} for rid in ids[:passes]]
    labels += [{"run_id": rid, "score": 0} for rid in ids[passes : passes + fails]]
    queues.submit_labels(store, "correctness", labels)


# ---- adding runs ------------------------------------------------------------------------------------------


def test_a_whole_source_is_queued_once(runs_store: Store) -> None:
    first = queues.add_to_queue(runs_store, "correctness", source="support")
    again = queues.add_to_queue(runs_store, "correctness", source="support")

    assert (first.added, first.already_queued, first.pending) == (46, 0, 46)
    assert (again.added, again.already_queued, again.pending) == (0, 46, 46)
    assert pending(runs_store) == runs_store.run_ids(source="support")


def test_runs_are_queued_by_id_without_duplicates(runs_store: Store) -> None:
    report = queues.add_to_queue(runs_store, "correctness", run_ids=["pp-003", "pp-001", "pp-003"])

    assert (report.added, report.already_queued, report.pending) == (2, 0, 2)
    assert pending(runs_store) == ["pp-003", "pp-001"]


def test_unknown_run_ids_are_refused_and_nothing_is_queued(runs_store: Store) -> None:
    with pytest.raises(NotFound) as raised:
        queues.add_to_queue(runs_store, "correctness", run_ids=["pp-001", "nope", "gone"])

    assert str(raised.value) == "2 run id(s) are not in the store: 'nope', 'gone'."
    assert raised.value.next_steps == (NextStep("import_runs"),)
    assert pending(runs_store) == []


def test_runs_are_queued_by_metadata_filter(runs_store: Store) -> None:
    report = queues.add_to_queue(runs_store, "correctness", source="support", metadata={"channel": "email"})

    assert report.added == 10
    assert channels(runs_store, pending(runs_store)) == {"email": 10}


def test_a_random_sample_is_reproducible_from_its_seed(runs_store: Store) -> None:
    for name in ("a", "b", "c"):
        evaluators.create(runs_store, name, ScoreType(kind="binary"))

    queues.add_to_queue(runs_store, "a", source="support", sample=10, seed=7)
    queues.add_to_queue(runs_store, "b", source="support", sample=10, seed=7)
    queues.add_to_queue(runs_store, "c", source="support", sample=10, seed=8)

    assert len(pending(runs_store, "a")) == 10
    assert pending(runs_store, "a") == pending(runs_store, "b")
    assert set(pending(runs_store, "a")) != set(pending(runs_store, "c"))
    assert set(pending(runs_store, "a")) <= set(runs_store.run_ids(source="support"))


def test_a_second_sample_draws_runs_not_yet_queued(runs_store: Store) -> None:
    queues.add_to_queue(runs_store, "correctness", source="support", sample=20)
    report = queues.add_to_queue(runs_store, "correctness", source="support", sample=20)

    assert (report.added, report.already_queued, report.pending) == (20, 0, 40)
    assert len(set(pending(runs_store))) == 40


def test_a_stratified_sample_keeps_the_proportions(runs_store: Store) -> None:
    assert channels(runs_store, runs_store.run_ids(source="support")) == {"chat": 36, "email": 10}

    report = queues.add_to_queue(
        runs_store, "correctness", source="support", sample=23, stratify_by="channel"
    )

    assert report.added == 23
    assert channels(runs_store, pending(runs_store)) == {"chat": 18, "email": 5}


def test_a_sample_larger_than_the_selection_takes_it_all(runs_store: Store) -> None:
    report = queues.add_to_queue(runs_store, "correctness", metadata={"channel": "email"}, sample=50)

    assert report.added == 10


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {},
            InvalidInput,
            'Say which runs to queue: run ids, a source name, or a metadata filter (e.g. {"topic": "billing"}).',
        ),
        (
            {"run_ids": ["pp-001"], "source": "support"},
            InvalidInput,
            "Give run ids, or a source/metadata filter, not both.",
        ),
        (
            {"source": "tickets"},
            NotFound,
            "No source named 'tickets'. Known: support.",
        ),
        (
            {"source": "support", "metadata": {"channel": "phone"}},
            NotFound,
            'No runs match source=\'support\' metadata={"channel": "phone"}.',
        ),
        (
            {"source": "support", "sample": 0},
            InvalidInput,
            "sample=0: the sample size must be a positive number of runs (at least 1).",
        ),
        (
            {"source": "support", "stratify_by": "channel"},
            InvalidInput,
            "stratify_by needs sample=N (how many runs to draw).",
        ),
    ],
)
def test_an_unclear_selection_is_refused(
    runs_store: Store, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        queues.add_to_queue(runs_store, "correctness", **kwargs)

    assert str(raised.value) == message
    assert pending(runs_store) == []


def test_queueing_for_an_unknown_evaluator_is_refused(runs_store: Store) -> None:
    with pytest.raises(NotFound) as raised:
        queues.add_to_queue(runs_store, "tone", source="support")

    assert str(raised.value) == ("No evaluator named 'tone'. Known: correctness.")


def test_a_labeled_run_counts_as_queued_and_is_never_pending(runs_store: Store) -> None:
    queues.submit_label(runs_store, "correctness", "pp-001", 1)

    report = queues.add_to_queue(runs_store, "correctness", source="support")

    assert (report.added, report.already_queued, report.pending) == (45, 1, 45)
    assert "pp-001" not in pending(runs_store)


# ---- reservations -----------------------------------------------------------------------------------------


def test_next_items_reserve_runs_so_a_second_labeler_gets_others(runs_store: Store) -> None:
    queues.add_to_queue(runs_store, "correctness", source="support")
    order = pending(runs_store)

    alice = [i.run_id for i in queues.next_items(runs_store, "correctness", labeler="alice", limit=5)]
    bob = [i.run_id for i in queues.next_items(runs_store, "correctness", labeler="bob", limit=5)]

    assert alice == order[:5]
    assert bob == order[5:10]
    assert queues.summary(runs_store, "correctness").reserved == 10
    # Asking again returns a labeler's own reservations first.
    assert [i.run_id for i in queues.next_items(runs_store, "correctness", labeler="alice", limit=5)] == alice


def test_next_items_show_the_run_and_its_reservation(
    runs_store: Store, support_runs: list[dict[str, Any]], clock: ManualClock
) -> None:
    queues.add_to_queue(runs_store, "correctness", run_ids=["pp-001"])

    [item] = queues.next_items(runs_store, "correctness", labeler="alice", reserve_seconds=600)

    first = support_runs[0]
    assert (item.run_id, item.source, item.inputs, item.outputs, item.reference_outputs, item.metadata) == (
        "pp-001",
        "support",
        first["inputs"],
        first["outputs"],
        first["reference_outputs"],
        first["metadata"],
    )
    assert item.reserved_until == datetime.fromtimestamp(clock() + 600, UTC)


def test_a_reservation_holds_until_it_expires_then_another_labeler_can_take_it(
    runs_store: Store, clock: ManualClock
) -> None:
    queues.add_to_queue(runs_store, "correctness", source="support")
    order = pending(runs_store)
    alice = [
        i.run_id for i in queues.next_items(runs_store, "correctness", "alice", limit=3, reserve_seconds=60)
    ]
    clock.advance(60)

    bob = [i.run_id for i in queues.next_items(runs_store, "correctness", "bob", limit=3)]
    clock.advance(0.001)
    carol = [i.run_id for i in queues.next_items(runs_store, "correctness", "carol", limit=3)]

    assert alice == order[:3]
    assert bob == order[3:6], "at its last instant alice's reservation still holds"
    assert carol == alice
    assert queues.summary(runs_store, "correctness").reserved == 6
    clock.advance(queues.DEFAULT_RESERVATION_S + 1)
    assert queues.summary(runs_store, "correctness").reserved == 0


def test_labeled_runs_are_not_offered_again(runs_store: Store) -> None:
    queues.add_to_queue(runs_store, "correctness", run_ids=["pp-001", "pp-002", "pp-003"])
    [first, *_] = queues.next_items(runs_store, "correctness", "alice", limit=3)

    receipt = queues.submit_label(runs_store, "correctness", first.run_id, 1, labeler="alice")

    assert (receipt.labeled, receipt.pending) == (1, 2)
    assert queues.summary(runs_store, "correctness").reserved == 2
    offered = [i.run_id for i in queues.next_items(runs_store, "correctness", "alice", limit=3)]
    assert offered == ["pp-002", "pp-003"]


def test_an_empty_queue_offers_nothing(runs_store: Store) -> None:
    assert queues.next_items(runs_store, "correctness") == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "limit=0 must be between 1 and 100."),
        ({"limit": 101}, "limit=101 must be between 1 and 100."),
        ({"reserve_seconds": 0}, "reserve_seconds=0 must be positive."),
    ],
)
def test_next_items_refuse_bad_limits(runs_store: Store, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        queues.next_items(runs_store, "correctness", **kwargs)

    assert str(raised.value) == message


# ---- labels -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [(1, 1), (0, 0), ("pass", 1), ("fail", 0), ("PASS ", 1), (True, 1), (False, 0), ("1", 1), (1.0, 1)],
)
def test_binary_labels_accept_numbers_words_and_booleans(
    runs_store: Store, given: object, stored: int
) -> None:
    receipt = queues.submit_label(runs_store, "correctness", "pp-001", given)

    assert receipt.score == stored
    assert queues.reference_set(runs_store, "correctness") == [("pp-001", stored)]


def test_categorical_and_ordinal_labels_are_stored_canonically(runs_store: Store) -> None:
    evaluators.create(runs_store, "tone", TONE)
    evaluators.create(runs_store, "quality", QUALITY)

    assert queues.submit_label(runs_store, "tone", "pp-001", "Good").score == "good"
    assert queues.submit_label(runs_store, "quality", "pp-001", "5").score == 5
    assert queues.submit_label(runs_store, "quality", "pp-002", 1).score == 1

    assert queues.reference_set(runs_store, "tone") == [("pp-001", "good")]
    assert queues.reference_set(runs_store, "quality") == [("pp-001", 5), ("pp-002", 1)]


@pytest.mark.parametrize(
    ("evaluator", "score", "message"),
    [
        (
            "correctness",
            2,
            "Label 1 (run 'pp-001'): Score 2 is not valid for a binary evaluator; use 1 (pass) or 0 (fail).",
        ),
        (
            "correctness",
            "maybe",
            "Label 1 (run 'pp-001'): Score 'maybe' is not valid for a binary evaluator; use 1 (pass) or 0 (fail).",
        ),
        (
            "tone",
            "great",
            "Label 1 (run 'pp-001'): Score 'great' is not one of this evaluator's labels: good, ok, bad.",
        ),
        ("tone", 1, "Label 1 (run 'pp-001'): Score 1 is not one of this evaluator's labels: good, ok, bad."),
        (
            "quality",
            6,
            "Label 1 (run 'pp-001'): Score 6 is not valid for an ordinal evaluator; use an integer from 1 to 5.",
        ),
        (
            "quality",
            "3.5",
            "Label 1 (run 'pp-001'): Score '3.5' is not valid for an ordinal evaluator; use an integer from 1 to 5.",
        ),
        (
            "quality",
            True,
            "Label 1 (run 'pp-001'): Score True is not valid for an ordinal evaluator; use an integer from 1 to 5.",
        ),
    ],
)
def test_a_score_outside_the_score_type_is_refused(
    runs_store: Store, evaluator: str, score: object, message: str
) -> None:
    evaluators.create(runs_store, "tone", TONE)
    evaluators.create(runs_store, "quality", QUALITY)

    with pytest.raises(InvalidScore) as raised:
        queues.submit_label(runs_store, evaluator, "pp-001", score)

    assert str(raised.value) == message
    assert runs_store.current_labels(evaluator) == []


def test_a_label_without_a_score_is_refused(runs_store: Store) -> None:
    with pytest.raises(InvalidInput) as raised:
        queues.submit_label(runs_store, "correctness", "pp-001", None)

    assert str(raised.value) == "Label 1 (run 'pp-001') has no score. Allowed: binary (0 = fail, 1 = pass)."


def test_a_label_for_an_unknown_run_is_refused(runs_store: Store) -> None:
    with pytest.raises(NotFound) as raised:
        queues.submit_label(runs_store, "correctness", "pp-999", 1)

    assert str(raised.value) == "Label 1: no run with id 'pp-999'. Check the id."
    assert raised.value.next_steps == (NextStep("import_runs"),)


def test_relabeling_keeps_the_history(runs_store: Store) -> None:
    first = queues.submit_label(runs_store, "correctness", "pp-001", 0, comment="wrong fee", labeler="alice")
    second = queues.submit_label(
        runs_store, "correctness", "pp-001", 1, comment="fee is right", labeler="bob"
    )

    assert (first.relabeled, second.relabeled) == (False, True)
    assert (second.labeled, second.pending) == (1, 0)
    history = queues.label_history(runs_store, "correctness", "pp-001")
    assert [(h.score, h.comment, h.labeler, h.current) for h in history] == [
        (0, "wrong fee", "alice", False),
        (1, "fee is right", "bob", True),
    ]
    assert queues.reference_set(runs_store, "correctness") == [("pp-001", 1)]


def test_the_history_of_an_unlabeled_run_is_not_found(runs_store: Store) -> None:
    with pytest.raises(NotFound) as raised:
        queues.label_history(runs_store, "correctness", "pp-002")

    assert str(raised.value) == "Run 'pp-002' has no label for 'correctness'."


def test_many_labels_are_stored_with_their_comments_and_labelers(runs_store: Store) -> None:
    queues.add_to_queue(runs_store, "correctness", run_ids=["pp-001", "pp-002", "pp-003"])

    receipts = queues.submit_labels(
        runs_store,
        "correctness",
        [
            {"run_id": "pp-001", "score": "fail", "comment": "wrong grace period"},
            {"run_id": "pp-002", "score": 0, "labeler": "carol"},
        ],
        labeler="alice",
    )

    assert [(r.run_id, r.score, r.relabeled, r.labeled, r.pending) for r in receipts] == [
        ("pp-001", 0, False, 2, 1),
        ("pp-002", 0, False, 2, 1),
    ]
    assert [(r.run_id, r.comment, r.labeler) for r in runs_store.current_labels("correctness")] == [
        ("pp-001", "wrong grace period", "alice"),
        ("pp-002", None, "carol"),
    ]


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (
            {"run_id": "pp-002", "score": 7},
            InvalidScore,
            "Label 2 (run 'pp-002'): Score 7 is not valid for a binary evaluator; use 1 (pass) or 0 (fail).",
        ),
        (
            {"run_id": "nope", "score": 1},
            NotFound,
            "Label 2: no run with id 'nope'. Check the id.",
        ),
        (
            {"run_id": "pp-002", "score": 1, "comment": 42},
            InvalidInput,
            "Label 2 (run 'pp-002'): comment must be text.",
        ),
    ],
)
def test_one_bad_label_stores_none_of_the_batch(
    runs_store: Store, bad: dict[str, Any], error: type[Exception], message: str
) -> None:
    queues.add_to_queue(runs_store, "correctness", source="support")
    batch = [{"run_id": "pp-001", "score": 1}, bad, {"run_id": "pp-003", "score": 0}]

    with pytest.raises(error) as raised:
        queues.submit_labels(runs_store, "correctness", batch)

    assert str(raised.value) == message
    assert runs_store.current_labels("correctness") == []
    assert queues.summary(runs_store, "correctness").pending == 46


def test_one_batch_labeling_a_run_twice_with_different_scores_is_refused_naming_the_run(
    runs_store: Store,
) -> None:
    batch = [
        {"run_id": "pp-001", "score": 1},
        {"run_id": "pp-002", "score": 1},
        {"run_id": "pp-001", "score": 0},
    ]

    with pytest.raises(InvalidInput) as raised:
        queues.submit_labels(runs_store, "correctness", batch)

    assert str(raised.value) == (
        "Labels 1 and 3 both label run 'pp-001', with scores 1 and 0. Send one label per run (a later batch can "
        "relabel it; history is kept)."
    )
    assert runs_store.current_labels("correctness") == []
    assert runs_store.label_history("correctness", "pp-001") == []


def test_an_exact_repeat_in_one_batch_is_stored_once(runs_store: Store) -> None:
    batch = [
        {"run_id": "pp-001", "score": "pass", "comment": "ok"},
        {"run_id": "pp-001", "score": 1, "comment": "ok"},
    ]

    receipts = queues.submit_labels(runs_store, "correctness", batch)

    assert [(r.run_id, r.score, r.relabeled) for r in receipts] == [("pp-001", 1, False)]
    assert len(runs_store.label_history("correctness", "pp-001")) == 1


def test_a_negative_sample_says_the_size_must_be_positive_even_when_every_run_is_queued(
    runs_store: Store,
) -> None:
    queues.add_to_queue(runs_store, "correctness", source="support")

    with pytest.raises(InvalidInput) as raised:
        queues.add_to_queue(runs_store, "correctness", source="support", sample=-5)

    assert str(raised.value) == "sample=-5: the sample size must be a positive number of runs (at least 1)."


def test_an_empty_batch_is_refused(runs_store: Store) -> None:
    with pytest.raises(InvalidInput) as raised:
        queues.submit_labels(runs_store, "correctness", [])

    assert str(raised.value) == "No labels given. Pass a list of {run_id, score, comment?}."


# ---- balance ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("passes", "fails", "warnings"),
    [
        (0, 0, ["Only 0 labeled run(s); label at least 20 before trusting the alignment score."]),
        (
            2,
            1,
            ["Only 3 labeled run(s); label at least 20 before trusting the alignment score."],
        ),
        (
            18,
            2,
            [
                "'fail' (0) is 10% of labels (under 20%): agreement will be dominated by the other class; "
                "label more of these."
            ],
        ),
        (20, 0, ["No 'fail' (0) labels: the judge cannot be checked on that class."]),
        (
            0,
            5,
            [
                "Only 5 labeled run(s); label at least 20 before trusting the alignment score.",
                "No 'pass' (1) labels: the judge cannot be checked on that class.",
            ],
        ),
        (16, 4, []),
    ],
)
def test_balance_warns_below_20_labels_and_on_a_thin_class(
    runs_store: Store, passes: int, fails: int, warnings: list[str]
) -> None:
    if passes + fails:
        label_n(runs_store, passes, fails)

    balance = queues.balance(runs_store, "correctness")

    assert (balance.counts, balance.total) == ({"0": fails, "1": passes}, passes + fails)
    assert balance.warnings == warnings


def test_categorical_balance_names_the_labels_without_examples(runs_store: Store) -> None:
    evaluators.create(runs_store, "tone", TONE)
    ids = runs_store.run_ids(source="support")[:20]
    queues.submit_labels(runs_store, "tone", [{"run_id": rid, "score": "good"} for rid in ids])

    balance = queues.balance(runs_store, "tone")

    assert balance.counts == {"good": 20, "ok": 0, "bad": 0}
    assert balance.warnings == ["No labels yet for: ok, bad."]


def test_queues_are_listed_with_counts_and_balance(runs_store: Store) -> None:
    evaluators.create(runs_store, "tone", TONE)
    queues.add_to_queue(runs_store, "correctness", source="support")
    queues.next_items(runs_store, "correctness", "alice", limit=4)
    label_n(runs_store, 2, 1)

    listed = queues.list_queues(runs_store)

    assert [q.evaluator for q in listed] == ["correctness", "tone"]
    q = listed[0]
    assert (q.feedback_key, q.score_type, q.pending, q.reserved, q.labeled) == (
        "correctness",
        "binary (0 = fail, 1 = pass)",
        43,
        1,
        3,
    )
    assert q.balance.counts == {"0": 1, "1": 2}
    assert (listed[1].pending, listed[1].labeled) == (0, 0)


# ---- blind-review rules under concurrent writers --------------------------------------------------------------


def rival_after_read(
    monkeypatch: pytest.MonkeyPatch,
    writer: Store,
    read: str,
    rival: Store,
    move: Callable[[Store], object],
) -> list[str]:
    """Make `rival` (another connection to the same file) try `move` right after `writer` first calls `read`.

    The rival does not wait for SQLite's lock: if the writer makes that read inside its write transaction, the
    rival's move fails at once with "database is locked" and can only come after the writer's commit.
    Returns what became of the rival's move ("done", or SQLite's error).
    """
    rival.conn.execute("PRAGMA busy_timeout = 0")
    outcome: list[str] = []
    original = getattr(writer, read)

    def read_then_the_rival(*args: Any, **kwargs: Any) -> Any:
        seen = original(*args, **kwargs)
        if not outcome:
            try:
                move(rival)
                outcome.append("done")
            except sqlite3.OperationalError as e:
                outcome.append(str(e))
        return seen

    monkeypatch.setattr(writer, read, read_then_the_rival)
    return outcome


def test_a_relabel_racing_a_review_request_never_becomes_its_own_blind_second_label(
    runs_store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queues.submit_label(runs_store, "correctness", "pp-001", 1, labeler="alice")
    with Store(db_path) as alice:
        rival = rival_after_read(
            monkeypatch,
            alice,
            "reviews",
            runs_store,
            lambda s: reviews.request_review(s, "correctness", ["pp-001"]),
        )

        queues.submit_label(alice, "correctness", "pp-001", 0, labeler="alice")

    assert rival == ["database is locked"]
    reviews.request_review(runs_store, "correctness", ["pp-001"])
    [review] = reviews.list_reviews(runs_store, "correctness").reviews
    assert (review.status, review.first_score, review.first_labeler, review.second_labeler) == (
        "pending",
        0,
        "alice",
        None,
    )


def test_a_second_reviewer_racing_their_own_label_cannot_settle_the_dispute(
    runs_store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queues.submit_label(runs_store, "correctness", "pp-001", 1, labeler="alice")
    reviews.request_review(runs_store, "correctness", ["pp-001"])
    with Store(db_path) as first_tab, Store(db_path) as second_tab:
        rival = rival_after_read(
            monkeypatch,
            first_tab,
            "reviews",
            second_tab,
            lambda s: queues.submit_label(s, "correctness", "pp-001", 0, labeler="bob"),
        )

        queues.submit_label(first_tab, "correctness", "pp-001", 0, labeler="bob")

        assert rival == ["database is locked"]
        with pytest.raises(Conflict) as raised:
            queues.submit_label(second_tab, "correctness", "pp-001", 0, labeler="bob")

    assert str(raised.value) == (
        "Run 'pp-001' needs an adjudicating label for 'correctness' from someone other than its two reviewers "
        "('alice', 'bob'), or a final label settling it."
    )
    assert raised.value.next_steps == (
        NextStep("adjudicate_label", {"evaluator": "correctness", "run_id": "pp-001"}),
    )
    [review] = reviews.list_reviews(runs_store, "correctness").reviews
    assert (review.status, review.second_labeler, review.final_labeler, review.in_reference_set) == (
        "disputed",
        "bob",
        None,
        False,
    )


def test_a_review_request_racing_a_relabel_opens_on_the_label_that_is_current(
    runs_store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queues.submit_label(runs_store, "correctness", "pp-001", 1, labeler="alice")
    with Store(db_path) as alice:
        rival = rival_after_read(
            monkeypatch,
            runs_store,
            "current_label_rows",
            alice,
            lambda s: queues.submit_label(s, "correctness", "pp-001", 0, labeler="alice"),
        )

        reviews.request_review(runs_store, "correctness", ["pp-001"])

        assert rival == ["database is locked"]
        with pytest.raises(Conflict) as raised:
            queues.submit_label(alice, "correctness", "pp-001", 0, labeler="alice")

    assert str(raised.value) == (
        "Run 'pp-001' is waiting for a blind second review for 'correctness', and 'alice' gave the first label; "
        "the second must come from a different labeler, or a final label can overrule the first."
    )
    assert raised.value.next_steps == (
        NextStep("adjudicate_label", {"evaluator": "correctness", "run_id": "pp-001"}),
    )
    [review] = reviews.list_reviews(runs_store, "correctness").reviews
    assert (review.status, review.first_score, review.reference_score) == ("pending", 1, 1)


# ---- what a label write loads -------------------------------------------------------------------------------

LABEL_IN_A_FRESH_INTERPRETER = textwrap.dedent(
    """
    import json, sys
    from align_mcp.core.models import ScoreType
    from align_mcp.engine import evaluators, ingest, queues
    from align_mcp.store import Store

    with Store(sys.argv[1]) as store:
        evaluators.create(store, "correctness", ScoreType(kind="binary"))
        ingest.import_runs(store, "support", runs=[{"id": "r1", "inputs": {"q": "?"}, "outputs": {"a": "!"}}])
        receipt = queues.submit_label(store, "correctness", "r1", 1, labeler="ana")
    print(json.dumps({"labeled": receipt.labeled, "modules": sorted(sys.modules)}))
    """
)
NOT_FOR_A_LABEL = (
    "openai",
    "httpx",
    "dspy",
    "litellm",
    "mcp",
    "align_mcp.llm.judge",
    "align_mcp.engine.alignment",
    "align_mcp.optimize",
    "align_mcp.diagnose",
    "align_mcp.mcp",
)


def test_a_label_write_loads_no_judge_alignment_optimizer_or_mcp_code(db_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LABEL_IN_A_FRESH_INTERPRETER, str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    assert result["labeled"] == 1
    loaded = [
        m for m in result["modules"] if any(m == name or m.startswith(name + ".") for name in NOT_FOR_A_LABEL)
    ]
    assert loaded == []


# ---- a disputed blind review, as the surfaces report it ------------------------------------------------------


@pytest.mark.anyio
async def test_a_disagreeing_blind_review_says_disputed_and_keeps_counts_to_the_reference_set(
    runs_store: Store, client: Any
) -> None:
    label_n(runs_store, passes=2, fails=1)  # pp-001, pp-002 pass; pp-003 fails
    first = runs_store.run_ids(source="support")[0]
    reviews.request_review(runs_store, "correctness", [first])

    result = await client.call_tool(
        "submit_label", {"evaluator": "correctness", "run_id": first, "score": 0, "labeler": "bea"}
    )

    assert not result.is_error
    data = result.structured_content
    assert data["message"] == (
        f"Relabeled {first} = 0 (disputed: out of the reference set until settled); 2 labeled, 1 pending."
    )
    receipt = data["receipt"]
    assert (receipt["disputed"], receipt["labeled"], receipt["pending"]) == (True, 2, 1)
    assert receipt["notes"] == [
        f"Run {first!r} is now disputed for 'correctness': this blind second label (0) differs from the first "
        "(1), so the run left the reference set and is back in the queue until a final label settles it. "
        "Settle it with the human's final label: adjudicate_label(evaluator='correctness', "
        f"run_id={first!r}, score=..., labeler=...)."
    ]
    assert data["balance"]["counts"] == {"1": 1, "0": 1} and data["balance"]["total"] == 2
    assert len(queues.reference_set(runs_store, "correctness")) == 2

    listed = (await client.call_tool("list_queues", {})).structured_content
    [queue] = [q for q in listed["queues"] if q["evaluator"] == "correctness"]
    assert (queue["labeled"], queue["pending"], queue["balance"]["counts"]) == (2, 1, {"1": 1, "0": 1})

    reviews.adjudicate(runs_store, "correctness", first, 1, labeler="lead")
    assert queues.summary(runs_store, "correctness").labeled == 3
    assert queues.balance(runs_store, "correctness").counts == {"1": 2, "0": 1}


def test_a_batch_that_disputes_a_run_names_it_and_the_cli_says_how_to_settle_it(
    runs_store: Store, db_path: Path
) -> None:
    from click.testing import CliRunner

    from align_mcp.cli.main import main
    from align_mcp.engine.labeling import store_labels

    label_n(runs_store, passes=2, fails=1)
    first, second = runs_store.run_ids(source="support")[:2]
    reviews.request_review(runs_store, "correctness", [first, second])

    batch = store_labels(
        runs_store, "correctness", [{"run_id": first, "score": 0}, {"run_id": second, "score": 1}], "bea"
    )
    assert (batch.disputed, batch.labeled) == ([first], 2)
    assert [n.next_steps for n in batch.notes] == [
        [NextStep("adjudicate_label", {"evaluator": "correctness", "run_id": first})]
    ]

    reviews.adjudicate(runs_store, "correctness", first, 1, labeler="lead")
    reviews.request_review(runs_store, "correctness", [first])
    out = CliRunner().invoke(
        main,
        ["--db", str(db_path), "label", "correctness", first, "0", "--labeler", "cem"],
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == [
        f"Relabeled {first} = 0 (disputed: out of the reference set until settled); 2 labeled, 1 pending.",
        f"note: Run {first!r} is now disputed for 'correctness': this blind second label (0) differs from the "
        "first (1 by 'lead'), so the run left the reference set and is back in the queue until a final label "
        "settles it. Settle it with the human's final label: "
        f"`align-mcp adjudicate correctness {first} SCORE --labeler NAME`.",
    ]
