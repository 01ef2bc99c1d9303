"""The SQLite store: location, schema migrations, WAL, bad files, concurrent labelers (threads, processes), typed rows."""

from __future__ import annotations

import sqlite3
import sys
import threading
from dataclasses import FrozenInstanceError, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import platformdirs
import pytest
from sqlite_utils import Database

from align_mcp import config
from align_mcp.core.models import JudgeSettings, ScoreType
from align_mcp.engine import evaluators, ingest, queues
from align_mcp.errors import StoreError
from align_mcp.store import (
    CacheEntry,
    ConsistencyCheckRow,
    FeedbackRow,
    LabelRow,
    NewLabel,
    NewProposal,
    NewResult,
    NewReview,
    NewSample,
    QueueCounts,
    Reservation,
    ResultRow,
    ReviewRow,
    RunRow,
    SampleRow,
    SourceListing,
    SplitRow,
    Store,
    TriageRow,
    TriageVerdict,
    open_store,
)
from align_mcp.store.codec import judge_matches, load_score
from align_mcp.store.database import schema_version
from align_mcp.store.migrations import migrations
from conftest import run_labeler_processes, snapshot

CORE_TABLES = {
    "sources",
    "runs",
    "evaluators",
    "prompt_versions",
    "queue_items",
    "labels",
    "feedback",
    "judge_cache",
    "alignment_runs",
    "alignment_results",
}


def schema(db: Database) -> list[tuple[str, str]]:
    return [
        (row[0], row[1] or "")
        for row in db.execute("SELECT name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    ]


def applied_rows(db: Database) -> list[tuple[str, str]]:
    return [(m.name, m.applied_at) for m in migrations.applied(db)]


def test_migrations_create_every_table_on_a_blank_database(tmp_path: Path) -> None:
    db = Database(tmp_path / "blank.db")
    everything = [m.name for m in migrations.pending(db)]
    assert everything[0] == "m001_initial"

    migrations.apply(db)

    assert set(db.table_names()) >= CORE_TABLES
    assert "_sqlite_migrations" in db.table_names()
    assert [m.name for m in migrations.applied(db)] == everything
    assert migrations.pending(db) == []
    db.close()


def test_applying_migrations_twice_changes_nothing(tmp_path: Path) -> None:
    db = Database(tmp_path / "twice.db")
    migrations.apply(db)
    before = (schema(db), applied_rows(db))

    migrations.apply(db)

    assert (schema(db), applied_rows(db)) == before
    db.close()


def test_reopening_a_store_does_not_migrate_again(db_path: Path) -> None:
    with Store(db_path) as first:
        rows = applied_rows(first.db)
        tables = schema(first.db)
    with Store(db_path) as again:
        assert applied_rows(again.db) == rows
        assert schema(again.db) == tables


def test_store_uses_write_ahead_logging(store: Store) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_open_store_uses_align_mcp_db(db_path: Path) -> None:
    assert config.load().db_path == db_path
    assert not db_path.exists()
    with open_store() as store:
        assert store.path == db_path
    assert db_path.is_file()


def test_align_mcp_db_expands_the_home_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN_MCP_DB", "~/stores/align.db")
    assert config.load().db_path == Path.home() / "stores" / "align.db"


def test_default_store_is_under_the_user_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALIGN_MCP_DB")
    expected = Path(platformdirs.user_data_dir("align-mcp", appauthor=False)) / "align.db"
    assert config.load().db_path == expected
    if sys.platform.startswith("linux"):
        # conftest points XDG_DATA_HOME into the test's tmp dir, so opening the default store is safe here.
        assert expected == tmp_path / "xdg-data" / "align-mcp" / "align.db"
        with open_store() as store:
            assert store.path == expected
        assert expected.is_file()


def test_a_file_that_is_not_a_database_is_a_store_error(db_path: Path) -> None:
    db_path.write_text("these are my notes, not a database\n" * 100, encoding="utf-8")

    with pytest.raises(StoreError) as raised:
        open_store()

    assert str(raised.value) == (
        f"{db_path} is not an align-mcp store (file is not a database). Point ALIGN_MCP_DB at another file."
    )


def test_another_apps_database_is_a_store_error_and_is_left_untouched(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE sources (url TEXT)")
    conn.commit()
    conn.close()

    with pytest.raises(StoreError) as raised:
        open_store()

    assert str(raised.value) == (
        f"{db_path} is not an align-mcp store (table sources already exists). Point ALIGN_MCP_DB at another file."
    )
    conn = sqlite3.connect(db_path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    conn.close()
    assert tables == ["sources"]


def test_a_store_records_its_schema_version(db_path: Path) -> None:
    open_store().close()

    conn = sqlite3.connect(db_path)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert version == schema_version() >= 7  # m007_alignment_leases, or a later migration


def test_every_migration_function_is_registered() -> None:
    """A migration defined without its @migrations() decorator is silently never applied (a merge once lost one)."""
    import inspect

    from align_mcp.store import migrations as module
    from align_mcp.store.database import known_migrations

    defined = [
        name
        for name, _ in inspect.getmembers(module, inspect.isfunction)
        if name[:1] == "m" and name[1:4].isdigit()
    ]
    assert sorted(known_migrations()) == sorted(defined)


def test_a_store_of_a_newer_schema_version_is_refused_and_left_untouched(db_path: Path) -> None:
    open_store().close()
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = snapshot(db_path)

    with pytest.raises(StoreError) as raised:
        open_store()

    assert str(raised.value) == (
        f"The align-mcp store at {db_path} was written by a newer align-mcp (schema version 99); this align-mcp "
        f"reads schema version {schema_version()} at most, so it left the store untouched. Upgrade align-mcp "
        "(pip install --upgrade align-mcp), or point ALIGN_MCP_DB at another file."
    )
    assert snapshot(db_path) == before


def test_a_store_with_a_migration_this_version_does_not_know_is_refused(db_path: Path) -> None:
    open_store().close()
    conn = sqlite3.connect(db_path)
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
        "VALUES ('align_mcp', 'm042_from_the_future', '2030-01-01')"
    )
    conn.execute("CREATE TABLE from_the_future (x)")
    conn.commit()
    conn.close()
    before = snapshot(db_path)

    with pytest.raises(StoreError) as raised:
        open_store()

    assert str(raised.value).startswith(
        f"The align-mcp store at {db_path} was written by a newer align-mcp (a newer schema, with migration(s) "
        f"m042_from_the_future); this align-mcp reads schema version {schema_version()} at most"
    )
    assert snapshot(db_path) == before


def test_a_lease_is_refused_to_others_until_it_lapses_and_is_freed_on_release(
    runs_store: Store, clock: Any
) -> None:
    store = runs_store
    aid = store.create_alignment_run("correctness", "draft", None, "p", JudgeSettings(), "m", "h", "all", [])
    assert aid == 1
    assert store.acquire_lease(1, "mine", 101, "box-a", ttl_s=60) is None
    assert store.acquire_lease(1, "mine", 101, "box-a", ttl_s=60) is None  # the holder may take it again

    held = store.acquire_lease(1, "theirs", 202, "box-b", ttl_s=60)
    assert held is not None and (held.token, held.pid, held.host) == ("mine", 101, "box-a")
    assert held.expires_at == clock.now + 60

    clock.advance(30)
    assert store.renew_lease(1, "mine", ttl_s=60)
    clock.advance(59)
    assert store.acquire_lease(1, "theirs", 202, "box-b", ttl_s=60) is not None
    clock.advance(2)  # 61 s after the last renewal: the lease has lapsed
    assert store.live_lease(1) is None
    assert store.acquire_lease(1, "theirs", 202, "box-b", ttl_s=60) is None
    assert not store.renew_lease(1, "mine", ttl_s=60)  # taken over: the old holder cannot renew it

    store.release_lease(1, "mine")  # not ours any more: left alone
    live = store.live_lease(1)
    assert live is not None and live.pid == 202
    store.release_lease(1, "theirs")
    assert store.live_lease(1) is None


def test_a_directory_at_align_mcp_db_is_a_store_error(db_path: Path) -> None:
    db_path.mkdir()

    with pytest.raises(StoreError) as raised:
        open_store()

    assert str(raised.value) == (
        f"Cannot open the align-mcp store at {db_path}: unable to open database file. "
        "Set ALIGN_MCP_DB to a writable file path."
    )


def label_until_empty(store: Store, labeler: str, got: list[str]) -> None:
    while items := queues.next_items(store, "correctness", labeler=labeler, limit=2):
        queues.submit_labels(
            store, "correctness", [{"run_id": i.run_id, "score": 1} for i in items], labeler=labeler
        )
        got.extend(i.run_id for i in items)


def assert_each_run_labeled_once_by_its_holder(store: Store, got: dict[str, list[str]]) -> None:
    everyone = [rid for ids in got.values() for rid in ids]
    assert len(everyone) == len(set(everyone)), "a run was handed to two labelers"
    assert sorted(everyone) == sorted(store.run_ids(source="support"))
    for labeler, ids in got.items():
        for rid in ids:
            history = queues.label_history(store, "correctness", rid)
            assert [(h.labeler, h.current) for h in history] == [(labeler, True)]
    assert store.queue_counts("correctness") == QueueCounts(pending=0, reserved=0, labeled=46)


@pytest.mark.parametrize("shared", [True, False], ids=["one-shared-store", "a-store-per-thread"])
def test_labelers_in_threads_never_share_an_item(runs_store: Store, db_path: Path, shared: bool) -> None:
    queues.add_to_queue(runs_store, "correctness", source="support")
    got: dict[str, list[str]] = {f"labeler-{i}": [] for i in range(4)}
    start = threading.Barrier(len(got))
    failures: list[BaseException] = []

    def work(labeler: str) -> None:
        try:
            start.wait(timeout=10)
            if shared:
                label_until_empty(runs_store, labeler, got[labeler])
            else:
                with Store(db_path, runs_store.clock) as own:
                    label_until_empty(own, labeler, got[labeler])
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=work, args=(name,)) for name in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert failures == []
    assert_each_run_labeled_once_by_its_holder(runs_store, got)


def test_labelers_in_two_processes_never_share_an_item(runs_store: Store, db_path: Path) -> None:
    queues.add_to_queue(runs_store, "correctness", source="support")

    done = run_labeler_processes(db_path, "correctness", ["alice", "bob"], batch=1)

    got = {name: labeled["got"] for name, labeled in done.items()}
    assert all(got.values()), f"one process labeled nothing, so they never overlapped: {got}"
    assert_each_run_labeled_once_by_its_holder(runs_store, got)


def _true_counts(store: Store, evaluator: str) -> tuple[dict[Any, int], int]:
    labels = {
        load_score(r["score"]): r["n"]
        for r in store._rows(
            "SELECT score, count(*) AS n FROM labels WHERE evaluator = ? AND current = 1 GROUP BY score",
            [evaluator],
        )
    }
    pending = store._scalar(
        "SELECT count(*) FROM queue_items WHERE evaluator = ? AND labeled = 0", [evaluator]
    )
    return labels, int(pending)


def test_trigger_kept_tallies_match_the_rows_after_labels_relabels_and_reviews(store: Store) -> None:
    from align_mcp.engine import reviews

    runs = [{"id": f"r{i}", "inputs": {"q": i}, "outputs": {"a": i}} for i in range(30)]
    ingest.import_runs(store, "src", runs=runs)
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    queues.add_to_queue(store, "correctness", source="src")
    queues.submit_labels(
        store, "correctness", [{"run_id": f"r{i}", "score": i % 2} for i in range(20)], labeler="ana"
    )
    queues.submit_label(store, "correctness", "r0", 1, labeler="ana")  # a relabel moves r0 from 0 to 1
    reviews.request_review(store, "correctness", ["r3"])  # back to the queue for a blind second label
    queues.submit_label(store, "correctness", "r3", 0, labeler="bo")

    labels, pending = _true_counts(store, "correctness")
    assert labels == {0: 10, 1: 10}  # r0 went 0->1, r3 1->0
    # r3 is disputed: its current label (0) is out of the reference set, and so out of the counts.
    assert store.label_counts("correctness") == {0: 9, 1: 10}
    assert store.queue_counts("correctness").pending == pending == 11  # r20-r29, and r3 awaits adjudication
    assert store.queue_counts("correctness").labeled == 19


def test_tallies_are_backfilled_for_a_store_made_before_them(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    db = Database(conn)
    migrations.apply(db, stop_before="m006_tallies")
    conn.executescript(
        """
        INSERT INTO sources VALUES ('s', 'experiment', '2026-01-01');
        INSERT INTO runs (id, source, inputs, outputs, created_at) VALUES ('a', 's', '{}', '{}', 'x'), ('b', 's', '{}', '{}', 'x');
        INSERT INTO evaluators (name, feedback_key, score_type, judge, draft, draft_updated_at, created_at)
            VALUES ('e', 'e', '{"kind":"binary"}', '{}', '{{outputs}}', 'x', 'x');
        INSERT INTO labels (evaluator, run_id, score, created_at, current) VALUES ('e', 'a', '1', 'x', 1);
        INSERT INTO queue_items (evaluator, run_id, added_at, labeled) VALUES ('e', 'a', 'x', 1), ('e', 'b', 'x', 0);
        """
    )
    conn.commit()
    conn.close()

    with Store(path) as store:
        assert store.label_counts("e") == {1: 1}
        assert store.queue_counts("e") == QueueCounts(pending=1, reserved=0, labeled=1)


# ---- typed rows: each table the store reads back decoded, in the types it was written with ------------------


@dataclass(frozen=True)
class _Run:
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    reference_outputs: dict[str, Any] | None
    metadata: dict[str, Any]
    outputs_b: dict[str, Any] | None = None


def _just_now(stamp: datetime) -> bool:
    return stamp.tzinfo is not None and abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)


def test_a_source_reads_back_with_its_kind_and_a_parsed_creation_time(store: Store) -> None:
    assert store.get_source("support") is None
    store.insert_source("support", "project")

    source = store.get_source("support")

    assert source is not None
    assert (source.name, source.kind) == ("support", "project")
    assert _just_now(source.created_at)


def test_runs_are_written_from_typed_values_and_read_back_decoded(store: Store) -> None:
    store.insert_source("s", "experiment")
    first = _Run("a", {"q": "ça va?"}, {"a": [1, 2]}, {"a": "oui"}, {"lang": "fr", "n": 3})
    bare = _Run("b", {"q": "x"}, {"a": None}, None, {})
    with store.transaction():
        assert store.insert_runs("s", [first, bare]) == 2
        assert store.insert_runs("s", [_Run("a", {"q": "changed"}, {}, None, {})]) == 0

    runs = store.get_runs(["a", "b"])

    assert runs["a"].as_dict() == {
        "id": "a",
        "source": "s",
        "inputs": {"q": "ça va?"},
        "outputs": {"a": [1, 2]},
        "reference_outputs": {"a": "oui"},
        "metadata": {"lang": "fr", "n": 3},
    }
    assert runs["b"].reference_outputs is None and runs["b"].metadata == {}
    raw = store._tuple("SELECT inputs, reference_outputs FROM runs WHERE id = 'a'")
    assert raw == ('{"q":"ça va?"}', '{"a":"oui"}')


def test_feedback_keeps_only_new_or_changed_rows_and_reads_back_decoded(store: Store) -> None:
    store.insert_source("s", "experiment")
    with store.transaction():
        store.insert_runs("s", [_Run(rid, {}, {}, None, {}) for rid in ("a", "b", "c")])
        first = store.insert_feedback(
            [
                FeedbackRow("a", "tone", "good", "polite", "ana"),
                FeedbackRow("b", "tone", 1, None, None),
                FeedbackRow("b", "correctness", {"odd": [1]}, None, None),
            ]
        )
        again = store.insert_feedback(
            [
                FeedbackRow("a", "tone", "good", "polite", "someone else"),
                FeedbackRow("b", "tone", True, None, None),
                FeedbackRow("c", "tone", 0, "new", None),
            ]
        )

    assert [(f.run_id, f.key) for f in first] == [("a", "tone"), ("b", "tone"), ("b", "correctness")]
    # The same score and comment is not new (whoever labeled it); True is not the JSON of 1.
    assert again == [FeedbackRow("b", "tone", True, None, None), FeedbackRow("c", "tone", 0, "new", None)]
    assert store.feedback_for_key("tone") == [
        FeedbackRow("a", "tone", "good", "polite", "ana"),
        FeedbackRow("b", "tone", True, None, None),
        FeedbackRow("c", "tone", 0, "new", None),
    ]
    assert store.feedback_for_key("correctness") == [
        FeedbackRow("b", "correctness", {"odd": [1]}, None, None)
    ]


def test_an_evaluator_reads_back_with_its_score_type_judge_and_times_decoded(store: Store) -> None:
    score_type = ScoreType(kind="categorical", labels=["good", "bad"])
    judge = JudgeSettings(model="m", temperature=0.5, reasoning=False)
    store.insert_evaluator("tone", "tone-key", "Is it polite?", score_type, judge, "Rate {{outputs}}")

    row = store.get_evaluator("tone")

    assert row is not None
    assert (row.name, row.feedback_key, row.description, row.draft) == (
        "tone",
        "tone-key",
        "Is it polite?",
        "Rate {{outputs}}",
    )
    assert row.score_type == score_type and row.judge == judge
    assert row.test_evaluations == 0
    assert _just_now(row.created_at) and row.draft_updated_at == row.created_at
    assert store.get_evaluator("nope") is None


def test_updating_the_draft_stores_the_judge_and_stamps_only_the_draft(store: Store) -> None:
    store.insert_evaluator("tone", "tone", None, ScoreType(kind="binary"), JudgeSettings(), "old {{outputs}}")
    before = store.get_evaluator("tone")
    assert before is not None

    store.update_draft("tone", "new {{outputs}}", JudgeSettings(model="other", max_tokens=50))

    after = store.get_evaluator("tone")
    assert after is not None
    assert after.draft == "new {{outputs}}"
    assert after.judge == JudgeSettings(model="other", max_tokens=50)
    assert after.created_at == before.created_at
    assert after.draft_updated_at > before.draft_updated_at


def test_versions_read_back_numbered_in_order_with_their_judge_decoded(store: Store) -> None:
    store.insert_evaluator("tone", "tone", None, ScoreType(kind="binary"), JudgeSettings(), "p1")
    assert store.insert_version("tone", "p1", JudgeSettings(), "initial prompt") == 1
    assert store.insert_version("tone", "p2", JudgeSettings(model="big"), None) == 2

    versions = store.versions("tone")

    assert [(v.evaluator, v.version, v.prompt, v.judge, v.message) for v in versions] == [
        ("tone", 1, "p1", JudgeSettings(), "initial prompt"),
        ("tone", 2, "p2", JudgeSettings(model="big"), None),
    ]
    assert all(_just_now(v.created_at) for v in versions)
    assert store.get_version("tone", 2) == versions[1]
    assert store.get_version("tone", 3) is None


def test_splits_read_back_with_the_stratum_as_the_score(store: Store) -> None:
    store.insert_evaluator("e", "e", None, ScoreType(kind="binary"), JudgeSettings(), "{{outputs}}")
    with store.transaction():
        store.insert_splits(
            "e", [SplitRow("b", "test", 1), SplitRow("a", "dev", "good"), SplitRow("c", "dev", 0)]
        )
        store.insert_splits("e", [SplitRow("a", "test", 1)])  # assignments are permanent

    assert store.split_rows("e") == [
        SplitRow("a", "dev", "good"),
        SplitRow("b", "test", 1),
        SplitRow("c", "dev", 0),
    ]
    assert store._tuple("SELECT stratum FROM splits WHERE run_id = 'a'") == ('"good"',)


def test_completed_samples_read_back_with_scores_decoded_and_failures_as_none(store: Store) -> None:
    store.insert_evaluator("e", "e", None, ScoreType(kind="binary"), JudgeSettings(), "{{outputs}}")
    done = store.create_consistency_check("e", "draft", "p", JudgeSettings(), "m", 1.0, 2)
    store.finish_consistency_check(done, "completed")
    running = store.create_consistency_check("e", "draft", "p", JudgeSettings(), "m", 1.0, 2)
    store.record_samples(
        done,
        [
            NewSample("r", 1, 0, None, None, None, None, None),
            NewSample("r", 0, "pass", None, None, None, None, None),
            NewSample("q", 0, None, None, "timeout", None, None, None),
        ],
    )
    store.record_samples(running, [NewSample("r", 0, 1, None, None, None, None, None)])

    assert store.completed_samples("e") == [
        SampleRow(done, "q", 0, None, "timeout"),
        SampleRow(done, "r", 0, "pass", None),
        SampleRow(done, "r", 1, 0, None),
    ]
    assert store.completed_samples("e", prompt="another prompt") == []


def test_the_latest_run_of_a_prompt_is_the_latest_completed_one_with_those_settings(store: Store) -> None:
    store.insert_evaluator("e", "e", None, ScoreType(kind="binary"), JudgeSettings(), "p")
    judge = JudgeSettings(model="m")

    def run(settings: JudgeSettings, status: str, split: str = "all") -> int:
        aid = store.create_alignment_run("e", "draft", None, "p", settings, "m", "h", split, [])
        if status != "running":
            store.finish_alignment_run(aid, status, None)
        return aid

    older = run(judge, "completed")
    run(judge, "running")
    run(judge, "completed", "test")
    run(JudgeSettings(), "completed")

    assert store.latest_run_of_prompt("e", "p", JudgeSettings(model="m")) == older
    assert store.latest_run_of_prompt("e", "other", judge) is None

    # Stored without the fields that have their defaults (as by a release before they existed): the same settings.
    spelled = run(judge, "completed")
    store._write(
        "UPDATE alignment_runs SET judge = ? WHERE id = ?", ['{"temperature":0.0,"model":"m"}', spelled]
    )
    assert store.latest_run_of_prompt("e", "p", judge) == spelled


def test_rows_are_frozen(store: Store) -> None:
    store.insert_source("s", "experiment")
    source = store.get_source("s")
    assert source is not None

    with pytest.raises(FrozenInstanceError):
        source.kind = "project"  # type: ignore[misc]


def test_decoded_scores_are_shared_only_when_immutable() -> None:
    assert load_score("1") == 1 and load_score('"1"') == "1" and load_score("0") == 0
    assert load_score('"pass"') is load_score('"pass"')
    odd = load_score("[1]")
    assert odd == [1] and odd is not load_score("[1]")


def test_a_stored_judge_text_matches_only_equal_settings_once_decoded_and_remembered() -> None:
    text = '{"model":"m","temperature":0.0}'

    assert judge_matches(text, JudgeSettings(model="m"))
    assert not judge_matches(text, JudgeSettings(model="m", temperature=0.5))
    assert not judge_matches(text, JudgeSettings())
    assert judge_matches(text, JudgeSettings(model="m"))


def test_reservations_and_queue_counts_round_trip_as_typed_rows(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    store = Store(tmp_path / "q.db", clock=lambda: now[0])
    ingest.import_runs(store, "src", runs=[{"id": f"r{i}", "inputs": {}, "outputs": {}} for i in range(3)])
    evaluators.create(store, "e", ScoreType(kind="binary"))
    store.enqueue("e", ["r0", "r1", "r2"])

    assert store.reserve("e", "ann", 1, 60) == ["r0"]

    assert store.reservations("e", ["r0", "r1", "unqueued"]) == {
        "r0": Reservation("ann", datetime.fromtimestamp(now[0] + 60, UTC)),
        "r1": Reservation(None, None),
    }
    assert store.queue_counts("e") == QueueCounts(pending=3, reserved=1, labeled=0)
    now[0] += 61  # the reservation has expired
    assert store.queue_counts("e") == QueueCounts(pending=3, reserved=0, labeled=0)
    store.close()


def test_label_counts_are_keyed_by_decoded_score(store: Store) -> None:
    ingest.import_runs(store, "src", runs=[{"id": f"r{i}", "inputs": {}, "outputs": {}} for i in range(3)])
    evaluators.create(store, "cat", ScoreType(kind="categorical", labels=["good", "bad"]))
    queues.submit_labels(store, "cat", [{"run_id": "r0", "score": "good"}, {"run_id": "r1", "score": "bad"}])
    queues.submit_label(store, "cat", "r2", "good")

    assert store.label_counts("cat") == {"good": 2, "bad": 1}


def test_labels_round_trip_as_typed_rows_with_their_history(store: Store) -> None:
    ingest.import_runs(store, "src", runs=[{"id": f"r{i}", "inputs": {}, "outputs": {}} for i in range(3)])
    evaluators.create(store, "cat", ScoreType(kind="categorical", labels=["good", "bad"]))
    with store.transaction():
        assert store.insert_labels(
            "cat", [NewLabel("r1", "good", "fine", "ann"), NewLabel("r0", "bad", None, None)]
        ) == [False, False]
    with store.transaction():
        assert store.insert_labels("cat", [NewLabel("r1", "bad", "on reflection", "bo")]) == [True]

    current = store.current_labels("cat")
    assert [(r.run_id, r.score, r.comment, r.labeler, r.current) for r in current] == [
        ("r0", "bad", None, None, True),
        ("r1", "bad", "on reflection", "bo", True),
    ]
    assert all(isinstance(r, LabelRow) and r.created_at.tzinfo is not None for r in current)
    assert store.current_label_rows("cat", ["r1", "r2"]) == {"r1": current[1]}
    assert store.current_labels("cat", ["r0"]) == [current[0]]
    assert store.reference_scores("cat") == [("r0", "bad"), ("r1", "bad")]

    history = store.label_history("cat", "r1")
    assert [(h.score, h.comment, h.labeler, h.current) for h in history] == [
        ("good", "fine", "ann", False),
        ("bad", "on reflection", "bo", True),
    ]
    assert history[-1] == current[1] and history[0].id < history[1].id
    assert store.label_history("cat", "r2") == []


def test_triage_round_trips_and_the_latest_classified_verdict_wins(store: Store) -> None:
    ingest.import_runs(store, "src", runs=[{"id": f"r{i}", "inputs": {}, "outputs": {}} for i in range(3)])
    evaluators.create(store, "e", ScoreType(kind="binary"))
    aid = store.create_alignment_run("e", "draft", None, "p", JudgeSettings(), "m", "h", "all", [])
    store.finish_alignment_run(aid, "completed", None)
    store.insert_triage(
        [
            TriageRow("e", aid, "r0", "label_error", "the label misreads the fee", None, "m"),
            TriageRow("e", aid, "r1", "judge_error", "too strict", None, "m"),
        ]
    )
    store.insert_triage(
        [
            TriageRow("e", aid, "r0", "rubric_gap", "the rubric is silent", None, "m"),
            TriageRow("e", aid, "r1", None, None, "not classified: no reply", "m"),
        ]
    )

    assert store.latest_triage("e", ["r0", "r1", "r2"]) == {
        "r0": TriageVerdict("rubric_gap", "the rubric is silent"),
        "r1": TriageVerdict("judge_error", "too strict"),
    }
    stamped = store._scalar("SELECT count(*) FROM triage_results WHERE created_at IS NOT NULL")
    assert stamped == 4


def test_reviews_round_trip_through_agree_dispute_and_adjudicate(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    ingest.import_runs(store, "src", runs=[{"id": f"r{i}", "inputs": {}, "outputs": {}} for i in range(3)])
    evaluators.create(store, "e", ScoreType(kind="binary"))
    with store.transaction():
        store.insert_labels("e", [NewLabel(f"r{i}", 1, None, "ann") for i in range(3)])
    first = store.current_label_rows("e", ["r0", "r1", "r2"])
    with store.transaction():
        store.insert_reviews("e", [NewReview(rid, first[rid].id, f"why {rid}") for rid in ("r0", "r1", "r2")])

    [pending, *_] = store.reviews("e", ["r0"])
    assert pending == ReviewRow(
        id=pending.id,
        run_id="r0",
        status="pending",
        reason="why r0",
        requested_at=pending.requested_at,
        resolved_at=None,
        first_label_id=first["r0"].id,
        second_label_id=None,
        final_label_id=None,
        first_score=1,
        first_labeler="ann",
        second_score=None,
        second_labeler=None,
        final_score=None,
        final_labeler=None,
    )
    assert pending.requested_at.tzinfo is not None
    assert store.queue_counts("e").pending == 3  # every reviewed run is back in the queue

    with store.transaction():
        store.insert_labels("e", [NewLabel("r0", 1, None, "bo"), NewLabel("r1", 0, None, "bo")])
    second = store.current_label_rows("e", ["r0", "r1"])
    by_run = {r.run_id: r for r in store.reviews("e")}
    store.agree_review(by_run["r0"].id, second["r0"].id)
    store.dispute_review(by_run["r1"].id, second["r1"].id)
    store.adjudicate_review(by_run["r2"].id, first["r2"].id)

    reviews = {r.run_id: r for r in store.reviews("e")}
    assert [(r.status, r.second_score, r.second_labeler, r.final_score) for r in reviews.values()] == [
        ("agreed", 1, "bo", None),
        ("disputed", 0, "bo", None),
        ("adjudicated", None, None, 1),
    ]
    assert reviews["r0"].resolved_at is not None and reviews["r1"].resolved_at is None
    assert reviews["r2"].resolved_at is not None and reviews["r2"].final_labeler == "ann"
    assert [r.run_id for r in store.reviews("e", open_only=True)] == ["r1"]
    assert store.disputed_run_ids("e") == {"r1"}
    store.close()


def test_the_judge_cache_round_trips_typed_entries_with_scores_decoded(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.cache_put(
        [CacheEntry("k1", 1, "because", 10, 2, 0), CacheEntry("k2", "good", None, None, None, None)]
    )
    assert store.cache_get(["k1", "k2", "missing"]) == {
        "k1": CacheEntry("k1", 1, "because", 10, 2, 0),
        "k2": CacheEntry("k2", "good", None, None, None, None),
    }
    store.cache_put([CacheEntry("k1", 0, "changed", 11, 3, 1)])  # a newer entry replaces the older one
    assert store.cache_get(["k1"])["k1"].judge_score == 0
    assert store.cache_get([]) == {}

    @dataclass
    class Verdict:
        score: Any
        reasoning: str | None
        prompt_tokens: int | None
        completion_tokens: int | None
        cached_tokens: int | None

    assert CacheEntry.of("k3", Verdict(1, "r", 1, 2, 3)) == CacheEntry("k3", 1, "r", 1, 2, 3)
    with pytest.raises(FrozenInstanceError):
        store.cache_get(["k1"])["k1"].reasoning = "x"  # type: ignore[misc]
    store.close()


def test_alignment_results_round_trip_as_typed_rows_with_scores_decoded(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db")
    evaluators.create(store, "e", ScoreType(kind="binary"))
    aid = store.create_alignment_run(
        "e", "draft", None, "p", JudgeSettings(), "m", "h", "all", [("r0", 1), ("r1", 0), ("r2", 1)]
    )
    assert store._tuple("SELECT status, total, finished_at FROM alignment_runs WHERE id = ?", [aid]) == (
        "running",
        3,
        None,
    )
    assert store.pending_examples(aid) == [("r0", 1), ("r1", 0), ("r2", 1)]
    store.record_results(
        aid,
        [
            NewResult("r0", 0, "too strict", None, 10, 2, 1, 12.5, False),
            NewResult("r1", None, None, "timed out", None, None, None, 30.0, False),
        ],
        [CacheEntry("k", 0, "too strict", 10, 2, 1)],
    )
    assert store.pending_examples(aid) == [("r2", 1)]
    assert store.cache_get(["k"])["k"].judge_score == 0
    assert store.alignment_results(aid) == [
        ResultRow(aid, "r0", 1, True, 0, "too strict", None, 10, 2, 1, 12.5, False),
        ResultRow(aid, "r1", 0, True, None, None, "timed out", None, None, None, 30.0, False),
    ]
    assert [r.run_id for r in store.alignment_results(aid, done_only=False)] == ["r0", "r1", "r2"]
    assert store.alignment_results(aid, done_only=False)[2].done is False
    total, page = store.misaligned(aid, "e", "any", False, 0, 10)
    assert (total, [(r.run_id, r.human_score, r.judge_score) for r in page]) == (1, [("r0", 1, 0)])
    assert store.misaligned(aid, "e", "false_fail", False, 0, 10)[0] == 1
    assert store.misaligned(aid, "e", "false_pass", False, 0, 10)[0] == 0
    with pytest.raises(ValueError) as e:
        store.misaligned(aid, "e", "r.judge_score = 1", False, 0, 10)
    assert str(e.value) == (
        "unknown misaligned direction 'r.judge_score = 1'; known: any, false_pass, false_fail, over, under, mismatch"
    )
    store.close()


def test_consistency_checks_round_trip_as_typed_rows(store: Store) -> None:
    store.insert_evaluator("e", "e", None, ScoreType(kind="binary"), JudgeSettings(), "{{outputs}}")
    judge = JudgeSettings(model="m", temperature=0.7)
    check_id = store.create_consistency_check("e", "v1", "p", judge, "m", 0.7, 3)
    started = store.get_consistency_check(check_id)
    assert started == ConsistencyCheckRow(
        check_id, "e", "v1", "p", judge, "m", 0.7, 3, "running", started.started_at if started else None, None
    )
    store.record_samples(
        check_id,
        [
            NewSample("r", 0, 1, "ok", None, 5, 1, 2.5),
            NewSample("r", 1, None, None, "timeout", None, None, 9.0),
        ],
    )
    store.record_samples(check_id, [NewSample("r", 1, 0, "again", None, 5, 1, 2.0)])  # replaces sample 1
    assert store.consistency_samples(check_id) == [
        SampleRow(check_id, "r", 0, 1, None),
        SampleRow(check_id, "r", 1, 0, None),
    ]
    store.finish_consistency_check(check_id, "interrupted")
    finished = store.get_consistency_check(check_id)
    assert finished is not None and finished.status == "interrupted" and finished.finished_at is not None
    assert finished.started_at.tzinfo is not None
    assert store.get_consistency_check(check_id + 1) is None


def test_failure_analyses_and_proposals_round_trip_with_their_results_decoded(store: Store) -> None:
    from align_mcp.core import metrics
    from align_mcp.core.models import FailureAnalysis, OptimizerBudget, Proposal, SplitComparison

    store.insert_evaluator("e", "e", None, ScoreType(kind="binary"), JudgeSettings(), "p")
    aid = store.create_alignment_run("e", "draft", None, "p", JudgeSettings(), "m", "h", "all", [])
    created = datetime.now(UTC)
    analysis = FailureAnalysis(
        id=0,
        evaluator="e",
        alignment_run=aid,
        prompt_ref="draft",
        method="keywords",
        judged=4,
        misaligned=1,
        modes=[],
        model_calls=0,
        created_at=created,
    )
    first = store.insert_failure_analysis(analysis)
    second = store.insert_failure_analysis(analysis.model_copy(update={"method": "llm"}))
    latest = store.latest_failure_analysis(aid)
    assert latest is not None and (latest.id, latest.method, latest.evaluator) == (second, "llm", "e")
    assert latest.result == analysis.model_copy(update={"id": second, "method": "llm"})
    by_method = store.latest_failure_analysis(aid, "keywords")
    assert by_method is not None and by_method.result == analysis.model_copy(update={"id": first})
    assert store.latest_failure_analysis(aid + 1) is None

    m = metrics.compute_metrics(ScoreType(kind="binary"), [(1, 1), (0, 0)])
    flips = metrics.flip_report({"r": True}, {"r": True}, "draft", "proposal")
    dev = SplitComparison(split="dev", n=2, before=m, after=m, flips=flips)
    proposal = Proposal(
        id=0,
        evaluator="e",
        mode="reflect",
        status="proposed",
        changed=True,
        prompt="p2",
        base_prompt="p",
        diff="-p\n+p2",
        addresses=[],
        dev=dev,
        test=dev.model_copy(update={"split": "test"}),
        verdict="better",
        budget=OptimizerBudget(
            budget=10,
            used=1,
            judge_calls=1,
            reflection_calls=0,
            analysis_calls=0,
            cache_hits=0,
            stopped_by_budget=False,
        ),
        candidates=1,
        seen_examples=2,
        alignment_run=aid,
        analysis_id=first,
        wall_seconds=0.5,
        created_at=created,
    )
    pid = store.insert_proposal(NewProposal("e", "reflect", aid, first, "p", "p2", ["r1", "r0"], proposal))
    row = store.get_proposal(pid)
    assert row is not None
    assert (row.evaluator, row.mode, row.alignment_id, row.analysis_id, row.base_prompt, row.prompt) == (
        "e",
        "reflect",
        aid,
        first,
        "p",
        "p2",
    )
    assert row.seen_run_ids == ["r1", "r0"] and row.applied_at is None
    assert row.result == proposal.model_copy(update={"id": pid})
    store.mark_proposal_applied(pid)
    [applied] = store.proposals("e")
    assert applied.applied_at is not None and applied.result.status == "applied"
    assert applied.result.applied_at == applied.applied_at
    assert store.get_proposal(pid + 1) is None and store.proposals("other") == []


def test_runs_and_sources_read_back_as_typed_rows(store: Store) -> None:
    store.insert_source("s", "experiment")
    store.insert_source("empty", "project")
    with store.transaction():
        store.insert_runs("s", [_Run("a", {"q": 1}, {"a": 2}, None, {"k": "v"})])
    assert store.get_runs(["a", "missing"]) == {"a": RunRow("a", "s", {"q": 1}, {"a": 2}, None, {"k": "v"})}
    listed = store.list_sources()
    assert [(s.name, s.kind, s.runs) for s in listed] == [("empty", "project", 0), ("s", "experiment", 1)]
    assert all(isinstance(s, SourceListing) and s.created_at.tzinfo is not None for s in listed)
    source = store.get_source("s")
    assert source is not None and listed[1].created_at == source.created_at


def test_alignment_runs_are_finished_reopened_and_given_a_baseline_through_explicit_methods(
    store: Store,
) -> None:
    from align_mcp.core import metrics

    store.insert_evaluator("e", "e", None, ScoreType(kind="binary"), JudgeSettings(), "p")
    base = store.create_alignment_run("e", "v1", 1, "p", JudgeSettings(), "m", "h", "dev", [("r", 1)])
    aid = store.create_alignment_run("e", "draft", None, "p", JudgeSettings(), "m", "h", "dev", [("r", 1)])
    computed = metrics.compute_metrics(ScoreType(kind="binary"), [(1, 1)])
    store.finish_alignment_run(aid, "completed", computed)
    store.set_alignment_baseline(aid, base)
    status, finished, stored, baseline = store._tuple(
        "SELECT status, finished_at, metrics, baseline_id FROM alignment_runs WHERE id = ?", [aid]
    ) or (None, None, None, None)
    assert (status, baseline) == ("completed", base) and finished is not None
    assert stored == computed.model_dump_json()
    store.reopen_alignment_run(aid)
    assert store._tuple("SELECT status, finished_at FROM alignment_runs WHERE id = ?", [aid]) == (
        "running",
        None,
    )
    store.finish_alignment_run(aid, "interrupted", None)
    assert store._tuple("SELECT status, metrics FROM alignment_runs WHERE id = ?", [aid]) == (
        "interrupted",
        None,
    )


def test_alignment_runs_are_read_as_typed_rows_with_settings_metrics_and_totals_decoded(store: Store) -> None:
    from align_mcp.core import metrics
    from align_mcp.store import AlignmentRunRow, AlignmentRunTotals, CacheEntry, NewResult

    settings = JudgeSettings(temperature=0.5)
    store.insert_evaluator("e", "e", None, ScoreType(kind="binary"), JudgeSettings(), "p")
    base = store.create_alignment_run("e", "v1", 1, "p", settings, "m", "h", "dev", [("r", 1), ("s", 0)])
    aid = store.create_alignment_run(
        "e", "draft", None, "p2", settings, "m", "h2", "dev", [("r", 1), ("s", 0)]
    )
    result = NewResult("r", 1, "ok", None, 30, 4, 0, 12.5, cached=False)
    store.record_results(aid, [result], [CacheEntry("k", 1, "ok", 30, 4, 0)])
    store.record_results(aid, [NewResult("s", 1, "cached", None, 30, 4, 0, 0.1, cached=True)], [])
    computed = metrics.compute_metrics(ScoreType(kind="binary"), [(1, 1), (0, 1)])
    store.finish_alignment_run(aid, "completed", computed)
    store.set_alignment_baseline(aid, base)

    row = store.alignment_run_row(aid)
    assert isinstance(row, AlignmentRunRow)
    assert (row.id, row.evaluator, row.prompt_ref, row.version, row.prompt, row.model, row.prompt_hash) == (
        aid, "e", "draft", None, "p2", "m", "h2",
    )  # fmt: skip
    assert (row.judge, row.split, row.status, row.total, row.baseline_id) == (
        settings,
        "dev",
        "completed",
        2,
        base,
    )
    assert row.metrics == computed and row.started_at.tzinfo is not None and row.finished_at is not None
    assert store.alignment_run_row(base) is not None and store.alignment_run_row(base).metrics is None  # type: ignore[union-attr]
    totals = store.get_alignment_run(aid)
    assert isinstance(totals, AlignmentRunTotals) and totals.run == row
    assert (totals.judged, totals.judge_calls, totals.cache_hits, totals.prompt_tokens, totals.completion_tokens) == (
        2, 1, 1, 30, 4,
    )  # fmt: skip
    assert store.alignment_run_row(999) is None and store.get_alignment_run(999) is None
