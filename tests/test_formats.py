import re
from pathlib import Path
from typing import Any

import pytest

from align_mcp.engine import formats
from align_mcp.engine.formats import FeedbackItem, ParsedRun, detect_format, parse_record, read_runs
from align_mcp.errors import ImportFormatError
from conftest import write_jsonl

SUFFIX = ". Fix that line and import again; nothing from this file was stored."


def error_of(path: Path, fmt: Any = None) -> str:
    with pytest.raises(ImportFormatError) as info:
        list(read_runs(path, fmt))
    return str(info.value)


# --- native JSONL ------------------------------------------------------------------------------------------


def test_native_record_is_read_as_is(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "runs.jsonl",
        {
            "id": "run-1",
            "inputs": {"question": "2+2?"},
            "outputs": {"answer": "4"},
            "reference_outputs": {"answer": "4"},
            "metadata": {"split": "dev"},
            "feedback": {"correctness": {"score": 1, "comment": "right", "labeler": "ana"}},
        },
    )
    assert list(read_runs(path)) == [
        ParsedRun(
            line=1,
            id="run-1",
            inputs={"question": "2+2?"},
            outputs={"answer": "4"},
            reference_outputs={"answer": "4"},
            metadata={"split": "dev"},
            feedback=(FeedbackItem("correctness", 1, "right", "ana"),),
        )
    ]


def test_bare_feedback_value_is_the_score() -> None:
    run = parse_record({"inputs": {}, "outputs": {}, "feedback": {"correctness": 0, "tone": "rude"}}, 1, "x")
    assert run.feedback == (
        FeedbackItem("correctness", 0, None, None),
        FeedbackItem("tone", "rude", None, None),
    )


def test_feedback_without_score_is_no_label() -> None:
    run = parse_record(
        {"inputs": {}, "outputs": {}, "feedback": {"a": None, "b": {"comment": "unsure"}, "c": {"value": 1}}},
        1,
        "x",
    )
    assert run.feedback == (FeedbackItem("c", 1, None, None),)


def test_non_object_fields_are_wrapped() -> None:
    run = parse_record({"inputs": "hi", "outputs": [1, 2], "reference_outputs": 3}, 1, "x")
    assert (run.inputs, run.outputs, run.reference_outputs) == (
        {"input": "hi"},
        {"output": [1, 2]},
        {"output": 3},
    )


def test_plain_input_and_output_fields_are_wrapped() -> None:
    run = parse_record({"input": "hi", "output": "hello"}, 1, "x")
    assert (run.inputs, run.outputs, run.reference_outputs) == ({"input": "hi"}, {"output": "hello"}, None)


@pytest.mark.parametrize(
    "key",
    [
        "reference_outputs",
        "reference_output",
        "reference",
        "expected",
        "expected_output",
        "expected_outputs",
        "ground_truth",
    ],
)
def test_reference_aliases_become_reference_outputs(key: str) -> None:
    run = parse_record({"input": "q", "output": "a", key: "gold"}, 1, "x")
    assert run.reference_outputs == {"output": "gold"}
    assert run.metadata == {}


def test_question_and_answer_fields_become_inputs_and_outputs() -> None:
    run = parse_record({"question": "2+2?", "answer": "4", "expected": "4"}, 1, "x")
    assert (run.inputs, run.outputs, run.reference_outputs) == (
        {"question": "2+2?"},
        {"answer": "4"},
        {"output": "4"},
    )


def test_other_fields_of_a_plain_record_go_to_metadata() -> None:
    run = parse_record(
        {
            "input": "q",
            "output": "a",
            "category": "math",
            "skipped": None,
            "metadata": {"category": "algebra"},
        },
        1,
        "x",
    )
    assert run.metadata == {"category": "algebra"}
    assert parse_record({"input": "q", "output": "a", "category": "math"}, 1, "x").metadata == {
        "category": "math"
    }


def test_numeric_id_is_coerced_to_string() -> None:
    assert parse_record({"id": 7, "input": "q", "output": "a"}, 1, "x").id == "7"


def test_blank_id_is_an_error() -> None:
    with pytest.raises(ImportFormatError) as info:
        parse_record({"id": "  ", "input": "q", "output": "a"}, 4, "item")
    assert str(info.value) == (
        'item:4: id is empty (give the run a non-empty id, or drop the "id" field to get one derived from its '
        "content)" + SUFFIX
    )


def test_id_of_another_type_is_an_error() -> None:
    with pytest.raises(
        ImportFormatError, match=r"^item:2: id must be a string or a number \(got an array\)\. "
    ):
        parse_record({"id": [1], "input": "q", "output": "a"}, 2, "item")


# --- deterministic ids -------------------------------------------------------------------------------------


def test_derived_id_is_stable_across_reads(tmp_path: Path) -> None:
    record = {"inputs": {"q": "é", "a": [1, 2]}, "outputs": {"o": 1}, "reference_outputs": {"o": 2}}
    first = [r.id for r in read_runs(write_jsonl(tmp_path / "a.jsonl", record))]
    reordered = {"reference_outputs": {"o": 2}, "outputs": {"o": 1}, "inputs": {"a": [1, 2], "q": "é"}}
    second = [r.id for r in read_runs(write_jsonl(tmp_path / "b.jsonl", reordered))]
    assert first == second
    assert re.fullmatch(r"r-[0-9a-f]{16}", first[0])


def test_derived_id_is_a_known_hash() -> None:
    run = parse_record({"inputs": {"q": 1}, "outputs": {"a": 2}}, 1, "x")
    assert run.id == "r-b2e00bef90cd6130"


def test_derived_id_differs_for_different_content() -> None:
    ids = {
        parse_record(record, 1, "x").id
        for record in [
            {"input": "q", "output": "a"},
            {"input": "q", "output": "b"},
            {"input": "q", "output": "a", "expected": "a"},
            {"input": "Q", "output": "a"},
        ]
    }
    assert len(ids) == 4


def test_equivalent_shapes_get_the_same_derived_id() -> None:
    plain = parse_record({"input": "q", "output": "a", "extra_field": 1}, 1, "x")
    native = parse_record({"inputs": {"input": "q"}, "outputs": {"output": "a"}}, 9, "y")
    assert plain.id == native.id


# --- LangSmith shapes --------------------------------------------------------------------------------------


def langsmith_run(**overrides: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "id": "0b8f-run",
        "name": "ChatPipeline",
        "run_type": "chain",
        "inputs": {"question": "capital of France?"},
        "outputs": {"answer": "Paris"},
        "extra": {"metadata": {"model": "gpt-4o", "env": "prod"}, "runtime": {"sdk": "langsmith-py"}},
        "session_id": "sess-1",
        "trace_id": "0b8f-run",
        "dotted_order": "20240101T000000000000Z0b8f",
        "start_time": "2024-01-01T00:00:00",
        "tags": ["v2"],
        "reference_example_id": "ex-1",
        "feedback_stats": {"correctness": {"n": 1, "avg": 1.0}},
        "events": [{"name": "start"}],
        "serialized": {"big": "blob"},
        "error": None,
    }
    run.update(overrides)
    return run


def test_langsmith_run_export_keeps_useful_fields_in_metadata() -> None:
    run = parse_record(langsmith_run(metadata={"env": "staging"}), 1, "x")
    assert run.id == "0b8f-run"
    assert run.inputs == {"question": "capital of France?"}
    assert run.outputs == {"answer": "Paris"}
    assert run.reference_outputs is None
    assert run.metadata == {
        "model": "gpt-4o",
        "env": "staging",
        "name": "ChatPipeline",
        "run_type": "chain",
        "reference_example_id": "ex-1",
        "session_id": "sess-1",
        "trace_id": "0b8f-run",
        "start_time": "2024-01-01T00:00:00",
        "tags": ["v2"],
    }
    assert run.feedback == ()


def test_langsmith_feedback_list_is_read_and_model_feedback_skipped() -> None:
    feedback = [
        {"key": "correctness", "score": 1, "comment": "matches", "created_by": "user-9"},
        {
            "key": "tone",
            "score": None,
            "value": "polite",
            "feedback_source": {"type": "app", "user_name": "bo"},
        },
        {"key": "correctness", "score": 0, "feedback_source": {"type": "model"}},
        {"key": "empty", "score": None, "value": None},
    ]
    run = parse_record(langsmith_run(feedback=feedback), 1, "x")
    assert run.feedback == (
        FeedbackItem("correctness", 1, "matches", "user-9"),
        FeedbackItem("tone", "polite", None, "bo"),
    )


def test_errored_langsmith_run_with_null_outputs_is_kept() -> None:
    run = parse_record(langsmith_run(outputs=None, error="Timeout"), 1, "x")
    assert run.outputs == {}
    assert run.metadata["error"] == "Timeout"


def test_experiment_row_takes_reference_from_example() -> None:
    row = {
        "run": langsmith_run(feedback=[{"key": "correctness", "score": 1}]),
        "example": {
            "id": "ex-1",
            "inputs": {"question": "ignored, the run has inputs"},
            "outputs": {"answer": "Paris"},
            "metadata": {"split": "test", "model": "from-example"},
        },
        "evaluation_results": {"results": [{"key": "correctness", "score": 0}]},
    }
    run = parse_record(row, 3, "x")
    assert run.line == 3
    assert run.id == "0b8f-run"
    assert run.inputs == {"question": "capital of France?"}
    assert run.reference_outputs == {"answer": "Paris"}
    assert run.metadata["split"] == "test"
    assert run.metadata["example_id"] == "ex-1"
    assert run.metadata["model"] == "gpt-4o"
    assert run.feedback == (FeedbackItem("correctness", 1, None, None),)


def test_experiment_row_takes_inputs_from_example_when_run_has_none() -> None:
    row = {"run": {"id": "r1", "outputs": {"o": 1}}, "example": {"id": "e1", "inputs": {"q": 1}}}
    run = parse_record(row, 1, "x")
    assert (run.id, run.inputs, run.reference_outputs) == ("r1", {"q": 1}, None)


def test_dataset_example_without_outputs_is_rejected_with_a_hint() -> None:
    example = {"id": "e1", "inputs": {"q": 1}, "metadata": {}, "dataset_id": "d1"}
    with pytest.raises(ImportFormatError) as info:
        parse_record(example, 5, "ds.jsonl")
    assert str(info.value) == (
        'ds.jsonl:5: missing outputs (add an "outputs" object or an "output" field); this looks like a LangSmith '
        "dataset example, which holds no app outputs: export the experiment's runs instead" + SUFFIX
    )


def test_dataset_example_with_outputs_is_read_as_a_run() -> None:
    example = {"id": "e1", "inputs": {"q": 1}, "outputs": {"a": 2}, "metadata": {"s": 1}, "dataset_id": "d1"}
    run = parse_record(example, 1, "x")
    assert (run.id, run.outputs, run.metadata) == ("e1", {"a": 2}, {"dataset_id": "d1", "s": 1})


# --- JSONL errors ------------------------------------------------------------------------------------------


def test_invalid_json_names_the_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text('{"input": "q", "output": "a"}\n{"input": "q" "output": "a"}\n', encoding="utf-8")
    assert error_of(path) == f"{path}:2: invalid JSON (Expecting ',' delimiter at column 15)" + SUFFIX


def test_line_that_is_not_an_object_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text('{"input": "q", "output": "a"}\n"just text"\n', encoding="utf-8")
    assert error_of(path) == f"{path}:2: not a JSON object (got a string)" + SUFFIX


def test_json_array_file_gets_a_conversion_hint(tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    path.write_text('[{"input": "q", "output": "a"}]\n', encoding="utf-8")
    assert error_of(path) == (
        f"{path}:1: not a JSON object (got an array); this looks like a JSON array file, but each line must be "
        "one JSON object (convert with: jq -c '.[]' file.json > file.jsonl)" + SUFFIX
    )


def test_missing_outputs_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "runs.jsonl", {"inputs": {"q": 1}})
    assert (
        error_of(path) == f'{path}:1: missing outputs (add an "outputs" object or an "output" field)' + SUFFIX
    )


def test_missing_inputs_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "runs.jsonl", {"outputs": {"a": 1}})
    assert error_of(path) == f'{path}:1: missing inputs (add an "inputs" object or an "input" field)' + SUFFIX


def test_feedback_of_wrong_type_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "runs.jsonl", {"input": "q", "output": "a", "feedback": "good"})
    assert error_of(path) == (
        f'{path}:1: feedback must be an object like {{"correctness": {{"score": 1}}}} or a list of {{"key", '
        '"score"} items (got a string)' + SUFFIX
    )


def test_metadata_of_wrong_type_is_an_error() -> None:
    with pytest.raises(ImportFormatError, match=r"^x:1: metadata must be an object \(got a number\)\. "):
        parse_record({"input": "q", "output": "a", "metadata": 3}, 1, "x")


def test_structured_feedback_score_is_an_error() -> None:
    with pytest.raises(ImportFormatError, match=r"feedback 'c' score must be a number, string or boolean"):
        parse_record({"input": "q", "output": "a", "feedback": {"c": {"score": [1]}}}, 1, "x")


def test_invalid_utf8_names_the_byte_and_column(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_bytes(b'{"input": "q", "output": "a"}\n{"input": "\xc3\xa9\xff", "output": "a"}\n')
    assert error_of(path) == (
        f"{path}:2: not valid UTF-8 (byte 0xff at column 13); save the file as UTF-8" + SUFFIX
    )


def test_nan_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text('{"input": "q", "output": NaN}\n', encoding="utf-8")
    assert (
        error_of(path) == f"{path}:1: invalid JSON (NaN is not valid JSON; write null or a number)" + SUFFIX
    )


def test_truncated_last_line_is_reported_as_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text('{"input": "q", "output": "a"}\n{"input": "q", "outp', encoding="utf-8")
    assert error_of(path) == (
        f"{path}:2: invalid JSON (Unterminated string starting at at column 16)" + SUFFIX
    )


def test_overlong_line_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "MAX_LINE_BYTES", 40)
    path = tmp_path / "runs.jsonl"
    path.write_text('{"input": "q", "output": "a"}\n{"input": "' + "x" * 100 + '", "output": "a"}\n')
    assert (
        error_of(path) == f"{path}:2: the line is longer than 40 bytes, the most one record may hold" + SUFFIX
    )


def test_line_exactly_at_the_limit_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = '{"input": "q", "output": "a"}'
    monkeypatch.setattr(formats, "MAX_LINE_BYTES", len(line))
    path = tmp_path / "runs.jsonl"
    path.write_text(line + "\r\n" + line)
    assert [r.line for r in read_runs(path)] == [1, 2]


def test_bom_blank_lines_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"input": "q", "output": "a"}\r\n\r\n   \n{"input": "r", "output": "b"}')
    runs = list(read_runs(path))
    assert [(r.line, r.inputs) for r in runs] == [(1, {"input": "q"}), (4, {"input": "r"})]


def test_empty_jsonl_file_yields_no_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text("\n\n")
    assert list(read_runs(path)) == []


def test_records_stream_before_a_later_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text('{"input": "q1", "output": "a"}\n{"input": "q2", "output": "a"}\n{broken\n')
    runs = read_runs(path)
    assert next(runs).inputs == {"input": "q1"}
    assert next(runs).inputs == {"input": "q2"}
    with pytest.raises(ImportFormatError, match=r":3: invalid JSON"):
        next(runs)


# --- paths and format detection ----------------------------------------------------------------------------


def test_missing_file_is_reported_eagerly(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(ImportFormatError) as info:
        read_runs(path)
    assert (
        str(info.value) == f"No file at {path}. Check the path; it is read by the machine running align-mcp."
    )


def test_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError) as info:
        read_runs(tmp_path)
    assert str(info.value) == (
        f"{tmp_path} is a directory, not a file. Pass the path of a .jsonl or .csv file inside it."
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.jsonl", "jsonl"), ("a.NDJSON", "jsonl"), ("a.json", "jsonl"), ("a.csv", "csv"), ("a.tsv", "csv")],
)
def test_format_is_detected_from_the_extension(tmp_path: Path, name: str, expected: str) -> None:
    assert detect_format(tmp_path / name) == expected


def test_format_is_sniffed_when_the_extension_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_bytes(b'\xef\xbb\xbf\n  {"input": "q", "output": "a"}\n')
    assert detect_format(path) == "jsonl"
    assert [r.inputs for r in read_runs(path)] == [{"input": "q"}]


def test_unknown_format_names_the_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_text("input,output\nq,a\n")
    with pytest.raises(ImportFormatError) as info:
        detect_format(path)
    assert str(info.value) == (
        f"Cannot tell the format of {path}. Supported: JSON Lines (.jsonl, .ndjson: one JSON object per line) "
        "or CSV (.csv, .tsv: a header row, then one run per row). Rename the file with one of those extensions."
    )
    assert [r.outputs for r in read_runs(path, "csv")] == [{"output": "a"}]


# --- CSV ---------------------------------------------------------------------------------------------------


def test_csv_columns_map_to_fields(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text(
        "id,inputs.question,outputs.answer,reference_outputs.answer,metadata.split,feedback.correctness,"
        "feedback.correctness.comment,feedback.correctness.labeler,feedback.tone.score,category\n"
        'r1,2+2?,4,4,dev,1,"right, obviously",ana,polite,math\n',
        encoding="utf-8",
    )
    assert list(read_runs(path)) == [
        ParsedRun(
            line=2,
            id="r1",
            inputs={"question": "2+2?"},
            outputs={"answer": "4"},
            reference_outputs={"answer": "4"},
            metadata={"split": "dev", "category": "math"},
            feedback=(
                FeedbackItem("correctness", 1, "right, obviously", "ana"),
                FeedbackItem("tone", "polite", None, None),
            ),
        )
    ]


def test_csv_plain_columns_are_wrapped(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("input,output,expected\nq,a,gold\n")
    run = next(read_runs(path))
    assert (run.inputs, run.outputs, run.reference_outputs) == (
        {"input": "q"},
        {"output": "a"},
        {"output": "gold"},
    )


def test_csv_empty_cells_are_omitted_and_empty_score_is_no_label(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text(
        "id,input,output,metadata.note,feedback.correctness,feedback.correctness.comment\n,q,a,,,why\n"
    )
    run = next(read_runs(path))
    assert run.id.startswith("r-")
    assert (run.metadata, run.feedback) == ({}, ())


def test_csv_integer_scores_become_int(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("input,output,feedback.a,feedback.b,feedback.c,feedback.d\nq,a, 1 ,-2,0.5,pass\n")
    run = next(read_runs(path))
    assert [f.score for f in run.feedback] == [1, -2, 0.5, "pass"]
    assert isinstance(run.feedback[0].score, int)


def test_csv_json_cells_in_inputs_and_outputs_columns(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text('inputs,outputs\n"{""q"": 1}",plain text\n')
    run = next(read_runs(path))
    assert (run.inputs, run.outputs) == ({"q": 1}, {"output": "plain text"})


def test_tsv_uses_tabs(tmp_path: Path) -> None:
    path = tmp_path / "runs.tsv"
    path.write_text("input\toutput\nq, with comma\ta\n")
    assert next(read_runs(path)).inputs == {"input": "q, with comma"}


def test_csv_record_line_is_where_it_starts(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_bytes(b'\xef\xbb\xbfinput,output\r\n"multi\r\nline",a\r\n\r\n,,\r\nq,b\r\n')
    runs = list(read_runs(path))
    assert [(r.line, r.inputs["input"]) for r in runs] == [(2, "multi\r\nline"), (6, "q")]


def test_csv_header_without_outputs_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("id,input,category\n1,q,x\n")
    assert error_of(path) == (
        f"{path}:1: the header has no outputs column (found: 'id', 'input', 'category'; expected \"input\" or "
        '"inputs.<name>" columns, and "output" or "outputs.<name>" columns)' + SUFFIX
    )


def test_csv_header_without_inputs_or_outputs_names_both(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("a,b\n1,2\n")
    assert error_of(path).startswith(
        f"{path}:1: the header has no inputs or outputs column (found: 'a', 'b';"
    )


def test_ragged_csv_row_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("id,input,output\n1,q,a\n2,q,a,b\n")
    assert error_of(path) == (
        f"{path}:3: the row has 4 fields but the header has 3; quote fields that contain the delimiter"
        + SUFFIX
    )


def test_csv_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_bytes(b"input,output\nq,a\nq,\xe9t\xe9\n")
    assert (
        error_of(path)
        == f"{path}:3: not valid UTF-8 (byte 0xe9 at column 3); save the file as UTF-8" + SUFFIX
    )


def test_csv_unclosed_quote_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text('input,output\nq,a\n"q,a\nmore\n')
    assert error_of(path) == (
        f"{path}:3: a quoted field starting on this line is never closed (invalid CSV: unexpected end of data)"
        + SUFFIX
    )


def test_csv_duplicate_column_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("input,output,input\nq,a,b\n")
    assert error_of(path).startswith(f"{path}:1: the header names column 'input' twice;")


def test_csv_without_header_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("\n")
    assert error_of(path) == (
        f"{path}:1: no header row (a CSV file starts with a header such as: id,input,output)" + SUFFIX
    )


def test_csv_unnamed_trailing_columns_are_ignored_unless_filled(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("input,output,,\nq,a,,\nq,a,,x\n")
    runs = read_runs(path)
    assert next(runs).metadata == {}
    with pytest.raises(ImportFormatError, match=r":3: column 4 holds a value but has no name in the header"):
        next(runs)


def test_csv_rows_stream_before_a_later_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("input,output\nq1,a\nq2,a,extra\n")
    runs = read_runs(path)
    assert next(runs).inputs == {"input": "q1"}
    with pytest.raises(ImportFormatError, match=r":3: the row has 3 fields"):
        next(runs)
