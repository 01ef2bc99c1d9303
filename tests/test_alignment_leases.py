"""One process judges an alignment run at a time (a lease with a heartbeat), and no stored record, setting or flag
can make a whole alignment fail or judge nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from align_mcp.engine import alignment as align
from align_mcp.engine import leases
from align_mcp.errors import Conflict, InvalidInput, NextStep
from align_mcp.store import NewLabel, NewResult, Store
from align_mcp.testing.fakejudge import FakeJudgeServer, Reply
from conftest import ManualClock, clean_env
from test_align import HUMAN, NAME, env_for, rid_of, scripted, seed

pytestmark = pytest.mark.anyio


def interrupted_run(store: Store) -> int:
    """An alignment run of the draft over HUMAN with r1 already errored and the rest still to judge."""
    seed(store, HUMAN)
    ev = store.get_evaluator(NAME)
    assert ev is not None
    aid = store.create_alignment_run(
        NAME, "draft", None, ev.draft, ev.judge, "judge-model", "h", "all", sorted(HUMAN.items())
    )
    store.record_results(aid, [NewResult("r1", None, None, "timed out", None, None, None, 10.0, False)])
    store.finish_alignment_run(aid, "interrupted", None)
    return aid


async def test_resume_of_a_run_another_process_is_judging_is_refused_naming_that_process(
    store: Store, clock: ManualClock
) -> None:
    aid = interrupted_run(store)
    assert store.acquire_lease(aid, "other", 4242, "labbox", ttl_s=leases.LEASE_TTL_S) is None
    until = datetime.fromtimestamp(clock.now + leases.LEASE_TTL_S, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    with FakeJudgeServer(responder=scripted(HUMAN)) as srv:
        with pytest.raises(Conflict) as raised:
            await align.resume(store, aid, retry_errors=True, env=env_for(srv))
        assert srv.calls == 0

    assert str(raised.value) == (
        f"Alignment run {aid} is being judged right now by process 4242 on 'labbox'; judging it here too would "
        "judge its examples twice. Wait for that process to finish; if it has died, its lease lapses at "
        f"{until} (it is renewed every 20s while it works), and the run can be resumed then."
    )
    assert raised.value.next_steps == (NextStep("resume_alignment", {"alignment_run": aid}),)
    assert store.alignment_results(aid)[0].error == "timed out"  # retry_errors reset nothing

    clock.advance(leases.LEASE_TTL_S + 1)  # the other process died: its lease lapsed
    with FakeJudgeServer(responder=scripted(HUMAN)) as srv:
        report = await align.resume(store, aid, retry_errors=True, env=env_for(srv))
        assert srv.calls == 8
    assert (report.run.status, report.run.judged) == ("completed", 8)
    assert store.live_lease(aid) is None


LEASE_HOLDER = r"""
import sys
from align_mcp.engine import leases
from align_mcp.store import Store

with Store(sys.argv[1]) as store, leases.judging(store, int(sys.argv[2])):
    print("holding", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


async def test_a_run_judged_in_another_process_is_refused_until_that_process_lets_go(
    store: Store, db_path: Path
) -> None:
    aid = interrupted_run(store)
    proc = subprocess.Popen(
        [sys.executable, "-c", LEASE_HOLDER, str(db_path), str(aid)],
        env=clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline().strip() == "holding"
        with FakeJudgeServer(responder=scripted(HUMAN)) as srv:
            with pytest.raises(Conflict) as raised:
                await align.resume(store, aid, env=env_for(srv))
            assert srv.calls == 0
        assert str(raised.value).startswith(
            f"Alignment run {aid} is being judged right now by process {proc.pid} on {socket.gethostname()!r};"
        )

        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "released"
        assert proc.wait(timeout=30) == 0
        with FakeJudgeServer(responder=scripted(HUMAN)) as srv:
            report = await align.resume(store, aid, env=env_for(srv))
        assert (report.run.status, report.run.done) == ("completed", 8)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # closes the pipes


async def test_the_lease_of_a_killed_process_on_this_machine_is_taken_over_at_once(store: Store) -> None:
    aid = interrupted_run(store)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)  # that process has exited: its lease is stale though it has not lapsed
    assert (
        store.acquire_lease(aid, "killed", dead_pid, socket.gethostname(), ttl_s=leases.LEASE_TTL_S) is None
    )

    with FakeJudgeServer(responder=scripted(HUMAN)) as srv:
        report = await align.resume(store, aid, env=env_for(srv))

    assert (report.run.status, report.run.done) == ("completed", 8)
    assert store.live_lease(aid) is None


async def test_a_running_alignment_holds_its_lease_and_frees_it_when_done(store: Store) -> None:
    seed(store, HUMAN)
    seen: list[tuple[int, str] | None] = []

    def respond(body: dict[str, Any]) -> Reply:
        lease = store.live_lease(1)
        seen.append(None if lease is None else (lease.pid, lease.host))
        return Reply(score=HUMAN[rid_of(body)], reasoning="ok")

    with FakeJudgeServer(responder=respond) as srv:
        report = await align.run_alignment(store, NAME, env=env_for(srv))

    assert report.run.id == 1
    assert seen == [(os.getpid(), socket.gethostname())] * 8
    assert store.live_lease(1) is None


async def test_the_heartbeat_renews_the_lease_while_the_block_runs(store: Store, clock: ManualClock) -> None:
    aid = interrupted_run(store)
    with leases.judging(store, aid, ttl_s=60, every_s=0.01):
        clock.advance(45)
        with anyio.fail_after(5):
            while (lease := store.live_lease(aid)) is None or lease.renewed_at != clock.now:
                await anyio.sleep(0.01)
        assert lease.expires_at == clock.now + 60
        clock.advance(50)  # past the first expiry: renewed, so still ours
        assert store.acquire_lease(aid, "other", 1, "elsewhere", ttl_s=60) is not None
    assert store.live_lease(aid) is None


async def test_a_stored_run_nested_too_deep_to_read_is_one_errored_example(store: Store) -> None:
    seed(store, HUMAN)
    deep = '{"a":' * 975 + '"x"' + "}" * 975  # written before imports bounded nesting
    store.conn.execute(
        "INSERT INTO runs (id, source, inputs, outputs, metadata, created_at) "
        "VALUES ('deep', 'support', ?, '{\"answer\": \"a\"}', '{}', '2026-01-01T00:00:00+00:00')",
        ['{"rid": "deep", "q": ' + deep + "}"],
    )
    with store.transaction():
        store.insert_labels(NAME, [NewLabel("deep", 1, None, "ana")])

    with FakeJudgeServer(responder=scripted(HUMAN)) as srv:
        report = await align.run_alignment(store, NAME, env=env_for(srv))
        assert srv.calls == 8

    assert (report.run.status, report.run.done, report.run.judged, report.run.errors) == (
        "completed",
        9,
        8,
        1,
    )
    assert [(e.run_id, e.error) for e in report.error_examples] == [
        ("deep", "the stored run cannot be read: its inputs nest objects and arrays too deeply to be read")
    ]
    assert report.run.metrics is not None and report.run.metrics.n == 8


@pytest.mark.parametrize("concurrency", [0, -1])
async def test_a_concurrency_below_one_is_refused_before_any_run_is_made(
    store: Store, concurrency: int
) -> None:
    seed(store, HUMAN)

    with pytest.raises(InvalidInput) as raised:
        await align.run_alignment(store, NAME, concurrency=concurrency, env=env_for(None))

    assert str(raised.value) == f"concurrency={concurrency}: parallel judge calls must be at least 1."
    assert store.alignment_run_ids(NAME) == []
