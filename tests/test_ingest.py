"""Importing runs: JSONL, CSV and inline lists; idempotent by id; all or nothing; feedback becomes labels."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from align_mcp.core.models import ImportedFeedback, ScoreType
from align_mcp.engine import evaluators, ingest, queues
from align_mcp.errors import Conflict, ImportFormatError, InvalidInput, NotFound
from align_mcp.store import Store
from conftest import EXAMPLE_RUNS, snapshot, write_jsonl

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


def test_a_repeated_id_with_other_content_is_refused_naming_both_lines(store: Store, db_path: Path) -> None:
    ingest.import_runs(store, "s", runs=[run("a")])
    before = snapshot(db_path)

    with pytest.raises(ImportFormatError) as raised:
        ingest.import_runs(
            store, "s", runs=[run("x", outputs={"a": "first"}), run("y"), run("x", outputs={"a": "second"})]
        )

    assert str(raised.value) == (
        "runs:3: id 'x' is already used on line 1 by a record with different content; give each run its own id "
        "(or drop one of the two records). Fix that line and import again; nothing from this import was stored."
    )
    assert snapshot(db_path) == before


def test_a_repeated_id_across_the_batch_boundary_is_refused_and_nothing_is_stored(
    store: Store, tmp_path: Path, db_path: Path
) -> None:
    evaluators.create(store, "correctness", BINARY)
    # Line 1 is flushed with the first 2,000-record batch; its repeat on line 2,001 comes in the second.
    records = [run("x", 1)] + [run(f"r{i}", i % 2) for i in range(2, ingest.BATCH + 1)]
    path = write_jsonl(tmp_path / "runs.jsonl", *records, run("x", 0, outputs={"a": "other"}))
    before = snapshot(db_path)

    with pytest.raises(ImportFormatError) as raised:
        ingest.import_runs(store, "s", path=path)

    assert ingest.BATCH == 2000
    assert str(raised.value).startswith(
        f"{path}:2001: id 'x' is already used on line 1 by a record with different content"
    )
    assert snapshot(db_path) == before


def test_an_exact_repeat_inside_one_import_is_stored_once_and_reported(store: Store, tmp_path: Path) -> None:
    evaluators.create(store, "correctness", BINARY)
    path = write_jsonl(tmp_path / "runs.jsonl", run("x", 1), run("y", 0), run("x", 1))

    report = ingest.import_runs(store, "s", path=path)

    assert (report.inserted, report.skipped, report.duplicates, report.labels) == (2, 0, 1, 2)
    assert queues.reference_set(store, "correctness") == [("x", 1), ("y", 0)]


def test_a_repeat_written_with_other_key_order_and_spacing_is_the_same_record(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text(
        '{"id": "x", "inputs": {"q": "1", "r": 2}, "outputs": {"a": "b"}}\n'
        '{"id": "y", "inputs": {"q": "2"}, "outputs": {"a": "c"}}\n'
        '{"outputs":{"a":"b"},  "inputs":{"r":2,"q":"1"},"id":"x"}\n',
        encoding="utf-8",
    )

    report = ingest.import_runs(store, "s", path=path)

    assert (report.inserted, report.duplicates) == (2, 1)


def test_records_without_ids_that_differ_only_in_metadata_are_refused(store: Store) -> None:
    same = {"inputs": {"q": "1"}, "outputs": {"a": "2"}}

    with pytest.raises(ImportFormatError) as raised:
        ingest.import_runs(store, "s", runs=[{**same, "metadata": {"k": 1}}, {**same, "metadata": {"k": 2}}])

    message = str(raised.value)
    assert message.startswith(
        "runs:2: this record has the same inputs, outputs and reference outputs as line 1 (so the same derived id "
    )
    assert message.endswith(
        "but a different metadata or feedback; give the two runs their own ids. Fix that line and import again; "
        "nothing from this import was stored."
    )
    assert store.get_source("s") is None


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


# ---- values a store cannot hold, and paths that are not files -----------------------------------------------


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            '{"id": "b", "inputs": {"q": "\\ud800"}, "outputs": {"a": "x"}}',
            "the string at inputs.q holds a lone surrogate (\\ud800), which is not a Unicode character and cannot "
            "be stored as UTF-8; write the character itself (or both halves of its surrogate pair), or drop it",
        ),
        (
            '{"id": "b", "inputs": {"q": 1e400}, "outputs": {"a": "x"}}',
            "invalid JSON (the number 1e400 is too large to store (it would become Infinity, which is not JSON); "
            "write it as a string, or a smaller number)",
        ),
    ],
)
def test_a_value_the_store_cannot_hold_is_refused_with_its_line(
    store: Store, tmp_path: Path, db_path: Path, line: str, problem: str
) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(run("a")) + "\n" + line + "\n", encoding="utf-8")
    before = snapshot(db_path)

    with pytest.raises(ImportFormatError) as raised:
        ingest.import_runs(store, "s", path=path)

    assert str(raised.value) == (
        f"{path}:2: {problem}. Fix that line and import again; nothing from this file was stored."
    )
    assert snapshot(db_path) == before


def test_a_record_nested_deeper_than_the_limit_is_refused_with_the_limit_and_line(store: Store) -> None:
    deep: Any = "x"
    for _ in range(63):
        deep = {"a": deep}
    # The record and 63 objects below it: 64 levels pass, one more is refused.
    ingest.import_runs(store, "s", runs=[{"id": "ok", "inputs": deep, "outputs": {"a": "x"}}])

    with pytest.raises(ImportFormatError) as raised:
        ingest.import_runs(
            store, "s", runs=[run("b"), {"id": "deep", "inputs": {"a": deep}, "outputs": {"a": "x"}}]
        )

    assert str(raised.value) == (
        "runs:2: the record nests objects and arrays more than 64 levels deep (at inputs.a.a.a.a.a… (64 levels)); "
        "at most 64 levels are accepted, so flatten the record or store the deep part as a string. Fix that line "
        "and import again; nothing from this file was stored."
    )
    assert store.existing_run_ids(["b", "deep"]) == set()


def test_a_named_pipe_is_refused_without_being_opened(store: Store, tmp_path: Path) -> None:
    fifo = tmp_path / "runs.jsonl"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: the test would hang

    with pytest.raises(ImportFormatError) as raised:
        ingest.import_runs(store, "s", path=fifo)

    assert str(raised.value) == (
        f"{fifo} is a named pipe (FIFO), not a regular file; runs are imported from regular files only. Save the "
        "runs to a .jsonl or .csv file and import that."
    )
    assert store.get_source("s") is None


def test_a_character_device_is_refused(store: Store) -> None:
    with pytest.raises(ImportFormatError) as raised:
        ingest.import_runs(store, "s", path="/dev/null")

    assert str(raised.value).startswith("/dev/null is a character device, not a regular file;")
