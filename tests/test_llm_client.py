"""The model client (client.py) and the judge over it, in process: an httpx2 MockTransport answers, and an
injected sleeper records every backoff wait instead of waiting. Retries, Retry-After, timeouts, the error
mapping with its user-facing texts, structured replies with one re-ask, and usage accounting."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import httpx2
import pytest

from align_mcp.core.models import JudgeSettings, ScoreType
from align_mcp.errors import JudgeConfigError, JudgeUnreachable
from align_mcp.llm import client as client_module
from align_mcp.llm.client import (
    MAX_REASK_ECHO_CHARS,
    MAX_RETRY_AFTER_S,
    CallFailed,
    ModelClient,
    ReplyError,
    UnusableReply,
    json_schema_format,
    open_client,
    retry_after_seconds,
)
from align_mcp.llm.endpoint import Endpoint
from align_mcp.llm.judge import MAX_REASONING_CHARS, Verdict, open_judge, parse_reply, response_schema
from align_mcp.llm.structured import StructuredReply, ask, parse_model

pytestmark = pytest.mark.anyio

BASE_URL = "http://judge.test/v1"
ENDPOINT = Endpoint(base_url=BASE_URL, api_key="sk-inprocess", model="judge-model")
BINARY = ScoreType(kind="binary")
SCHEMA = response_schema(BINARY, reasoning=True)
MESSAGES = [{"role": "system", "content": "Judge."}, {"role": "user", "content": "Is 2 + 2 = 4?"}]
VALID = json.dumps({"reasoning": "Arithmetic holds.", "score": 1})

Answer = httpx2.Response | Exception


def completion(
    content: str | None, prompt_tokens: int = 10, completion_tokens: int = 2, cached_tokens: int = 0
) -> httpx2.Response:
    """A 200 chat.completion whose message holds `content`, with its token usage."""
    return httpx2.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "judge-model",
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached_tokens},
            },
        },
    )


def status(code: int, headers: dict[str, str] | None = None, message: str = "Scripted.") -> httpx2.Response:
    return httpx2.Response(code, headers=headers or {}, json={"error": {"message": message, "type": "x"}})


class Judge:
    """The in-process judge: answers requests in order from a script (the last answer repeats)."""

    def __init__(self, *answers: Answer | Callable[[httpx2.Request], Answer]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx2.Request] = []

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if callable(answer) and not isinstance(answer, httpx2.Response):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self)


class Waits(list[float]):
    """The sleeper: records each backoff wait and returns at once."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(
    judge: Judge,
    waits: Waits,
    settings: JudgeSettings | None = None,
    clock: Callable[[], float] | None = None,
) -> ModelClient:
    settings = settings or JudgeSettings(max_retries=2)
    if clock is None:
        return ModelClient(ENDPOINT, settings, transport=judge.transport(), sleep=waits)
    return ModelClient(ENDPOINT, settings, transport=judge.transport(), sleep=waits, clock=clock)


def connect_refused(request: httpx2.Request) -> Exception:
    return httpx2.ConnectError("[Errno 111] Connection refused", request=request)


async def verdict_of(judge: Judge, waits: Waits, settings: JudgeSettings | None = None) -> Verdict:
    settings = settings or JudgeSettings(max_retries=2)
    async with open_judge(ENDPOINT, settings, BINARY, transport=judge.transport(), sleep=waits) as j:
        return await j.judge_example(MESSAGES)


# ---- the request --------------------------------------------------------------------------------------------


async def test_the_request_carries_model_messages_sampling_settings_schema_and_key() -> None:
    judge = Judge(completion(VALID))
    settings = JudgeSettings(temperature=0.3, max_tokens=200, max_retries=0)
    async with open_client(ENDPOINT, settings, transport=judge.transport(), sleep=Waits()) as client:
        result = await client.complete(MESSAGES, SCHEMA)
    assert result.content == VALID
    [request] = judge.requests
    assert str(request.url) == f"{BASE_URL}/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-inprocess"
    assert judge.bodies == [
        {
            "model": "judge-model",
            "messages": MESSAGES,
            "temperature": 0.3,
            "response_format": SCHEMA,
            "max_completion_tokens": 200,
        }
    ]


# ---- retries and waits --------------------------------------------------------------------------------------


async def test_rate_limits_wait_as_long_as_retry_after_and_retry_after_ms_say() -> None:
    judge = Judge(
        status(429, {"Retry-After": "3"}), status(429, {"retry-after-ms": "250"}), completion(VALID)
    )
    waits = Waits()
    result = await client_for(judge, waits).complete(MESSAGES, SCHEMA)
    assert result.content == VALID
    assert waits == [3.0, 0.25]
    assert result.usage.requests == len(judge.requests) == 3


async def test_a_retry_after_beyond_a_minute_is_capped() -> None:
    waits = Waits()
    await client_for(Judge(status(503, {"Retry-After": "900"}), completion(VALID)), waits).complete(
        MESSAGES, SCHEMA
    )
    assert waits == [MAX_RETRY_AFTER_S] == [60.0]


async def test_a_retry_after_given_as_an_http_date_waits_until_then() -> None:
    date = "Wed, 21 Oct 2026 07:28:00 GMT"
    then = parsedate_to_datetime(date).timestamp()
    waits = Waits()
    judge = Judge(status(429, {"Retry-After": date}), completion(VALID))
    await client_for(judge, waits, clock=lambda: then - 7.5).complete(MESSAGES, SCHEMA)
    assert waits == [7.5]
    assert retry_after_seconds({"retry-after": date}, lambda: then + 3) == 0  # a date gone by: retry now
    assert retry_after_seconds({"retry-after": "soon"}) is None


async def test_a_server_error_is_retried_after_a_jittered_backoff_then_succeeds() -> None:
    judge = Judge(status(500), completion(VALID))
    waits = Waits()
    result = await client_for(judge, waits).complete(MESSAGES, SCHEMA)
    assert result.content == VALID and result.usage.requests == 2
    [wait] = waits
    assert 0.25 <= wait <= 0.5


async def test_persistent_server_errors_end_the_call_naming_status_and_attempts() -> None:
    judge = Judge(status(503))
    waits = Waits()
    with pytest.raises(CallFailed) as e:
        await client_for(judge, waits, JudgeSettings(max_retries=2)).complete(MESSAGES, SCHEMA)
    assert str(e.value) == e.value.problem == "HTTP 503 from the judge (after 3 attempts)"
    assert e.value.usage.requests == len(judge.requests) == 3
    first, second = waits
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0


async def test_a_timeout_is_retried_then_ends_the_call_naming_the_timeout() -> None:
    judge = Judge(lambda request: httpx2.ReadTimeout("timed out", request=request))
    waits = Waits()
    with pytest.raises(CallFailed) as e:
        await client_for(judge, waits, JudgeSettings(timeout=0.5, max_retries=1)).complete(MESSAGES, SCHEMA)
    assert e.value.problem == "timed out after 0.5s (after 2 attempts)"
    assert len(judge.requests) == 2 and len(waits) == 1


async def test_a_timeout_then_a_reply_succeeds() -> None:
    judge = Judge(lambda request: httpx2.ReadTimeout("timed out", request=request), completion(VALID))
    result = await client_for(judge, Waits()).complete(MESSAGES, SCHEMA)
    assert (result.content, result.usage.requests) == (VALID, 2)


async def test_a_connection_dropped_mid_reply_ends_only_this_call() -> None:
    judge = Judge(lambda request: httpx2.ReadError("", request=request))
    with pytest.raises(CallFailed) as e:
        await client_for(judge, Waits(), JudgeSettings(max_retries=0)).complete(MESSAGES, SCHEMA)
    assert e.value.problem == "connection failed (ReadError) (after 1 attempt)"


# ---- errors that stop every call ----------------------------------------------------------------------------


async def test_a_refused_connection_raises_judge_unreachable_after_the_retries() -> None:
    judge = Judge(connect_refused)
    waits = Waits()
    with pytest.raises(JudgeUnreachable) as e:
        await client_for(judge, waits, JudgeSettings(max_retries=1)).complete(MESSAGES, SCHEMA)
    assert str(e.value) == (
        f"Cannot reach the judge at {BASE_URL}: [Errno 111] Connection refused. Check that the server is running "
        "and the base URL is right."
    )
    assert len(judge.requests) == 2 and len(waits) == 1


@pytest.mark.parametrize("code", [401, 403])
async def test_a_rejected_key_raises_judge_config_error_without_retrying(code: int) -> None:
    judge = Judge(status(code), completion(VALID))
    waits = Waits()
    with pytest.raises(JudgeConfigError) as e:
        await client_for(judge, waits, JudgeSettings(max_retries=3)).complete(MESSAGES, SCHEMA)
    assert str(e.value) == (
        f"The judge at {BASE_URL} rejected the API key ({code}). Check OPENAI_API_KEY / ALIGN_MCP_JUDGE_API_KEY."
    )
    assert len(judge.requests) == 1 and waits == []


async def test_an_unknown_model_raises_judge_config_error_naming_it() -> None:
    judge = Judge(status(404))
    with pytest.raises(JudgeConfigError) as e:
        await client_for(judge, Waits()).complete(MESSAGES, SCHEMA)
    assert str(e.value) == (
        f"The judge at {BASE_URL} answered 404 for model 'judge-model'. Check the model name "
        "(ALIGN_MCP_JUDGE_MODEL) and the base URL (it usually ends in /v1)."
    )


async def test_a_bad_request_ends_the_call_without_retrying() -> None:
    judge = Judge(status(400, message="Unsupported response_format."))
    waits = Waits()
    with pytest.raises(CallFailed) as e:
        await client_for(judge, waits).complete(MESSAGES, SCHEMA)
    assert e.value.problem == "HTTP 400 from the judge: Error code: 400 - Unsupported response_format."
    assert len(judge.requests) == 1 and waits == []


# ---- structured replies and the one re-ask ------------------------------------------------------------------


async def test_an_unparseable_reply_is_asked_again_once_and_usage_counts_both_requests() -> None:
    judge = Judge(
        completion("definitely not json", prompt_tokens=100, completion_tokens=3),
        completion(VALID, prompt_tokens=130, completion_tokens=20, cached_tokens=64),
    )
    result = await verdict_of(judge, Waits())
    assert (result.score, result.reasoning, result.error) == (1, "Arithmetic holds.", None)
    assert (result.calls, result.prompt_tokens, result.completion_tokens, result.cached_tokens) == (
        2,
        230,
        23,
        64,
    )
    first, again = judge.bodies
    assert again["messages"] == [
        *first["messages"],
        {"role": "assistant", "content": "definitely not json"},
        {
            "role": "user",
            "content": "That reply was invalid (reply is not JSON: 'definitely not json'). Reply again with only "
            "the JSON object that matches the schema.",
        },
    ]
    assert again["response_format"] == first["response_format"] == SCHEMA


async def test_a_code_fenced_json_reply_is_accepted_without_a_re_ask() -> None:
    judge = Judge(completion(f"```json\n{VALID}\n```"))
    result = await verdict_of(judge, Waits())
    assert (result.score, result.error, result.calls) == (1, None, 1)


async def test_garbage_twice_is_recorded_as_an_error_after_one_re_ask() -> None:
    judge = Judge(completion("nope"), completion("still nope"), completion(VALID))
    result = await verdict_of(judge, Waits())
    assert (result.score, result.reasoning) == (None, None)
    assert result.error == "unparseable reply after a re-ask: reply is not JSON: 'still nope'"
    assert (result.calls, result.prompt_tokens, result.completion_tokens) == (2, 20, 4)
    assert len(judge.requests) == 2


async def test_a_failed_call_is_a_verdict_error_counting_every_request() -> None:
    judge = Judge(status(500))
    result = await verdict_of(judge, Waits(), JudgeSettings(max_retries=1))
    assert (result.score, result.error, result.calls) == (
        None,
        "HTTP 500 from the judge (after 2 attempts)",
        2,
    )
    assert result.prompt_tokens is None  # no reply came back, so no token count is known


async def test_usage_counts_retries_re_asks_and_tokens() -> None:
    judge = Judge(
        status(429, {"Retry-After": "0"}),
        completion("{}", prompt_tokens=11, completion_tokens=1),
        completion(VALID, prompt_tokens=12, completion_tokens=5, cached_tokens=8),
    )

    def score_of(content: str | None) -> Any:
        data = json.loads(content or "")
        if "score" not in data:
            raise ReplyError("no score")
        return data["score"]

    async with open_client(ENDPOINT, JudgeSettings(), transport=judge.transport(), sleep=Waits()) as client:
        answer = await client.structured(MESSAGES, SCHEMA, score_of)
    assert answer.value == 1
    u = answer.usage
    assert (u.requests, u.prompt_tokens, u.completion_tokens, u.cached_tokens) == (3, 23, 6, 8)


async def test_the_re_ask_hint_ends_the_re_ask_and_may_reask_can_refuse_it() -> None:
    judge = Judge(completion("[]"), completion(VALID), completion("[]"))
    asked: list[str] = []

    def parse(content: str | None) -> Any:
        data = json.loads(content or "")
        if not isinstance(data, dict):
            raise ReplyError("the reply is not an object")
        return data

    def refuse() -> bool:
        asked.append("re-ask?")
        return False

    async with open_client(ENDPOINT, JudgeSettings(), transport=judge.transport(), sleep=Waits()) as client:
        answer = await client.structured(MESSAGES, SCHEMA, parse, reask_hint=", classifying r1 once")
        assert answer.value == json.loads(VALID)
        assert judge.bodies[1]["messages"][-1]["content"] == (
            "That reply was invalid (the reply is not an object). Reply again with only the JSON object that "
            "matches the schema, classifying r1 once."
        )
        with pytest.raises(UnusableReply) as e:
            await client.structured(MESSAGES, SCHEMA, parse, may_reask=refuse)
    assert asked == ["re-ask?"]
    assert (e.value.problem, e.value.usage.requests, len(judge.requests)) == (
        "the reply is not an object",
        1,
        3,
    )
    assert [str(r) for r in e.value.replies] == ["the reply is not an object"]


async def test_a_request_failing_after_an_unusable_reply_keeps_that_reply_s_problem() -> None:
    judge = Judge(completion("[]"), status(500))

    def parse(content: str | None) -> Any:
        raise ReplyError(f"unusable: {content}")

    async with open_client(
        ENDPOINT, JudgeSettings(max_retries=0), transport=judge.transport(), sleep=Waits()
    ) as client:
        with pytest.raises(CallFailed) as e:
            await client.structured(MESSAGES, SCHEMA, parse)
    assert not isinstance(e.value, UnusableReply)
    assert e.value.problem == "HTTP 500 from the judge (after 1 attempt)"
    assert [str(r) for r in e.value.replies] == ["unusable: []"]
    assert e.value.usage.requests == 2


class Pick(StructuredReply):
    choice: str


async def test_pydantic_replies_are_validated_and_fenced_ones_accepted() -> None:
    assert parse_model('```json\n{"choice": "a"}\n```', Pick) == Pick(choice="a")
    with pytest.raises(ReplyError) as e:
        parse_model('{"choice": "a", "extra": 1}', Pick)
    assert str(e.value) == (
        "the reply does not match the schema (extra: Extra inputs are not permitted): "
        """'{"choice": "a", "extra": 1}'"""
    )
    judge = Judge(completion('{"pick": "b"}'), completion('{"choice": "b"}'))
    async with open_client(ENDPOINT, JudgeSettings(), transport=judge.transport(), sleep=Waits()) as client:
        answer = await ask(client, MESSAGES, "pick", Pick)
    assert answer.value == Pick(choice="b") and answer.usage.requests == 2
    assert judge.bodies[0]["response_format"] == json_schema_format("pick", Pick.model_json_schema())
    assert judge.bodies[0]["response_format"]["json_schema"]["schema"]["additionalProperties"] is False


# ---- replies that are not a completion, whole-request timeouts, redaction, waits and the request hook -------


@pytest.mark.parametrize(
    ("response", "what"),
    [
        (httpx2.Response(200, content=b""), "an empty body"),
        (httpx2.Response(200, content=b"  \n"), "an empty body"),
        (
            httpx2.Response(200, content=b"<html><body>502 Bad Gateway</body></html>"),
            "an HTML page: '<html><body>502 Bad Gateway</body></html>'",
        ),
        (
            httpx2.Response(
                200, content=b'{"id": "chatcmpl-1", "choi', headers={"content-type": "application/json"}
            ),
            """truncated or invalid JSON: '{"id": "chatcmpl-1", "choi'""",
        ),
        (
            httpx2.Response(200, content=b"upstream timed out"),
            "a body that is not JSON: 'upstream timed out'",
        ),
        (httpx2.Response(200, json={"ok": True}), """JSON that is not a chat completion: '{"ok":true}'"""),
        (httpx2.Response(200, json=[1, 2]), "JSON that is not a chat completion: '[1,2]'"),
    ],
    ids=["empty", "blank", "html", "truncated", "text", "other-object", "array"],
)
async def test_a_200_that_is_not_a_completion_is_retried_then_ends_the_call_naming_what_came(
    response: httpx2.Response, what: str
) -> None:
    judge = Judge(response)
    waits = Waits()
    with pytest.raises(CallFailed) as e:
        await client_for(judge, waits, JudgeSettings(max_retries=1)).complete(MESSAGES, SCHEMA)
    assert e.value.problem == f"HTTP 200 from the judge with {what} (after 2 attempts)"
    assert len(judge.requests) == 2 and len(waits) == 1


async def test_a_200_that_is_not_a_completion_then_a_completion_succeeds() -> None:
    judge = Judge(httpx2.Response(200, content=b""), completion(VALID))
    result = await client_for(judge, Waits()).complete(MESSAGES, SCHEMA)
    assert (result.content, result.usage.requests) == (VALID, 2)


async def test_a_body_beyond_the_size_limit_ends_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_REPLY_BYTES", 100)
    judge = Judge(completion("x" * 200))
    with pytest.raises(CallFailed) as e:
        await client_for(judge, Waits(), JudgeSettings(max_retries=0)).complete(MESSAGES, SCHEMA)
    assert e.value.problem == "HTTP 200 from the judge with a body larger than 100 bytes (after 1 attempt)"


async def test_the_timeout_bounds_the_whole_request_not_each_read() -> None:
    async def dribble() -> AsyncIterator[bytes]:
        for byte in completion(VALID).content:
            await anyio.sleep(0.05)
            yield bytes([byte])

    judge = Judge(lambda request: httpx2.Response(200, content=dribble()))
    with anyio.fail_after(5):
        with pytest.raises(CallFailed) as e:
            await client_for(judge, Waits(), JudgeSettings(timeout=0.3, max_retries=0)).complete(
                MESSAGES, SCHEMA
            )
    assert e.value.problem == "timed out after 0.3s (after 1 attempt)"


async def test_the_key_and_header_values_are_redacted_from_errors_and_replies() -> None:
    key = ENDPOINT.api_key
    dropped = Judge(lambda request: httpx2.ReadError(f"peer closed; sent Bearer {key}", request=request))
    with pytest.raises(CallFailed) as e:
        await client_for(dropped, Waits(), JudgeSettings(max_retries=0)).complete(MESSAGES, SCHEMA)
    assert e.value.problem == "connection failed (peer closed; sent Bearer [redacted]) (after 1 attempt)"

    rejected = Judge(status(400, message=f"Invalid request for key {key}."))
    with pytest.raises(CallFailed) as e:
        await client_for(rejected, Waits()).complete(MESSAGES, SCHEMA)
    assert e.value.problem == "HTTP 400 from the judge: Error code: 400 - Invalid request for key [redacted]."
    assert e.value.__cause__ is None and e.value.__suppress_context__, (
        "the SDK's error, quoting the key, is dropped"
    )

    echoed = Judge(completion(json.dumps({"reasoning": f"Your key is {key}.", "score": 1})))
    verdict = await verdict_of(echoed, Waits())
    assert verdict.reasoning == "Your key is [redacted]."


async def test_a_key_that_cannot_be_a_header_value_is_refused_before_any_request() -> None:
    endpoint = Endpoint(base_url=BASE_URL, api_key="sk-caf\u00e9-key", model="judge-model")
    with pytest.raises(JudgeConfigError) as e:
        ModelClient(endpoint, JudgeSettings())
    assert str(e.value) == (
        "The judge API key contains a non-ASCII character (at position 7 of 11), so it cannot be sent in an HTTP "
        "header."
    )


async def test_waits_are_told_before_they_start_and_summed_in_usage() -> None:
    told: list[tuple[float, str]] = []

    async def on_wait(seconds: float, why: str) -> None:
        told.append((seconds, why))

    judge = Judge(status(429, {"Retry-After": "2"}), status(503, {"Retry-After": "90"}), completion(VALID))
    waits = Waits()
    client = ModelClient(
        ENDPOINT, JudgeSettings(max_retries=2), transport=judge.transport(), sleep=waits, on_wait=on_wait
    )
    result = await client.complete(MESSAGES, SCHEMA)
    assert told == [(2.0, "HTTP 429 from the judge"), (60.0, "HTTP 503 from the judge")]
    assert waits == [2.0, 60.0] and result.usage.waited_s == 62.0


async def test_on_request_is_called_before_every_request_and_may_refuse_one() -> None:
    class Spent(Exception):
        pass

    taken: list[int] = []

    def take() -> None:
        if len(taken) == 2:
            raise Spent
        taken.append(1)

    judge = Judge(completion("not json"), completion("still not json"))
    client = ModelClient(
        ENDPOINT, JudgeSettings(max_retries=0), transport=judge.transport(), sleep=Waits(), on_request=take
    )
    with pytest.raises(UnusableReply) as e:
        await client.structured(MESSAGES, SCHEMA, _reject)
    assert (len(taken), len(judge.requests), e.value.usage.reasks) == (2, 2, 1)
    with pytest.raises(Spent):
        await client.complete(MESSAGES, SCHEMA)
    assert len(judge.requests) == 2, "the refused request was never sent"


def _reject(content: str | None) -> Any:
    raise ReplyError(f"rejected: {content}")


async def test_a_re_ask_shows_the_model_at_most_the_start_of_its_unusable_reply() -> None:
    long_prose = "word " * 2000
    judge = Judge(completion(long_prose), completion(VALID))
    result = await verdict_of(judge, Waits())
    assert result.error is None and result.reasks == 1
    echoed = judge.bodies[1]["messages"][-2]
    assert echoed == {"role": "assistant", "content": long_prose[:MAX_REASK_ECHO_CHARS]}


def test_a_long_reasoning_is_cut_and_says_how_long_it_was() -> None:
    score, reasoning = parse_reply(json.dumps({"reasoning": "a" * 10_000, "score": 1}), BINARY)
    assert score == 1 and reasoning is not None
    assert reasoning == "a" * MAX_REASONING_CHARS + (
        " … [cut: the judge's reasoning was 10,000 characters; the first 8,000 are kept]"
    )
    assert parse_reply(json.dumps({"reasoning": "short", "score": 0}), BINARY) == (0, "short")
