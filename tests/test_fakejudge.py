"""The fake OpenAI-compatible judge server, driven by the real openai client and http.client, and the simulated
judge over the PedalPoint sample runs."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import openai
import pytest
from openai.types.chat import ChatCompletion

from align_mcp.testing.fakejudge import (
    FakeJudgeServer,
    Reply,
    garbage,
    hang,
    numbers,
    prompt_text,
    rate_limited,
    reset,
    section,
    server_error,
    simulated_responder,
    verdict,
    wrong_shape,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
RUNS = [
    json.loads(line) for line in (ROOT / "examples" / "support_runs.jsonl").read_text().splitlines() if line
]
BINARY_TEMPLATE = (ROOT / "prompts" / "binary.md").read_text().replace("{{feedback_key}}", "correctness")

# The two sentences the demo adds to the draft; the lead's demo uses them verbatim.
NUMBERS_INSTRUCTION = (
    "Every number in the output (prices, fees, durations, times, quantities) must match the reference output "
    "exactly; a wrong number makes the output incorrect."
)
HANDOFF_INSTRUCTION = (
    "If the question is out of scope (legal, medical or financial advice, or unrelated to bike rental), politely "
    "declining and pointing the customer elsewhere is the correct answer: pass it when the reference output also "
    "declines."
)

JUDGEMENT_FORMAT: Any = {
    "type": "json_schema",
    "json_schema": {
        "name": "judgement",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"reasoning": {"type": "string"}, "score": {"type": "integer", "enum": [0, 1]}},
            "required": ["reasoning", "score"],
            "additionalProperties": False,
        },
    },
}
MESSAGES: list[Any] = [
    {"role": "system", "content": "You are a careful evaluator. Answer with JSON only."},
    {"role": "user", "content": "Grade this output."},
]


def client_for(srv: FakeJudgeServer, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0, **options)


async def judge(client: openai.AsyncOpenAI) -> ChatCompletion:
    return await client.chat.completions.create(
        model="judge-model", messages=MESSAGES, temperature=0, response_format=JUDGEMENT_FORMAT
    )


def render(template: str, run: dict[str, Any]) -> str:
    for key in ("inputs", "outputs", "reference_outputs"):
        template = template.replace("{{" + key + "}}", json.dumps(run[key], indent=2))
    return template


def judge_body(prompt: str) -> dict[str, Any]:
    return {
        "model": "judge-model",
        "messages": [
            {"role": "system", "content": "You are a careful evaluator. Answer with JSON only."},
            {"role": "user", "content": prompt},
        ],
        "temperature": 0,
        "response_format": JUDGEMENT_FORMAT,
    }


def improved_template(*sentences: str) -> str:
    anchor = "  reference output.\n- Score 0"
    assert anchor in BINARY_TEMPLATE
    bullets = "".join(f"- {s}\n" for s in sentences)
    return BINARY_TEMPLATE.replace(anchor, "  reference output.\n" + bullets + "- Score 0")


def judge_all(template: str) -> list[Reply]:
    return [simulated_responder(judge_body(render(template, run))) for run in RUNS]


def agreement(replies: list[Reply]) -> float:
    agreed: int = sum(
        r.score == run["feedback"]["correctness"]["score"] for r, run in zip(replies, RUNS, strict=True)
    )
    return agreed / len(RUNS)


# --- the server, through the openai client --------------------------------------------------------------------


async def test_verdict_round_trips_through_the_openai_client() -> None:
    with FakeJudgeServer([verdict(0, "The price is wrong.")]) as srv:
        async with client_for(srv) as client:
            completion = await judge(client)
    assert completion.model == "judge-model"
    assert completion.choices[0].finish_reason == "stop"
    content = completion.choices[0].message.content
    assert content is not None
    assert json.loads(content) == {"reasoning": "The price is wrong.", "score": 0}
    assert list(json.loads(content)) == ["reasoning", "score"]
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == len(prompt_text({"messages": MESSAGES})) // 4
    assert usage.completion_tokens == len(content) // 4
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
    assert srv.calls == 1


async def test_requests_are_recorded_with_path_headers_and_body() -> None:
    with FakeJudgeServer() as srv:
        async with client_for(srv) as client:
            before = time.monotonic()
            await judge(client)
    [request] = srv.requests
    assert request.path == "/v1/chat/completions"
    assert request.method == "POST"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["model"] == "judge-model"
    assert request.body["messages"] == MESSAGES
    assert request.body["response_format"] == JUDGEMENT_FORMAT
    assert request.received_at >= before
    assert srv.chat_bodies == [request.body]


async def test_script_is_consumed_in_order_then_responder_then_default_pass() -> None:
    with FakeJudgeServer([verdict(0, "first"), verdict(1, "second")]) as srv:
        async with client_for(srv) as client:
            scores = []
            for _ in range(2):
                content = (await judge(client)).choices[0].message.content
                scores.append(json.loads(content or ""))
            srv.responder = lambda body: verdict(0, f"responder saw {body['model']}")
            scores.append(json.loads((await judge(client)).choices[0].message.content or ""))
            srv.push(verdict(1, "pushed"))
            scores.append(json.loads((await judge(client)).choices[0].message.content or ""))
            srv.responder = None
            scores.append(json.loads((await judge(client)).choices[0].message.content or ""))
    assert [s["reasoning"] for s in scores] == [
        "first",
        "second",
        "responder saw judge-model",
        "pushed",
        "The output is correct.",
    ]
    assert [s["score"] for s in scores] == [0, 1, 0, 1, 1]
    assert srv.calls == 5


async def test_reasoning_is_omitted_when_the_schema_does_not_ask_for_it() -> None:
    fmt = json.loads(json.dumps(JUDGEMENT_FORMAT))
    del fmt["json_schema"]["schema"]["properties"]["reasoning"]
    fmt["json_schema"]["schema"]["required"] = ["score"]
    with FakeJudgeServer([verdict(1)]) as srv:
        async with client_for(srv) as client:
            completion = await client.chat.completions.create(
                model="m",
                messages=MESSAGES,
                response_format=fmt,
            )
    assert json.loads(completion.choices[0].message.content or "") == {"score": 1}


async def test_rate_limited_reply_is_a_429_with_retry_after() -> None:
    with FakeJudgeServer([rate_limited(2)]) as srv:
        async with client_for(srv) as client:
            with pytest.raises(openai.RateLimitError) as caught:
                await judge(client)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "2"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "rate_limit_exceeded"


async def test_server_error_reply_is_an_openai_error_body() -> None:
    with FakeJudgeServer([server_error(), server_error(503)]) as srv:
        async with client_for(srv) as client:
            with pytest.raises(openai.InternalServerError) as first:
                await judge(client)
            with pytest.raises(openai.InternalServerError) as second:
                await judge(client)
    assert first.value.status_code == 500
    assert second.value.status_code == 503
    assert isinstance(first.value.body, dict) and first.value.body["type"] == "server_error"


async def test_garbage_and_wrong_shape_replies_reach_the_client_as_content() -> None:
    with FakeJudgeServer([garbage(), wrong_shape(), Reply(content="")]) as srv:
        async with client_for(srv) as client:
            contents = [(await judge(client)).choices[0].message.content for _ in range(3)]
    assert contents[0] == "not json at all"
    assert "score" not in json.loads(contents[1] or "")
    assert contents[2] == ""


async def test_raw_body_override_is_sent_verbatim() -> None:
    with FakeJudgeServer([Reply(status=502, body=b"<html>Bad gateway</html>")]) as srv:
        async with client_for(srv) as client:
            with pytest.raises(openai.InternalServerError) as caught:
                await judge(client)
    assert caught.value.status_code == 502
    assert caught.value.response.text == "<html>Bad gateway</html>"


async def test_reset_reply_drops_the_connection() -> None:
    with FakeJudgeServer([reset()]) as srv:
        async with client_for(srv) as client:
            with pytest.raises(openai.APIConnectionError):
                await judge(client)
            completion = await judge(client)
    assert json.loads(completion.choices[0].message.content or "")["score"] == 1
    assert srv.calls == 2


async def test_delayed_reply_arrives_late_and_a_short_timeout_gives_up() -> None:
    with FakeJudgeServer([hang(0.3), hang(5)]) as srv:
        async with client_for(srv) as client:
            started = time.monotonic()
            await judge(client)
            assert time.monotonic() - started >= 0.3
            started = time.monotonic()
            with pytest.raises(openai.APITimeoutError):
                await judge(client.with_options(timeout=0.2))
            assert time.monotonic() - started < 2
        stopping = time.monotonic()
    # stop() wakes the still-sleeping handler instead of waiting out its 5 s.
    assert time.monotonic() - stopping < 2


async def test_max_in_flight_counts_concurrent_requests() -> None:
    # Each reply waits until all 8 requests are inside the server, so only true concurrency lets them finish.
    barrier = threading.Barrier(8, timeout=5)

    def responder(body: dict[str, Any]) -> Reply:
        barrier.wait()
        return verdict(1)

    with FakeJudgeServer(responder=responder) as srv:
        async with client_for(srv) as client:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    for _ in range(8):
                        tg.start_soon(judge, client)
    assert srv.calls == 8
    assert srv.max_in_flight == 8
    assert srv.in_flight == 0


async def test_latency_applies_to_every_reply() -> None:
    with FakeJudgeServer(latency=0.2) as srv:
        async with client_for(srv) as client:
            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(judge, client)
            elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 1.5
    assert srv.calls == 4


async def test_models_endpoint_lists_the_fake_model() -> None:
    with FakeJudgeServer(model="fake-judge") as srv:
        async with client_for(srv) as client:
            models = await client.models.list()
    assert [m.id for m in models.data] == ["fake-judge"]
    assert srv.calls == 0


# --- the server, through http.client ---------------------------------------------------------------------------


def test_unknown_path_is_a_404_with_an_openai_error() -> None:
    with FakeJudgeServer() as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        try:
            conn.request("POST", "/v1/completions", body=b"{}", headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = json.loads(response.read())
        finally:
            conn.close()
    assert response.status == 404
    assert payload["error"]["code"] == "unknown_url"
    assert "/v1/chat/completions" in payload["error"]["message"]
    assert [(r.method, r.path, r.body) for r in srv.requests] == [("POST", "/v1/completions", {})]
    assert srv.calls == 0


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    with FakeJudgeServer([verdict(0), verdict(1)]) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        try:
            conn.request("POST", "/v1/chat/completions", body=body)
            first = conn.getresponse()
            first_payload = json.loads(first.read())
            sock = conn.sock
            conn.request("POST", "/v1/chat/completions", body=body)
            second = conn.getresponse()
            second_payload = json.loads(second.read())
            assert conn.sock is sock
        finally:
            conn.close()
    assert first.getheader("Content-Length") is not None
    assert json.loads(first_payload["choices"][0]["message"]["content"])["score"] == 0
    assert json.loads(second_payload["choices"][0]["message"]["content"])["score"] == 1


def test_reset_reply_is_a_connection_error_for_http_client() -> None:
    with FakeJudgeServer([reset()]) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        try:
            conn.request("POST", "/v1/chat/completions", body=b'{"model": "m", "messages": []}')
            with pytest.raises(ConnectionError):
                conn.getresponse()
        finally:
            conn.close()


def test_a_body_that_is_not_json_is_a_400_and_is_recorded_as_none() -> None:
    with FakeJudgeServer() as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        try:
            conn.request("POST", "/v1/chat/completions", body=b"not json")
            response = conn.getresponse()
            payload = json.loads(response.read())
        finally:
            conn.close()
    assert response.status == 400
    assert payload["error"]["type"] == "invalid_request_error"
    assert srv.requests[0].body is None


def test_explicit_start_and_stop() -> None:
    srv = FakeJudgeServer().start()
    try:
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        try:
            conn.request("GET", "/v1/models")
            assert conn.getresponse().status == 200
        finally:
            conn.close()
    finally:
        srv.stop()
    srv.stop()  # idempotent


# --- helpers ----------------------------------------------------------------------------------------------------


def test_section_takes_the_last_tagged_block_and_prompt_text_joins_messages() -> None:
    text = 'Compare <outputs> with the reference.\n<outputs>\n{"a": 1}\n</outputs>\n'
    assert section(text, "outputs") == '{"a": 1}'
    assert section(text, "inputs") is None
    body = {
        "messages": [{"role": "system", "content": "one"}, {"role": "user", "content": [{"text": "two"}]}]
    }
    assert prompt_text(body) == "one\n\ntwo"


def test_numbers_are_normalized() -> None:
    assert numbers("€25.00 for 2 hours, open 9:00 to 18:30, 1,200 km") == {
        "25": "€25.00",
        "2": "2 hours",
        "9": "9:00",
        "18:30": "18:30",
        "1200": "1,200 km",
    }


# --- the simulated judge ----------------------------------------------------------------------------------------


def test_sample_runs_are_well_formed_and_balanced() -> None:
    assert len(RUNS) >= 44
    assert len({run["id"] for run in RUNS}) == len(RUNS)
    for run in RUNS:
        assert set(run) == {"id", "inputs", "outputs", "reference_outputs", "metadata", "feedback"}
        assert run["metadata"]["channel"] in ("chat", "email")
        label = run["feedback"]["correctness"]
        assert label["score"] in (0, 1)
        assert len(label["comment"]) > 20
    pass_share = sum(run["feedback"]["correctness"]["score"] for run in RUNS) / len(RUNS)
    assert 0.55 <= pass_share <= 0.65


def test_default_prompt_misses_wrong_numbers_and_fails_appropriate_hand_offs() -> None:
    replies = judge_all(BINARY_TEMPLATE)
    assert 0.65 <= agreement(replies) <= 0.75
    humans = [run["feedback"]["correctness"]["score"] for run in RUNS]
    false_pass = [r for r, h in zip(replies, humans, strict=True) if h == 0 and r.score == 1]
    false_fail = [r for r, h in zip(replies, humans, strict=True) if h == 1 and r.score == 0]
    assert len(false_pass) >= 5
    assert len(false_fail) >= 5
    assert any("declines or hands the customer off" in r.reasoning for r in false_fail)


def test_the_two_instructions_raise_agreement_without_breaking_anything() -> None:
    baseline = judge_all(BINARY_TEMPLATE)
    improved = judge_all(improved_template(NUMBERS_INSTRUCTION, HANDOFF_INSTRUCTION))
    assert 0.90 <= agreement(improved) <= 0.95
    humans = [run["feedback"]["correctness"]["score"] for run in RUNS]
    broken = [
        run["id"]
        for run, before, after, human in zip(RUNS, baseline, improved, humans, strict=True)
        if before.score == human and after.score != human
    ]
    assert broken == []
    reasons = " ".join(r.reasoning for r in improved)
    assert "states 45 minutes but the reference says 15 minutes" in reasons
    assert "declining is the correct answer" in reasons


def test_each_instruction_fixes_its_own_failure_mode() -> None:
    default = agreement(judge_all(BINARY_TEMPLATE))
    only_numbers = agreement(judge_all(improved_template(NUMBERS_INSTRUCTION)))
    only_handoffs = agreement(judge_all(improved_template(HANDOFF_INSTRUCTION)))
    both = agreement(judge_all(improved_template(NUMBERS_INSTRUCTION, HANDOFF_INSTRUCTION)))
    assert default < only_numbers < both
    assert default < only_handoffs < both


@pytest.mark.parametrize("where", ["top", "bottom", "system", "lowercase"])
def test_instructions_work_wherever_they_sit_in_the_prompt(where: str) -> None:
    expected = [r.score for r in judge_all(improved_template(NUMBERS_INSTRUCTION, HANDOFF_INSTRUCTION))]
    instructions = NUMBERS_INSTRUCTION + "\n" + HANDOFF_INSTRUCTION
    scores = []
    for run in RUNS:
        prompt = render(BINARY_TEMPLATE, run)
        body = judge_body(prompt)
        if where == "top":
            body["messages"][1]["content"] = instructions + "\n\n" + prompt
        elif where == "bottom":
            body["messages"][1]["content"] = prompt + "\n\n" + instructions
        elif where == "system":
            body["messages"][0]["content"] += "\n" + instructions
        else:
            body["messages"][1]["content"] = prompt + "\n\n" + instructions.lower()
        scores.append(simulated_responder(body).score)
    assert scores == expected


def test_every_simulated_reasoning_is_labelled() -> None:
    templates = [BINARY_TEMPLATE, improved_template(NUMBERS_INSTRUCTION, HANDOFF_INSTRUCTION)]
    for template in templates:
        for reply in judge_all(template):
            assert reply.reasoning.startswith("[simulated judge] ")
    assert simulated_responder({"messages": []}).reasoning.startswith("[simulated judge] ")


def test_simulated_judge_uses_the_score_values_the_schema_allows() -> None:
    run = next(r for r in RUNS if r["feedback"]["correctness"]["score"] == 1)
    body = judge_body(render(BINARY_TEMPLATE, run))
    body["response_format"]["json_schema"]["schema"]["properties"]["score"] = {
        "type": "integer",
        "minimum": 1,
        "maximum": 5,
    }
    assert simulated_responder(body).score == 5
    body["response_format"]["json_schema"]["schema"]["properties"]["score"] = {"enum": ["good", "bad"]}
    assert simulated_responder(body).score == "good"


async def test_simulated_judge_over_http_matches_the_direct_call() -> None:
    bodies = [judge_body(render(BINARY_TEMPLATE, run)) for run in RUNS]
    with FakeJudgeServer(responder=simulated_responder) as srv:
        async with client_for(srv) as client:
            scores: list[int] = []
            for body in bodies:
                completion = await client.chat.completions.create(**body)
                scores.append(json.loads(completion.choices[0].message.content or "")["score"])
    assert scores == [r.score for r in judge_all(BINARY_TEMPLATE)]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_command_line_serves_the_simulated_judge_until_interrupted(stop_signal: signal.Signals) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "align_mcp.testing.fakejudge", "--simulated"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        run = RUNS[0]
        conn = http.client.HTTPConnection(base_url.removeprefix("http://").removesuffix("/v1"), timeout=5)
        try:
            conn.request(
                "POST", "/v1/chat/completions", body=json.dumps(judge_body(render(BINARY_TEMPLATE, run)))
            )
            payload = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        reasoning = json.loads(payload["choices"][0]["message"]["content"])["reasoning"]
        assert reasoning.startswith("[simulated judge] ")
        proc.send_signal(stop_signal)
        _, stderr = proc.communicate(timeout=10)
        assert proc.returncode == 0, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
