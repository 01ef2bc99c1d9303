"""The enforced holdout (holdout.py): a stratified dev/test split that is made once, never moves, is used by
alignment runs, hidden from misaligned views, and counted when the test split is looked at."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from align_mcp import config
from align_mcp.core.models import JudgeSettings, Note, Score, ScoreType, SplitInfo
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators, holdout
from align_mcp.engine.ingest import import_runs
from align_mcp.engine.queues import reference_set, submit_labels
from align_mcp.errors import InvalidInput, NextStep, NotFound
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer, Reply
from conftest import rid_of

NAME = "correctness"
PASS = [f"p{i:02d}" for i in range(1, 21)]
FAIL = [f"f{i:02d}" for i in range(1, 11)]
LABELS: dict[str, Score] = {**dict.fromkeys(PASS, 1), **dict.fromkeys(FAIL, 0)}
OVERFIT_WARNING = (
    "Possible overfitting: agreement is 100% on dev but 0% on test, and the 95% intervals do not overlap. The "
    "prompt may be tuned to the dev examples; label more runs and prefer general instructions over case-specific "
    "ones."
)

pytestmark = pytest.mark.anyio


def env_for(srv: FakeJudgeServer) -> config.Settings:
    return config.Settings(
        db_path=Path("unused.db"),
        judge_model="judge-model",
        judge_base_url=srv.base_url,
        judge_api_key="sk-test",
        judge_base_url_var=config.ENV_JUDGE_BASE_URL,
        judge_api_key_var=config.ENV_JUDGE_API_KEY,
        concurrency=8,
    )


def create(store: Store, score_type: ScoreType | None = None) -> None:
    evaluators.create(store, NAME, score_type or ScoreType(kind="binary"), judge=JudgeSettings(max_retries=0))


def label(store: Store, labels: Mapping[str, Score]) -> None:
    """Import a run for every id not yet stored (its id in its inputs as `rid`) and label it."""
    new = [rid for rid in labels if not store.existing_run_ids([rid])]
    if new:
        runs = [{"id": rid, "inputs": {"rid": rid}, "outputs": {"answer": f"Answer {rid}."}} for rid in new]
        import_runs(store, "support", runs=runs)
    submit_labels(store, NAME, [{"run_id": rid, "score": score} for rid, score in labels.items()])


def assignments(store: Store) -> dict[str, str]:
    return {r.run_id: r.split for r in store.split_rows(NAME)}


def judge_as(scores: Mapping[str, Score]) -> Callable[[dict[str, Any]], Reply]:
    return lambda body: Reply(score=scores[rid_of(body)])


def test_no_split_below_ten_labels(store: Store) -> None:
    create(store)
    label(store, {**dict.fromkeys(PASS[:5], 1), **dict.fromkeys(FAIL[:4], 0)})
    assert holdout.ensure_split(store, NAME) is None
    assert store.split_rows(NAME) == []
    assert holdout.needed_labels(reference_set(store, NAME)) == (
        "A dev/test holdout needs at least 10 labeled runs; there are 9. Label 1 more."
    )
    with pytest.raises(InvalidInput) as e:
        holdout.examples_for(store, NAME, "dev")
    assert str(e.value) == (
        "There is no dev split for 'correctness' yet. A dev/test holdout needs at least 10 labeled runs; there "
        "are 9. Label 1 more."
    )


@pytest.mark.parametrize(
    ("labels", "counts"),
    [
        ({**dict.fromkeys(PASS[:9], 1), FAIL[0]: 0}, "{'0': 1, '1': 9}"),
        (dict.fromkeys(PASS[:10], 1), "{'1': 10}"),
    ],
    ids=["one-fail", "no-fail"],
)
def test_no_split_while_a_score_value_has_under_two_labels(
    store: Store, labels: dict[str, Score], counts: str
) -> None:
    create(store)
    label(store, labels)
    assert holdout.ensure_split(store, NAME) is None
    assert holdout.needed_labels(reference_set(store, NAME)) == (
        "A stratified dev/test holdout needs at least 2 labeled runs of each of two score values; the counts are "
        f"{counts}. Label more runs of the rarer value."
    )


def test_split_holds_out_thirty_percent_of_each_score_value(store: Store) -> None:
    create(store)
    label(store, LABELS)
    info = holdout.ensure_split(store, NAME)
    assert info == SplitInfo(
        dev=21,
        test=9,
        by_class={"1": {"dev": 14, "test": 6}, "0": {"dev": 7, "test": 3}},
        test_evaluations=0,
    )
    split = assignments(store)
    assert set(split) == set(LABELS)
    assert sum(split[rid] == "test" for rid in PASS) == 6
    assert sum(split[rid] == "test" for rid in FAIL) == 3


def test_assignments_never_change_when_labels_are_added_or_relabeled(store: Store) -> None:
    create(store)
    label(store, LABELS)
    holdout.ensure_split(store, NAME)
    before = assignments(store)
    test_pass = next(rid for rid in PASS if before[rid] == "test")
    dev_fail = next(rid for rid in FAIL if before[rid] == "dev")
    label(store, {test_pass: 0, dev_fail: 1, **{f"n{i:02d}": i % 2 for i in range(1, 11)}})
    holdout.ensure_split(store, NAME)
    after = assignments(store)
    assert {rid: after[rid] for rid in before} == before
    assert len(after) == 40
    # A relabeled run stays in its split; the examples it feeds carry its new score.
    assert dict(holdout.examples_for(store, NAME, "test")[1])[test_pass] == 0
    assert dict(holdout.examples_for(store, NAME, "dev")[1])[dev_fail] == 1


def test_labels_added_one_by_one_keep_thirty_percent_of_each_score_value(store: Store) -> None:
    create(store)
    label(store, LABELS)
    holdout.ensure_split(store, NAME)
    for i in range(1, 11):
        label(store, {f"n{i:02d}": 1})
        info = holdout.ensure_split(store, NAME)
        assert info is not None
        assert info.by_class["1"]["test"] == round(0.3 * (20 + i))
        assert info.by_class["0"] == {"dev": 7, "test": 3}
    label(store, {f"m{i:02d}": 0 for i in range(1, 11)})
    info = holdout.ensure_split(store, NAME)
    assert info is not None
    assert info.by_class == {"1": {"dev": 21, "test": 9}, "0": {"dev": 14, "test": 6}}


def test_the_same_ids_get_the_same_split_in_a_fresh_store(tmp_path: Path) -> None:
    splits = []
    for name, order in (("one.db", list(LABELS)), ("two.db", list(reversed(LABELS)))):
        with Store(tmp_path / name) as fresh:
            create(fresh)
            half = len(order) // 2
            label(fresh, {rid: LABELS[rid] for rid in order[:half]})
            label(fresh, {rid: LABELS[rid] for rid in order[half:]})
            holdout.ensure_split(fresh, NAME)
            splits.append(assignments(fresh))
    assert splits[0] == splits[1]
    assert sorted(splits[0].values()).count("test") == 9


async def test_auto_uses_every_label_before_a_split_and_dev_once_one_exists(store: Store) -> None:
    create(store)
    label(store, {rid: LABELS[rid] for rid in [*PASS[:5], *FAIL[:4]]})
    with FakeJudgeServer(responder=judge_as(LABELS)) as srv:
        before = await align.run_alignment(store, NAME, env=env_for(srv))
        assert (before.run.split, before.run.total, before.holdout) == ("all", 9, None)
        assert (
            Note(
                text="No dev/test holdout yet: A dev/test holdout needs at least 10 labeled runs; there are 9. "
                "Label 1 more."
            )
            in before.notes
        )
        label(store, LABELS)
        calls = srv.calls
        report = await align.run_alignment(store, NAME, env=env_for(srv))
        judged = {rid_of(b) for b in srv.chat_bodies[calls:]}
    dev = holdout.split_ids(store, NAME, "dev")
    assert (report.run.split, report.run.total) == ("dev", 21)
    # The nine examples judged before the split came from the cache.
    assert judged == dev - set(PASS[:5]) - set(FAIL[:4])
    assert {r.run_id for r in store.alignment_results(report.run.id)} == dev
    assert report.holdout is not None and (report.holdout.dev, report.holdout.test) == (21, 9)
    assert report.holdout.test_evaluations == 0


async def test_test_split_runs_are_counted_and_the_report_says_how_often(store: Store) -> None:
    create(store)
    label(store, LABELS)
    with FakeJudgeServer(responder=judge_as(LABELS)) as srv:
        dev = await align.run_alignment(store, NAME, env=env_for(srv))
        assert dev.holdout is not None and dev.holdout.test_evaluations == 0
        reports = [await align.run_alignment(store, NAME, split="test", env=env_for(srv)) for _ in range(2)]
        # An 'all' run judges the test split too, so it counts as a look.
        await align.run_alignment(store, NAME, split="all", env=env_for(srv))
    assert [(r.run.split, r.run.total) for r in reports] == [("test", 9), ("test", 9)]
    assert [r.holdout.test_evaluations for r in reports if r.holdout] == [1, 2]
    for n, r in enumerate(reports, start=1):
        assert (
            Note(
                text=f"This run judged the held-out test split (9 examples). The test split has been evaluated "
                f"{n} time(s) in all: each look makes it a little less independent, so tune on dev and check "
                "test rarely."
            )
            in r.notes
        )
    assert {r.run_id for r in store.alignment_results(reports[0].run.id)} == holdout.split_ids(
        store, NAME, "test"
    )
    info = holdout.info(store, NAME)
    assert info is not None and info.test_evaluations == 3


async def test_misaligned_cases_never_come_from_the_test_split(store: Store) -> None:
    create(store)
    label(store, LABELS)
    holdout.ensure_split(store, NAME)
    wrong = {rid: 1 - int(score) for rid, score in LABELS.items()}
    with FakeJudgeServer(responder=judge_as(wrong)) as srv:
        everything = await align.run_alignment(store, NAME, split="all", compare=False, env=env_for(srv))
    dev = holdout.split_ids(store, NAME, "dev")
    page = align.get_misaligned(store, NAME, alignment_run=everything.run.id, limit=100)
    assert page.total == 21
    assert {c.run_id for c in page.cases} == dev
    assert align.get_misaligned(store, NAME, limit=100).alignment_run == everything.run.id


async def test_misaligned_refuses_a_test_split_run(store: Store) -> None:
    create(store)
    label(store, LABELS)
    holdout.ensure_split(store, NAME)
    wrong = {rid: 1 - int(score) for rid, score in LABELS.items()}
    with FakeJudgeServer(responder=judge_as(wrong)) as srv:
        report = await align.run_alignment(store, NAME, split="test", env=env_for(srv))
    aid = report.run.id
    with pytest.raises(InvalidInput) as e:
        align.get_misaligned(store, NAME, alignment_run=aid)
    assert str(e.value) == (
        f"Alignment run {aid} judged the held-out test split; misaligned cases are shown from dev only, so the "
        "prompt is not tuned to the test set."
    )
    assert e.value.next_steps == (NextStep("run_alignment", {"evaluator": NAME, "split": "dev"}),)
    # Without a run id, a test-split run is never picked.
    with pytest.raises(NotFound):
        align.get_misaligned(store, NAME)
    assert [
        step for note in report.notes for step in note.next_steps if step.action == "show_misaligned"
    ] == []


async def test_overfitting_is_flagged_when_dev_agreement_is_clearly_above_test(store: Store) -> None:
    create(store)
    label(store, LABELS)
    holdout.ensure_split(store, NAME)
    test_ids = holdout.split_ids(store, NAME, "test")
    # Right on every dev example, wrong on every test example.
    scores = {rid: 1 - int(score) if rid in test_ids else score for rid, score in LABELS.items()}
    with FakeJudgeServer(responder=judge_as(scores)) as srv:
        dev = await align.run_alignment(store, NAME, split="dev", env=env_for(srv))
        test = await align.run_alignment(store, NAME, split="test", env=env_for(srv))
    assert dev.run.metrics is not None and dev.run.metrics.agreement.value == 1.0
    assert test.run.metrics is not None and test.run.metrics.agreement.value == 0.0
    assert Note(text=OVERFIT_WARNING) in test.warnings
    assert not any(w.text.startswith("Possible overfitting") for w in dev.warnings)


async def test_no_overfitting_warning_when_dev_and_test_agree(store: Store) -> None:
    create(store)
    label(store, LABELS)
    with FakeJudgeServer(responder=judge_as(LABELS)) as srv:
        await align.run_alignment(store, NAME, split="dev", env=env_for(srv))
        test = await align.run_alignment(store, NAME, split="test", env=env_for(srv))
    assert test.run.metrics is not None and test.run.metrics.agreement.value == 1.0
    assert not any(w.text.startswith("Possible overfitting") for w in test.warnings)


async def test_runs_shown_as_misaligned_before_the_split_stay_in_dev(
    tmp_path: Path, store: Store, judge: FakeJudgeServer, client: Any
) -> None:
    # The split the same labels get when nothing was shown: these fail runs land in test.
    with Store(tmp_path / "control.db") as control:
        create(control)
        label(control, LABELS)
        holdout.ensure_split(control, NAME)
        held_out = {rid for rid, split in assignments(control).items() if split == "test"}
    test_fails = sorted(held_out & set(FAIL))
    assert len(test_fails) == 3
    early_fails = [*test_fails, next(rid for rid in FAIL if rid not in held_out)]
    create(store)
    label(store, {rid: LABELS[rid] for rid in [*PASS[:5], *early_fails]})  # 9 labels: no holdout yet
    judge.responder = lambda body: Reply(score=1)  # passes everything: the four fails are misaligned

    first = await client.call_tool("run_alignment", {"evaluator": NAME})
    assert not first.is_error and first.structured_content["run"]["split"] == "all"
    page = await client.call_tool("get_misaligned", {"evaluator": NAME, "limit": 20})
    shown = {case["run_id"] for case in page.structured_content["cases"]}
    assert shown == set(early_fails)

    label(store, LABELS)
    report = (await client.call_tool("run_alignment", {"evaluator": NAME})).structured_content

    split = assignments(store)
    assert {rid: split[rid] for rid in shown} == dict.fromkeys(shown, "dev")
    # The test share is filled from runs nobody saw judged: still 3 of the 10 fails, 9 of 30 in all.
    assert sorted(rid for rid in FAIL if split[rid] == "test") != test_fails
    assert sum(1 for rid in FAIL if split[rid] == "test") == 3
    assert (report["holdout"]["dev"], report["holdout"]["test"], report["holdout"]["kept_in_dev"]) == (
        21,
        9,
        4,
    )
    assert report["run"]["split"] == "dev"


def test_a_view_of_runs_that_already_have_a_split_records_nothing(store: Store) -> None:
    create(store)
    label(store, LABELS)
    holdout.ensure_split(store, NAME)
    holdout.record_shown(store, NAME, [*PASS, *FAIL])
    assert store.shown_run_ids(NAME) == set()
    info = holdout.info(store, NAME)
    assert info is not None and info.kept_in_dev == 0
