"""The fault suite: judge faults, a kill -9 mid-alignment, concurrent labelers, a bad-input corpus, and secrets.

Every fault ends in a stored result or a clear error naming the problem; nothing is dropped, nothing is stored
twice, and a rejected input leaves the database as it was. The judge is the project's fake server on loopback.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from align_mcp import config
from align_mcp.core.models import JudgeSettings, Note, ScoreType
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators, ingest, overview, queues
from align_mcp.errors import (
    Conflict,
    ImportFormatError,
    InvalidInput,
    InvalidScore,
    JudgeConfigError,
    JudgeFailed,
    JudgeUnreachable,
    NextStep,
    NotFound,
)
from align_mcp.store import ResultRow, Store
from align_mcp.testing.fakejudge import (
    FakeJudgeServer,
    Reply,
    dribble,
    empty_body,
    garbage,
    hang,
    html_page,
    prompt_text,
    rate_limited,
    reset,
    section,
    server_error,
    truncated_json,
    verdict,
    wrong_shape,
)
from conftest import snapshot

BINARY = ScoreType(kind="binary")
NAME = "correctness"
MODEL = "fake-judge"
KEY = "sk-test-FAULTSUITE-6c2f9e1a7b3d"
ROOT = Path(__file__).resolve().parents[1]


def judge_env(monkeypatch: pytest.MonkeyPatch, srv: FakeJudgeServer) -> None:
    monkeypatch.setenv("ALIGN_MCP_JUDGE_BASE_URL", srv.base_url)
    monkeypatch.setenv("ALIGN_MCP_JUDGE_API_KEY", KEY)
    monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", MODEL)


def rid_of(body: dict[str, Any]) -> str:
    """The run id of the example in a judge request (its inputs carry it as `rid`)."""
    return str(json.loads(section(prompt_text(body), "inputs") or "{}")["rid"])


def seed(store: Store, labels: dict[str, int], judge: JudgeSettings | None = None) -> None:
    """A binary evaluator and one labeled run per entry, imported with its label as feedback."""
    evaluators.create(store, NAME, BINARY, judge=judge)
    runs = [
        {
            "id": rid,
            "inputs": {"rid": rid, "question": f"Question {rid}?"},
            "outputs": {"answer": f"Answer {rid}."},
            "feedback": {NAME: {"score": score, "comment": f"human on {rid}"}},
        }
        for rid, score in labels.items()
    ]
    ingest.import_runs(store, "support", runs=runs)


class PerRun:
    """A responder that answers each run by its own script: the n-th request for a run gets its n-th reply
    (the last one repeats). Thread-safe: the fake server answers on one thread per connection."""

    def __init__(self, plans: dict[str, list[Reply]]) -> None:
        self.plans = plans
        self.seen: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        rid = rid_of(body)
        with self._lock:
            times = self.seen.setdefault(rid, [])
            times.append(time.monotonic())
            n = len(times) - 1
        plan = self.plans[rid]
        return plan[min(n, len(plan) - 1)]


def results(store: Store, aid: int) -> dict[str, ResultRow]:
    return {r.run_id: r for r in store.alignment_results(aid, done_only=False)}


# ---- 1. judge faults ---------------------------------------------------------------------------------------


FAULTS: dict[str, tuple[list[Reply], str | None]] = {
    # run id: (the judge's replies to that run in order, the error recorded for it or None when judged)
    "ok": ([verdict(1)], None),
    "429-then-ok": ([rate_limited(1), verdict(1)], None),
    "429-always": ([rate_limited(0)], "HTTP 429 from the judge (after 3 attempts)"),
    "500-then-ok": ([server_error(500), verdict(0)], None),
    "500-always": ([server_error(500)], "HTTP 500 from the judge (after 3 attempts)"),
    "503-always": ([server_error(503)], "HTTP 503 from the judge (after 3 attempts)"),
    "reset-then-ok": ([reset(), verdict(1)], None),
    "timeout-then-ok": ([hang(3), verdict(1)], None),
    "timeout-always": ([hang(3)], "timed out after 0.4s (after 3 attempts)"),
    "not-json-then-ok": ([garbage(), verdict(1)], None),
    "not-json-always": (
        [garbage()],
        "unparseable reply after a re-ask: reply is not JSON: 'not json at all'",
    ),
    "wrong-shape-always": (
        [wrong_shape()],
        "unparseable reply after a re-ask: reply has no `score` field: "
        '\'{"reasoning": "The output looks fine.", "verdict": "pass"}\'',
    ),
    "out-of-range-always": (
        [verdict(7)],
        "unparseable reply after a re-ask: score 7 is outside the score type (binary (0 = fail, 1 = pass))",
    ),
    "string-score-always": (
        [verdict("maybe")],
        "unparseable reply after a re-ask: score 'maybe' is outside the score type (binary (0 = fail, 1 = pass))",
    ),
    "400": (
        [Reply(status=400)],
        "HTTP 400 from the judge: Error code: 400 - The fake judge returned HTTP 400 as scripted.",
    ),
    # A 200 that is not a chat completion: retried like a gateway error, then that example's error.
    "empty-200-then-ok": ([empty_body(), verdict(1)], None),
    "empty-200-always": ([empty_body()], "HTTP 200 from the judge with an empty body (after 3 attempts)"),
    "html-200-always": (
        [html_page()],
        "HTTP 200 from the judge with an HTML page: "
        "'<!DOCTYPE html><html><head><title>Gateway</title></head><body><h1>Please sign in' (after 3 attempts)",
    ),
    "truncated-200-always": (
        [truncated_json()],
        "HTTP 200 from the judge with truncated or invalid JSON: "
        """'{"id": "chatcmpl-cut", "object": "chat.completion", "choices": [{"index": 0, "me' (after 3 attempts)""",
    ),
}


@pytest.mark.anyio
async def test_every_judge_fault_ends_judged_or_recorded_as_an_error_with_its_cause(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = {rid: 1 for rid in FAULTS}
    seed(store, labels, JudgeSettings(max_retries=2, timeout=0.4))
    responder = PerRun({rid: replies for rid, (replies, _) in FAULTS.items()})
    with FakeJudgeServer(responder=responder) as srv:
        judge_env(monkeypatch, srv)
        with anyio.fail_after(30):
            report = await align.run_alignment(store, NAME, split="all", compare=False, concurrency=8)

    stored = results(store, report.run.id)
    assert sorted(stored) == sorted(FAULTS), "every example has a stored result: nothing dropped"
    assert all(r.done == 1 for r in stored.values())
    errors = {rid: r.error for rid, r in stored.items() if r.error is not None}
    assert errors == {rid: cause for rid, (_, cause) in FAULTS.items() if cause is not None}
    for rid, (_, cause) in FAULTS.items():
        if cause is None:
            assert stored[rid].judge_score is not None, rid
        else:
            assert stored[rid].judge_score is None, rid

    m = report.run.metrics
    assert m is not None
    assert (report.run.status, report.run.done, report.run.total) == ("completed", len(FAULTS), len(FAULTS))
    assert (report.run.judged, report.run.errors) == (len(FAULTS) - len(errors), len(errors))
    assert (m.errors, m.n) == (len(errors), len(FAULTS) - len(errors))
    assert m.agreement.n == len(FAULTS) - len(errors), "errors are never counted as agreement or disagreement"
    assert len(report.error_examples) == 5 and all(e.error for e in report.error_examples)
    assert (
        Note(
            text=f"{len(errors)} example(s) could not be judged and are excluded from every rate.",
            next_steps=[NextStep("resume_alignment", {"alignment_run": report.run.id, "retry_errors": True})],
        )
        in report.warnings
    )

    # Retry-After: 1 was honoured before the retry; a 400 is not retried; a bad reply is re-asked once.
    first, second = responder.seen["429-then-ok"]
    assert second - first >= 0.95
    assert len(responder.seen["400"]) == 1
    assert len(responder.seen["not-json-always"]) == 2
    assert len(responder.seen["500-always"]) == 3


@pytest.mark.anyio
async def test_a_connection_dropped_on_every_try_marks_that_example_as_error_and_the_run_goes_on(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = {f"r{i}": i % 2 for i in range(1, 9)}
    seed(store, labels, JudgeSettings(max_retries=1))
    plans: dict[str, list[Reply]] = {rid: [verdict(score)] for rid, score in labels.items()}
    plans["r5"] = [reset()]
    with FakeJudgeServer(responder=PerRun(plans)) as srv:
        judge_env(monkeypatch, srv)
        report = await align.run_alignment(store, NAME, split="all", compare=False, concurrency=1)
        assert (report.run.status, report.run.done, report.run.total) == ("completed", 8, 8)
        assert report.run.metrics is not None
        assert (report.run.metrics.n, report.run.metrics.errors) == (7, 1)
        assert [(e.run_id, e.error) for e in report.error_examples] == [
            ("r5", "connection failed (ReadError) (after 2 attempts)")
        ]

        plans["r5"] = [verdict(1)]
        before = len(srv.chat_bodies)
        again = await align.resume(store, 1, retry_errors=True)
        assert sorted(rid_of(b) for b in srv.chat_bodies[before:]) == ["r5"], "only the errored example"
    assert (again.run.status, again.run.judged, again.run.metrics.errors if again.run.metrics else None) == (
        "completed",
        8,
        0,
    )


@pytest.mark.anyio
async def test_a_refused_connection_interrupts_the_run_and_names_the_url(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store, {"r1": 1, "r2": 0}, JudgeSettings(max_retries=0))
    with FakeJudgeServer() as srv:
        url = srv.base_url
    monkeypatch.setenv("ALIGN_MCP_JUDGE_BASE_URL", url)  # the server is gone: the port refuses connections
    monkeypatch.setenv("ALIGN_MCP_JUDGE_API_KEY", KEY)
    monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", MODEL)
    with pytest.raises(JudgeUnreachable) as e:
        await align.run_alignment(store, NAME, split="all", compare=False, concurrency=1)
    assert str(e.value).startswith(f"Cannot reach the judge at {url}: ")
    assert str(e.value).endswith(
        "Check that the server is running and the base URL is right. Alignment run 1: 0 of 2 results kept."
    )
    assert e.value.next_steps == (NextStep("resume_alignment", {"alignment_run": 1}),)
    assert align.summary(store, 1).status == "interrupted"


@pytest.mark.anyio
async def test_a_judge_dribbling_its_reply_times_out_as_a_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store, {"slow": 1, "ok": 1}, JudgeSettings(max_retries=0, timeout=1))
    with FakeJudgeServer(responder=PerRun({"slow": [dribble(0.5)], "ok": [verdict(1)]})) as srv:
        judge_env(monkeypatch, srv)
        started = time.monotonic()
        with anyio.fail_after(20):
            report = await align.run_alignment(store, NAME, split="all", compare=False, concurrency=2)
        elapsed = time.monotonic() - started
    assert [(e.run_id, e.error) for e in report.error_examples] == [
        ("slow", "timed out after 1s (after 1 attempt)")
    ]
    assert (report.run.status, report.run.judged, report.run.errors) == ("completed", 1, 1)
    assert elapsed < 5, "each byte came within the read timeout, but the request as a whole did not"


@pytest.mark.anyio
async def test_a_huge_reasoning_is_cut_in_the_results_and_the_cache(
    store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store, {"big": 1, "ok": 0})
    huge = "The output is right. " * 250_000  # 5,250,000 characters
    with FakeJudgeServer(
        responder=PerRun({"big": [Reply(score=1, reasoning=huge)], "ok": [verdict(0)]})
    ) as srv:
        judge_env(monkeypatch, srv)
        report = await align.run_alignment(store, NAME, split="all", compare=False)
    assert (report.run.judged, report.run.errors) == (2, 0)
    kept = results(store, report.run.id)["big"].reasoning
    assert kept is not None and kept.startswith(huge[:8000])
    assert kept.endswith(" … [cut: the judge's reasoning was 5,250,000 characters; the first 8,000 are kept]")
    with sqlite3.connect(db_path) as conn:
        (cached,) = conn.execute("SELECT max(length(reasoning)) FROM judge_cache").fetchone()
    assert cached == len(kept)
    assert sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*")) < 2 * 2**20


@pytest.mark.anyio
@pytest.mark.parametrize("url", ["127.0.0.1:8000/v1", "localhost:11434/v1", "ftp://judge.example/v1"])
async def test_a_base_url_without_an_http_scheme_stops_the_run_before_any_call(
    store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    seed(store, {"r1": 1, "r2": 0})
    before = snapshot(db_path)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", MODEL)
    with pytest.raises(JudgeConfigError) as e:
        await align.run_alignment(store, NAME, split="all", compare=False)
    fix = f" (e.g. http://{url})" if "://" not in url else ""
    assert str(e.value) == (
        f"OPENAI_BASE_URL={url!r} is not an http:// or https:// URL, so no judge can be called at it. Start it "
        f"with http:// or https://{fix}."
    )
    assert snapshot(db_path) == before


@pytest.mark.anyio
async def test_rate_limit_waits_are_reported_in_progress_and_summed_in_the_summary(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store, {"r1": 1}, JudgeSettings(max_retries=2))
    progress: list[str] = []

    async def on_progress(done: int, total: int, message: str) -> None:
        progress.append(message)

    with FakeJudgeServer(responder=PerRun({"r1": [rate_limited(1), verdict(1)]})) as srv:
        judge_env(monkeypatch, srv)
        report = await align.run_alignment(store, NAME, split="all", compare=False, on_progress=on_progress)
    assert progress == [
        "draft: 0/1 judged (0 from cache)",
        "draft: 0/1 judged; waiting 1.0s after HTTP 429 from the judge",
        "draft: 1/1 judged",
    ]
    assert (report.run.requests, report.run.reasks, report.run.waited_s) == (2, 0, 1.0)
    assert (
        Note(
            text="1s of this run were spent waiting between attempts, after rate limits or errors (each wait is "
            "capped at 60s)."
        )
        in report.notes
    )


@pytest.mark.anyio
async def test_a_run_whose_every_example_errored_has_failed_and_says_why(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = {f"p{i}": i % 2 for i in range(1, 4)}
    seed(store, labels, JudgeSettings(max_retries=0))
    with FakeJudgeServer(responder=lambda body: garbage("The output is fine.")) as srv:
        judge_env(monkeypatch, srv)
        with pytest.raises(JudgeFailed) as e:
            await align.run_alignment(store, NAME, split="all")
        assert len(srv.chat_bodies) == 6, "each example asked once and re-asked once; no baseline judged"
    assert str(e.value) == (
        "Alignment run 1 failed: 0 judged, 3 errors. Cause: unparseable reply after a re-ask: reply is not JSON: "
        "'The output is fine.' (3 examples). Fix the judge, then judge the run again."
    )
    assert e.value.next_steps == (NextStep("resume_alignment", {"alignment_run": 1, "retry_errors": True}),)
    run = align.summary(store, 1)
    assert (run.status, run.done, run.judged, run.errors, run.requests, run.reasks) == (
        "failed",
        3,
        0,
        3,
        6,
        3,
    )
    assert (
        Note(
            text="Alignment run 1 failed: 0 judged, 3 errors.",
            next_steps=[NextStep("resume_alignment", {"alignment_run": 1, "retry_errors": True})],
        )
        in overview.evaluator_detail(store, NAME).notes
    )


FAILED_RUN = (
    "Alignment run 1 failed: 0 judged, 3 errors. Cause: unparseable reply after a re-ask: reply is not JSON: "
    "'The output is fine.' (3 examples). Fix the judge, then judge the run again."
)


@pytest.mark.anyio
async def test_through_mcp_a_run_whose_every_example_errored_is_an_error_result(
    store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcp import Client

    from align_mcp.mcp.server import create_server

    seed(store, {f"p{i}": i % 2 for i in range(1, 4)}, JudgeSettings(max_retries=0))
    with FakeJudgeServer(responder=lambda body: garbage("The output is fine.")) as srv:
        judge_env(monkeypatch, srv)
        async with Client(create_server(db_path)) as client:
            result = await client.call_tool("run_alignment", {"evaluator": NAME, "split": "all"})
    assert result.is_error
    assert result.content[0].text.startswith(f"Error executing tool run_alignment: {FAILED_RUN} ")  # type: ignore[union-attr]


def test_through_the_cli_a_run_whose_every_example_errored_exits_1_with_the_causes(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from align_mcp.cli.main import main

    with Store(db_path) as store:
        seed(store, {f"p{i}": i % 2 for i in range(1, 4)}, JudgeSettings(max_retries=0))
    with FakeJudgeServer(responder=lambda body: garbage("The output is fine.")) as srv:
        judge_env(monkeypatch, srv)
        result = CliRunner().invoke(main, ["--db", str(db_path), "align", NAME, "--split", "all"])
    assert (result.exit_code, result.stdout) == (1, "")
    assert (
        result.stderr == f"Error: {FAILED_RUN} Judge them again with `align-mcp resume 1 --retry-errors`.\n"
    )


def prose_first(body: dict[str, Any]) -> Reply:
    """Prose on the first request, a pass verdict when asked again: each example takes a re-ask."""
    return garbage("Looks fine.") if len(body["messages"]) == 2 else verdict(1)


@pytest.mark.anyio
async def test_through_mcp_a_run_reports_examples_judged_requests_and_re_asks_apart(
    store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcp import Client

    from align_mcp.mcp.server import create_server

    seed(store, {f"p{i}": 1 for i in range(1, 4)}, JudgeSettings(max_retries=0))
    with FakeJudgeServer(responder=prose_first) as srv:
        judge_env(monkeypatch, srv)
        async with Client(create_server(db_path)) as client:
            result = await client.call_tool("run_alignment", {"evaluator": NAME, "split": "all"})
    assert not result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert (
        "3 of 3 done (all): 3 judged (0 from cache), 0 error(s); model fake-judge; 6 request(s) to the judge "
        "(3 re-ask(s))" in text
    )
    run = result.structured_content["run"]  # type: ignore[index]
    assert (run["done"], run["judged"], run["errors"], run["requests"], run["reasks"]) == (3, 3, 0, 6, 3)


def test_through_the_cli_a_run_reports_examples_judged_requests_and_re_asks_apart(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from align_mcp.cli.main import main

    with Store(db_path) as store:
        seed(store, {f"p{i}": 1 for i in range(1, 4)}, JudgeSettings(max_retries=0))
    with FakeJudgeServer(responder=prose_first) as srv:
        judge_env(monkeypatch, srv)
        result = CliRunner().invoke(main, ["--db", str(db_path), "align", NAME, "--split", "all"])
    assert result.exit_code == 0, result.output
    assert (
        "completed, 3/3 done: 3 judged (0 from cache), 0 error(s); 6 request(s) to the judge (3 re-ask(s))"
        in (result.stdout)
    )


# ---- 2. crash: kill -9 mid-alignment, restart, resume ------------------------------------------------------


def cli(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "align_mcp.cli", "--db", str(db), *args]


def subprocess_env(srv: FakeJudgeServer, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ALIGN_MCP_"))}
    env.update(
        ALIGN_MCP_JUDGE_BASE_URL=srv.base_url,
        ALIGN_MCP_JUDGE_API_KEY=KEY,
        ALIGN_MCP_JUDGE_MODEL=MODEL,
        XDG_DATA_HOME=str(tmp_path / "xdg"),
        PYTHONUNBUFFERED="1",
    )
    return env


def snapshot_labels(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT id, evaluator, run_id, score, comment, labeler, created_at, current FROM labels ORDER BY id"
        ).fetchall()


def done_results(db: Path, aid: int) -> dict[str, tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT run_id, judge_score, reasoning, error FROM alignment_results WHERE alignment_id = ? AND done = 1",
            [aid],
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def settle(srv: FakeJudgeServer, quiet: float = 0.15, timeout: float = 10) -> None:
    """Wait until the judge holds no request and has received none for `quiet` seconds: requests a killed
    client had already sent are recorded before the next step starts counting."""
    deadline = time.monotonic() + timeout
    seen, since = len(srv.requests), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.01)
        if len(srv.requests) != seen or srv.in_flight:
            seen, since = len(srv.requests), time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise AssertionError("the fake judge never went quiet")


def kill_mid_alignment(
    db: Path, env: dict[str, str], after: int, timeout: float = 60
) -> subprocess.Popen[bytes]:
    """Start `align-mcp align` and SIGKILL it once `after` results are stored (read from another connection)."""
    proc = subprocess.Popen(
        cli(db, "align", NAME, "--split", "all", "--no-compare", "--concurrency", "4"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    with sqlite3.connect(db, timeout=30) as conn:
        while time.monotonic() < deadline:
            try:
                (n,) = conn.execute("SELECT count(*) FROM alignment_results WHERE done = 1").fetchone()
            except sqlite3.OperationalError:  # the table is not there yet or the file is busy
                n = 0
            if n >= after:
                os.kill(proc.pid, signal.SIGKILL)
                proc.communicate()
                return proc
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(f"the alignment ended before the kill: {err.decode()!r}")
            time.sleep(0.005)
    proc.kill()
    proc.communicate()
    raise AssertionError("no results were stored in time")


def test_kill_9_mid_alignment_then_resume_loses_no_label_and_judges_only_the_missing_examples(
    db_path: Path, tmp_path: Path
) -> None:
    labels = {f"k{i:02d}": i % 2 for i in range(48)}
    with Store(db_path) as store:
        seed(store, labels)
    before_labels = snapshot_labels(db_path)
    answers = PerRun(
        {rid: [Reply(score=score, reasoning=f"judged {rid}", delay=0.08)] for rid, score in labels.items()}
    )
    with FakeJudgeServer(responder=answers) as srv:
        env = subprocess_env(srv, tmp_path)
        proc = kill_mid_alignment(db_path, env, after=8)
        assert proc.returncode == -signal.SIGKILL
        settle(srv)
        at_kill = done_results(db_path, 1)
        assert 8 <= len(at_kill) < len(labels)
        missing = sorted(set(labels) - set(at_kill))
        requests_before = len(srv.chat_bodies)

        out = subprocess.run(cli(db_path, "resume", "1", "--json"), env=env, capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        resumed = sorted(rid_of(b) for b in srv.chat_bodies[requests_before:])

    report = json.loads(out.stdout)
    assert (report["run"]["status"], report["run"]["judged"], report["run"]["total"]) == ("completed", 48, 48)
    assert resumed == missing, "only the examples without a stored result are judged again, each once"
    assert snapshot_labels(db_path) == before_labels, "no label lost or changed"
    after = done_results(db_path, 1)
    assert sorted(after) == sorted(labels)
    assert {rid: after[rid] for rid in at_kill} == at_kill, (
        "results stored before the kill are kept as they were"
    )
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM alignment_results WHERE alignment_id = 1").fetchone() == (
            48,
        )
        assert conn.execute("SELECT count(*) FROM alignment_runs").fetchone() == (1,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# ---- 3. concurrency: eight labelers on one queue -----------------------------------------------------------

LABELER = r"""
import json, sys
from align_mcp.engine import queues
from align_mcp.store import Store

db, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()
got, relabeled = [], 0
with Store(db) as store:
    while len(got) < count:
        items = queues.next_items(store, "correctness", labeler=name, limit=min(5, count - len(got)))
        if not items:
            break
        ids = [i.run_id for i in items]
        got.extend(ids)
        receipts = queues.submit_labels(
            store, "correctness", [{"run_id": r, "score": 1, "comment": name} for r in ids], labeler=name
        )
        relabeled += sum(r.relabeled for r in receipts)
print(json.dumps({"got": got, "relabeled": relabeled}), flush=True)
"""


def label_in_thread(db: Path, name: str, count: int, start: threading.Event, out: dict[str, Any]) -> None:
    got: list[str] = []
    relabeled = 0
    start.wait()
    with Store(db) as store:
        while len(got) < count:
            items = queues.next_items(store, NAME, labeler=name, limit=min(5, count - len(got)))
            if not items:
                break
            ids = [i.run_id for i in items]
            got.extend(ids)
            receipts = queues.submit_labels(
                store, NAME, [{"run_id": r, "score": 0, "comment": name} for r in ids], labeler=name
            )
            relabeled += sum(r.relabeled for r in receipts)
    out[name] = {"got": got, "relabeled": relabeled}


def test_eight_labelers_store_every_label_and_never_share_an_item(db_path: Path, tmp_path: Path) -> None:
    per_labeler, threads_n, processes_n = 200, 6, 2
    total = per_labeler * (threads_n + processes_n)
    with Store(db_path) as store:
        evaluators.create(store, NAME, BINARY)
        runs = [{"id": f"q{i:04d}", "inputs": {"q": i}, "outputs": {"a": i}} for i in range(total)]
        ingest.import_runs(store, "support", runs=runs)
        queues.add_to_queue(store, NAME, source="support")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ALIGN_MCP_"))}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LABELER, str(db_path), f"process-{i}", str(per_labeler)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes_n)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    start = threading.Event()
    out: dict[str, Any] = {}
    threads = [
        threading.Thread(target=label_in_thread, args=(db_path, f"thread-{i}", per_labeler, start, out))
        for i in range(threads_n)
    ]
    for t in threads:
        t.start()
    start.set()
    for p in procs:  # release the processes at the same moment as the threads
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for t in threads:
        t.join(timeout=120)
    for i, p in enumerate(procs):
        stdout, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        out[f"process-{i}"] = json.loads(stdout.strip().splitlines()[-1])

    assert sorted(out) == sorted(
        [f"thread-{i}" for i in range(threads_n)] + [f"process-{i}" for i in range(processes_n)]
    )
    handed_out = [rid for o in out.values() for rid in o["got"]]
    assert all(len(o["got"]) == per_labeler for o in out.values())
    assert len(handed_out) == len(set(handed_out)) == total, "no item was handed to two labelers"
    assert sum(o["relabeled"] for o in out.values()) == 0
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT run_id) FROM labels").fetchone() == (
            total,
            total,
        )
        assert conn.execute("SELECT count(*) FROM labels WHERE current = 1").fetchone() == (total,)
        rows = conn.execute("SELECT run_id, labeler, comment FROM labels").fetchall()
        assert all(labeler == comment for _, labeler, comment in rows), "each label is its labeler's own"
        owner = {rid: o for o, v in out.items() for rid in v["got"]}
        assert all(owner[rid] == labeler for rid, labeler, _ in rows)
        assert conn.execute(
            "SELECT count(*) FROM queue_items WHERE labeled = 0 OR reserved_by IS NOT NULL"
        ).fetchone() == (0,)


# ---- 5. secrets --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_judge_api_key_never_appears_in_results_logs_the_database_or_errors(
    store: Store,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    labels = {f"s{i}": i % 2 for i in range(1, 7)}
    seed(store, labels, JudgeSettings(max_retries=1, timeout=0.3))
    plans: dict[str, list[Reply]] = {rid: [verdict(score)] for rid, score in labels.items()}
    plans["s1"] = [garbage(f"not json {KEY[:6]}")]
    plans["s2"] = [server_error(500)]
    plans["s3"] = [hang(2)]
    seen: list[str] = []
    with FakeJudgeServer(responder=PerRun(plans)) as srv:
        judge_env(monkeypatch, srv)
        report = await align.run_alignment(store, NAME, split="all", compare=False, concurrency=3)
        texts = [report.model_dump_json(), repr(report)]
        texts.append(align.get_misaligned(store, NAME, limit=100).model_dump_json())
        texts.append(evaluators.get(store, NAME).model_dump_json())
        seen = [r.headers.get("authorization", "") for r in srv.requests]

        # A rejected key: the error names the variables to check, never the key.
        srv.responder = lambda body: Reply(status=401)
        evaluators.update_draft(store, NAME, prompt="Is this right? {{outputs}} Answer with a score.")
        with pytest.raises(JudgeConfigError) as e:
            await align.run_alignment(store, NAME, split="all", compare=False)
        texts.append(str(e.value))

        # The CLI, human and JSON output, and its stderr.
        env = subprocess_env(srv, tmp_path)
        srv.responder = PerRun(plans)
        for args in (
            ["align", NAME, "--split", "all"],
            ["align", NAME, "--split", "all", "--json"],
            ["evaluator", "show", NAME, "--json"],
        ):
            out = subprocess.run(cli(db_path, *args), env=env, capture_output=True, text=True, timeout=60)
            texts += [out.stdout, out.stderr]

        # The MCP tools' results.
        from mcp import Client

        from align_mcp.mcp.server import create_server

        async with Client(create_server(db_path)) as client:
            for tool, arguments in (
                ("run_alignment", {"evaluator": NAME, "split": "all"}),
                ("get_evaluator", {"name": NAME}),
                ("list_evaluators", {}),
                ("get_misaligned", {"evaluator": NAME}),
            ):
                result = await client.call_tool(tool, arguments)
                texts.append(json.dumps(result.model_dump(mode="json")))

    assert all(h == f"Bearer {KEY}" for h in seen) and seen, "the key did reach the judge"
    assert texts and all(KEY not in t for t in texts)
    assert KEY not in caplog.text
    for path in db_path.parent.glob(db_path.name + "*"):
        assert KEY.encode() not in path.read_bytes(), path


# ---- 4. the bad-input corpus -------------------------------------------------------------------------------


@dataclass
class Bad:
    """One bad input: what to do with the template store, and the exact error it must get."""

    id: str
    action: Callable[[BadCtx], Any]
    error: type[Exception]
    message: str  # {tmp} stands for the case's directory
    exact: bool = True  # False: the message starts with this (pydantic appends a versioned URL)


@dataclass
class BadCtx:
    store: Store
    db: Path
    tmp: Path

    def file(self, name: str, content: str | bytes) -> str:
        path = self.tmp / name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return str(path)

    def import_file(self, name: str, content: str | bytes, source: str = "new-source") -> Any:
        return ingest.import_runs(self.store, source, path=self.file(name, content))


class ToolFailed(Exception):
    """An MCP tool call came back with is_error (its text is the message)."""


def mcp_call(tool: str, arguments: dict[str, Any]) -> Callable[[BadCtx], Any]:
    def call(ctx: BadCtx) -> Any:
        from mcp import Client

        from align_mcp.mcp.server import create_server

        async def go() -> Any:
            async with Client(create_server(ctx.db)) as client:
                result = await client.call_tool(tool, arguments)
            if result.is_error:
                raise ToolFailed("".join(getattr(c, "text", "") for c in result.content))
            return result

        return anyio.run(go)

    return call


GOOD = '{"id": "g%d", "inputs": {"q": %d}, "outputs": {"a": %d}}\n'
RUN = '{"inputs": {"q": 1}, "outputs": {"a": 1}, %s}\n'


def _labels(evaluator: str, *labels: dict[str, Any]) -> Callable[[BadCtx], Any]:
    return lambda ctx: queues.submit_labels(ctx.store, evaluator, list(labels))


BIG = 10_001
BAD_INPUTS: list[Bad] = [
    # -- JSONL: malformed, truncated, wrong shapes
    Bad(
        "jsonl-invalid-json",
        lambda c: c.import_file("a.jsonl", GOOD % (1, 1, 1) + '{"inputs": {"q": 2}, "outputs": }\n'),
        ImportFormatError,
        "{tmp}/a.jsonl:2: invalid JSON (Expecting value at column 33). Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "jsonl-truncated-last-line",
        lambda c: c.import_file("a.jsonl", GOOD % (1, 1, 1) + '{"inputs": {"q": "unfinish'),
        ImportFormatError,
        "{tmp}/a.jsonl:2: invalid JSON (Unterminated string starting at at column 18). Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "jsonl-array-file",
        lambda c: c.import_file("a.jsonl", '[{"inputs": {"q": 1}, "outputs": {"a": 1}}]\n'),
        ImportFormatError,
        "{tmp}/a.jsonl:1: not a JSON object (got an array); this looks like a JSON array file, but each line must be one JSON object (convert with: jq -c '.[]' file.json > file.jsonl). Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "jsonl-scalar-line",
        lambda c: c.import_file("a.jsonl", GOOD % (1, 1, 1) + "42\n"),
        ImportFormatError,
        "{tmp}/a.jsonl:2: not a JSON object (got a number). Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "jsonl-missing-inputs",
        lambda c: c.import_file("a.jsonl", '{"outputs": {"a": 1}}\n'),
        ImportFormatError,
        '{tmp}/a.jsonl:1: missing inputs (add an "inputs" object or an "input" field). Fix that line and import again; nothing from this file was stored.',
    ),
    Bad(
        "jsonl-missing-outputs",
        lambda c: c.import_file("a.jsonl", '{"inputs": {"q": 1}}\n'),
        ImportFormatError,
        '{tmp}/a.jsonl:1: missing outputs (add an "outputs" object or an "output" field). Fix that line and import again; nothing from this file was stored.',
    ),
    Bad(
        "jsonl-metadata-not-object",
        lambda c: c.import_file("a.jsonl", RUN % '"metadata": [1, 2]'),
        ImportFormatError,
        "{tmp}/a.jsonl:1: metadata must be an object (got an array). Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "jsonl-feedback-not-object",
        lambda c: c.import_file("a.jsonl", RUN % '"feedback": "good"'),
        ImportFormatError,
        '{tmp}/a.jsonl:1: feedback must be an object like {"correctness": {"score": 1}} or a list of {"key", "score"} items (got a string). Fix that line and import again; nothing from this file was stored.',
    ),
    Bad(
        "jsonl-feedback-score-object",
        lambda c: c.import_file("a.jsonl", RUN % '"feedback": {"correctness": {"score": {"v": 1}}}'),
        ImportFormatError,
        "{tmp}/a.jsonl:1: feedback 'correctness' score must be a number, string or boolean (got an object). Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "jsonl-feedback-comment-number",
        lambda c: c.import_file("a.jsonl", RUN % '"feedback": {"correctness": {"score": 1, "comment": 5}}'),
        ImportFormatError,
        "{tmp}/a.jsonl:1: feedback 'correctness' comment must be a string (got a number). Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "jsonl-empty-id",
        lambda c: c.import_file("a.jsonl", RUN % '"id": "  "'),
        ImportFormatError,
        '{tmp}/a.jsonl:1: id is empty (give the run a non-empty id, or drop the "id" field to get one derived from its content). Fix that line and import again; nothing from this file was stored.',
    ),
    Bad(
        "jsonl-id-list",
        lambda c: c.import_file("a.jsonl", RUN % '"id": ["x"]'),
        ImportFormatError,
        "{tmp}/a.jsonl:1: id must be a string or a number (got an array). Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "jsonl-nan",
        lambda c: c.import_file("a.jsonl", '{"inputs": {"q": NaN}, "outputs": {"a": 1}}\n'),
        ImportFormatError,
        "{tmp}/a.jsonl:1: invalid JSON (NaN is not valid JSON; write null or a number). Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "jsonl-deep-nesting",
        lambda c: c.import_file("a.jsonl", '{"inputs": ' + "[" * 200_000 + "\n"),
        ImportFormatError,
        "{tmp}/a.jsonl:1: invalid JSON (maximum recursion depth exceeded while decoding a JSON array from a unicode string). Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "jsonl-empty-file",
        lambda c: c.import_file("a.jsonl", ""),
        ImportFormatError,
        "{tmp}/a.jsonl: no runs found (the input is empty). Nothing was stored.",
    ),
    Bad(
        "jsonl-blank-lines-only",
        lambda c: c.import_file("a.jsonl", "\n   \n\t\n"),
        ImportFormatError,
        "{tmp}/a.jsonl: no runs found (the input is empty). Nothing was stored.",
    ),
    Bad(
        "jsonl-bad-line-after-1000-good",
        lambda c: c.import_file("a.jsonl", "".join(GOOD % (i, i, i) for i in range(1000)) + "{oops}\n"),
        ImportFormatError,
        "{tmp}/a.jsonl:1001: invalid JSON (Expecting property name enclosed in double quotes at column 2). Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "jsonl-feedback-score-not-binary",
        lambda c: c.import_file("a.jsonl", RUN % '"feedback": {"correctness": {"score": "maybe"}}'),
        ImportFormatError,
        "line 1: feedback for evaluator 'correctness': Score 'maybe' is not valid for a binary evaluator; use 1 (pass) or 0 (fail). Nothing from this import was stored.",
    ),
    Bad(
        "jsonl-feedback-score-outside-ordinal",
        lambda c: c.import_file("a.jsonl", RUN % '"feedback": {"tone": {"score": 9}}'),
        ImportFormatError,
        "line 1: feedback for evaluator 'tone': Score 9 is not valid for an ordinal evaluator; use an integer from 1 to 5. Nothing from this import was stored.",
    ),
    Bad(
        "jsonl-existing-source-other-kind",
        lambda c: ingest.import_runs(
            c.store, "support", path=c.file("a.jsonl", GOOD % (1, 1, 1)), kind="project"
        ),
        Conflict,
        "Source 'support' already exists with kind 'experiment', not 'project'. Use kind='experiment' or another source name.",
    ),
    # -- wrong encodings and binary data
    Bad(
        "jsonl-latin-1",
        lambda c: c.import_file(
            "a.jsonl", '{"inputs": {"q": "café"}, "outputs": {"a": 1}}\n'.encode("latin-1")
        ),
        ImportFormatError,
        "{tmp}/a.jsonl:1: not valid UTF-8 (byte 0xe9 at column 22); save the file as UTF-8. Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "jsonl-utf-16",
        lambda c: c.import_file("a.jsonl", (GOOD % (1, 1, 1)).encode("utf-16")),
        ImportFormatError,
        "{tmp}/a.jsonl:1: not valid UTF-8 (byte 0xff at column 1); save the file as UTF-8. Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "jsonl-binary",
        lambda c: c.import_file("a.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
        ImportFormatError,
        "{tmp}/a.jsonl:1: not valid UTF-8 (byte 0x89 at column 1); save the file as UTF-8. Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "binary-without-extension",
        lambda c: c.import_file("blob", bytes(range(256)) * 4),
        ImportFormatError,
        "Cannot tell the format of {tmp}/blob. Supported: JSON Lines (.jsonl, .ndjson: one JSON object per line) or CSV (.csv, .tsv: a header row, then one run per row). Rename the file with one of those extensions.",
    ),
    Bad(
        "csv-cp1252",
        lambda c: c.import_file("a.csv", "input,output\nnaïve “quote”,x\n".encode("cp1252")),
        ImportFormatError,
        "{tmp}/a.csv:2: not valid UTF-8 (byte 0xef at column 3); save the file as UTF-8. Fix that line and import again; nothing from this file was stored.",
    ),
    # -- huge fields
    Bad(
        "jsonl-huge-line",
        lambda c: c.import_file(
            "a.jsonl", '{"inputs": {"q": "' + "x" * (2 * 1024 * 1024) + '"}, "outputs": {"a": 1}}\n'
        ),
        ImportFormatError,
        "{tmp}/a.jsonl:1: the line is longer than 1 MiB, the most one record may hold. Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "csv-huge-field",
        lambda c: c.import_file("a.csv", "input,output\n" + "y" * (2 * 1024 * 1024) + ",x\n"),
        ImportFormatError,
        "{tmp}/a.csv:2: the line is longer than 1 MiB, the most one record may hold. Fix that line and import again; nothing from this file was stored.",
    ),
    # -- CSV
    Bad(
        "csv-unclosed-quote",
        lambda c: c.import_file("a.csv", 'input,output\nq1,a1\n"q2,a2\nq3,a3\n'),
        ImportFormatError,
        "{tmp}/a.csv:3: a quoted field starting on this line is never closed (invalid CSV: unexpected end of data). Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "csv-extra-field",
        lambda c: c.import_file("a.csv", "input,output\nq1,a1,extra\n"),
        ImportFormatError,
        "{tmp}/a.csv:2: the row has 3 fields but the header has 2; quote fields that contain the delimiter. Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "csv-no-output-column",
        lambda c: c.import_file("a.csv", "input,answer_text\nq1,a1\n"),
        ImportFormatError,
        '{tmp}/a.csv:1: the header has no outputs column (found: \'input\', \'answer_text\'; expected "input" or "inputs.<name>" columns, and "output" or "outputs.<name>" columns). Fix that line and import again; nothing from this file was stored.',
    ),
    Bad(
        "csv-duplicate-column",
        lambda c: c.import_file("a.csv", "input,output,input\nq,a,q\n"),
        ImportFormatError,
        "{tmp}/a.csv:1: the header names column 'input' twice; give each column one name. Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "csv-empty",
        lambda c: c.import_file("a.csv", ""),
        ImportFormatError,
        "{tmp}/a.csv:1: no header row (a CSV file starts with a header such as: id,input,output). Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "csv-value-in-unnamed-column",
        lambda c: c.import_file("a.csv", "input,output,\nq,a,surprise\n"),
        ImportFormatError,
        "{tmp}/a.csv:2: column 3 holds a value but has no name in the header. Fix that line and import again; nothing from this file was stored.",
    ),
    Bad(
        "csv-feedback-score-not-binary",
        lambda c: c.import_file("a.csv", "input,output,feedback.correctness\nq,a,perhaps\n"),
        ImportFormatError,
        "line 2: feedback for evaluator 'correctness': Score 'perhaps' is not valid for a binary evaluator; use 1 (pass) or 0 (fail). Nothing from this import was stored.",
    ),
    # -- import paths
    Bad(
        "path-missing-with-traversal",
        lambda c: ingest.import_runs(c.store, "s", path=str(c.tmp / "../../no/such/../runs.jsonl")),
        ImportFormatError,
        "No file at {tmp}/../../no/such/../runs.jsonl. Check the path; it is read by the machine running align-mcp.",
    ),
    Bad(
        "path-traversal-to-system-file",
        lambda c: ingest.import_runs(c.store, "s", path=str(c.tmp) + "/../" * 12 + "etc/passwd"),
        ImportFormatError,
        "Cannot tell the format of {tmp}/../../../../../../../../../../../../etc/passwd. Supported: JSON Lines (.jsonl, .ndjson: one JSON object per line) or CSV (.csv, .tsv: a header row, then one run per row). Rename the file with one of those extensions.",
    ),
    Bad(
        "path-directory",
        lambda c: ingest.import_runs(c.store, "s", path=str(c.tmp)),
        ImportFormatError,
        "{tmp} is a directory, not a file. Pass the path of a .jsonl or .csv file inside it.",
    ),
    Bad(
        "path-device",
        lambda c: ingest.import_runs(c.store, "s", path="/dev/zero"),
        ImportFormatError,
        "/dev/zero is a character device, not a regular file; runs are imported from regular files only. Save the runs to a .jsonl or .csv file and import that.",
    ),
    Bad(
        "path-nul-byte",
        lambda c: ingest.import_runs(c.store, "s", path="runs\x00.jsonl"),
        ImportFormatError,
        "No file at runs\x00.jsonl. Check the path; it is read by the machine running align-mcp.",
    ),
    Bad(
        "path-too-long",
        lambda c: ingest.import_runs(c.store, "s", path="r" * 5000 + ".jsonl"),
        ImportFormatError,
        "Cannot use the path 'rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr'…: File name too long. Check the path; it is read by the machine running align-mcp.",
    ),
    Bad(
        "path-and-runs",
        lambda c: ingest.import_runs(c.store, "s", path="x.jsonl", runs=[]),
        InvalidInput,
        "Give either a file path or an inline list of runs, not both and not neither.",
    ),
    # -- SQL metacharacters in names and filters
    Bad(
        "source-name-sql",
        lambda c: ingest.import_runs(
            c.store, "x'; DROP TABLE runs; --", runs=[{"inputs": {}, "outputs": {"a": 1}}]
        ),
        InvalidInput,
        "Source name \"x'; DROP TABLE runs; --\" is not allowed: use 1–64 letters, digits, '_', '-' or '.', starting with a letter or digit.",
    ),
    Bad(
        "evaluator-name-sql",
        lambda c: evaluators.create(c.store, 'e" OR 1=1 --', BINARY),
        InvalidInput,
        "Evaluator name 'e\" OR 1=1 --' is not allowed: use 1–64 letters, digits, '_', '-' or '.', starting with a letter or digit.",
    ),
    Bad(
        "evaluator-lookup-sql",
        lambda c: evaluators.get(c.store, "correctness' OR '1'='1"),
        NotFound,
        "No evaluator named \"correctness' OR '1'='1\". Known: category, correctness, tone.",
    ),
    Bad(
        "queue-source-sql",
        lambda c: queues.add_to_queue(c.store, NAME, source="support; DROP TABLE labels"),
        NotFound,
        "No source named 'support; DROP TABLE labels'. Known: support.",
    ),
    Bad(
        "queue-filter-key-sql",
        lambda c: queues.add_to_queue(c.store, NAME, metadata={"topic') OR 1=1 --": "x"}),
        NotFound,
        'No runs match source=None metadata={"topic\') OR 1=1 --": "x"}.',
    ),
    Bad(
        "queue-filter-value-sql",
        lambda c: queues.add_to_queue(c.store, NAME, metadata={"topic": "x' OR '1'='1"}),
        NotFound,
        "No runs match source=None metadata={\"topic\": \"x' OR '1'='1\"}.",
    ),
    Bad(
        "label-run-id-sql",
        _labels(NAME, {"run_id": "pp-001' OR '1'='1", "score": 1}),
        NotFound,
        "Label 1: no run with id \"pp-001' OR '1'='1\". Check the id.",
    ),
    # -- unknown ids
    Bad(
        "queue-unknown-run-ids",
        lambda c: queues.add_to_queue(c.store, NAME, run_ids=["pp-001", "nope-1", "nope-2"]),
        NotFound,
        "2 run id(s) are not in the store: 'nope-1', 'nope-2'.",
    ),
    Bad(
        "label-unknown-evaluator",
        _labels("tonality", {"run_id": "pp-001", "score": 1}),
        NotFound,
        "No evaluator named 'tonality'. Known: category, correctness, tone.",
    ),
    Bad(
        "alignment-unknown-version",
        lambda c: anyio.run(lambda: align.run_alignment(c.store, NAME, "v99")),
        NotFound,
        "Evaluator 'correctness' has no version 99. Known: v1.",
    ),
    Bad(
        "alignment-unknown-run",
        lambda c: anyio.run(lambda: align.resume(c.store, 999)),
        NotFound,
        "No alignment run 999.",
    ),
    Bad(
        "misaligned-run-of-other-evaluator",
        lambda c: align.get_misaligned(c.store, "tone", alignment_run=1),
        InvalidInput,
        "Alignment run 1 belongs to 'correctness', not 'tone'.",
    ),
    # -- wrong score types
    Bad(
        "score-binary-word",
        _labels(NAME, {"run_id": "pp-001", "score": "maybe"}),
        InvalidScore,
        "Label 1 (run 'pp-001'): Score 'maybe' is not valid for a binary evaluator; use 1 (pass) or 0 (fail).",
    ),
    Bad(
        "score-binary-2",
        _labels(NAME, {"run_id": "pp-001", "score": 2}),
        InvalidScore,
        "Label 1 (run 'pp-001'): Score 2 is not valid for a binary evaluator; use 1 (pass) or 0 (fail).",
    ),
    Bad(
        "score-ordinal-fraction",
        _labels("tone", {"run_id": "pp-001", "score": 2.5}),
        InvalidScore,
        "Label 1 (run 'pp-001'): Score 2.5 is not valid for an ordinal evaluator; use an integer from 1 to 5.",
    ),
    Bad(
        "score-ordinal-word",
        _labels("tone", {"run_id": "pp-001", "score": "high"}),
        InvalidScore,
        "Label 1 (run 'pp-001'): Score 'high' is not valid for an ordinal evaluator; use an integer from 1 to 5.",
    ),
    Bad(
        "score-ordinal-bool",
        _labels("tone", {"run_id": "pp-001", "score": True}),
        InvalidScore,
        "Label 1 (run 'pp-001'): Score True is not valid for an ordinal evaluator; use an integer from 1 to 5.",
    ),
    Bad(
        "score-categorical-unknown",
        _labels("category", {"run_id": "pp-001", "score": "great"}),
        InvalidScore,
        "Label 1 (run 'pp-001'): Score 'great' is not one of this evaluator's labels: good, ok, bad.",
    ),
    Bad(
        "score-categorical-number",
        _labels("category", {"run_id": "pp-001", "score": 3}),
        InvalidScore,
        "Label 1 (run 'pp-001'): Score 3 is not one of this evaluator's labels: good, ok, bad.",
    ),
    Bad(
        "score-missing",
        _labels(NAME, {"run_id": "pp-001", "score": None}),
        InvalidInput,
        "Label 1 (run 'pp-001') has no score. Allowed: binary (0 = fail, 1 = pass).",
    ),
    Bad(
        "comment-not-text",
        _labels(NAME, {"run_id": "pp-001", "score": 1, "comment": {"why": "x"}}),
        InvalidInput,
        "Label 1 (run 'pp-001'): comment must be text.",
    ),
    Bad(
        "second-label-of-batch-bad",
        _labels(NAME, {"run_id": "pp-001", "score": 1}, {"run_id": "pp-002", "score": "?"}),
        InvalidScore,
        "Label 2 (run 'pp-002'): Score '?' is not valid for a binary evaluator; use 1 (pass) or 0 (fail).",
    ),
    # -- drafts and other arguments
    Bad(
        "draft-unknown-variable",
        lambda c: evaluators.update_draft(c.store, NAME, prompt="Judge {{input}} and {{outputs}}."),
        InvalidInput,
        "Unknown template variable(s): {{input}}. Use {{inputs}}, {{outputs}}, {{reference_outputs}}, {{metadata}} or dotted paths such as {{inputs.question}}.",
    ),
    Bad(
        "draft-without-outputs",
        lambda c: evaluators.update_draft(c.store, NAME, prompt="Judge {{inputs}}."),
        InvalidInput,
        "The prompt never shows the output being judged: add {{outputs}} (or a path such as {{outputs.answer}}) to the template.",
    ),
    Bad(
        "draft-replace-missing",
        lambda c: evaluators.update_draft(c.store, NAME, replace=("no such text", "x")),
        InvalidInput,
        "The text to replace does not occur in the draft of 'correctness': 'no such text'. Quote a passage that occurs exactly once, or replace the whole prompt.",
    ),
    Bad(
        "draft-temperature-out-of-range",
        lambda c: evaluators.update_draft(c.store, NAME, judge={"temperature": 9}),
        InvalidInput,
        "Invalid judge settings {'temperature': 9}: temperature: Input should be less than or equal to 2.",
    ),
    Bad(
        "draft-unknown-setting",
        lambda c: evaluators.update_draft(c.store, NAME, judge={"api_key": "sk-x"}),
        InvalidInput,
        "Unknown judge setting(s): api_key. Known: model, base_url, api_key_env, temperature, reasoning, max_tokens, timeout, max_retries, members, combine.",
    ),
    Bad(
        "next-items-limit-0",
        lambda c: queues.next_items(c.store, NAME, limit=0),
        InvalidInput,
        "limit=0 must be between 1 and 100.",
    ),
    Bad(
        "misaligned-limit-1000",
        lambda c: align.get_misaligned(c.store, NAME, limit=1000),
        InvalidInput,
        "offset=0, limit=1000: offset must be ≥ 0 and limit 1–100.",
    ),
    # -- oversized arguments
    Bad(
        "inline-runs-over-limit",
        lambda c: ingest.import_runs(
            c.store, "s", runs=[{"inputs": {}, "outputs": {"a": i}} for i in range(BIG)]
        ),
        InvalidInput,
        "10001 inline runs; send at most 10000 per call, or a file path.",
    ),
    Bad(
        "labels-over-limit",
        lambda c: queues.submit_labels(c.store, NAME, [{"run_id": "pp-001", "score": 1}] * BIG),
        InvalidInput,
        "10001 labels in one call; send at most 10000 per call.",
    ),
    Bad(
        "label-huge-comment",
        _labels(NAME, {"run_id": "pp-001", "score": 1, "comment": "c" * 2_000_000}),
        InvalidInput,
        "Label 1 (run 'pp-001'): the comment is 2,000,000 characters; keep it under 20,000 (say why the score is right, not the whole case).",
    ),
    Bad(
        "draft-huge-prompt",
        lambda c: evaluators.update_draft(c.store, NAME, prompt="{{outputs}} " + "p" * 5_000_000),
        InvalidInput,
        "The prompt is 5,000,012 characters; a judge prompt may have at most 200,000. Keep the grading instructions and let {{inputs}} / {{outputs}} bring in each example.",
    ),
    # -- the same through the MCP server (in-memory client)
    Bad(
        "mcp-labels-over-limit",
        mcp_call("submit_labels", {"evaluator": NAME, "labels": [{"run_id": "pp-001", "score": 1}] * BIG}),
        ToolFailed,
        "Error executing tool submit_labels: labels (a list of 10,001 items) is not allowed: labels takes a list of 1 to 10000 items. Call submit_labels again with labels fixed; nothing was done.",
    ),
    Bad(
        "mcp-huge-comment",
        mcp_call(
            "submit_label", {"evaluator": NAME, "run_id": "pp-001", "score": 1, "comment": "c" * 2_000_000}
        ),
        ToolFailed,
        "Error executing tool submit_label: Label 1 (run 'pp-001'): the comment is 2,000,000 characters; keep it under 20,000 (say why the score is right, not the whole case).",
    ),
    Bad(
        "mcp-import-path-traversal",
        mcp_call("import_runs", {"source": "s", "path": "../../../../../../etc/shadow"}),
        ToolFailed,
        "Error executing tool import_runs: Cannot tell the format of ../../../../../../etc/shadow. Supported: JSON Lines (.jsonl, .ndjson: one JSON object per line) or CSV (.csv, .tsv: a header row, then one run per row). Rename the file with one of those extensions.",
    ),
    Bad(
        "mcp-limit-out-of-range",
        mcp_call("get_misaligned", {"evaluator": NAME, "limit": 1000}),
        ToolFailed,
        "Error executing tool get_misaligned: limit=1000 is not allowed: limit takes a whole number from 1 to 20. Call get_misaligned again with limit fixed; nothing was done.",
    ),
    Bad(
        "mcp-wrong-argument-type",
        mcp_call("next_items", {"evaluator": NAME, "limit": "ten"}),
        ToolFailed,
        'Error executing tool next_items: limit="ten" is not allowed: limit takes a whole number from 1 to 20. Call next_items again with limit fixed; nothing was done.',
    ),
    Bad(
        "mcp-sql-in-evaluator-name",
        mcp_call("get_evaluator", {"name": "x'; DROP TABLE evaluators; --"}),
        ToolFailed,
        'Error executing tool get_evaluator: No evaluator named "x\'; DROP TABLE evaluators; --". Known: category, correctness, tone. Create one with create_evaluator.',
    ),
]


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the sample runs, three evaluators (binary, ordinal, categorical), labels, a queue and one
    alignment run: the state every bad input is tried against."""
    db = tmp_path_factory.mktemp("template") / "align.db"
    with Store(db) as store:
        evaluators.create(store, NAME, BINARY)
        evaluators.create(store, "tone", ScoreType(kind="ordinal", min=1, max=5))
        evaluators.create(store, "category", ScoreType(kind="categorical", labels=["good", "ok", "bad"]))
        ingest.import_runs(store, "support", path=ROOT / "examples" / "support_runs.jsonl")
        queues.add_to_queue(store, "tone", source="support", sample=10)
        with FakeJudgeServer() as srv:
            settings = config.Settings(
                db_path=db,
                judge_model=MODEL,
                judge_base_url=srv.base_url,
                judge_api_key=KEY,
                judge_base_url_var=None,
                judge_api_key_var=None,
                concurrency=8,
            )
            anyio.run(lambda: align.run_alignment(store, NAME, split="all", compare=False, env=settings))
    checkpoint(db)
    return db


def checkpoint(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def logical(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.id for c in BAD_INPUTS])
def test_bad_input_gets_a_clear_error_and_leaves_the_database_unchanged(
    case: Bad, template_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from align_mcp.engine import formats

    monkeypatch.setattr(formats, "MAX_LINE_BYTES", 1024 * 1024)
    db = tmp_path / "align.db"
    shutil.copyfile(template_db, db)
    before_bytes, before_rows = db.read_bytes(), logical(db)
    work = tmp_path / "case"
    work.mkdir()
    with Store(db) as store, pytest.raises(case.error) as e:
        case.action(BadCtx(store, db, work))
    message = str(e.value)
    if os.environ.get("ALIGN_MCP_PROBE"):
        with open(os.environ["ALIGN_MCP_PROBE"], "a") as f:
            f.write(json.dumps([case.id, message.replace(str(work), "{tmp}")]) + "\n")
    expected = case.message.replace("{tmp}", str(work))
    assert message == expected if case.exact else message.startswith(expected)
    assert KEY not in message
    assert logical(db) == before_rows, "the database content is unchanged"
    checkpoint(db)  # fold any committed write still in the WAL into the file, so the byte comparison sees it
    assert db.read_bytes() == before_bytes, "the database file is unchanged byte for byte"
