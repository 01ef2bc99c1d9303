"""Self-consistency and the streamed pass rate through the Batch API, against the fake Batch API on loopback:
the same result as online, one request per run, sample and order, kill -9 then the same call again, error lines
as samples' errors."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from align_mcp.core import metrics
from align_mcp.core.models import ScoreType
from align_mcp.diagnose.consistency import self_consistency
from align_mcp.diagnose.consistency_batch import run_of
from align_mcp.diagnose.pass_rate import corrected_pass_rate
from align_mcp.engine import evaluators, ingest
from align_mcp.engine.batches import BatchOptions
from align_mcp.engine.queues import submit_labels
from align_mcp.store import Store
from align_mcp.store import batches as jobs
from align_mcp.testing.fakebatch import FakeBatchServer
from align_mcp.testing.fakejudge import FakeJudgeServer, Reply, prompt_text, section

NAME = "correctness"
MODEL = "fake-judge"
ROOT = Path(__file__).resolve().parents[1]
LABELS = {f"r{i:02d}": i % 2 for i in range(8)}
UNSTABLE = {"r05", "r06", "r07"}


async def no_wait(seconds: float) -> None:
    """The sleeper between polls: tests never wait."""


FAST = BatchOptions(sleep=no_wait, first_wait=0.0)


def rid_of(body: dict[str, Any]) -> str:
    return str(json.loads(section(prompt_text(body), "inputs") or "{}")["rid"])


def seed(store: Store) -> None:
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
            for rid, score in LABELS.items()
        ],
    )


def wavering() -> Any:
    """A deterministic judge: its human label for a stable run; for an unstable one 1, 0, 1, 0... by how often
    that run was asked, so k=4 samples give it two of each in any order."""
    asked: Counter[str] = Counter()

    def answer(body: dict[str, Any]) -> Reply:
        rid = rid_of(body)
        asked[rid] += 1
        if rid in UNSTABLE:
            return Reply(score=asked[rid] % 2, reasoning=f"try {asked[rid]}")
        return Reply(score=LABELS[rid], reasoning="sure")

    return answer


def use(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", MODEL)


@pytest.fixture
def batch_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBatchServer]:
    with FakeBatchServer() as srv:
        use(monkeypatch, srv.base_url)
        yield srv


def summary(report: Any) -> Any:
    return (
        report.n,
        report.k,
        report.flip_rate,
        report.mean_flip_share,
        report.errors,
        report.judged,
        report.requests,
        {e.run_id: (sorted(e.scores), e.flip_share, e.flipped, e.errors) for e in report.examples},
    )


@pytest.mark.anyio
async def test_consistency_through_the_batch_api_matches_the_online_check(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store)
    with FakeJudgeServer(responder=wavering()) as online_judge:
        use(monkeypatch, online_judge.base_url)
        online = await self_consistency(store, NAME, k=4, temperature=0.7)
    with FakeBatchServer(responder=wavering()) as srv:
        use(monkeypatch, srv.base_url)
        batched = await self_consistency(store, NAME, k=4, temperature=0.7, batch=FAST)
        assert srv.uploads == 1

    assert summary(batched) == summary(online)
    assert (batched.flip_rate.k, batched.flip_rate.n, batched.requests) == (3, 8, 32)
    assert batched.check_id != online.check_id
    assert any(n.startswith("Judged through the Batch API") and "32 request(s)" in n for n in batched.notes)
    assert store.read("SELECT count(*) FROM judge_cache")[0][0] == 0, "samples never go to the judge cache"


@pytest.mark.anyio
async def test_each_sample_is_its_own_request_and_never_comes_from_the_cache(
    store: Store, batch_api: FakeBatchServer
) -> None:
    seed(store)
    asked: Counter[str] = Counter()

    def count(body: dict[str, Any]) -> Reply:
        asked[rid_of(body)] += 1
        return Reply(score=LABELS[rid_of(body)])

    batch_api.responder = count
    report = await self_consistency(store, NAME, k=3, batch=FAST)
    (job,) = [j for j in (jobs.get_job(store, i) for i in range(1, 5)) if j is not None]
    ids = jobs.submitted_ids(store, job.id)
    assert (job.kind, job.check_id, job.requests) == ("consistency", report.check_id, 24)
    assert ids == {f"s{i}o0:{rid}" for i in range(3) for rid in LABELS}
    assert asked == dict.fromkeys(LABELS, 3), "identical requests are each judged"
    assert {run_of(cid) for cid in ids} == set(LABELS)

    await self_consistency(store, NAME, k=3, batch=FAST)
    assert batch_api.uploads == 2 and sum(asked.values()) == 48, "a second check samples afresh"


@pytest.mark.anyio
async def test_a_pairwise_sample_judges_both_orders_and_combines_them(
    store: Store, batch_api: FakeBatchServer
) -> None:
    evaluators.create(store, "preference", ScoreType(kind="pairwise", ties=True))
    human = {"p1": "A", "p2": "B"}
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

    report = await self_consistency(store, "preference", k=2, batch=FAST)

    (job,) = [j for j in (jobs.get_job(store, i) for i in range(1, 3)) if j is not None]
    assert jobs.submitted_ids(store, job.id) == {
        f"s{i}o{o}:{rid}" for i in range(2) for o in range(2) for rid in human
    }
    assert {e.run_id: e.scores for e in report.examples} == {"p1": ["tie", "tie"], "p2": ["tie", "tie"]}
    assert report.requests == 8


@pytest.mark.anyio
async def test_an_error_line_becomes_that_samples_error(store: Store, batch_api: FakeBatchServer) -> None:
    seed(store)
    calls = itertools.count()

    def second_fails(body: dict[str, Any]) -> Reply:
        if rid_of(body) == "r02" and next(calls) == 1:
            return Reply(status=500)
        return Reply(score=LABELS[rid_of(body)])

    batch_api.responder = second_fails
    report = await self_consistency(store, NAME, k=3, batch=FAST)

    samples = {(s.run_id, s.sample): s for s in store.consistency_samples(report.check_id)}
    assert len(samples) == 24, "nothing dropped: every run has its k samples"
    failed = [s for s in samples.values() if s.error is not None]
    assert [(s.run_id, s.judge_score, s.error) for s in failed] == [
        ("r02", None, "HTTP 500 from the judge in the batch: The fake batch returned HTTP 500 as scripted.")
    ]
    r02 = next(e for e in report.examples if e.run_id == "r02")
    assert (r02.errors, report.errors, report.judged) == (1, 1, 23)
    assert "1 sample(s) failed and are left out of every rate." in report.notes


def test_kill_9_while_polling_then_the_same_call_resumes_the_stored_job(
    db_path: Path, tmp_path: Path
) -> None:
    with Store(db_path) as store:
        seed(store)
    with FakeBatchServer(responder=lambda body: Reply(score=LABELS[rid_of(body)]), hold=True) as srv:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ALIGN_MCP_"))}
        env.update(
            OPENAI_BASE_URL=srv.base_url,
            OPENAI_API_KEY="sk-test",
            ALIGN_MCP_JUDGE_MODEL=MODEL,
            ALIGN_MCP_BATCH_POLL_S="0.05",
            XDG_DATA_HOME=str(tmp_path / "xdg"),
        )
        command = [
            sys.executable,
            "-m",
            "align_mcp.cli",
            "--db",
            str(db_path),
            "consistency",
            NAME,
            "-k",
            "3",
        ]
        proc = subprocess.Popen(
            [*command, "--batch"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
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
            assert conn.execute("SELECT count(*) FROM judge_samples").fetchone() == (0,)
            assert conn.execute("SELECT status FROM consistency_checks").fetchall() == [("running",)]
        srv.release()
        out = subprocess.run([*command, "--batch", "--json"], env=env, capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        assert srv.uploads == 1 and len(srv.batches) == 1, "the stored job is polled; nothing is sent again"
    report = json.loads(out.stdout)
    assert (report["check_id"], report["n"], report["judged"], report["errors"]) == (1, 8, 24, 0)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT status FROM consistency_checks").fetchall() == [("completed",)]


@pytest.mark.anyio
async def test_check_consistency_with_batch_over_mcp(
    db_path: Path, batch_api: FakeBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcp import Client

    from align_mcp.mcp.server import create_server

    with Store(db_path) as store:
        seed(store)
    batch_api.responder = lambda body: Reply(score=LABELS[rid_of(body)])
    monkeypatch.setenv("ALIGN_MCP_TOOLS", "all")
    monkeypatch.setenv("ALIGN_MCP_BATCH_POLL_S", "0.01")
    async with Client(create_server(db_path), cache=None) as client:
        result = await client.call_tool("check_consistency", {"evaluator": NAME, "k": 2, "batch": True})
    assert not result.is_error, result
    assert result.structured_content is not None
    assert (result.structured_content["judged"], batch_api.uploads) == (16, 1)


# ---- the streamed pass rate ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_streamed_pass_rate_gives_the_online_report(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same runs and judge, one store judged online and one through the Batch API: the same report, interval
    included (the verdicts are resampled in the same order)."""

    support = [
        json.loads(line) for line in (ROOT / "examples" / "support_runs.jsonl").read_text().splitlines()
    ]
    human = {
        json.dumps(r["outputs"], indent=2, ensure_ascii=False): r["feedback"][NAME]["score"] for r in support
    }

    def judge(body: dict[str, Any]) -> Reply:
        outputs = section(prompt_text(body), "outputs") or ""
        if outputs in human:
            return Reply(score=human[outputs])
        return Reply(score=int(json.loads(outputs)["n"] % 3 != 0))

    def fill(store: Store) -> None:
        evaluators.create(store, NAME, ScoreType(kind="binary"))
        ingest.import_runs(store, "support", runs=support)
        new = [{"id": f"u{i:02d}", "inputs": {"q": f"New {i}?"}, "outputs": {"n": i}} for i in range(25)]
        ingest.import_runs(store, "new", runs=new)

    reports = []
    for name, server in (("online", FakeJudgeServer(responder=judge)), ("batch", FakeBatchServer(judge))):
        with server, Store(tmp_path / f"{name}.db") as store:
            use(monkeypatch, server.base_url)
            fill(store)
            report = await corrected_pass_rate(
                store, NAME, source="new", prompt="draft", batch=FAST if name == "batch" else False
            )
            reports.append(report)
    online, batched = reports
    same = {"test_alignment_run", "notes", "test_evaluations"}
    assert batched.model_dump(exclude=same) == online.model_dump(exclude=same)
    assert (batched.observed, batched.n_unlabeled, batched.requests) == (16 / 25, 25, 25)
    assert (batched.tpr.k, batched.tpr.n, batched.tnr.k, batched.tnr.n) == (8, 8, 5, 5)


def test_a_large_count_resamples_its_pass_count_and_matches_the_point_estimate() -> None:
    labeled = [(True, True)] * 40 + [(True, False)] * 10 + [(False, False)] * 45 + [(False, True)] * 5
    counted = metrics.corrected_pass_rate(
        metrics.PassCount(passes=600_000, total=1_000_000), labeled, n_boot=500
    )
    listed = metrics.corrected_pass_rate([True] * 6000 + [False] * 4000, labeled, n_boot=500)
    assert counted.observed == listed.observed == 0.6
    assert (
        counted.corrected
        == pytest.approx(listed.corrected)
        == pytest.approx((0.6 + 0.9 - 1) / (0.8 + 0.9 - 1))
    )
    assert counted.ci.low < counted.corrected < counted.ci.high
    assert counted.ci.high - counted.ci.low == pytest.approx(listed.ci.high - listed.ci.low, rel=0.2), (
        "the interval comes from the labeled set's TPR and TNR, as with the verdicts listed"
    )
    rare = metrics.corrected_pass_rate(metrics.PassCount(passes=5, total=100_000), labeled, n_boot=200)
    assert rare.observed == 5 / 100_000 and 0 <= rare.ci.low <= rare.ci.high <= 1
