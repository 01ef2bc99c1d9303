"""Judging through the Batch API, against the fake Batch API on loopback: happy path, split at the limits,
kill -9 while polling then resume, an expired batch, partial failures, and the CLI and MCP switches."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from align_mcp.core.models import JudgeSettings, JuryMember, ScoreType
from align_mcp.engine import evaluators, ingest
from align_mcp.engine.alignment import run_alignment
from align_mcp.engine.batches import BatchOptions
from align_mcp.engine.queues import submit_labels
from align_mcp.errors import InvalidInput, JudgeFailed
from align_mcp.llm.batch import Limits, batch_cost, parse_line, request_line
from align_mcp.llm.client import ReplyError
from align_mcp.store import Store
from align_mcp.store import batches as jobs
from align_mcp.testing.fakebatch import FakeBatchServer
from align_mcp.testing.fakejudge import Reply, prompt_text, section

NAME = "correctness"
MODEL = "fake-judge"
ROOT = Path(__file__).resolve().parents[1]


async def no_wait(seconds: float) -> None:
    """The sleeper between polls: tests never wait."""


FAST = BatchOptions(sleep=no_wait, first_wait=0.0)


def rid_of(body: dict[str, Any]) -> str:
    return str(json.loads(section(prompt_text(body), "inputs") or "{}")["rid"])


def seed(store: Store, labels: dict[str, int]) -> None:
    evaluators.create(store, NAME, ScoreType(kind="binary"))
    ingest.import_runs(
        store,
        "support",
        runs=[
            {
                "id": rid,
                "inputs": {"rid": rid, "question": f"Question {rid}?"},
                "outputs": {"answer": f"Answer {rid}."},
                "feedback": {NAME: {"score": score}},
            }
            for rid, score in labels.items()
        ],
    )


def agree(labels: dict[str, int]) -> Any:
    """A responder that gives each run its human label."""
    return lambda body: Reply(score=labels[rid_of(body)], reasoning=f"judged {rid_of(body)}")


@pytest.fixture
def batch_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBatchServer]:
    with FakeBatchServer() as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", MODEL)
        yield srv


LABELS = {f"r{i:02d}": i % 2 for i in range(12)}


@pytest.mark.anyio
async def test_an_alignment_through_the_batch_api_stores_every_verdict_and_reports_the_batch(
    store: Store, batch_api: FakeBatchServer
) -> None:
    seed(store, LABELS)
    batch_api.responder = agree(LABELS)
    seen: list[str] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        seen.append(message)

    report = await run_alignment(store, NAME, split="all", batch=FAST, on_progress=progress)

    assert (report.run.status, report.run.judged, report.run.errors) == ("completed", 12, 0)
    assert report.run.metrics is not None and report.run.metrics.agreement.value == 1.0
    assert batch_api.uploads == 1 and len(batch_api.batches) == 1
    batch_id = next(iter(batch_api.batches))
    assert f"batch {batch_id} in_progress: 0 completed, 0 failed of 12 (part 1 of 1)" in "\n".join(seen)
    assert any(f"batch {batch_id} completed: 12 completed, 0 failed of 12" in m for m in seen)
    cost = [n.text for n in report.notes if n.text.startswith("Judged through the Batch API")]
    assert cost and f"({batch_id}): 12 request(s)" in cost[0]
    assert "billed at the batch price (0.5 × the online price)" in cost[0]
    assert (report.run.requests, report.run.cache_hits) == (12, 0)


@pytest.mark.anyio
async def test_the_batch_sends_the_online_request_body(store: Store, batch_api: FakeBatchServer) -> None:
    """Each input line's body is what the online judge sends: model, messages, temperature, response format."""
    seed(store, {"r1": 1, "r2": 0})
    bodies: list[dict[str, Any]] = []

    def capture(body: dict[str, Any]) -> Reply:
        bodies.append(body)
        return Reply(score=1)

    batch_api.responder = capture
    await run_alignment(store, NAME, split="all", batch=FAST)
    assert {b["model"] for b in bodies} == {MODEL}
    assert all(b["temperature"] == 0 and b["response_format"]["type"] == "json_schema" for b in bodies)
    assert [m["role"] for m in bodies[0]["messages"]] == ["system", "user"]


@pytest.mark.anyio
async def test_input_files_are_split_at_the_request_and_byte_limits(
    store: Store, batch_api: FakeBatchServer
) -> None:
    seed(store, LABELS)
    batch_api.responder = agree(LABELS)
    options = BatchOptions(sleep=no_wait, first_wait=0.0, limits=Limits(max_requests=5))
    report = await run_alignment(store, NAME, split="all", batch=options)
    assert report.run.judged == 12
    (job,) = jobs.jobs_of_alignment(store, report.run.id)
    assert [p.requests for p in jobs.parts(store, job.id)] == [5, 5, 2]
    assert batch_api.uploads == 3


def test_a_part_ends_before_a_line_that_would_pass_the_byte_limit(tmp_path: Path) -> None:
    from align_mcp.core.models import JudgeSettings
    from align_mcp.llm.batch import write_parts
    from align_mcp.llm.client import request_body
    from align_mcp.llm.endpoint import Endpoint

    endpoint, settings = Endpoint("http://127.0.0.1:1/v1", "k", MODEL), JudgeSettings()
    requests = [(f"id{i}", [{"role": "user", "content": "x" * 100}]) for i in range(10)]
    size = len(request_line("id0", request_body(endpoint, settings, requests[0][1], {})))
    limits = Limits(max_requests=50_000, max_bytes=size * 4 + 1)
    parts = list(write_parts(requests, endpoint, settings, {}, tmp_path, limits))
    assert [len(p.custom_ids) for p in parts] == [4, 4, 2]
    assert all(p.size <= limits.max_bytes and p.path.stat().st_size == p.size for p in parts)


@pytest.mark.anyio
async def test_partial_failures_become_example_errors_and_nothing_is_dropped(
    store: Store, batch_api: FakeBatchServer
) -> None:
    seed(store, LABELS)

    def some_fail(body: dict[str, Any]) -> Reply:
        rid = rid_of(body)
        if rid == "r03":
            return Reply(status=500)
        if rid == "r04":
            return Reply(content="not json")
        return Reply(score=LABELS[rid])

    batch_api.responder = some_fail
    report = await run_alignment(store, NAME, split="all", batch=FAST)
    results = {r.run_id: r for r in store.alignment_results(report.run.id)}
    assert len(results) == 12 and (report.run.judged, report.run.errors) == (10, 2)
    assert results["r03"].error == (
        "HTTP 500 from the judge in the batch: The fake batch returned HTTP 500 as scripted."
    )
    assert (
        results["r04"].error
        == "unparseable reply in the batch (not asked again): reply is not JSON: 'not json'"
    )
    assert results["r04"].prompt_tokens is not None, "a billed reply keeps its tokens"


@pytest.mark.anyio
async def test_an_expired_batch_keeps_what_was_done_and_the_rest_become_errors(
    store: Store, batch_api: FakeBatchServer
) -> None:
    seed(store, LABELS)
    batch_api.responder = agree(LABELS)
    batch_api.ending, batch_api.expire_after = "expired", 7
    report = await run_alignment(store, NAME, split="all", batch=FAST)
    results = store.alignment_results(report.run.id)
    assert (report.run.judged, report.run.errors, len(results)) == (7, 5, 12)
    errors = {r.error for r in results if r.error is not None}
    assert errors == {
        "the batch request failed: This request could not be executed before the batch expired."
    }
    # Judged again (online here) with resume --retry-errors: only the five errors are asked.
    assert report.warnings[-1].next_steps[0].action == "resume_alignment"


@pytest.mark.anyio
async def test_a_failed_batch_gives_every_request_its_error(store: Store, batch_api: FakeBatchServer) -> None:
    seed(store, {"r1": 1, "r2": 0})
    batch_api.ending = "failed"
    with pytest.raises(JudgeFailed) as raised:
        await run_alignment(store, NAME, split="all", batch=FAST)
    assert str(raised.value) == (
        "Alignment run 1 failed: 0 judged, 2 errors. Cause: the batch failed: The input file is invalid "
        "(2 examples). Fix the judge, then judge the run again."
    )


@pytest.mark.anyio
async def test_merging_a_part_again_stores_nothing_twice(store: Store, batch_api: FakeBatchServer) -> None:
    seed(store, LABELS)
    batch_api.responder = lambda body: Reply(status=500) if rid_of(body) == "r01" else Reply(score=1)
    report = await run_alignment(store, NAME, split="all", batch=FAST)
    (job,) = jobs.jobs_of_alignment(store, report.run.id)
    before = jobs.get_job(store, job.id)
    (error,) = jobs.errors(store, job.id).values()
    jobs.record_errors(store, job.id, [error])
    assert not jobs.mark_merged(store, job.id, 0, 1000, 1000), "a part is merged once"
    assert jobs.get_job(store, job.id) == before, "its tokens are not added twice"
    assert list(jobs.errors(store, job.id).values()) == [error]


def test_a_result_line_is_parsed_with_the_online_parser() -> None:
    def parse(content: str | None) -> str:
        if content != "ok":
            raise ReplyError("not ok")
        return content

    ok = {
        "custom_id": "a",
        "response": {"status_code": 200, "body": {"choices": [{"message": {"content": "ok"}}]}},
    }
    bad = {
        "custom_id": "b",
        "response": {"status_code": 200, "body": {"choices": [{"message": {"content": "x"}}]}},
    }
    gone = {"custom_id": "c", "response": None, "error": {"code": "batch_expired", "message": "expired"}}
    assert parse_line(json.dumps(ok), parse).value == "ok"
    assert (
        parse_line(json.dumps(bad), parse).error == "unparseable reply in the batch (not asked again): not ok"
    )
    assert parse_line(json.dumps(gone), parse).error == "the batch request failed: expired"


def test_the_batch_price_is_a_configurable_share_of_a_known_price(monkeypatch: pytest.MonkeyPatch) -> None:
    assert batch_cost(None) is None, "no price is invented"
    assert batch_cost(2.0) == 1.0
    monkeypatch.setenv("ALIGN_MCP_BATCH_PRICE_FACTOR", "0.25")
    assert batch_cost(2.0) == 0.5
    monkeypatch.setenv("ALIGN_MCP_BATCH_PRICE_FACTOR", "half")
    with pytest.raises(
        Exception, match=r"ALIGN_MCP_BATCH_PRICE_FACTOR='half' must be a number between 0 and 1"
    ):
        batch_cost(2.0)


# ---- kill -9 while polling, then resume ---------------------------------------------------------------------


def cli(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "align_mcp.cli", "--db", str(db), *args]


def test_kill_9_while_polling_then_resume_polls_the_stored_batch_without_uploading_again(
    db_path: Path, tmp_path: Path
) -> None:
    with Store(db_path) as store:
        seed(store, LABELS)
    with FakeBatchServer(responder=agree(LABELS), hold=True) as srv:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ALIGN_MCP_"))}
        env.update(
            OPENAI_BASE_URL=srv.base_url,
            OPENAI_API_KEY="sk-test",
            ALIGN_MCP_JUDGE_MODEL=MODEL,
            ALIGN_MCP_BATCH_POLL_S="0.05",
            XDG_DATA_HOME=str(tmp_path / "xdg"),
        )
        proc = subprocess.Popen(
            cli(db_path, "align", NAME, "--split", "all", "--no-compare", "--batch"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reads = sum(
                1 for method, path in srv.requests if method == "GET" and path.startswith("/v1/batches/")
            )
            if reads >= 3:
                break
            assert proc.poll() is None, proc.communicate()[1].decode()
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        with sqlite3.connect(db_path) as conn:
            stored = conn.execute("SELECT batch_id, status FROM batch_parts").fetchall()
            assert conn.execute("SELECT count(*) FROM alignment_results WHERE done = 1").fetchone() == (0,)
        assert [s[0] for s in stored] == list(srv.batches) and stored[0][1] == "in_progress"
        srv.release()
        out = subprocess.run(cli(db_path, "resume", "1", "--json"), env=env, capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        assert srv.uploads == 1 and len(srv.batches) == 1, (
            "resume polls the stored batch; nothing is sent again"
        )
    report = json.loads(out.stdout)
    assert (report["run"]["status"], report["run"]["judged"], report["run"]["errors"]) == ("completed", 12, 0)


# ---- the surfaces ------------------------------------------------------------------------------------------


def test_align_batch_from_the_cli(
    db_path: Path, batch_api: FakeBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from align_mcp.cli.main import main

    with Store(db_path) as store:
        seed(store, LABELS)
    batch_api.responder = agree(LABELS)
    monkeypatch.setenv("ALIGN_MCP_BATCH_POLL_S", "0.01")
    result = CliRunner().invoke(main, ["align", NAME, "--split", "all", "--batch", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["run"]["judged"] == 12 and batch_api.uploads == 1


@pytest.mark.anyio
async def test_run_alignment_with_batch_over_mcp(
    db_path: Path, batch_api: FakeBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcp import Client

    from align_mcp.mcp.server import create_server

    with Store(db_path) as store:
        seed(store, LABELS)
    batch_api.responder = agree(LABELS)
    monkeypatch.setenv("ALIGN_MCP_BATCH_POLL_S", "0.01")
    async with Client(create_server(db_path), cache=None) as client:
        result = await client.call_tool("run_alignment", {"evaluator": NAME, "split": "all", "batch": True})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert result.structured_content["run"]["judged"] == 12 and batch_api.uploads == 1


# ---- the corrected pass rate -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_corrected_pass_rate_through_the_batch_api_matches_the_online_estimate(
    store: Store, batch_api: FakeBatchServer
) -> None:
    from align_mcp.diagnose.pass_rate import corrected_pass_rate

    support = [
        json.loads(line) for line in (ROOT / "examples" / "support_runs.jsonl").read_text().splitlines()
    ]
    new = [
        {"id": f"u{i}", "inputs": {"q": f"New {i}?"}, "outputs": {"answer": f"New answer {i}."}}
        for i in range(10)
    ]
    evaluators.create(store, NAME, ScoreType(kind="binary"))
    ingest.import_runs(store, "support", runs=support)
    ingest.import_runs(store, "new", runs=new)
    human = {
        json.dumps(r["outputs"], indent=2, ensure_ascii=False): r["feedback"][NAME]["score"] for r in support
    }

    def judge(body: dict[str, Any]) -> Reply:
        outputs = section(prompt_text(body), "outputs") or ""
        if outputs in human:
            return Reply(score=human[outputs])
        return Reply(score=1 if int(json.loads(outputs)["answer"].split()[2].rstrip(".")) < 6 else 0)

    batch_api.responder = judge
    report = await corrected_pass_rate(store, NAME, source="new", batch=FAST)

    assert (report.observed, report.unlabeled_errors) == (0.6, 0) and report.corrected == pytest.approx(0.6)
    assert (report.tpr.k, report.tpr.n, report.tnr.k, report.tnr.n) == (8, 8, 5, 5)
    assert batch_api.uploads == 2, "one batch for the test split, one for the unlabeled runs"
    assert any(n.startswith("Judged through the Batch API") and "10 request(s)" in n for n in report.notes)
    again = await corrected_pass_rate(store, NAME, source="new", batch=FAST)
    assert (again.observed, batch_api.uploads) == (0.6, 2), (
        "verdicts come from the cache: nothing is sent again"
    )


@pytest.mark.anyio
async def test_a_server_without_the_batch_api_is_an_error_naming_the_way_out(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from align_mcp.errors import JudgeConfigError, NextStep
    from align_mcp.testing.fakejudge import FakeJudgeServer

    seed(store, {"r1": 1, "r2": 0})
    with FakeJudgeServer() as srv:  # chat completions only: /v1/files answers 404
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", MODEL)
        with pytest.raises(JudgeConfigError) as raised:
            await run_alignment(store, NAME, split="all", batch=FAST)
    assert str(raised.value) == (
        f"The judge at {srv.base_url} answered 404 to the upload of batch-0000.jsonl: it does not serve the Batch "
        "API (/v1/files and /v1/batches). Judge without batch, or point the judge at a server that implements "
        "it. Alignment run 1: nothing was sent."
    )
    assert raised.value.next_steps[-1] == NextStep("resume_alignment", {"alignment_run": 1})
    assert jobs.open_job_of_alignment(store, 1) is None, "resume judges online unless asked for a batch again"


def test_the_batch_bench_runs_at_a_tiny_size(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ALIGN_MCP_"))}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_batch.py"), "--runs", "300"],
        env={**env, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "runs 300; parts 1;" in out.stdout and "stored 300, errors 0" in out.stdout


@pytest.mark.anyio
async def test_a_pairwise_comparison_sends_both_orders_as_requests_and_combines_them(
    store: Store, batch_api: FakeBatchServer
) -> None:
    """Position swap through the Batch API: each order is one request (its own custom_id), and the two verdicts
    combine as online: a judge that always prefers the first output shown is never consistent, so every combined
    verdict is a tie and agreement equals the share of human ties (1 of 4)."""
    evaluators.create(store, "preference", ScoreType(kind="pairwise", ties=True))
    human = {"p1": "A", "p2": "B", "p3": "A", "p4": "tie"}
    ingest.import_runs(
        store,
        "pairs",
        runs=[
            {"id": rid, "inputs": {"rid": rid}, "outputs_a": {"answer": "a"}, "outputs_b": {"answer": "b"}}
            for rid in human
        ],
    )
    submit_labels(store, "preference", [{"run_id": rid, "score": score} for rid, score in human.items()])
    batch_api.responder = lambda body: Reply(score="A", reasoning="The first output is better.")

    report = await run_alignment(store, "preference", split="all", batch=FAST)

    assert (report.run.requests, report.run.errors) == (8, 0)
    metrics = report.run.metrics
    assert metrics is not None and metrics.pairwise is not None
    assert (metrics.pairwise.consistency.k, metrics.pairwise.consistency.n) == (0, 4)
    assert (metrics.agreement.k, metrics.agreement.n) == (1, 4)
    assert (metrics.pairwise.original.k, metrics.pairwise.swapped.k) == (2, 1)


@pytest.mark.anyio
async def test_a_jury_is_refused_for_batch_before_any_run_is_made(
    store: Store, batch_api: FakeBatchServer
) -> None:
    evaluators.create(
        store,
        NAME,
        ScoreType(kind="binary"),
        judge=JudgeSettings(members=[JuryMember(model="a"), JuryMember(model="b")], combine="majority"),
    )
    ingest.import_runs(
        store, "support", runs=[{"id": "r1", "inputs": {}, "outputs": {}, "feedback": {NAME: {"score": 1}}}]
    )
    with pytest.raises(InvalidInput) as refused:
        await run_alignment(store, NAME, split="all", batch=FAST)
    assert str(refused.value) == (
        "A jury is judged online: the Batch API path sends one judge's requests. Judge it without batch."
    )
    assert store.latest_alignment_id(NAME) is None and batch_api.uploads == 0
