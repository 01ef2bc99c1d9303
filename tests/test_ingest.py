"""Importing runs: JSONL, CSV and inline lists; idempotent by id; all or nothing; feedback becomes labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from align_mcp.core.models import ImportedFeedback, ScoreType
from align_mcp.engine import evaluators, ingest, queues
from align_mcp.errors import Conflict, ImportFormatError, InvalidInput, NotFound
from align_mcp.store import Store
from conftest import EXAMPLE_RUNS, write_jsonl

BINARY = ScoreType(kind="binary")
GOOD_BAD = ScoreType(kind="categorical", labels=["good", "bad"])


def table_counts(store: Store) -> dict[str, int]:
    names = [r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {name: store.conn.execute(f"SELECT count(*) FROM [{name}]").fetchone()[0] for name in names}


def run(rid: str, score: object | None = None, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": rid,
        "inputs": {"q": f"question {rid}"},
        "outputs": {"a": f"answer {rid}"},
    }
    if score is not None:
        record["feedback"] = {"correctness": {"score": score, "comment": f"why {rid}"}}
    return {**record, **extra}


def test_the_example_file_is_imported_with_its_feedback_kept(
    store: Store, support_runs: list[dict[str, Any]]
) -> None:
    report = ingest.import_runs(store, "support", path=EXAMPLE_RUNS)

    assert (report.source, report.kind, report.inserted, report.skipped, report.labels) == (
        "support",
        "experiment",
        46,
        0,
        0,
    )
    assert report.feedback == [ImportedFeedback(key="correctness", count=46, evaluators=[])]
    assert report.unmatched_feedback_keys == ["correctness"]
    first = support_runs[0]
    assert store.get_runs([first["id"]])[first["id"]].as_dict() == {
        "id": first["id"],
        "source": "support",
        "inputs": first["inputs"],
        "outputs": first["outputs"],
        "reference_outputs": first["reference_outputs"],
        "metadata": first["metadata"],
    }
    assert [(s.name, s.kind, s.runs) for s in store.list_sources()] == [("support", "experiment", 46)]


def test_reimporting_skips_stored_runs_and_adds_no_labels(store: Store) -> None:
    evaluators.create(store, "correctness", BINARY)
    first = ingest.import_runs(store, "support", path=EXAMPLE_RUNS)
    counts = table_counts(store)

    again = ingest.import_runs(store, "support", path=EXAMPLE_RUNS)

    assert (first.inserted, first.skipped, first.labels) == (46, 0, 46)
    assert (again.inserted, again.skipped, again.labels) == (0, 46, 0)
    assert table_counts(store) == counts
    assert len(queues.label_history(store, "correctness", "pp-001")) == 1


def test_feedback_becomes_labels_of_an_evaluator_that_exists_before_the_import(
    store: Store, support_runs: list[dict[str, Any]]
) -> None:
    evaluators.create(store, "correctness", BINARY)
    evaluators.create(store, "strict", BINARY, feedback_key="correctness")

    report = ingest.import_runs(store, "support", path=EXAMPLE_RUNS)

    assert report.labels == 92
    assert report.feedback == [
        ImportedFeedback(key="correctness", count=46, evaluators=["correctness", "strict"])
    ]
    assert report.unmatched_feedback_keys == []
    expected = sorted((r["id"], r["feedback"]["correctness"]["score"]) for r in support_runs)
    assert queues.reference_set(store, "correctness") == expected
    assert queues.reference_set(store, "strict") == expected
    [label] = store.current_labels("correctness", ["pp-001"])
    assert label.comment == support_runs[0]["feedback"]["correctness"]["comment"]
    assert label.labeler == "import"


def test_feedback_becomes_labels_of_an_evaluator_created_after_the_import(
    store: Store, support_runs: list[dict[str, Any]]
) -> None:
    ingest.import_runs(store, "support", path=EXAMPLE_RUNS)

    evaluators.create(store, "correctness", BINARY)

    expected = sorted((r["id"], r["feedback"]["correctness"]["score"]) for r in support_runs)
    assert queues.reference_set(store, "correctness") == expected
    summary = queues.summary(store, "correctness")
    assert (summary.labeled, summary.pending) == (46, 0)
    assert summary.balance.counts == {"0": 18, "1": 28}


def test_feedback_words_are_stored_as_canonical_scores(store: Store) -> None:
    evaluators.create(store, "correctness", BINARY)

    ingest.import_runs(store, "s", runs=[run("a", "pass"), run("b", "fail"), run("c", True)])

    assert queues.reference_set(store, "correctness") == [("a", 1), ("b", 0), ("c", 1)]


def test_feedback_that_does_not_fit_the_evaluator_is_refused_and_nothing_is_stored(store: Store) -> None:
    evaluators.create(store, "tone", GOOD_BAD, feedback_key="correctness")
    counts = table_counts(store)

    with pytest.raises(ImportFormatError) as raised:
        ingest.import_runs(store, "support", path=EXAMPLE_RUNS)

    assert str(raised.value) == (
        "line 1: feedback for evaluator 'tone': Score 0 is not one of this evaluator's labels: good, bad. "
        "Nothing from this import was stored."
    )
    assert table_counts(store) == counts
    assert store.get_source("support") is None


def test_feedback_that_does_not_fit_a_later_batch_rolls_back_the_earlier_ones(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "BATCH", 2)
    evaluators.create(store, "correctness", BINARY)
    path = write_jsonl(
        tmp_path / "runs.jsonl", run("a", 1), run("b", 0), run("c", 1), run("d", 1), run("e", "maybe")
    )
    counts = table_counts(store)

    with pytest.raises(ImportFormatError) as raised:
        ingest.import_runs(store, "later", path=path)

    assert str(raised.value) == (
        "line 5: feedback for evaluator 'correctness': Score 'maybe' is not valid for a binary evaluator; "
        "use 1 (pass) or 0 (fail). Nothing from this import was stored."
    )
    assert table_counts(store) == counts
    assert store.get_source("later") is None


def test_an_evaluator_that_does_not_fit_stored_feedback_is_not_created(store: Store) -> None:
    ingest.import_runs(store, "support", path=EXAMPLE_RUNS)
    counts = table_counts(store)

    with pytest.raises(ImportFormatError) as raised:
        evaluators.create(store, "tone", GOOD_BAD, feedback_key="correctness")

    assert str(raised.value) == (
        "run 'pp-001': feedback for evaluator 'tone': Score 0 is not one of this evaluator's labels: good, bad. "
        "The evaluator was not created: pick the score type that matches the imported 'correctness' feedback."
    )
    assert table_counts(store) == counts
    with pytest.raises(NotFound):
        evaluators.get(store, "tone")


def test_a_bad_line_mid_file_names_its_line_and_stores_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "BATCH", 2)  # several batches are flushed before the bad line
    evaluators.create(store, "correctness", BINARY)
    ingest.import_runs(store, "support", path=EXAMPLE_RUNS)
    path = tmp_path / "runs.jsonl"
    good = "".join(json.dumps(run(f"n{i}", i % 2)) + "\n" for i in range(5))
    path.write_text(good + "{not json\n" + json.dumps(run("n9", 1)) + "\n", encoding="utf-8")
    counts = table_counts(store)

    with pytest.raises(ImportFormatError) as raised:
        ingest.import_runs(store, "second", path=path)

    assert str(raised.value) == (
        f"{path}:6: invalid JSON (Expecting property name enclosed in double quotes at column 2). Fix that line "
        "and import again; nothing from this file was stored."
    )
    assert table_counts(store) == counts
    assert store.get_source("second") is None
    assert store.existing_run_ids(["n0", "n1"]) == set()


def test_csv_is_imported_with_prefixed_columns_and_feedback(store: Store, tmp_path: Path) -> None:
    evaluators.create(store, "correctness", BINARY)
    path = tmp_path / "runs.csv"
    path.write_text(
        "id,inputs.question,outputs.answer,reference_outputs.answer,metadata.topic,feedback.correctness,"
        "feedback.correctness.comment\n"
        "c1,Open on Sunday?,Yes 9-18,Yes 9-18,hours,1,right\n"
        'c2,"Price, per day?",€20,€25,pricing,0,wrong price\n',
        encoding="utf-8",
    )

    report = ingest.import_runs(store, "csv-source", path=path, kind="project")

    assert (report.kind, report.inserted, report.labels) == ("project", 2, 2)
    assert store.get_runs(["c2"])["c2"].as_dict() == {
        "id": "c2",
        "source": "csv-source",
        "inputs": {"question": "Price, per day?"},
        "outputs": {"answer": "€20"},
        "reference_outputs": {"answer": "€25"},
        "metadata": {"topic": "pricing"},
    }
    assert [(r.run_id, r.score, r.comment) for r in store.current_labels("correctness")] == [
        ("c1", 1, "right"),
        ("c2", 0, "wrong price"),
    ]


def test_csv_with_plain_input_and_output_columns_is_imported(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("id,input,output,channel\np1,hi,hello,chat\n", encoding="utf-8")

    ingest.import_runs(store, "plain", path=path)

    stored = store.get_runs(["p1"])["p1"]
    assert (stored.inputs, stored.outputs, stored.metadata) == (
        {"input": "hi"},
        {"output": "hello"},
        {"channel": "chat"},
    )


def test_a_bad_csv_row_names_its_line_and_stores_nothing(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,input,output\n1,a,b\n2,c\n", encoding="utf-8")

    with pytest.raises(ImportFormatError) as raised:
        ingest.import_runs(store, "csv", path=path)

    assert str(raised.value) == (
        f"{path}:3: the row has 2 fields but the header has 3; quote fields that contain the delimiter. Fix that "
        "line and import again; nothing from this file was stored."
    )
    assert store.get_source("csv") is None
    assert store.existing_run_ids(["1"]) == set()


def test_an_inline_list_is_imported(store: Store) -> None:
    report = ingest.import_runs(
        store, "inline", runs=[run("i1", metadata={"topic": "x"}), {"input": "hi", "output": "hello"}]
    )

    assert (report.inserted, report.skipped) == (2, 0)
    ids = store.run_ids(source="inline")
    assert ids[0] == "i1"
    assert ids[1].startswith("r-")  # a run without an id gets one derived from its content
    assert store.get_runs(["i1"])["i1"].metadata == {"topic": "x"}


def test_a_bad_inline_record_names_its_position_and_stores_nothing(store: Store) -> None:
    with pytest.raises(ImportFormatError) as raised:
        ingest.import_runs(store, "inline", runs=[run("i1"), {"inputs": {"q": 1}}])

    assert str(raised.value) == (
        'runs:2: missing outputs (add an "outputs" object or an "output" field). Fix that line and import '
        "again; nothing from this file was stored."
    )
    assert store.get_source("inline") is None


def test_a_repeated_id_inside_one_import_keeps_the_first_record(store: Store) -> None:
    report = ingest.import_runs(
        store, "s", runs=[run("x", outputs={"a": "first"}), run("x", outputs={"a": "second"})]
    )

    assert (report.inserted, report.skipped) == (1, 1)
    assert store.get_runs(["x"])["x"].outputs == {"a": "first"}


def test_importing_into_a_source_of_another_kind_is_refused(store: Store) -> None:
    ingest.import_runs(store, "support", runs=[run("a")])

    with pytest.raises(Conflict) as raised:
        ingest.import_runs(store, "support", runs=[run("b")], kind="project")

    assert str(raised.value) == (
        "Source 'support' already exists with kind 'experiment', not 'project'. Use kind='experiment' or another "
        "source name."
    )
    assert store.existing_run_ids(["b"]) == set()


def test_an_empty_file_is_refused_and_creates_no_source(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")

    with pytest.raises(ImportFormatError) as raised:
        ingest.import_runs(store, "empty", path=path)

    assert str(raised.value) == f"{path}: no runs found (the input is empty). Nothing was stored."
    assert store.get_source("empty") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Give either a file path or an inline list of runs, not both and not neither."),
        (
            {"path": EXAMPLE_RUNS, "runs": [{"input": "a", "output": "b"}]},
            "Give either a file path or an inline list of runs, not both and not neither.",
        ),
        (
            {"runs": [], "kind": "offline"},
            "Source kind 'offline' is not 'experiment' (offline) or 'project' (online tracing).",
        ),
    ],
)
def test_invalid_import_arguments_are_refused(store: Store, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        ingest.import_runs(store, "s", **kwargs)

    assert str(raised.value) == message


def test_an_invalid_source_name_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInput) as raised:
        ingest.import_runs(store, "my runs", runs=[run("a")])

    assert str(raised.value) == (
        "Source name 'my runs' is not allowed: use 1–64 letters, digits, '_', '-' or '.', starting with a letter "
        "or digit."
    )


def test_reimporting_does_not_undo_a_relabel_made_since(store: Store) -> None:
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    run = {"id": "r1", "inputs": {"q": "x"}, "outputs": {"a": "y"}, "feedback": {"correctness": {"score": 1}}}
    ingest.import_runs(store, "support", runs=[run])
    queues.submit_label(store, "correctness", "r1", 0, comment="second look: wrong", labeler="ana")

    again = ingest.import_runs(store, "support", runs=[run])

    assert again.labels == 0
    assert queues.reference_set(store, "correctness") == [("r1", 0)]


def test_reimporting_changed_feedback_updates_the_label(store: Store) -> None:
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    run = {"id": "r1", "inputs": {"q": "x"}, "outputs": {"a": "y"}, "feedback": {"correctness": {"score": 1}}}
    ingest.import_runs(store, "support", runs=[run])
    run["feedback"] = {"correctness": {"score": 0, "comment": "re-reviewed upstream"}}

    again = ingest.import_runs(store, "support", runs=[run])

    assert again.labels == 1
    assert queues.reference_set(store, "correctness") == [("r1", 0)]
    assert [h.score for h in queues.label_history(store, "correctness", "r1")] == [1, 0]
