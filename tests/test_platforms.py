"""Imports of the platforms users already run: Langfuse, Arize Phoenix, Opik, MLflow and OTLP JSON GenAI spans.

The sample files under tests/data/platforms/ are written from each project's documented export format:

- Langfuse: the public API's TraceWithFullDetails (a trace with `observations` and `scores`) in a page
  `{"data": [...], "meta": {...}}`; Score fields `source` ANNOTATION/API/EVAL and `dataType`
  NUMERIC/CATEGORICAL/BOOLEAN with `stringValue`.
  https://js.reference.langfuse.com/interfaces/_langfuse_core.TraceWithFullDetails.html,
  https://js.reference.langfuse.com/types/_langfuse_core.ScoreDataType.html,
  OpenAPI spec https://cloud.langfuse.com/generated/api/openapi.yml
- Phoenix: spans as the REST API returns them (`context.span_id`, `span_kind`, `attributes["input.value"]`),
  annotations `{"name", "annotator_kind": HUMAN|LLM|CODE, "result": {"label", "score", "explanation"}}`, and the
  experiment download `GET /v1/experiments/{experiment_id}/json` (`example_id`, `reference_output`, `annotations`).
  https://arize.com/docs/phoenix/tracing/how-to-tracing/feedback-and-annotations/capture-feedback,
  https://raw.githubusercontent.com/api-evangelist/phoenix/refs/heads/main/json-schema/phoenix-span.json,
  Arize-ai/phoenix src/phoenix/server/api/routers/v1/experiments.py (get_experiment_json: the experiment download)
- Opik: a trace with `feedback_scores` `{"name", "value", "category_name", "reason", "source": ui|sdk|online_scoring}`.
  https://www.comet.com/docs/opik/reference/rest-api/traces/add-trace-feedback-score,
  https://comet.com/docs/opik/tracing/annotate_traces
- MLflow 3: `Trace.to_json()` = `info` (trace_id, request_preview, trace_metadata, tags, `assessments` with
  `source.source_type` HUMAN/LLM_JUDGE/CODE and `feedback` or `expectation`) + `data.spans` (root span attributes
  `mlflow.spanInputs` / `mlflow.spanOutputs`).
  https://mlflow.org/docs/latest/genai/tracing/data-model/ (Databricks copy:
  https://learn.microsoft.com/en-us/azure/databricks/mlflow3/genai/tracing/data-model),
  https://docs.databricks.com/gcp/mlflow3/genai/tracing/concepts/log-assessment,
  mlflow/mlflow tests/tracing/sample_code/model_with_add_trace.py
- OTLP JSON: `resourceSpans[].scopeSpans[].spans[]` with key/value-typed attributes
  (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding); GenAI semantic conventions
  `gen_ai.input.messages` / `gen_ai.output.messages` (v1.37) and the older `gen_ai.prompt` / `gen_ai.completion`
  (indexed, and `gen_ai.content.prompt` / `gen_ai.content.completion` events), `gen_ai.evaluation.result` events:
  https://github.com/open-telemetry/semantic-conventions/blob/v1.37.0/docs/gen-ai/gen-ai-spans.md
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mcp import Client

from align_mcp.cli import main
from align_mcp.core.models import ScoreType
from align_mcp.engine import evaluators, ingest
from align_mcp.engine.platforms import platform_of, read_file
from align_mcp.errors import ImportFormatError
from align_mcp.store import Store
from conftest import snapshot

DATA = Path(__file__).parent / "data" / "platforms"
BINARY = ScoreType(kind="binary")
FIX = ". Fix that record and import again; nothing from this file was stored."


def labels(store: Store, evaluator: str) -> dict[str, tuple[object, str | None, str | None]]:
    return {lab.run_id: (lab.score, lab.comment, lab.labeler) for lab in store.current_labels(evaluator)}


def stored(store: Store, run_id: str) -> dict[str, Any]:
    return store.get_runs([run_id])[run_id].as_dict()


def error_of(path: Path, fmt: Any = None) -> str:
    with pytest.raises(ImportFormatError) as e:
        list(read_file(path, fmt))
    return str(e.value)


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def load_lines(name: str) -> list[Any]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


def write(path: Path, value: Any, lines: bool = False) -> Path:
    if lines:
        path.write_text("".join(json.dumps(v) + "\n" for v in value), encoding="utf-8")
    else:
        path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    return path


# ---- detection ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "platform"),
    [
        ("langfuse_traces.json", "langfuse"),
        ("phoenix_spans.jsonl", "phoenix"),
        ("phoenix_experiment.json", "phoenix"),
        ("opik_traces.jsonl", "opik"),
        ("mlflow_traces.jsonl", "mlflow"),
        ("otel_genai.json", "otel"),
        ("otel_legacy.jsonl", "otel"),
    ],
)
def test_each_export_is_recognised_by_its_content(name: str, platform: str) -> None:
    text = (DATA / name).read_text(encoding="utf-8")
    value = json.loads(text) if name.endswith(".json") else json.loads(text.splitlines()[0])
    assert platform_of(value) == platform
    assert len(list(read_file(DATA / name))) == 2


def test_a_native_record_is_no_platform_export() -> None:
    assert platform_of({"id": "r1", "inputs": {"q": "hi"}, "outputs": {"a": "hello"}}) is None
    assert platform_of({"run": {"inputs": {}}, "example": {}, "trace_id": "t"}) is None


# ---- Langfuse -----------------------------------------------------------------------------------------------


def test_langfuse_annotation_scores_become_labels_and_eval_and_api_scores_metadata(store: Store) -> None:
    evaluators.create(store, "correctness", BINARY)
    evaluators.create(store, "helpfulness", ScoreType(kind="ordinal", min=1, max=5))

    report = ingest.import_runs(store, "lf", path=DATA / "langfuse_traces.json", kind="project")

    assert (report.inserted, report.labels) == (2, 2)
    assert labels(store, "correctness") == {
        "lf-trace-1": (1, "Matches the help article.", "user-ana"),
        "lf-trace-2": (0, "Policy is 30 days.", "user-ana"),
    }
    # A person's score on one of the trace's observations did not judge the trace's output: metadata only.
    assert labels(store, "helpfulness") == {}
    first = stored(store, "lf-trace-1")
    assert (first["inputs"], first["outputs"], first["reference_outputs"]) == (
        {"question": "How do I reset my password?"},
        {"answer": "Open Settings > Security and choose Reset password."},
        None,
    )
    assert first["metadata"] == {
        "channel": "web",
        "trace_id": "lf-trace-1",
        "name": "support-chat",
        "session_id": "sess-17",
        "user_id": "user-42",
        "tags": ["support"],
        "release": "v2.3.0",
        "environment": "production",
        "timestamp": "2025-05-02T10:00:00.000Z",
        "langfuse_path": "/project/clx1/traces/lf-trace-1",
        "scores": {
            "correctness": {
                "value": 0.92,
                "source": "EVAL",
                "comment": "The answer follows the documented steps.",
                "data_type": "NUMERIC",
            },
            "tone": {"value": "friendly", "source": "API", "data_type": "CATEGORICAL"},
        },
    }
    assert stored(store, "lf-trace-2")["metadata"]["scores"] == {
        "helpfulness": {"value": 2, "source": "ANNOTATION", "data_type": "NUMERIC", "observation_id": "obs-9"}
    }


def test_langfuse_observations_are_runs_with_their_trace_and_span_ids(tmp_path: Path) -> None:
    observation = load("langfuse_traces.json")["data"][0]["observations"][0]
    observation["scores"] = [
        {
            "name": "correctness",
            "value": 1,
            "dataType": "BOOLEAN",
            "source": "ANNOTATION",
            "observationId": "obs-1",
        }
    ]
    (run,) = read_file(write(tmp_path / "observations.jsonl", [observation], lines=True))

    assert (run.id, run.inputs, run.outputs) == (
        "obs-1",
        {"input": [{"role": "user", "content": "How do I reset my password?"}]},
        {"role": "assistant", "content": "Open Settings > Security and choose Reset password."},
    )
    assert run.metadata == {
        "trace_id": "lf-trace-1",
        "span_id": "obs-1",
        "type": "GENERATION",
        "name": "openai.chat",
        "model": "gpt-4o-mini",
        "start_time": "2025-05-02T10:00:00.100Z",
        "level": "DEFAULT",
        "environment": "production",
    }
    assert [(f.key, f.score) for f in run.feedback] == [("correctness", True)]


def test_a_langfuse_trace_without_input_is_refused_naming_it(tmp_path: Path) -> None:
    page = load("langfuse_traces.json")
    page["data"][1]["input"] = None
    path = write(tmp_path / "traces.json", page)

    assert error_of(path) == (
        f"{path}: data[1]: the trace has no input (it is null); runs need an input: export traces whose input is "
        f"set, or their GENERATION observations{FIX}"
    )


def test_a_langfuse_score_without_source_is_refused_naming_its_path(tmp_path: Path) -> None:
    page = load("langfuse_traces.json")
    del page["data"][1]["scores"][0]["source"]
    path = write(tmp_path / "traces.json", page)

    assert (
        error_of(path)
        == f'{path}: data[1].scores[0]: the score has no "source" (ANNOTATION, API or EVAL){FIX}'
    )


# ---- Phoenix ------------------------------------------------------------------------------------------------


def test_phoenix_human_annotations_become_labels_and_llm_and_code_ones_metadata(store: Store) -> None:
    evaluators.create(store, "correctness", ScoreType(kind="categorical", labels=["correct", "incorrect"]))

    report = ingest.import_runs(store, "px", path=DATA / "phoenix_spans.jsonl", kind="project")

    assert (report.inserted, report.labels) == (2, 2)
    assert labels(store, "correctness") == {
        "67f6740bbe1ddc3f": ("correct", "Right city.", "VXNlcjox"),
        "a1b2c3d4e5f60718": ("incorrect", "That is Celsius; 212 F.", "VXNlcjox"),
    }
    first = stored(store, "67f6740bbe1ddc3f")
    assert (first["inputs"], first["outputs"]) == (
        {"question": "What is the capital of Australia?"},  # input.mime_type application/json: decoded
        {"output": "Canberra."},
    )
    assert first["metadata"] == {
        "customer_tier": "gold",
        "trace_id": "tr-67f6740bbe1ddc3f",
        "span_id": "67f6740bbe1ddc3f",
        "name": "ChatCompletion",
        "span_kind": "LLM",
        "status_code": "OK",
        "start_time": "2025-05-03T09:00:00+00:00",
        "model": "gpt-4o-mini",
        "scores": {
            "correctness": {
                "value": "correct",
                "source": "LLM",
                "comment": "The answer is factually accurate.",
                "score": 1,
            }
        },
    }
    assert stored(store, "a1b2c3d4e5f60718")["metadata"]["scores"] == {
        "length_ok": {"value": 1, "source": "CODE"}
    }


def test_phoenix_spans_dataframe_rows_are_read_like_rest_spans(tmp_path: Path) -> None:
    row = {
        "name": "ChatCompletion",
        "span_kind": "LLM",
        "parent_id": None,
        "context.span_id": "0f1e2d3c4b5a6978",
        "context.trace_id": "tr-1",
        "attributes.input.value": "Hi there",
        "attributes.output.value": "Hello!",
        "attributes.llm.model_name": "gpt-4o",
    }
    (run,) = read_file(write(tmp_path / "spans.jsonl", [row], lines=True))

    assert (run.id, run.inputs, run.outputs, run.metadata["trace_id"], run.metadata["model"]) == (
        "0f1e2d3c4b5a6978",
        {"input": "Hi there"},
        {"output": "Hello!"},
        "tr-1",
        "gpt-4o",
    )


def test_phoenix_spans_with_nested_attributes_and_top_level_ids_are_read(tmp_path: Path) -> None:
    span = {
        "id": "U3BhbjoxMjM=",
        "span_id": "0f1e2d3c4b5a6978",
        "trace_id": "tr-2",
        "name": "ChatCompletion",
        "span_kind": "LLM",
        "attributes": {
            "input": {"value": "Hi there"},
            "output": {"value": "Hello!"},
            "llm": {"model_name": "gpt-4o"},
        },
    }
    (run,) = read_file(write(tmp_path / "spans.json", {"data": [span], "next_cursor": None}))

    assert (run.id, run.at, run.inputs, run.outputs, run.metadata["trace_id"], run.metadata["model"]) == (
        "0f1e2d3c4b5a6978",
        "data[0]",
        {"input": "Hi there"},
        {"output": "Hello!"},
        "tr-2",
        "gpt-4o",
    )


def test_phoenix_experiment_runs_carry_the_reference_output(store: Store) -> None:
    evaluators.create(store, "correctness", ScoreType(kind="categorical", labels=["correct", "incorrect"]))

    ingest.import_runs(store, "px-exp", path=DATA / "phoenix_experiment.json")

    second = stored(store, "0c2d4e6f8a1b3c5d7e9f0a2b4c6d8e0f")
    assert (second["inputs"], second["outputs"], second["reference_outputs"]) == (
        {"question": "What is 7 x 8?"},
        {"answer": "54"},
        {"answer": "56"},
    )
    assert second["metadata"] == {
        "example_id": "RGF0YXNldEV4YW1wbGU6Mg==",
        "repetition_number": 1,
        "trace_id": "0c2d4e6f8a1b3c5d7e9f0a2b4c6d8e0f",
        "latency_ms": 640.0,
        "start_time": "2025-05-04T12:00:01+00:00",
    }
    assert labels(store, "correctness") == {
        "5f1c0e9a2b7d4c31a0e1f2d3c4b5a697": ("correct", "Yes.", "import"),
        "0c2d4e6f8a1b3c5d7e9f0a2b4c6d8e0f": ("incorrect", "7 x 8 is 56.", "import"),
    }


def test_phoenix_dataset_examples_page_is_read(tmp_path: Path) -> None:
    page = {
        "data": {
            "dataset_id": "RGF0YXNldDox",
            "version_id": "RGF0YXNldFZlcnNpb246MQ==",
            "examples": [
                {
                    "id": "RGF0YXNldEV4YW1wbGU6MQ==",
                    "input": {"question": "Who wrote Hamlet?"},
                    "output": {"answer": "Shakespeare"},
                    "metadata": {"topic": "literature"},
                    "updated_at": "2025-05-04T11:00:00+00:00",
                }
            ],
        }
    }
    (run,) = read_file(write(tmp_path / "examples.json", page))

    assert (run.id, run.at, run.outputs, run.metadata) == (
        "RGF0YXNldEV4YW1wbGU6MQ==",
        "data.examples[0]",
        {"answer": "Shakespeare"},
        {
            "topic": "literature",
            "example_id": "RGF0YXNldEV4YW1wbGU6MQ==",
            "updated_at": "2025-05-04T11:00:00+00:00",
        },
    )


def test_a_phoenix_span_without_output_is_refused_naming_its_line(tmp_path: Path) -> None:
    spans = load_lines("phoenix_spans.jsonl")
    del spans[1]["attributes"]["output.value"]
    path = write(tmp_path / "spans.jsonl", spans, lines=True)

    assert error_of(path) == (
        f"{path}:2: the span has no output.value attribute; export spans whose output was recorded "
        f"(OpenInference instrumentation sets input.value and output.value){FIX}"
    )


# ---- Opik ---------------------------------------------------------------------------------------------------


def test_opik_ui_feedback_scores_become_labels_and_sdk_and_online_scores_metadata(store: Store) -> None:
    evaluators.create(store, "helpfulness", ScoreType(kind="categorical", labels=["helpful", "unhelpful"]))
    evaluators.create(store, "user_thumbs", BINARY)

    report = ingest.import_runs(store, "opik", path=DATA / "opik_traces.jsonl", kind="project")

    assert (report.inserted, report.labels) == (2, 2)
    assert labels(store, "helpfulness") == {
        "0196a1b2-0001-7000-8000-000000000001": ("helpful", "Clear and correct.", "maria"),
        "0196a1b2-0001-7000-8000-000000000002": ("unhelpful", "Opik can be self-hosted.", "maria"),
    }
    assert labels(store, "user_thumbs") == {}
    first = stored(store, "0196a1b2-0001-7000-8000-000000000001")
    assert first["inputs"] == {
        "messages": [{"role": "user", "content": "What are the main features of Opik?"}]
    }
    assert first["metadata"] == {
        "environment": "production",
        "trace_id": "0196a1b2-0001-7000-8000-000000000001",
        "name": "rag_query",
        "project_id": "0190babc-62a0-7a5a-8bd5-1c2d3e4f5a6b",
        "thread_id": "thread-9",
        "tags": ["rag"],
        "start_time": "2025-05-05T08:00:00.000Z",
        "scores": {
            "relevance": {"value": 0.92, "source": "online_scoring", "comment": "Addresses the question."}
        },
    }
    assert stored(store, "0196a1b2-0001-7000-8000-000000000002")["metadata"]["scores"] == {
        "user_thumbs": {"value": 0, "source": "sdk"}
    }


def test_opik_feedback_scores_of_the_wrong_type_are_refused_naming_the_line(tmp_path: Path) -> None:
    traces = load_lines("opik_traces.jsonl")
    traces[0]["feedback_scores"] = {"name": "helpfulness", "value": 1}
    path = write(tmp_path / "traces.jsonl", traces, lines=True)

    assert error_of(path) == f"{path}:1: feedback_scores must be an array (got an object){FIX}"


# ---- MLflow -------------------------------------------------------------------------------------------------


def test_mlflow_human_feedback_becomes_labels_expectations_references_judges_metadata(store: Store) -> None:
    evaluators.create(store, "correctness", BINARY)

    report = ingest.import_runs(store, "mlflow", path=DATA / "mlflow_traces.jsonl")

    assert (report.inserted, report.labels) == (2, 2)
    assert labels(store, "correctness") == {
        "tr-7d2e9a0c41b64f0b9e35d3f1e2a8c410": (1, "Matches the policy.", "ana@example.com"),
        "tr-1c6f0b8e92d34a7c8b1e0f9d7a6c5b42": (0, "Water damage is excluded.", "ben@example.com"),
    }
    first = stored(store, "tr-7d2e9a0c41b64f0b9e35d3f1e2a8c410")
    assert (first["inputs"], first["outputs"], first["reference_outputs"]) == (
        {"question": "How long is the warranty?"},
        {"answer": "Two years from purchase."},
        {"expected_response": "Two years."},
    )
    assert first["metadata"] == {
        "app_version": "2025.05",
        "tags": {"team": "support"},
        "trace_id": "tr-7d2e9a0c41b64f0b9e35d3f1e2a8c410",
        "span_id": "2b1kLbh0Zc8=",
        "request_time": "2025-05-06T07:00:00.000Z",
        "state": "OK",
        "execution_duration": "1.250s",
        "scores": {
            "correctness": {
                "value": "yes",
                "source": "LLM_JUDGE",
                "comment": "Consistent with the expected response.",
            }
        },
    }


def test_mlflow_trace_without_spans_falls_back_to_the_previews(tmp_path: Path) -> None:
    trace = load_lines("mlflow_traces.jsonl")[0]
    del trace["data"]
    (run,) = read_file(write(tmp_path / "trace.json", trace))

    assert (run.inputs, run.outputs, run.at) == (
        {"question": "How long is the warranty?"},
        {"answer": "Two years from purchase."},
        "the document",
    )


def test_an_mlflow_assessment_without_source_type_is_refused_naming_it(tmp_path: Path) -> None:
    traces = load_lines("mlflow_traces.jsonl")
    del traces[1]["info"]["assessments"][1]["source"]
    path = write(tmp_path / "traces.jsonl", traces, lines=True)

    assert error_of(path) == (
        f'{path}:2: info.assessments[1]: the assessment has no "source.source_type" (HUMAN, LLM_JUDGE or CODE){FIX}'
    )


# ---- OpenTelemetry ------------------------------------------------------------------------------------------


def test_otel_genai_spans_become_runs_and_evaluation_events_metadata(store: Store) -> None:
    evaluators.create(store, "relevance", BINARY)

    report = ingest.import_runs(store, "otel", path=DATA / "otel_genai.json", kind="project")

    # The HTTP server span carries no gen_ai content and is not a run.
    assert (report.inserted, report.labels) == (2, 0)
    first = stored(store, "eee19b7ec3c1b173")
    assert first["inputs"] == {
        "messages": [{"role": "user", "parts": [{"type": "text", "content": "What's the weather in Paris?"}]}]
    }
    assert first["outputs"] == {
        "messages": [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": "It is rainy and 14°C in Paris."}],
                "finish_reason": "stop",
            }
        ]
    }
    assert first["metadata"] == {
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b173",
        "parent_span_id": "eee19b7ec3c1b174",
        "name": "chat gpt-4o",
        "service_name": "support-bot",
        "start_time_unix_nano": "1746600000000000000",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 24,
        "gen_ai.usage.output_tokens": 12,
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.request.temperature": 0.2,
    }
    assert stored(store, "eee19b7ec3c1b175")["metadata"]["scores"] == {
        "relevance": {
            "value": "relevant",
            "source": "gen_ai.evaluation.result",
            "comment": "Answers the follow-up.",
            "score": 0.8,
        }
    }


def test_otel_older_conventions_indexed_attributes_and_content_events_are_read() -> None:
    indexed, events = read_file(DATA / "otel_legacy.jsonl")

    assert (indexed.id, indexed.at, indexed.inputs, indexed.outputs) == (
        "b7ad6b7169203331",
        "line 1, resourceSpans[0].scopeSpans[0].spans[0]",
        {
            "messages": [
                {"role": "system", "content": "You answer FAQ questions."},
                {"role": "user", "content": "Do you ship abroad?"},
            ]
        },
        {"messages": [{"role": "assistant", "content": "Yes, to 40 countries.", "finish_reason": "stop"}]},
    )
    assert (events.inputs, events.outputs) == (
        {"prompt": "user: What are your opening hours?"},
        {"completion": "9am to 5pm, Monday to Friday."},
    )


def test_an_otel_attribute_without_key_is_refused_naming_its_json_path(tmp_path: Path) -> None:
    export = load("otel_genai.json")
    export["resourceSpans"][0]["scopeSpans"][0]["spans"][2]["attributes"][1] = {
        "value": {"stringValue": "openai"}
    }
    path = write(tmp_path / "spans.json", export)

    assert error_of(path) == (
        f"{path}: resourceSpans[0].scopeSpans[0].spans[2].attributes[1]: an attribute must be an object with a "
        f'non-empty "key" and a "value"{FIX}'
    )


def test_a_bad_otel_value_in_json_lines_names_the_line_and_the_path(tmp_path: Path) -> None:
    requests = load_lines("otel_legacy.jsonl")
    requests[1]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"][1]["value"] = {
        "intValue": "seven"
    }
    path = write(tmp_path / "spans.jsonl", requests, lines=True)

    assert error_of(path) == (
        f"{path}:2: resourceSpans[0].scopeSpans[0].spans[0].attributes[1]: intValue 'seven' is not an integer{FIX}"
    )


def test_otel_export_without_genai_content_says_how_to_capture_it(tmp_path: Path) -> None:
    export = load("otel_genai.json")
    spans = export["resourceSpans"][0]["scopeSpans"][0]["spans"]
    del spans[1:]
    path = write(tmp_path / "spans.json", export)

    assert error_of(path) == (
        f"{path}: no span carries gen_ai input or output content (gen_ai.input.messages / gen_ai.output.messages, "
        "gen_ai.prompt / gen_ai.completion, or their events); turn on content capture in the instrumentation "
        "(e.g. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true) and export again. Nothing was stored."
    )


# ---- limits and safety, shared with JSONL ------------------------------------------------------------------


def test_a_json_string_attribute_nesting_too_deep_is_refused(tmp_path: Path) -> None:
    export = load("otel_genai.json")
    attributes = export["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["attributes"]
    attributes[8]["value"]["stringValue"] = "[" * 70 + "]" * 70
    path = write(tmp_path / "spans.json", export)

    assert error_of(path) == (
        f"{path}: resourceSpans[0].scopeSpans[0].spans[1]: the record nests objects and arrays more than 64 levels "
        "deep (at inputs.messages.0.0.0.0… (64 levels)); at most 64 levels are accepted, so flatten the record or "
        f"store the deep part as a string{FIX}"
    )


def test_a_lone_surrogate_in_a_platform_record_is_refused(tmp_path: Path) -> None:
    lines = (DATA / "opik_traces.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "traces.jsonl"
    path.write_text(lines[0] + "\n" + lines[1].replace("on-prem", "on-prem\\ud800") + "\n", encoding="utf-8")

    assert error_of(path) == (
        f"{path}:2: the string at inputs.messages.0.content holds a lone surrogate (\\ud800), which is not a Unicode "
        "character and cannot be stored as UTF-8; write the character itself (or both halves of its surrogate "
        f"pair), or drop it{FIX}"
    )


def test_a_truncated_document_names_the_line_where_it_breaks(tmp_path: Path) -> None:
    text = (DATA / "phoenix_experiment.json").read_text(encoding="utf-8")
    path = tmp_path / "experiment.json"
    path.write_text(text[: len(text) // 2], encoding="utf-8")

    assert error_of(path) == (
        f"{path}:40: invalid JSON (Expecting property name enclosed in double quotes at column 3). Fix that line "
        "and import again; nothing from this file was stored."
    )


def test_a_named_pipe_is_refused_for_a_platform_format(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "spans.json"
    os.mkfifo(fifo)

    assert error_of(fifo, "otel") == (
        f"{fifo} is a named pipe (FIFO), not a regular file; runs are imported from regular files only. Save the "
        "runs to a .jsonl or .csv file and import that."
    )


def test_the_same_span_id_with_other_content_is_refused_and_nothing_stored(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    export = load("otel_genai.json")
    spans = export["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[2]["spanId"] = spans[1]["spanId"]
    path = write(tmp_path / "spans.json", export)
    before = snapshot(db_path)

    with pytest.raises(ImportFormatError) as e:
        ingest.import_runs(store, "otel", path=path)

    assert str(e.value) == (
        f"{path}: resourceSpans[0].scopeSpans[0].spans[2]: id 'eee19b7ec3c1b173' is already used by an earlier "
        "record with different content; give each run its own id (or drop one of the two records). Fix that "
        "record and import again; nothing from this import was stored."
    )
    assert snapshot(db_path) == before


def test_a_bad_record_after_good_ones_stores_nothing(store: Store, db_path: Path, tmp_path: Path) -> None:
    evaluators.create(store, "correctness", BINARY)
    traces = load_lines("mlflow_traces.jsonl")
    broken = copy.deepcopy(traces[1])
    broken["info"]["trace_id"] = ""
    path = write(tmp_path / "traces.jsonl", [*traces, broken], lines=True)
    before = snapshot(db_path)

    with pytest.raises(ImportFormatError) as e:
        ingest.import_runs(store, "mlflow", path=path)

    assert str(e.value) == (
        f"{path}:3: info.trace_id is empty; every record needs its id to be imported{FIX}"
    )
    assert snapshot(db_path) == before


def test_reimporting_an_export_skips_the_stored_runs(store: Store) -> None:
    ingest.import_runs(store, "opik", path=DATA / "opik_traces.jsonl")
    again = ingest.import_runs(store, "opik", path=DATA / "opik_traces.jsonl")

    assert (again.inserted, again.skipped) == (0, 2)


# ---- the format override ------------------------------------------------------------------------------------


def test_a_wrong_format_names_the_one_the_file_looks_like(tmp_path: Path) -> None:
    path = DATA / "langfuse_traces.json"

    assert error_of(path, "mlflow") == (
        f'{path}: data[0]: not an MLflow trace (an "info" object with a trace_id); it looks like a Langfuse trace '
        f"or observation: import it with format 'langfuse', or with no format to detect it{FIX}"
    )
    assert error_of(DATA / "opik_traces.jsonl", "otel") == (
        f'{DATA / "opik_traces.jsonl"}:1: not an OTLP JSON trace export (a "resourceSpans" array); it looks like '
        f"an Opik trace or span: import it with format 'opik', or with no format to detect it{FIX}"
    )


def test_a_format_override_reads_a_file_detection_would_not(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"  # no extension detection could use, and it starts with "["
    path.write_text((DATA / "phoenix_experiment.json").read_text(encoding="utf-8"), encoding="utf-8")

    assert [run.id for run in read_file(path, "phoenix")] == [
        "5f1c0e9a2b7d4c31a0e1f2d3c4b5a697",
        "0c2d4e6f8a1b3c5d7e9f0a2b4c6d8e0f",
    ]


def test_jsonl_override_reads_a_platform_file_as_plain_records() -> None:
    first = next(read_file(DATA / "opik_traces.jsonl", "jsonl"))

    assert first.feedback == () and first.inputs == {
        "input": {"messages": [{"role": "user", "content": "What are the main features of Opik?"}]}
    }


def test_cli_import_detects_the_platform_and_refuses_a_wrong_format(db_path: Path) -> None:
    runner = CliRunner()
    path = str(DATA / "otel_genai.json")

    done = runner.invoke(
        main, ["--db", str(db_path), "import", path, "--source", "otel"], catch_exceptions=False
    )
    wrong = runner.invoke(
        main,
        ["--db", str(db_path), "import", path, "--source", "otel2", "--format", "langfuse"],
        catch_exceptions=False,
    )

    assert (done.exit_code, done.stdout) == (
        0,
        "Imported 2 new run(s) into 'otel' (experiment); 0 already stored.\n",
    )
    assert (wrong.exit_code, wrong.stdout, wrong.stderr) == (
        1,
        "",
        f"Error: {path}: not a Langfuse trace or observation; it looks like an OTLP JSON trace export (a "
        f"\"resourceSpans\" array): import it with format 'otel', or with no format to detect it{FIX}\n",
    )


@pytest.mark.anyio
async def test_mcp_import_runs_takes_a_platform_format(client: Client) -> None:
    result = await client.call_tool(
        "import_runs", {"source": "mlflow", "path": str(DATA / "mlflow_traces.jsonl"), "format": "mlflow"}
    )

    assert not result.is_error
    assert result.structured_content is not None
    assert (result.structured_content["inserted"], result.structured_content["feedback"]) == (
        2,
        [{"key": "correctness", "count": 2, "evaluators": []}],
    )


def test_a_human_score_that_does_not_fit_the_evaluator_names_the_run_and_stores_nothing(
    store: Store, db_path: Path
) -> None:
    evaluators.create(store, "helpfulness", BINARY)  # the Opik UI scores are categories: helpful / unhelpful
    before = snapshot(db_path)

    with pytest.raises(ImportFormatError) as e:
        ingest.import_runs(store, "opik", path=DATA / "opik_traces.jsonl")

    assert str(e.value) == (
        "run '0196a1b2-0001-7000-8000-000000000001': feedback for evaluator 'helpfulness': Score 'helpful' is not "
        "valid for a binary evaluator; use 1 (pass) or 0 (fail). Nothing from this import was stored."
    )
    assert snapshot(db_path) == before


def test_otel_attribute_values_nesting_too_deep_are_refused(tmp_path: Path) -> None:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(70):
        value = {"arrayValue": {"values": [value]}}
    export = load("otel_genai.json")
    export["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["attributes"][0]["value"] = value
    path = write(tmp_path / "spans.json", export)

    assert error_of(path) == (
        f"{path}: resourceSpans[0].scopeSpans[0].spans[1].attributes[0]: an attribute value nests arrays and "
        f"key/value lists more than 64 levels deep; at most 64 levels are accepted{FIX}"
    )
