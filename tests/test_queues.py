"""Annotation queues and labels: selecting runs, reservations, score validation, relabeling and balance."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from align_mcp.core.models import ScoreType
from align_mcp.engine import evaluators, queues
from align_mcp.errors import InvalidInput, InvalidScore, NotFound
from align_mcp.store import Store

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

    assert (
        str(raised.value) == "2 run id(s) are not in the store: 'nope', 'gone'. Import them with import_runs."
    )
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
            "No source named 'tickets'. Known: support. Import runs with import_runs.",
        ),
        (
            {"source": "support", "metadata": {"channel": "phone"}},
            NotFound,
            'No runs match source=\'support\' metadata={"channel": "phone"}.',
        ),
        ({"source": "support", "sample": 0}, InvalidInput, "sample=0 must be at least 1."),
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
    runs_store: Store, support_runs: list[dict[str, Any]]
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
    assert item.reserved_until is not None
    assert 590 < item.reserved_until.timestamp() - time.time() <= 600


def test_an_expired_reservation_can_be_taken_by_another_labeler(runs_store: Store) -> None:
    queues.add_to_queue(runs_store, "correctness", source="support")
    alice = [
        i.run_id for i in queues.next_items(runs_store, "correctness", "alice", limit=3, reserve_seconds=0.05)
    ]
    time.sleep(0.06)

    bob = [i.run_id for i in queues.next_items(runs_store, "correctness", "bob", limit=3)]

    assert bob == alice
    assert queues.summary(runs_store, "correctness").reserved == 3


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

    assert str(raised.value) == (
        "Label 1: no run with id 'pp-999'. Check the id (next_items shows queued runs) or import it."
    )


def test_relabeling_keeps_the_history(runs_store: Store) -> None:
    first = queues.submit_label(runs_store, "correctness", "pp-001", 0, comment="wrong fee", labeler="alice")
    second = queues.submit_label(
        runs_store, "correctness", "pp-001", 1, comment="fee is right", labeler="bob"
    )

    assert (first.relabeled, second.relabeled) == (False, True)
    assert (second.labeled, second.pending) == (1, 0)
    history = queues.label_history(runs_store, "correctness", "pp-001")
    assert [(h["score"], h["comment"], h["labeler"], h["current"]) for h in history] == [
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
    assert [(r["run_id"], r["comment"], r["labeler"]) for r in runs_store.current_labels("correctness")] == [
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
            "Label 2: no run with id 'nope'. Check the id (next_items shows queued runs) or import it.",
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
