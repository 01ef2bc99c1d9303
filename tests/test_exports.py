"""Exports (engine/exports.py): the reference set in the import format round-trips into a fresh store with the
same labels, history, splits and alignment figures; CSV and the LangSmith dataset file hold what they promise."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from align_mcp.core.models import JudgeSettings, ScoreType
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators, holdout
from align_mcp.engine.exports import export_reference_set
from align_mcp.engine.ingest import import_runs
from align_mcp.engine.queues import submit_labels
from align_mcp.engine.reviews import request_review
from align_mcp.errors import Conflict, ImportFormatError, InvalidInput
from align_mcp.store import Store, open_store
from align_mcp.testing.fakejudge import FakeJudgeServer, Reply, prompt_text, section, verdict
from conftest import write_jsonl

pytestmark = pytest.mark.anyio
NAME = "correctness"
PROMPT_V2 = (
    "You grade a bike-rental support answer. Check every number, price, fee and duration against the reference "
    "answer: a wrong figure fails.\n\nQuestion: {{inputs}}\nAnswer: {{outputs}}\nReference: {{reference_outputs}}"
)


def labeled_store(store: Store, support_runs: list[dict[str, Any]]) -> Store:
    """The 46 example runs with their correctness labels, three relabels (history), a second rubric, a blind
    review in progress and a holdout split."""
    evaluators.create(store, NAME, ScoreType(kind="binary"), judge=JudgeSettings(max_retries=0))
    import_runs(store, "support", runs=support_runs)
    submit_labels(
        store,
        NAME,
        [
            {"run_id": "pp-002", "score": 1, "comment": "On second thought: right."},
            {"run_id": "pp-003", "score": 1},
        ],
        labeler="ana",
    )
    evaluators.update_draft(store, NAME, PROMPT_V2)
    evaluators.save(store, NAME, "numbers must match")
    submit_labels(
        store, NAME, [{"run_id": "pp-002", "score": 0, "comment": "Wrong after all."}], labeler="ben"
    )
    holdout.ensure_split(store, NAME)
    return store


def labels_of(store: Store) -> list[tuple[Any, ...]]:
    return [
        (x.run_id, x.score, x.comment, x.labeler, x.created_at, x.rubric_version, x.current)
        for x in store.all_labels(NAME)
    ]


async def test_an_export_imports_into_a_fresh_store_with_the_same_labels_splits_and_alignment(
    store: Store, support_runs: list[dict[str, Any]], judge: FakeJudgeServer, tmp_path: Path
) -> None:
    labeled_store(store, support_runs)
    before = [await align.run_alignment(store, NAME, split=s) for s in ("dev", "test")]
    path = tmp_path / "reference.jsonl"

    report = export_reference_set(store, NAME, "jsonl", path)

    assert (report.records, report.labels, report.path) == (46, 49, str(path))
    assert (report.dev, report.test) == (33, 13)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    pp002 = next(r for r in lines if r["id"] == "pp-002")["feedback"][NAME]
    assert (pp002["score"], pp002["comment"], pp002["labeler"], pp002["rubric_version"]) == (
        0,
        "Wrong after all.",
        "ben",
        2,
    )
    assert [(h["score"], h["labeler"], h["rubric_version"]) for h in pp002["history"]] == [
        (0, "import", 1),
        (1, "ana", 1),
    ]
    with open_store(tmp_path / "fresh.db") as fresh:
        # Runs and labels first; the evaluator created afterwards takes the labels, their history and the split.
        imported = import_runs(fresh, "support", path=path)
        evaluators.create(fresh, NAME, ScoreType(kind="binary"), judge=JudgeSettings(max_retries=0))
        evaluators.update_draft(fresh, NAME, PROMPT_V2)
        after = [await align.run_alignment(fresh, NAME, split=s) for s in ("dev", "test")]

        assert (imported.inserted, imported.unmatched_feedback_keys) == (46, [NAME])
        assert labels_of(fresh) == labels_of(store)
        assert fresh.split_rows(NAME) == store.split_rows(NAME)
        assert [fresh.get_runs([r["id"]])[r["id"]].as_dict() for r in lines[:3]] == [
            store.get_runs([r["id"]])[r["id"]].as_dict() for r in lines[:3]
        ]
    assert [a.run.metrics for a in after] == [b.run.metrics for b in before]
    assert [a.run.total for a in after] == [33, 13]


def test_an_export_into_a_store_whose_evaluator_exists_replaces_the_split_made_there(
    store: Store, support_runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    labeled_store(store, support_runs)
    path = tmp_path / "reference.jsonl"
    export_reference_set(store, NAME, "jsonl", path)
    plain = [{k: v for k, v in run.items() if k != "feedback"} for run in support_runs]
    with open_store(tmp_path / "fresh.db") as fresh:
        evaluators.create(fresh, NAME, ScoreType(kind="binary"))
        import_runs(fresh, "support", runs=plain)
        # Labels given here first, flipped, make a split of their own, which the import then replaces.
        flipped = [{"run_id": r["id"], "score": 1 - r["feedback"][NAME]["score"]} for r in support_runs]
        submit_labels(fresh, NAME, flipped)
        holdout.ensure_split(fresh, NAME)

        report = import_runs(fresh, "support", path=path)

        assert report.labels == 46
        assert fresh.split_rows(NAME) == store.split_rows(NAME)
        assert [(x.run_id, x.score) for x in fresh.current_labels(NAME)] == [
            (x.run_id, x.score) for x in store.current_labels(NAME)
        ]


def test_a_disputed_run_is_left_out_and_counted(store: Store, support_runs: list[dict[str, Any]]) -> None:
    labeled_store(store, support_runs)
    request_review(store, NAME, ["pp-001"])
    submit_labels(store, NAME, [{"run_id": "pp-001", "score": 1}], labeler="second")

    report = export_reference_set(store, NAME)

    assert (report.records, report.left_out) == (45, 1)
    assert report.content is not None and '"id":"pp-001"' not in report.content


def test_csv_export_imports_again_with_labels_history_and_split(
    store: Store, support_runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    labeled_store(store, support_runs)
    path = tmp_path / "reference.csv"

    export_reference_set(store, NAME, "csv", path)

    with path.open(encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    assert header == [
        "id",
        "inputs",
        "outputs",
        "reference_outputs",
        "metadata.channel",
        "metadata.topic",
        *(
            f"feedback.{NAME}.{p}"
            for p in ("score", "comment", "labeler", "labeled_at", "rubric_version", "split", "history")
        ),
    ]
    with open_store(tmp_path / "fresh.db") as fresh:
        evaluators.create(fresh, NAME, ScoreType(kind="binary"))
        import_runs(fresh, "support", path=path)
        assert labels_of(fresh) == labels_of(store)
        assert fresh.split_rows(NAME) == store.split_rows(NAME)
        assert fresh.get_runs(["pp-001"])["pp-001"].metadata == {"topic": "late_fees", "channel": "chat"}


def test_langsmith_dataset_has_the_label_as_reference_output(
    store: Store, support_runs: list[dict[str, Any]]
) -> None:
    labeled_store(store, support_runs)

    report = export_reference_set(store, NAME, "langsmith")

    assert report.content is not None
    examples = [json.loads(line) for line in report.content.splitlines()]
    first = next(e for e in examples if e["metadata"]["run_id"] == "pp-002")
    assert first["inputs"]["outputs"] == support_runs[1]["outputs"]
    assert first["inputs"]["inputs"] == support_runs[1]["inputs"]
    assert first["outputs"] == {NAME: 0, "comment": "Wrong after all."}
    assert first["metadata"]["dataset_split"] in (["dev"], ["test"])
    assert (first["metadata"]["labeler"], first["metadata"]["source"]) == ("ben", "support")


def test_an_existing_file_is_not_replaced_and_big_inline_exports_are_refused(
    store: Store, support_runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    labeled_store(store, support_runs)
    taken = tmp_path / "taken.jsonl"
    taken.write_text("keep me\n", encoding="utf-8")

    with pytest.raises(Conflict) as e:
        export_reference_set(store, NAME, "jsonl", taken)
    assert str(e.value) == f"{str(taken)!r} already exists; give another file name (nothing was written)."
    assert taken.read_text(encoding="utf-8") == "keep me\n"
    with pytest.raises(InvalidInput) as big:
        export_reference_set(store, NAME, max_inline=1000)
    assert str(big.value).startswith(f"The export of {NAME!r} is ")
    assert str(big.value).endswith(
        "characters, more than the 1,000 returned inline; give a file path to write it to."
    )
    assert export_reference_set(store, NAME, "jsonl", taken, overwrite=True).records == 46


def test_a_bad_split_or_history_in_an_import_names_its_line(store: Store, tmp_path: Path) -> None:
    run = {"id": "a", "inputs": {"q": 1}, "outputs": {"a": 2}}
    bad_split = write_jsonl(tmp_path / "s.jsonl", {**run, "feedback": {NAME: {"score": 1, "split": "train"}}})
    bad_history = write_jsonl(
        tmp_path / "h.jsonl", {**run, "feedback": {NAME: {"score": 1, "history": [{"x": 1}]}}}
    )

    with pytest.raises(ImportFormatError) as e:
        import_runs(store, "s", path=bad_split)
    assert str(e.value) == (
        f'{bad_split}:1: feedback {NAME!r} split must be "dev" or "test" (got \'train\'). Fix that line and import '
        "again; nothing from this file was stored."
    )
    with pytest.raises(ImportFormatError) as h:
        import_runs(store, "s", path=bad_history)
    assert str(h.value) == (
        f'{bad_history}:1: feedback {NAME!r} history items must be objects like {{"score": 1, "comment"?, '
        '"labeler"?, "labeled_at"?} (got one without a score). Fix that line and import again; nothing from this '
        "file was stored."
    )


PAIRWISE = ScoreType(kind="pairwise", ties=True)


def pairwise_store(store: Store) -> Store:
    """14 pairwise runs labeled A, B or tie under `preference`, one relabeled (history), and a holdout split."""
    records = [
        {
            "id": f"pair-{i:02d}",
            "inputs": {"question": f"question {i:02d}"},
            "outputs_a": {"answer": f"good {i}" if i % 3 == 0 else f"plain {i}"},
            "outputs_b": {"answer": f"good {i}" if i % 3 == 1 else f"plain {i}"},
            "reference_outputs": {"answer": f"reference {i}"},
            "feedback": {"preference": {"score": ("A", "B", "tie")[i % 3], "comment": f"pair {i}"}},
        }
        for i in range(14)
    ]
    import_runs(store, "pairs", runs=records)
    evaluators.create(store, "preference", PAIRWISE, judge=JudgeSettings(max_retries=0))
    submit_labels(store, "preference", [{"run_id": "pair-01", "score": "tie"}], labeler="ana")
    holdout.ensure_split(store, "preference")
    return store


def prefers_good(body: dict[str, Any]) -> Reply:
    """A judge that picks the output saying "good", and the first shown when neither does (position bias)."""
    text = prompt_text(body)
    first, second = section(text, "output_a") or "", section(text, "output_b") or ""
    return verdict("B" if "good" in second and "good" not in first else "A")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_a_pairwise_export_imports_into_a_fresh_store_with_the_same_labels_splits_and_figures(
    store: Store, judge: FakeJudgeServer, tmp_path: Path, fmt: str
) -> None:
    judge.responder = prefers_good
    pairwise_store(store)
    before = [await align.run_alignment(store, "preference", split=s) for s in ("dev", "test")]
    path = tmp_path / f"reference.{fmt}"

    report = export_reference_set(store, "preference", fmt, path)  # type: ignore[arg-type]

    assert (report.records, report.labels) == (14, 15)
    if fmt == "jsonl":
        first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
        assert (first["outputs_a"], first["outputs_b"], "outputs" in first) == (
            {"answer": "good 0"},
            {"answer": "plain 0"},
            False,
        )
        assert first["feedback"]["preference"]["score"] == "A"
    else:
        with path.open(encoding="utf-8", newline="") as f:
            assert next(csv.reader(f))[:5] == ["id", "inputs", "outputs_a", "outputs_b", "reference_outputs"]
    with open_store(tmp_path / "fresh.db") as fresh:
        import_runs(fresh, "pairs", path=path)
        evaluators.create(fresh, "preference", PAIRWISE, judge=JudgeSettings(max_retries=0))
        after = [await align.run_alignment(fresh, "preference", split=s) for s in ("dev", "test")]

        assert [
            (x.run_id, x.score, x.comment, x.labeler, x.created_at, x.rubric_version, x.current)
            for x in fresh.all_labels("preference")
        ] == [
            (x.run_id, x.score, x.comment, x.labeler, x.created_at, x.rubric_version, x.current)
            for x in store.all_labels("preference")
        ]
        assert fresh.split_rows("preference") == store.split_rows("preference")
        assert (
            fresh.get_runs(["pair-04"])["pair-04"].as_dict()
            == store.get_runs(["pair-04"])["pair-04"].as_dict()
        )
    assert [a.run.metrics for a in after] == [b.run.metrics for b in before]
    assert all(b.run.metrics is not None and b.run.metrics.pairwise is not None for b in before)


def test_a_pairwise_langsmith_example_shows_both_outputs(store: Store) -> None:
    pairwise_store(store)

    report = export_reference_set(store, "preference", "langsmith")

    assert report.content is not None
    first = json.loads(report.content.splitlines()[0])
    assert first["inputs"] == {
        "inputs": {"question": "question 00"},
        "outputs_a": {"answer": "good 0"},
        "outputs_b": {"answer": "plain 0"},
        "reference_outputs": {"answer": "reference 0"},
    }
    assert first["outputs"] == {"preference": "A", "comment": "pair 0"}
