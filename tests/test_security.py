"""The judge key never reaches a result, an error, a log line or the store: keys are stripped and checked before
any request, and every text that comes back from the HTTP layer or the judge has the key and header values
redacted. The judge is the fake server on loopback; a key-echoing gateway is one of its scripted faults."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from align_mcp import config
from align_mcp.core.models import JudgeSettings, ScoreType
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators, ingest
from align_mcp.errors import JudgeConfigError
from align_mcp.llm.client import redact
from align_mcp.llm.endpoint import resolve_endpoint
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer, Reply, echo_key, verdict
from conftest import snapshot

pytestmark = pytest.mark.anyio

NAME = "correctness"
KEY = "sk-test-SECURITY-4d1c7e0b9a28"


def seed(store: Store, n: int = 4, judge: JudgeSettings | None = None) -> None:
    evaluators.create(store, NAME, ScoreType(kind="binary"), judge=judge or JudgeSettings(max_retries=0))
    runs = [
        {
            "id": f"r{i}",
            "inputs": {"question": f"Question {i}?"},
            "outputs": {"answer": f"Answer {i}."},
            "feedback": {NAME: {"score": i % 2}},
        }
        for i in range(1, n + 1)
    ]
    ingest.import_runs(store, "support", runs=runs)


def point_at(monkeypatch: pytest.MonkeyPatch, srv: FakeJudgeServer, key: str = KEY) -> None:
    monkeypatch.setenv("ALIGN_MCP_JUDGE_BASE_URL", srv.base_url)
    monkeypatch.setenv("ALIGN_MCP_JUDGE_API_KEY", key)
    monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", "fake-judge")


def store_bytes(db_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))


# ---- keys are stripped and checked before any request ------------------------------------------------------


@pytest.mark.parametrize("pasted", [KEY + "\n", f"  {KEY}\r\n", f"\t{KEY} "])
async def test_a_key_pasted_with_surrounding_whitespace_is_sent_stripped(
    store: Store, monkeypatch: pytest.MonkeyPatch, pasted: str
) -> None:
    seed(store)
    with FakeJudgeServer(responder=lambda body: verdict(1)) as srv:
        point_at(monkeypatch, srv, pasted)
        report = await align.run_alignment(store, NAME, split="all", compare=False)
        sent = {r.headers["authorization"] for r in srv.requests}
    assert (report.run.judged, report.run.errors) == (4, 0)
    assert sent == {f"Bearer {KEY}"}


async def test_an_evaluator_key_variable_is_stripped_too(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeJudgeServer(responder=lambda body: verdict(1)) as srv:
        monkeypatch.setenv("TEAM_JUDGE_API_KEY", KEY + "\n")
        monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", "fake-judge")
        seed(
            store, judge=JudgeSettings(max_retries=0, base_url=srv.base_url, api_key_env="TEAM_JUDGE_API_KEY")
        )
        report = await align.run_alignment(store, NAME, split="all", compare=False)
        sent = {r.headers["authorization"] for r in srv.requests}
    assert report.run.judged == 4 and sent == {f"Bearer {KEY}"}


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("sk-tést-0123456789", "contains a non-ASCII character (at position 5 of 18)"),
        ("sk-test\n0123456789", "contains a control character (at position 8 of 18)"),
        ("sk-test\x7f0123456789", "contains a control character (at position 8 of 18)"),
    ],
    ids=["non-ascii", "inner-newline", "delete"],
)
async def test_a_key_that_cannot_be_a_header_is_refused_naming_the_variable_never_the_value(
    store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, problem: str
) -> None:
    seed(store)
    before = snapshot(db_path)
    with FakeJudgeServer() as srv:
        point_at(monkeypatch, srv, key)
        with pytest.raises(JudgeConfigError) as e:
            await align.run_alignment(store, NAME, split="all", compare=False)
        assert srv.requests == [], "refused before any request"
    assert str(e.value) == (
        f"ALIGN_MCP_JUDGE_API_KEY {problem}, so it cannot be sent in an HTTP header. Set ALIGN_MCP_JUDGE_API_KEY "
        "again to the key alone."
    )
    assert "0123456789" not in str(e.value)
    assert snapshot(db_path) == before, "no run was created"


def test_the_evaluator_key_variable_is_named_when_its_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_JUDGE_API_KEY", "sk-ünicode-key")
    settings = JudgeSettings(model="m", base_url="http://127.0.0.1:9/v1", api_key_env="TEAM_JUDGE_API_KEY")
    with pytest.raises(JudgeConfigError) as e:
        resolve_endpoint(settings, config.load())
    assert str(e.value) == (
        "TEAM_JUDGE_API_KEY contains a non-ASCII character (at position 4 of 14), so it cannot be sent in an HTTP "
        "header. Set TEAM_JUDGE_API_KEY again to the key alone."
    )


# ---- texts coming back are redacted ------------------------------------------------------------------------


def test_redact_removes_the_key_bearer_tokens_and_quoted_header_values() -> None:
    assert redact(f"Invalid request for key {KEY}.", [KEY]) == "Invalid request for key [redacted]."
    assert redact("Illegal header value b'Bearer sk-abc\\n'") == "Illegal header value [redacted]"
    assert redact("sent Authorization: Bearer sk-other-key!") == "sent Authorization: Bearer [redacted]"
    assert redact("a short key: abc", ["abc"]) == "a short key: abc", "too short to be a key: left alone"


async def test_a_gateway_error_quoting_the_key_is_stored_and_shown_redacted(
    store: Store,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seed(store, n=3)
    with FakeJudgeServer(responder=lambda body: echo_key()) as srv:
        point_at(monkeypatch, srv)
        with pytest.raises(Exception) as e:  # every example errors: the run fails
            await align.run_alignment(store, NAME, split="all", compare=False)
        assert srv.requests and all(r.headers["authorization"] == f"Bearer {KEY}" for r in srv.requests)
    errors = {r.error for r in store.alignment_results(1)}
    assert errors == {
        "HTTP 400 from the judge: Error code: 400 - Invalid request for key [redacted]: the model does not accept "
        "this response_format."
    }
    report = align.report(store, 1)
    for text in (str(e.value), report.model_dump_json(), caplog.text):
        assert KEY not in text
    assert KEY.encode() not in store_bytes(db_path)


async def test_a_judge_that_echoes_the_key_in_its_reasoning_is_stored_redacted(
    store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store, n=2)
    reply = Reply(score=1, reasoning=f"The request carried {KEY}; the output is right.")
    with FakeJudgeServer(responder=lambda body: reply) as srv:
        point_at(monkeypatch, srv)
        report = await align.run_alignment(store, NAME, split="all", compare=False)
    assert report.run.judged == 2
    assert {r.reasoning for r in store.alignment_results(1)} == {
        "The request carried [redacted]; the output is right."
    }
    assert KEY.encode() not in store_bytes(db_path)


async def test_the_mcp_failure_of_a_key_echoing_gateway_never_shows_the_key(
    store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcp import Client

    from align_mcp.mcp.server import create_server

    seed(store, n=2)
    with FakeJudgeServer(responder=lambda body: echo_key()) as srv:
        point_at(monkeypatch, srv)
        async with Client(create_server(db_path)) as client:
            result = await client.call_tool("run_alignment", {"evaluator": NAME, "split": "all"})
    shown = json.dumps(result.model_dump(mode="json"))
    assert result.is_error and "[redacted]" in shown and KEY not in shown


def test_the_cli_failure_of_a_key_echoing_gateway_never_shows_the_key(  # sync: the CLI runs its own loop
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from align_mcp.cli.main import main
    from align_mcp.store import open_store

    with open_store() as store:
        seed(store, n=2)
    with FakeJudgeServer(responder=lambda body: echo_key()) as srv:
        point_at(monkeypatch, srv)
        cli = CliRunner().invoke(main, ["--db", str(db_path), "align", NAME, "--split", "all"])
    assert cli.exit_code == 1, cli.output
    assert cli.stdout == "" and "[redacted]" in cli.stderr and KEY not in cli.stderr


def test_an_evaluator_base_url_without_a_scheme_is_named_as_the_evaluator_s() -> None:
    settings = JudgeSettings(model="m", base_url="judge.internal:8000/v1", api_key_env="TEAM_JUDGE_API_KEY")
    with pytest.raises(JudgeConfigError) as e:
        resolve_endpoint(settings, config.load())
    assert str(e.value) == (
        "The evaluator's base_url 'judge.internal:8000/v1' is not an http:// or https:// URL, so no judge can be "
        "called at it. Start it with http:// or https:// (e.g. http://judge.internal:8000/v1)."
    )
