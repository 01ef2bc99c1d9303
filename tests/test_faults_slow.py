"""The slow part of the fault suite (`make faults`): repeated crashes, labelers as separate processes, a judge
that rate-limits every other request at full concurrency, and an import line over the real size limit."""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from align_mcp.core.models import JudgeSettings
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators, formats, ingest, queues
from align_mcp.errors import ImportFormatError
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer, Reply, rate_limited
from conftest import ROOT, rid_of, run_labeler_processes, snapshot
from test_faults import (
    BINARY,
    NAME,
    PerRun,
    cli,
    done_results,
    judge_env,
    kill_mid_alignment,
    seed,
    settle,
    snapshot_labels,
    subprocess_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


def test_three_kills_at_different_points_then_a_resume_finishes_with_every_example_judged_once(
    db_path: Path, tmp_path: Path
) -> None:
    labels = {f"k{i:03d}": i % 2 for i in range(160)}
    with Store(db_path) as store:
        seed(store, labels)
    before_labels = snapshot_labels(db_path)
    answers = PerRun(
        {rid: [Reply(score=s, reasoning=f"judged {rid}", delay=0.05)] for rid, s in labels.items()}
    )
    kept: dict[str, tuple[Any, ...]] = {}
    with FakeJudgeServer(responder=answers) as srv:
        env = subprocess_env(srv, tmp_path)
        # The first kill interrupts `align`; later ones interrupt `resume`, each after more results are stored.
        proc = kill_mid_alignment(db_path, env, after=20)
        assert proc.returncode == -signal.SIGKILL
        for after in (60, 110):
            kept = done_results(db_path, 1)
            resume = subprocess.Popen(cli(db_path, "resume", "1"), env=env, stdout=subprocess.DEVNULL)
            with sqlite3.connect(db_path, timeout=30) as conn:
                while (
                    conn.execute("SELECT count(*) FROM alignment_results WHERE done = 1").fetchone()[0]
                    < after
                ):
                    assert resume.poll() is None, "the resume ended before the kill"
                    time.sleep(0.005)
            resume.send_signal(signal.SIGKILL)
            resume.wait()
            now = done_results(db_path, 1)
            assert {rid: now[rid] for rid in kept} == kept, "a kill never changes a stored result"
        settle(srv)
        last = done_results(db_path, 1)
        start = len(srv.chat_bodies)
        out = subprocess.run(cli(db_path, "resume", "1", "--json"), env=env, capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr.decode()
        final_requests = sorted(rid_of(b) for b in srv.chat_bodies[start:])
    assert final_requests == sorted(set(labels) - set(last))
    report = json.loads(out.stdout)
    assert (report["run"]["status"], report["run"]["judged"]) == ("completed", 160)
    assert snapshot_labels(db_path) == before_labels
    final = done_results(db_path, 1)
    assert sorted(final) == sorted(labels) and {rid: final[rid] for rid in last} == last
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM alignment_results").fetchone() == (160,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_eight_labeler_processes_store_every_label_and_never_share_an_item(db_path: Path) -> None:
    per_labeler, labelers = 200, 8
    total = per_labeler * labelers
    with Store(db_path) as store:
        evaluators.create(store, NAME, BINARY)
        ingest.import_runs(
            store,
            "support",
            runs=[{"id": f"q{i:04d}", "inputs": {"q": i}, "outputs": {"a": i}} for i in range(total)],
        )
        queues.add_to_queue(store, NAME, source="support")
    names = [f"process-{i}" for i in range(labelers)]

    done = run_labeler_processes(db_path, NAME, names, most=per_labeler, timeout=300)

    assert all(labeled["relabeled"] == 0 for labeled in done.values())
    got = {name: labeled["got"] for name, labeled in done.items()}
    handed_out = [rid for ids in got.values() for rid in ids]
    assert all(len(ids) == per_labeler for ids in got.values())
    assert len(handed_out) == len(set(handed_out)) == total
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT run_id) FROM labels").fetchone() == (
            total,
            total,
        )
        owner = {rid: name for name, ids in got.items() for rid in ids}
        assert all(
            owner[rid] == labeler for rid, labeler in conn.execute("SELECT run_id, labeler FROM labels")
        )


async def test_a_judge_that_rate_limits_every_example_twice_at_full_concurrency_still_judges_everything(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = {f"r{i:03d}": i % 2 for i in range(300)}
    seed(store, labels, JudgeSettings(max_retries=2))
    answers = PerRun(
        {rid: [rate_limited(0.2), rate_limited(0.2), Reply(score=s, delay=0.02)] for rid, s in labels.items()}
    )
    with FakeJudgeServer(responder=answers) as srv:
        judge_env(monkeypatch, srv)
        with anyio.fail_after(120):
            report = await align.run_alignment(store, NAME, split="all", compare=False, concurrency=32)
        assert srv.calls == 900 and srv.max_in_flight <= 32
    m = report.run.metrics
    assert m is not None
    assert (report.run.judged, m.errors, m.n, m.agreement.k) == (300, 0, 300, 300)
    for times in answers.seen.values():
        assert len(times) == 3 and all(b - a >= 0.19 for a, b in itertools.pairwise(times))


def test_an_import_line_over_the_real_64_mib_limit_is_rejected_and_stores_nothing(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "huge.jsonl"
    limit = formats.MAX_LINE_BYTES
    with path.open("w", encoding="utf-8") as f:
        f.write('{"id": "ok", "inputs": {"q": 1}, "outputs": {"a": 1}}\n')
        f.write('{"inputs": {"q": "' + "x" * (limit + 10) + '"}, "outputs": {"a": 1}}\n')
    before = snapshot(store.path)
    with pytest.raises(ImportFormatError) as e:
        ingest.import_runs(store, "big", path=path)
    assert str(e.value) == (
        f"{path}:2: the line is longer than 64 MiB, the most one record may hold. Fix that line and import again; "
        "nothing from this file was stored."
    )
    assert snapshot(store.path) == before


def test_fifty_http_clients_on_one_server_store_every_label_once_and_never_share_a_run() -> None:
    """The shared-server bench (bench/bench_load.py), shorter: `align-mcp serve --http` as a subprocess, 24
    labelers over MCP-over-HTTP and 8 on the label page, 17 readers and one alignment. Latency and memory are
    measured by the bench; here the outcome must be exact whatever the machine's load."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_load
    finally:
        sys.path.remove(str(ROOT / "bench"))

    m = bench_load.measure(20.0, bench_load.Mix(), queue_runs=5_000)

    assert m["failure_count"] == 0, m["failures"]
    assert m["labels_stored"] == m["labels_submitted"] > 0
    assert (m["labels_stored_twice"], m["labels_missing"], m["labels_unexpected"]) == ([], [], [])
    assert (m["labels_by_someone_else"], m["runs_reserved_twice"]) == ([], [])
    assert all(
        m["latency_ms"][kind]["n"] > 0
        for kind in ("list_queues", "get_misaligned", "next_items", "page_next", "page_label")
    )
    assert any(a["status"] == "completed" and a["requests"] > 0 for a in m["alignments"]), m["alignments"]
