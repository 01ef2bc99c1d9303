"""One judge call (judge.py): prompt templates, the request actually sent, endpoint resolution, and every way a
judge can answer, against the fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from align_mcp.core.models import JudgeSettings, ScoreType
from align_mcp.core.templates import default_prompt, render, template_variables, validate_template
from align_mcp.errors import InvalidInput, JudgeConfigError, JudgeUnreachable
from align_mcp.llm.endpoint import Endpoint, resolve_endpoint
from align_mcp.llm.judge import (
    SYSTEM_PROMPT,
    SYSTEM_PROMPT_NO_REASONING,
    Verdict,
    build_messages,
    open_judge,
    response_schema,
)
from align_mcp.testing.fakejudge import (
    FakeJudgeServer,
    Reply,
    garbage,
    hang,
    rate_limited,
    section,
    server_error,
    verdict,
    wrong_shape,
)

pytestmark = pytest.mark.anyio

BINARY = ScoreType(kind="binary")
CATEGORICAL = ScoreType(kind="categorical", labels=["good", "ok", "bad"])
ORDINAL = ScoreType(kind="ordinal", min=1, max=5)
MODEL = "judge-model"

RUN: dict[str, Any] = {
    "id": "r1",
    "inputs": {"question": "When do you open on Saturdays?", "tags": ["hours", "weekend"]},
    "outputs": {"answer": "We open at 9:00 on Saturdays."},
    "reference_outputs": None,
    "metadata": {"channel": "email", "turns": 3},
}
OTHER_RUN: dict[str, Any] = {
    "id": "r2",
    "inputs": {"question": "Can I rent a tandem?"},
    "outputs": {"answer": "Yes, tandems cost €40 a day."},
    "reference_outputs": {"answer": "Tandems are €40 per day."},
    "metadata": {},
}

# The instructions of prompts/binary.md that decide verdicts, written out here so that dropping one from the
# shipped prompt fails this file (whitespace is normalized: the prompt wraps its lines).
BINARY_INSTRUCTIONS = [
    "You are an expert evaluator grading the output of an AI application for **correctness**.",
    "Read the input the application received, the output it produced and, when given, a reference output "
    "written by a human expert.",
    "Decide whether the output passes.",
    "Score 1 (pass) when the output is correct, answers what was asked, and contains nothing that contradicts "
    "the reference output.",
    "Score 0 (fail) when the output is wrong, incomplete in a way that matters, or contradicts the reference "
    "output.",
    "Think step by step about the specific claims in the output before deciding.",
    "Give your reasoning first, then the score.",
]


def flat(text: str) -> str:
    return " ".join(text.split())


def endpoint_for(srv: FakeJudgeServer, key: str = "sk-test") -> Endpoint:
    return Endpoint(base_url=srv.base_url, api_key=key, model=MODEL)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def judge_once(
    endpoint: Endpoint,
    settings: JudgeSettings | None = None,
    score_type: ScoreType = BINARY,
    run: dict[str, Any] = RUN,
) -> Verdict:
    settings = settings or JudgeSettings(max_retries=0)
    template = default_prompt(score_type, "correctness")
    async with open_judge(endpoint, settings, score_type) as judge:
        return await judge.judge_example(build_messages(template, run, settings.reasoning))


@pytest.fixture
def srv() -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer() as server:
        yield server


# ---- templates ---------------------------------------------------------------------------------------------


def test_whole_objects_render_as_indented_json_and_strings_verbatim() -> None:
    text = render("Q: {{inputs.question}}\nA: {{ outputs }}\nTurns: {{metadata.turns}}", RUN)
    assert text == (
        'Q: When do you open on Saturdays?\nA: {\n  "answer": "We open at 9:00 on Saturdays."\n}\nTurns: 3'
    )


def test_dotted_paths_index_into_lists() -> None:
    assert render("{{inputs.tags.0}} / {{inputs.tags.1}}", RUN) == "hours / weekend"


def test_missing_paths_render_as_missing_and_none_as_none() -> None:
    text = render(
        "{{inputs.nope}}|{{inputs.tags.7}}|{{inputs.question.x}}|{{reference_outputs}}|{{reference_outputs.answer}}",
        RUN,
    )
    assert text == "(missing)|(missing)|(missing)|(none)|(missing)"


def test_unknown_template_variables_are_rejected_by_name() -> None:
    with pytest.raises(InvalidInput) as e:
        validate_template("Judge {{outputs}} against {{expected}} for {{input.question}}.")
    assert str(e.value) == (
        "Unknown template variable(s): {{expected}}, {{input.question}}. Use {{inputs}}, {{outputs}}, "
        "{{reference_outputs}}, {{metadata}} or dotted paths such as {{inputs.question}}."
    )


def test_a_template_without_the_output_is_rejected() -> None:
    with pytest.raises(InvalidInput) as e:
        validate_template("Is {{inputs.question}} a good question?")
    assert str(e.value) == (
        "The prompt never shows the output being judged: add {{outputs}} (or a path such as "
        "{{outputs.answer}}) to the template."
    )


def test_an_empty_template_is_rejected() -> None:
    with pytest.raises(InvalidInput) as e:
        validate_template(" \n\t")
    assert str(e.value) == "The prompt is empty. Write grading instructions that include {{outputs}}."


def test_a_dotted_output_path_is_enough_for_a_valid_template() -> None:
    validate_template("Grade {{outputs.answer}} against {{reference_outputs.answer}}.")


def test_default_binary_prompt_names_the_feedback_key_and_leaves_only_example_variables() -> None:
    text = default_prompt(BINARY, "correctness")
    for sentence in BINARY_INSTRUCTIONS:
        assert sentence in flat(text)
    assert template_variables(text) == ["inputs", "outputs", "reference_outputs"]
    validate_template(text)


def test_default_categorical_prompt_lists_the_labels() -> None:
    text = default_prompt(CATEGORICAL, "tone")
    assert "classifying the output of an AI application for **tone**" in flat(text)
    assert "\nLabels: good, ok, bad\n" in text
    assert template_variables(text) == ["inputs", "outputs", "reference_outputs"]


def test_default_ordinal_prompt_states_the_range() -> None:
    text = flat(default_prompt(ORDINAL, "helpfulness"))
    assert (
        "rating the output of an AI application for **helpfulness** on a scale from 1 (worst) to 5 (best)."
        in text
    )
    assert "- 5: fully correct and complete; nothing contradicts the reference output." in text
    assert "- 1: wrong, irrelevant, or contradicts the reference output." in text
    assert template_variables(default_prompt(ORDINAL, "helpfulness")) == [
        "inputs",
        "outputs",
        "reference_outputs",
    ]


# ---- the response schema -----------------------------------------------------------------------------------


def test_binary_schema_is_strict_json_schema_with_reasoning_first() -> None:
    assert response_schema(BINARY, reasoning=True) == {
        "type": "json_schema",
        "json_schema": {
            "name": "judgement",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "reasoning": {"type": "string", "description": "Why, grounded in the example"},
                    "score": {
                        "type": "integer",
                        "enum": [0, 1],
                        "description": "binary (0 = fail, 1 = pass)",
                    },
                },
                "required": ["reasoning", "score"],
                "additionalProperties": False,
            },
        },
    }
    properties = response_schema(BINARY, reasoning=True)["json_schema"]["schema"]["properties"]
    assert list(properties) == ["reasoning", "score"]


@pytest.mark.parametrize(
    ("score_type", "score"),
    [
        (BINARY, {"type": "integer", "enum": [0, 1], "description": "binary (0 = fail, 1 = pass)"}),
        (
            CATEGORICAL,
            {"type": "string", "enum": ["good", "ok", "bad"], "description": "categorical (good, ok, bad)"},
        ),
        (ORDINAL, {"type": "integer", "enum": [1, 2, 3, 4, 5], "description": "ordinal (1..5)"}),
    ],
)
def test_score_property_follows_the_score_type(score_type: ScoreType, score: dict[str, Any]) -> None:
    schema = response_schema(score_type, reasoning=True)["json_schema"]["schema"]
    assert schema["properties"]["score"] == score
    assert schema["required"] == ["reasoning", "score"]


def test_schema_without_reasoning_holds_only_the_score() -> None:
    schema = response_schema(ORDINAL, reasoning=False)["json_schema"]["schema"]
    assert list(schema["properties"]) == ["score"]
    assert schema["required"] == ["score"]


# ---- the request actually sent -----------------------------------------------------------------------------


async def test_request_carries_the_rendered_template_with_instructions_first_and_the_example_last(
    srv: FakeJudgeServer,
) -> None:
    result = await judge_once(endpoint_for(srv))
    assert (result.score, result.error) == (1, None)
    [body] = srv.chat_bodies
    assert body["model"] == MODEL
    assert body["temperature"] == 0
    assert "max_completion_tokens" not in body
    assert body["response_format"] == response_schema(BINARY, reasoning=True)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    system, user = body["messages"]
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    assert user["role"] == "user"
    content = user["content"]
    assert content == render(default_prompt(BINARY, "correctness"), RUN)
    for sentence in BINARY_INSTRUCTIONS:
        assert sentence in flat(content)
    assert flat(content).index(BINARY_INSTRUCTIONS[-1]) < flat(content).index("<inputs>")
    assert json.loads(section(content, "inputs") or "") == RUN["inputs"]
    assert json.loads(section(content, "outputs") or "") == RUN["outputs"]
    assert section(content, "reference_outputs") == "(none)"
    assert content.rstrip().endswith("</reference_outputs>")


async def test_every_example_shares_the_same_static_prefix(srv: FakeJudgeServer) -> None:
    await judge_once(endpoint_for(srv), run=RUN)
    await judge_once(endpoint_for(srv), run=OTHER_RUN)
    first, second = srv.chat_bodies
    assert first["messages"][0] == second["messages"][0]
    assert first["response_format"] == second["response_format"]
    a, b = first["messages"][1]["content"], second["messages"][1]["content"]
    instructions = default_prompt(BINARY, "correctness").split("{{inputs}}")[0]
    assert instructions.rstrip().endswith("<inputs>")
    assert a.startswith(instructions) and b.startswith(instructions)
    assert a[len(instructions) :] != b[len(instructions) :]


async def test_sampling_settings_are_sent_as_configured(srv: FakeJudgeServer) -> None:
    await judge_once(endpoint_for(srv), JudgeSettings(temperature=0.7, max_tokens=300, max_retries=0))
    [body] = srv.chat_bodies
    assert body["temperature"] == 0.7
    assert body["max_completion_tokens"] == 300


async def test_without_reasoning_the_judge_is_asked_for_the_score_only(srv: FakeJudgeServer) -> None:
    result = await judge_once(endpoint_for(srv), JudgeSettings(reasoning=False, max_retries=0), ORDINAL)
    [body] = srv.chat_bodies
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT_NO_REASONING}
    assert body["response_format"] == response_schema(ORDINAL, reasoning=False)
    assert (result.score, result.reasoning, result.error) == (1, None, None)


# ---- endpoint resolution -----------------------------------------------------------------------------------


def test_no_model_names_ALIGN_MCP_JUDGE_MODEL(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(JudgeConfigError) as e:
        resolve_endpoint(JudgeSettings())
    assert str(e.value) == (
        "No judge model is configured. Set ALIGN_MCP_JUDGE_MODEL (e.g. gpt-4.1-mini, or the model name your "
        "Ollama/vLLM server serves) or give the evaluator a model."
    )


def test_default_openai_url_without_a_key_names_OPENAI_API_KEY(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", MODEL)
    with pytest.raises(JudgeConfigError) as e:
        resolve_endpoint(JudgeSettings())
    assert str(e.value) == (
        "No API key for the judge at https://api.openai.com/v1. Set OPENAI_API_KEY (or ALIGN_MCP_JUDGE_API_KEY), "
        "or point ALIGN_MCP_JUDGE_BASE_URL / OPENAI_BASE_URL at an OpenAI-compatible server such as Ollama "
        "(http://localhost:11434/v1)."
    )


def test_an_unset_evaluator_key_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", MODEL)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(JudgeConfigError) as e:
        resolve_endpoint(JudgeSettings(api_key_env="TEAM_JUDGE_API_KEY"))
    assert str(e.value) == (
        "The evaluator reads its judge API key from TEAM_JUDGE_API_KEY, which is not set. Set TEAM_JUDGE_API_KEY, "
        "or clear the evaluator's api_key_env."
    )


def test_a_key_variable_not_named_like_an_api_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", MODEL)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret")
    with pytest.raises(JudgeConfigError) as e:
        resolve_endpoint(JudgeSettings(api_key_env="AWS_SECRET_ACCESS_KEY"))
    assert str(e.value) == (
        "api_key_env='AWS_SECRET_ACCESS_KEY' is not allowed: name a variable ending in _API_KEY (e.g. "
        "AZURE_OPENAI_API_KEY), so no other secret can be sent to a judge endpoint."
    )


def test_the_environment_key_is_never_sent_to_an_evaluator_own_base_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", MODEL)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-secret")
    elsewhere = resolve_endpoint(JudgeSettings(base_url="http://attacker.example/v1"))
    same = resolve_endpoint(JudgeSettings(base_url="http://127.0.0.1:9/v1/"))
    assert elsewhere.api_key == "not-needed"
    assert same.api_key == "sk-env-secret"


async def test_a_custom_base_url_needs_no_key(monkeypatch: pytest.MonkeyPatch, srv: FakeJudgeServer) -> None:
    monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", MODEL)
    monkeypatch.setenv("ALIGN_MCP_JUDGE_BASE_URL", srv.base_url)
    endpoint = resolve_endpoint(JudgeSettings())
    assert (endpoint.base_url, endpoint.model) == (srv.base_url, MODEL)
    result = await judge_once(endpoint)
    assert (result.score, result.error) == (1, None)
    assert srv.requests[0].headers["authorization"] == "Bearer not-needed"


async def test_the_evaluator_key_variable_wins_and_is_sent(
    monkeypatch: pytest.MonkeyPatch, srv: FakeJudgeServer
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("ALIGN_MCP_JUDGE_API_KEY", "sk-align")
    monkeypatch.setenv("TEAM_JUDGE_API_KEY", "sk-team")
    endpoint = resolve_endpoint(
        JudgeSettings(model="evaluator-model", base_url=srv.base_url, api_key_env="TEAM_JUDGE_API_KEY")
    )
    assert (endpoint.base_url, endpoint.model, endpoint.api_key) == (
        srv.base_url,
        "evaluator-model",
        "sk-team",
    )
    await judge_once(endpoint)
    assert srv.requests[0].headers["authorization"] == "Bearer sk-team"
    assert srv.chat_bodies[0]["model"] == "evaluator-model"


def test_align_mcp_variables_take_precedence_over_openai_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", MODEL)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("ALIGN_MCP_JUDGE_BASE_URL", "http://127.0.0.1:10/v1")
    monkeypatch.setenv("ALIGN_MCP_JUDGE_API_KEY", "sk-align")
    endpoint = resolve_endpoint(JudgeSettings())
    assert (endpoint.base_url, endpoint.api_key) == ("http://127.0.0.1:10/v1", "sk-align")


def test_the_key_never_appears_in_the_endpoint_repr() -> None:
    endpoint = Endpoint(base_url="https://api.openai.com/v1", api_key="sk-secret-123", model=MODEL)
    for shown in (repr(endpoint), str(endpoint), f"{endpoint}", repr([endpoint])):
        assert "sk-secret-123" not in shown
    assert repr(endpoint) == "Endpoint(base_url='https://api.openai.com/v1', model='judge-model')"


# ---- how the judge answers ---------------------------------------------------------------------------------


async def test_rate_limits_wait_as_long_as_retry_after_says(srv: FakeJudgeServer) -> None:
    # Without the header the backoff would wait 0.25-0.5 s, then 0.5-1 s: the second gap tells them apart.
    srv.push(rate_limited(0.3), rate_limited(0.2), verdict(0))
    result = await judge_once(endpoint_for(srv), JudgeSettings(max_retries=2))
    assert (result.score, result.error, result.calls) == (0, None, 3)
    first, second, third = (r.received_at for r in srv.requests)
    assert 0.3 <= second - first < 1.0
    assert 0.2 <= third - second < 0.45


async def test_a_server_error_is_retried_then_succeeds(srv: FakeJudgeServer) -> None:
    srv.push(server_error(500), verdict(0, "The answer names the wrong day."))
    result = await judge_once(endpoint_for(srv), JudgeSettings(max_retries=2))
    assert (result.score, result.reasoning, result.error) == (0, "The answer names the wrong day.", None)
    assert result.calls == srv.calls == 2


async def test_a_persistent_server_error_becomes_an_error_naming_status_and_attempts(
    srv: FakeJudgeServer,
) -> None:
    srv.push(server_error(500), server_error(500), verdict(1))
    result = await judge_once(endpoint_for(srv), JudgeSettings(max_retries=1))
    assert (result.score, result.reasoning) == (None, None)
    assert result.error == "HTTP 500 from the judge (after 2 attempts)"
    assert result.calls == srv.calls == 2


async def test_a_hung_judge_times_out_as_an_error(srv: FakeJudgeServer) -> None:
    srv.push(hang(3))
    started = time.perf_counter()
    result = await judge_once(endpoint_for(srv), JudgeSettings(timeout=0.2, max_retries=0))
    assert time.perf_counter() - started < 1.5
    assert result.score is None
    assert result.error == "timed out after 0.2s (after 1 attempt)"


async def test_a_timeout_is_retried(srv: FakeJudgeServer) -> None:
    srv.push(hang(3), verdict(1))
    result = await judge_once(endpoint_for(srv), JudgeSettings(timeout=0.2, max_retries=1))
    assert (result.score, result.error, result.calls) == (1, None, 2)


async def test_an_unparseable_reply_is_asked_again_once_and_then_accepted(srv: FakeJudgeServer) -> None:
    srv.push(garbage("definitely not json"), verdict(0, "Wrong day."))
    result = await judge_once(endpoint_for(srv))
    assert (result.score, result.reasoning, result.error, result.calls) == (0, "Wrong day.", None, 2)
    first, again = srv.chat_bodies
    assert again["messages"][:2] == first["messages"]
    assert again["messages"][2:] == [
        {"role": "assistant", "content": "definitely not json"},
        {
            "role": "user",
            "content": "That reply was invalid (reply is not JSON: 'definitely not json'). Reply again with only "
            "the JSON object that matches the schema.",
        },
    ]
    assert again["response_format"] == first["response_format"]


async def test_an_unparseable_reply_twice_is_recorded_as_error(srv: FakeJudgeServer) -> None:
    srv.push(garbage(), garbage(), garbage(), verdict(1))
    result = await judge_once(endpoint_for(srv))
    assert (result.score, result.reasoning) == (None, None)
    assert result.error == "unparseable reply after a re-ask: reply is not JSON: 'not json at all'"
    assert result.calls == srv.calls == 2


async def test_a_reply_without_a_score_is_recorded_as_error(srv: FakeJudgeServer) -> None:
    srv.push(wrong_shape(), wrong_shape())
    result = await judge_once(endpoint_for(srv))
    assert result.score is None
    assert result.error == (
        "unparseable reply after a re-ask: reply has no `score` field: "
        """'{"reasoning": "The output looks fine.", "verdict": "pass"}'"""
    )
    assert srv.calls == 2


@pytest.mark.parametrize(
    ("score_type", "bad", "described"),
    [
        (BINARY, 7, "7 is outside the score type (binary (0 = fail, 1 = pass))"),
        (CATEGORICAL, "great", "'great' is outside the score type (categorical (good, ok, bad))"),
        (ORDINAL, 6, "6 is outside the score type (ordinal (1..5))"),
    ],
)
async def test_a_score_outside_the_score_type_is_recorded_as_error(
    srv: FakeJudgeServer, score_type: ScoreType, bad: object, described: str
) -> None:
    srv.push(verdict(bad), verdict(bad))
    result = await judge_once(endpoint_for(srv), score_type=score_type)
    assert result.score is None
    assert result.error == f"unparseable reply after a re-ask: score {described}"
    assert srv.calls == 2


async def test_a_score_outside_the_type_then_a_valid_one_is_accepted(srv: FakeJudgeServer) -> None:
    srv.push(verdict("great"), verdict("ok"))
    result = await judge_once(endpoint_for(srv), score_type=CATEGORICAL)
    assert (result.score, result.error, result.calls) == ("ok", None, 2)


async def test_a_closed_port_raises_judge_unreachable_naming_the_url() -> None:
    url = closed_port_url()
    with pytest.raises(JudgeUnreachable) as e:
        await judge_once(Endpoint(base_url=url, api_key="sk-test", model=MODEL))
    message = str(e.value)
    assert message.startswith(f"Cannot reach the judge at {url}: ")
    assert message.endswith("Check that the server is running and the base URL is right.")


async def test_a_rejected_key_raises_judge_config_error_without_retrying(srv: FakeJudgeServer) -> None:
    srv.push(Reply(status=401), verdict(1))
    with pytest.raises(JudgeConfigError) as e:
        await judge_once(endpoint_for(srv, key="sk-wrong"), JudgeSettings(max_retries=3))
    assert str(e.value) == (
        f"The judge at {srv.base_url} rejected the API key (401). Check OPENAI_API_KEY / "
        "ALIGN_MCP_JUDGE_API_KEY."
    )
    assert srv.calls == 1


async def test_an_unknown_model_raises_judge_config_error(srv: FakeJudgeServer) -> None:
    srv.push(Reply(status=404))
    with pytest.raises(JudgeConfigError) as e:
        await judge_once(endpoint_for(srv))
    assert str(e.value) == (
        f"The judge at {srv.base_url} answered 404 for model 'judge-model'. Check the model name "
        "(ALIGN_MCP_JUDGE_MODEL) and the base URL (it usually ends in /v1)."
    )


async def test_token_usage_is_recorded_and_summed_over_a_re_ask(srv: FakeJudgeServer) -> None:
    srv.push(Reply(prompt_tokens=120, completion_tokens=15))
    once = await judge_once(endpoint_for(srv))
    assert (once.prompt_tokens, once.completion_tokens, once.cached_tokens) == (120, 15, 0)
    srv.push(
        Reply(content="nope", prompt_tokens=100, completion_tokens=2),
        Reply(score=0, prompt_tokens=130, completion_tokens=20),
    )
    twice = await judge_once(endpoint_for(srv))
    assert (twice.score, twice.prompt_tokens, twice.completion_tokens) == (0, 230, 22)
    assert twice.latency_ms is not None and twice.latency_ms > 0
