"""Alignment runs (align.py): every result stored, cached, compared with the last saved version, resumable; and
the misaligned examples shown side by side. The judge is the fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from align_mcp import config
from align_mcp.core import metrics
from align_mcp.core.models import JudgeSettings, Note, Score, ScoreType
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators
from align_mcp.engine.ingest import import_runs
from align_mcp.engine.queues import submit_labels
from align_mcp.errors import (
    EmptyReferenceSet,
    InvalidInput,
    JudgeConfigError,
    JudgeUnreachable,
    NextStep,
    NotFound,
)
from align_mcp.store import ResultRow, Store
from align_mcp.testing.fakejudge import FakeJudgeServer, Reply, prompt_text, reset, section, server_error

pytestmark = pytest.mark.anyio

BINARY = ScoreType(kind="binary")
ORDINAL = ScoreType(kind="ordinal", min=1, max=5)
CATEGORICAL = ScoreType(kind="categorical", labels=["good", "ok", "bad"])
NAME = "correctness"
MODEL = "judge-model"
STRICT = "Be strict about every number."
# Eight labeled runs: r1-r4 pass, r5-r8 fail (fewer than ten, so no holdout is made and every label is used).
HUMAN: dict[str, Score] = {f"r{i}": 1 if i <= 4 else 0 for i in range(1, 9)}
NO_MODEL = (
    "No judge model is configured. Set ALIGN_MCP_JUDGE_MODEL (e.g. gpt-4.1-mini, or the model name your "
    "Ollama/vLLM server serves) or give the evaluator a model."
)


def env_for(srv: FakeJudgeServer | None, model: str | None = MODEL, concurrency: int = 4) -> config.Settings:
    return config.Settings(
        db_path=Path("unused.db"),
        judge_model=model,
        judge_base_url=srv.base_url if srv else "http://127.0.0.1:9/v1",
        judge_api_key="sk-test",
        judge_base_url_var=config.ENV_JUDGE_BASE_URL,
        judge_api_key_var=config.ENV_JUDGE_API_KEY,
        concurrency=concurrency,
    )


def seed(
    store: Store,
    labels: Mapping[str, Score],
    score_type: ScoreType = BINARY,
    outputs: Mapping[str, str] | None = None,
    comments: Mapping[str, str] | None = None,
) -> None:
    """An evaluator (judge: no retries) with one labeled run per entry; the run id is in its inputs as `rid`."""
    evaluators.create(store, NAME, score_type, judge=JudgeSettings(max_retries=0))
    runs = [
        {
            "id": rid,
            "inputs": {"rid": rid, "question": f"Question {rid}?"},
            "outputs": {"answer": (outputs or {}).get(rid, f"Answer {rid}.")},
        }
        for rid in labels
    ]
    import_runs(store, "support", runs=runs)
    submit_labels(
        store,
        NAME,
        [
            {"run_id": rid, "score": score, "comment": (comments or {}).get(rid), "labeler": "ana"}
            for rid, score in labels.items()
        ],
    )


def rid_of(body: dict[str, Any]) -> str:
    """The run id of the example in a judge request (the last <inputs> section of the prompt)."""
    return str(json.loads(section(prompt_text(body), "inputs") or "{}")["rid"])


def scripted(
    verdicts: Mapping[str, Score],
    draft: Mapping[str, Score] | None = None,
    **reply: Any,
) -> Callable[[dict[str, Any]], Reply]:
    """A responder giving each example its scripted score; prompts containing STRICT get the `draft` table."""

    def respond(body: dict[str, Any]) -> Reply:
        rid = rid_of(body)
        table = draft if draft is not None and STRICT in prompt_text(body) else verdicts
        return Reply(score=table[rid], reasoning=f"Judge reasoning for {rid}.", **reply)

    return respond


def make_strict(store: Store) -> None:
    evaluators.update_draft(store, NAME, replace=("Rubric:", f"{STRICT}\n\nRubric:"))


def stored(store: Store, aid: int) -> dict[str, ResultRow]:
    return {r.run_id: r for r in store.alignment_results(aid)}


# ---- running, storing, scoring -----------------------------------------------------------------------------


async def test_every_result_is_stored_and_metrics_equal_those_of_the_stored_pairs(store: Store) -> None:
    seed(store, HUMAN)
    judge = {**HUMAN, "r4": 0, "r7": 1, "r8": 1}
    with FakeJudgeServer(responder=scripted(judge, prompt_tokens=50, completion_tokens=5)) as srv:
        report = await align.run_alignment(store, NAME, env=env_for(srv))
    run = report.run
    assert (run.status, run.split, run.prompt_ref, run.model) == ("completed", "all", "draft", MODEL)
    assert (run.total, run.done, run.judged, run.errors, run.cache_hits) == (8, 8, 8, 0, 0)
    assert (run.requests, run.reasks, run.waited_s) == (8, 0, 0)
    results = stored(store, run.id)
    assert {rid: r.judge_score for rid, r in results.items()} == judge
    assert {rid: r.human_score for rid, r in results.items()} == HUMAN
    assert results["r7"].reasoning == "Judge reasoning for r7."
    pairs = [(r.human_score, r.judge_score) for r in results.values()]
    assert run.metrics == metrics.compute_metrics(BINARY, pairs)
    assert run.metrics is not None
    assert (run.metrics.agreement.k, run.metrics.n, run.metrics.false_pass, run.metrics.false_fail) == (
        5,
        8,
        2,
        1,
    )
    assert (run.prompt_tokens, run.completion_tokens) == (400, 40)
    assert all((r.prompt_tokens, r.completion_tokens) == (50, 5) for r in results.values())
    assert (
        Note(
            text="3 misaligned example(s).",
            next_steps=[NextStep("show_misaligned", {"evaluator": NAME, "alignment_run": 1})],
        )
        in report.notes
    )


async def test_an_unchanged_prompt_is_answered_from_the_cache_without_judge_calls(store: Store) -> None:
    seed(store, HUMAN)
    with FakeJudgeServer(responder=scripted({**HUMAN, "r1": 0})) as srv:
        first = await align.run_alignment(store, NAME, env=env_for(srv))
        # The draft equals v1: no second run of the same prompt is made to compare with.
        assert srv.calls == 8
        assert first.baseline is None and first.flips is None
        assert store.alignment_run_ids(NAME) == [first.run.id]
        again = await align.run_alignment(store, NAME, env=env_for(srv))
        assert srv.calls == 8
    assert again.run.id != first.run.id
    assert (again.run.cache_hits, again.run.requests, again.run.judged) == (8, 0, 8)
    assert again.run.metrics == first.run.metrics
    assert all(r.cached == 1 for r in stored(store, again.run.id).values())
    assert (
        Note(
            text="The draft is identical to v1, so there is no change to compare.",
            next_steps=[NextStep("update_draft", {"evaluator": NAME})],
        )
        in again.notes
    )


@pytest.mark.parametrize(
    ("edit", "sent"),
    [
        ({"replace": ("Rubric:", "Grading rubric:")}, {}),
        ({"judge": {"model": "judge-model-2"}}, {"model": "judge-model-2"}),
        ({"judge": {"temperature": 0.5}}, {"temperature": 0.5}),
    ],
    ids=["prompt", "model", "temperature"],
)
async def test_a_changed_prompt_model_or_temperature_misses_the_cache(
    store: Store, edit: dict[str, Any], sent: dict[str, Any]
) -> None:
    seed(store, HUMAN)
    with FakeJudgeServer(responder=scripted(HUMAN)) as srv:
        await align.run_alignment(store, NAME, env=env_for(srv))
        evaluators.update_draft(store, NAME, **edit)
        report = await align.run_alignment(store, NAME, env=env_for(srv))
        # Eight new calls for the draft; v1 is compared from its earlier run.
        assert srv.calls == 16
        assert all(body[k] == v for body in srv.chat_bodies[8:] for k, v in sent.items())
    assert (report.run.cache_hits, report.run.requests) == (0, 8)
    assert report.baseline is not None and report.baseline.prompt_ref == "v1"


async def test_changing_only_the_base_url_misses_the_cache(store: Store) -> None:
    seed(store, HUMAN)
    with (
        FakeJudgeServer(responder=scripted(HUMAN)) as first,
        FakeJudgeServer(responder=scripted(HUMAN)) as other,
    ):
        await align.run_alignment(store, NAME, env=env_for(first))
        report = await align.run_alignment(store, NAME, env=env_for(other))
        assert (first.calls, other.calls) == (8, 8), "the same model at another endpoint is judged again"
    assert (report.run.cache_hits, report.run.requests) == (0, 8)


async def test_a_saved_version_judged_at_another_endpoint_is_judged_again_to_compare(store: Store) -> None:
    seed(store, HUMAN)
    make_strict(store)
    with (
        FakeJudgeServer(responder=scripted(HUMAN)) as first,
        FakeJudgeServer(responder=scripted(HUMAN)) as other,
    ):
        await align.run_alignment(store, NAME, env=env_for(first))
        assert first.calls == 16, "the draft and v1"
        report = await align.run_alignment(store, NAME, env=env_for(other))
        assert other.calls == 16, "v1's run at the first endpoint does not stand in for it at this one"
    assert report.baseline is not None and report.baseline.requests == 8


async def test_requests_and_re_asks_are_counted_apart_from_the_examples_judged(store: Store) -> None:
    seed(store, HUMAN)
    verdicts = scripted(HUMAN)

    def prose_first(body: dict[str, Any]) -> Reply:
        return Reply(content="It looks right to me.") if len(body["messages"]) == 2 else verdicts(body)

    with FakeJudgeServer(responder=prose_first) as srv:
        report = await align.run_alignment(store, NAME, env=env_for(srv))
        assert srv.calls == 16
    run = report.run
    assert (run.done, run.judged, run.errors, run.cache_hits, run.requests, run.reasks) == (8, 8, 0, 0, 16, 8)


async def test_judge_calls_in_flight_never_exceed_the_concurrency(store: Store) -> None:
    seed(store, HUMAN)
    with FakeJudgeServer(responder=scripted(HUMAN, delay=0.3)) as srv:
        await align.run_alignment(store, NAME, compare=False, concurrency=3, env=env_for(srv, concurrency=8))
    assert srv.calls == 8
    assert srv.max_in_flight == 3


async def test_progress_counts_up_to_the_total(store: Store) -> None:
    seed(store, HUMAN)
    seen: list[tuple[int, int, str]] = []

    async def progress(done: int, total: int, message: str) -> None:
        seen.append((done, total, message))

    with FakeJudgeServer(responder=scripted(HUMAN)) as srv:
        await align.run_alignment(store, NAME, on_progress=progress, env=env_for(srv))
    draft = [s for s in seen if s[2].startswith("draft:")]
    assert [done for done, _, _ in draft] == list(range(9))
    assert {total for _, total, _ in seen} == {8}
    assert draft[0][2] == "draft: 0/8 judged (0 from cache)"
    assert draft[-1][2] == "draft: 8/8 judged"
    assert seen[-1] == (8, 8, "draft: 8/8 judged")  # the draft equals v1: no second run to compare with


async def test_errors_are_counted_apart_and_never_scored_as_agreement(store: Store) -> None:
    seed(store, HUMAN)

    def respond(body: dict[str, Any]) -> Reply:
        rid = rid_of(body)
        return server_error(500) if rid in ("r3", "r6") else Reply(score=HUMAN[rid])

    with FakeJudgeServer(responder=respond) as srv:
        report = await align.run_alignment(store, NAME, compare=False, env=env_for(srv))
        m = report.run.metrics
        assert m is not None
        assert (m.n, m.errors, m.agreement.k, m.agreement.value) == (6, 2, 6, 1.0)
        assert m.confusion == {"0": {"0": 3, "1": 0}, "1": {"0": 0, "1": 3}}
        assert [(e.run_id, e.error, e.judge_score) for e in report.error_examples] == [
            ("r3", "HTTP 500 from the judge (after 1 attempt)", None),
            ("r6", "HTTP 500 from the judge (after 1 attempt)", None),
        ]
        assert (
            Note(
                text="2 example(s) could not be judged and are excluded from every rate.",
                next_steps=[
                    NextStep("resume_alignment", {"alignment_run": report.run.id, "retry_errors": True})
                ],
            )
            in report.warnings
        )
        # Errors are never cached: a re-run asks again for those two only.
        await align.run_alignment(store, NAME, compare=False, env=env_for(srv))
        assert sorted(rid_of(b) for b in srv.chat_bodies[8:]) == ["r3", "r6"]


async def test_the_draft_is_reported_next_to_the_last_saved_version_with_its_flips(store: Store) -> None:
    seed(store, HUMAN)
    v1 = {"r1": 1, "r2": 1, "r3": 0, "r4": 0, "r5": 0, "r6": 0, "r7": 1, "r8": 1}
    draft = {"r1": 1, "r2": 0, "r3": 1, "r4": 1, "r5": 0, "r6": 0, "r7": 0, "r8": 1}
    make_strict(store)
    with FakeJudgeServer(responder=scripted(v1, draft)) as srv:
        report = await align.run_alignment(store, NAME, env=env_for(srv))
    assert srv.calls == 16
    assert report.baseline is not None and report.run.metrics and report.baseline.metrics
    assert (report.run.prompt_ref, report.baseline.prompt_ref, report.baseline.version) == ("draft", "v1", 1)
    assert report.baseline.total == report.run.total == 8
    assert (report.run.metrics.agreement.k, report.baseline.metrics.agreement.k) == (6, 4)
    flips = report.flips
    assert flips is not None
    assert (flips.baseline, flips.candidate, flips.n) == ("v1", "draft", 8)
    assert (flips.fixed, flips.broken) == (["r3", "r4", "r7"], ["r2"])
    assert (flips.both_right, flips.both_wrong) == (3, 1)
    assert flips.p_value == metrics.mcnemar_exact(3, 1)
    assert flips.verdict == (
        "draft fixed 3 and broke 1 of 8 shared examples; McNemar p = 0.62: not distinguishable from noise at the "
        "0.05 level — label more examples or look at the flips."
    )


async def test_a_changed_judge_model_re_judges_the_baseline_with_it(store: Store) -> None:
    seed(store, HUMAN)
    with FakeJudgeServer(responder=scripted(HUMAN)) as srv:
        await align.run_alignment(store, NAME, env=env_for(srv, model="model-a"))
        make_strict(store)
        report = await align.run_alignment(store, NAME, env=env_for(srv, model="model-b"))
        assert [b["model"] for b in srv.chat_bodies[8:]] == ["model-b"] * 16
    assert report.baseline is not None
    assert (report.baseline.prompt_ref, report.baseline.model, report.baseline.requests) == (
        "v1",
        "model-b",
        8,
    )


# ---- interruptions -----------------------------------------------------------------------------------------


async def test_an_unreachable_judge_keeps_finished_results_and_resume_judges_only_the_rest(
    store: Store,
) -> None:
    seed(store, HUMAN)
    answered: list[str] = []
    srv = FakeJudgeServer(responder=lambda body: Reply())

    def respond(body: dict[str, Any]) -> Reply:
        if len(answered) == 3:
            # The judge goes away: this reply is dropped and the port stops accepting connections.
            threading.Thread(target=srv.stop).start()
            return reset()
        answered.append(rid_of(body))
        return Reply(score=HUMAN[answered[-1]])

    srv.responder = respond
    with srv:
        with pytest.raises(JudgeUnreachable) as e:
            await align.run_alignment(store, NAME, concurrency=1, env=env_for(srv))
        assert str(e.value).startswith(f"Cannot reach the judge at {srv.base_url}: ")
        assert e.value.next_steps == (NextStep("resume_alignment", {"alignment_run": 1}),)
    interrupted = align.summary(store, 1)
    results = {r.run_id: r for r in store.alignment_results(1)}
    # r1-r3 were judged; a request caught while the server was going down may be kept as an error.
    judged_ok = sorted(rid for rid, r in results.items() if r.error is None)
    assert judged_ok == answered == ["r1", "r2", "r3"]
    assert all(r.error.startswith("connection failed") for r in results.values() if r.error is not None)
    assert (interrupted.status, interrupted.done, interrupted.total) == ("interrupted", len(results), 8)
    assert str(e.value).endswith(
        f"Check that the server is running and the base URL is right. Alignment run 1: {len(results)} of 8 "
        "results kept."
    )
    assert store.alignment_run_ids(NAME) == [1]

    with FakeJudgeServer(responder=scripted(HUMAN)) as back:
        report = await align.resume(store, 1, retry_errors=True, env=env_for(back))
        assert sorted(rid_of(b) for b in back.chat_bodies) == ["r4", "r5", "r6", "r7", "r8"]
    assert (report.run.id, report.run.status, report.run.judged) == (1, "completed", 8)
    assert report.run.metrics is not None and report.run.metrics.agreement.k == 8


async def test_a_cancelled_run_is_interrupted_with_finished_results_kept(store: Store) -> None:
    seed(store, HUMAN)
    fast = scripted(HUMAN)
    slow = scripted(HUMAN, delay=5)

    def respond(body: dict[str, Any]) -> Reply:
        return fast(body) if rid_of(body) in ("r1", "r2") else slow(body)

    async def run() -> None:
        await align.run_alignment(store, NAME, concurrency=2, env=env_for(srv))

    with FakeJudgeServer(responder=respond) as srv:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                # r1 and r2 are judged and stored, r3 and r4 hang in the judge: then the caller gives up.
                while srv.calls < 4:
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        aid = store.alignment_run_ids(NAME)[-1]
        run_ = align.summary(store, aid)
        assert (run_.status, run_.judged, run_.total) == ("interrupted", 2, 8)
        assert run_.finished_at is not None
        assert sorted(stored(store, aid)) == ["r1", "r2"]

        srv.responder = fast
        before = srv.calls
        report = await align.resume(store, aid, env=env_for(srv))
        assert sorted(rid_of(b) for b in srv.chat_bodies[before:]) == ["r3", "r4", "r5", "r6", "r7", "r8"]
    assert (report.run.status, report.run.judged) == ("completed", 8)


async def test_resume_with_retry_errors_judges_only_the_errored_examples_again(store: Store) -> None:
    seed(store, HUMAN)

    def flaky(body: dict[str, Any]) -> Reply:
        rid = rid_of(body)
        return server_error(503) if rid in ("r2", "r5") else Reply(score=HUMAN[rid])

    with FakeJudgeServer(responder=flaky) as srv:
        first = await align.run_alignment(store, NAME, compare=False, env=env_for(srv))
        aid = first.run.id
        assert first.run.metrics is not None and first.run.metrics.errors == 2
        srv.responder = scripted(HUMAN)
        unchanged = await align.resume(store, aid, env=env_for(srv))
        assert srv.calls == 8
        assert unchanged.run.metrics is not None and unchanged.run.metrics.errors == 2
        report = await align.resume(store, aid, retry_errors=True, env=env_for(srv))
        assert sorted(rid_of(b) for b in srv.chat_bodies[8:]) == ["r2", "r5"]
    assert report.run.metrics is not None
    assert (report.run.metrics.errors, report.run.metrics.n, report.run.metrics.agreement.k) == (0, 8, 8)
    assert report.error_examples == []


# ---- refusals ----------------------------------------------------------------------------------------------


async def test_no_labels_raises_empty_reference_set(store: Store) -> None:
    evaluators.create(store, NAME, BINARY)
    with pytest.raises(EmptyReferenceSet) as e:
        await align.run_alignment(store, NAME, env=env_for(None))
    assert str(e.value) == (
        "Evaluator 'correctness' has no labeled runs, so there is nothing to align against. Label at least 20, "
        "of both classes."
    )
    assert e.value.next_steps == (NextStep("add_to_queue", {"evaluator": NAME}),)
    assert store.alignment_run_ids(NAME) == []


async def test_a_missing_judge_model_leaves_no_alignment_run(store: Store) -> None:
    seed(store, HUMAN)
    with pytest.raises(JudgeConfigError) as e:
        await align.run_alignment(store, NAME, env=env_for(None, model=None))
    assert str(e.value) == NO_MODEL
    assert store.alignment_run_ids(NAME) == []


async def test_a_baseline_that_cannot_be_judged_fails_before_any_run_is_made(store: Store) -> None:
    seed(store, HUMAN)
    # The draft names its model; v1 relies on ALIGN_MCP_JUDGE_MODEL, which is not set.
    evaluators.update_draft(store, NAME, judge={"model": MODEL})
    with FakeJudgeServer(responder=scripted(HUMAN)) as srv:
        with pytest.raises(JudgeConfigError) as e:
            await align.run_alignment(store, NAME, env=env_for(srv, model=None))
        assert str(e.value) == NO_MODEL
        assert srv.calls == 0
    assert store.alignment_run_ids(NAME) == []


# ---- misaligned examples -----------------------------------------------------------------------------------


async def aligned_with(store: Store, judge: Mapping[str, Score]) -> int:
    with FakeJudgeServer(responder=scripted(judge)) as srv:
        report = await align.run_alignment(store, NAME, compare=False, env=env_for(srv))
    return report.run.id


async def test_misaligned_binary_cases_show_both_sides_and_filter_by_direction(store: Store) -> None:
    seed(store, HUMAN, comments={"r1": "Correct: we open at 9.", "r5": "Wrong price."})
    aid = await aligned_with(store, {**HUMAN, "r1": 0, "r4": 0, "r5": 1})
    page = align.get_misaligned(store, NAME)
    assert (page.alignment_run, page.prompt_ref, page.total, page.next_offset, page.notes) == (
        aid,
        "draft",
        3,
        None,
        [],
    )
    assert [(c.run_id, c.direction) for c in page.cases] == [
        ("r1", "false_fail"),
        ("r4", "false_fail"),
        ("r5", "false_pass"),
    ]
    first = page.cases[0]
    assert first.inputs == {"rid": "r1", "question": "Question r1?"}
    assert first.outputs == {"answer": "Answer r1."}
    assert (first.human_score, first.human_comment, first.labeler) == (1, "Correct: we open at 9.", "ana")
    assert (first.judge_score, first.judge_reasoning) == (0, "Judge reasoning for r1.")
    passes = align.get_misaligned(store, NAME, direction="false_pass")
    assert [c.run_id for c in passes.cases] == ["r5"] and passes.total == 1
    assert passes.cases[0].human_comment == "Wrong price."
    fails = align.get_misaligned(store, NAME, alignment_run=aid, direction="false_fail")
    assert [c.run_id for c in fails.cases] == ["r1", "r4"] and fails.total == 2


async def test_misaligned_ordinal_cases_are_over_or_under_and_sorted_by_severity(store: Store) -> None:
    seed(store, {"r1": 5, "r2": 3, "r3": 1, "r4": 2, "r5": 4}, score_type=ORDINAL)
    await aligned_with(store, {"r1": 1, "r2": 4, "r3": 3, "r4": 2, "r5": 2})
    page = align.get_misaligned(store, NAME)
    assert [(c.run_id, c.direction, c.human_score, c.judge_score) for c in page.cases] == [
        ("r1", "under", 5, 1),
        ("r3", "over", 1, 3),
        ("r5", "under", 4, 2),
        ("r2", "over", 3, 4),
    ]
    assert [c.run_id for c in align.get_misaligned(store, NAME, direction="over").cases] == ["r3", "r2"]
    assert [c.run_id for c in align.get_misaligned(store, NAME, direction="under").cases] == ["r1", "r5"]


async def test_misaligned_categorical_cases_are_mismatches(store: Store) -> None:
    seed(store, {"r1": "good", "r2": "bad", "r3": "ok"}, score_type=CATEGORICAL)
    await aligned_with(store, {"r1": "ok", "r2": "bad", "r3": "bad"})
    page = align.get_misaligned(store, NAME)
    assert [(c.run_id, c.direction, c.human_score, c.judge_score) for c in page.cases] == [
        ("r1", "mismatch", "good", "ok"),
        ("r3", "mismatch", "ok", "bad"),
    ]
    with pytest.raises(InvalidInput) as e:
        align.get_misaligned(store, NAME, direction="false_pass")
    assert str(e.value) == "direction='false_pass' does not apply to a categorical evaluator; use mismatch."


async def test_misaligned_cases_page_with_next_offset(store: Store) -> None:
    seed(store, HUMAN)
    # Wrong on r1-r7, right on r8.
    await aligned_with(store, {**{rid: 1 - int(score) for rid, score in HUMAN.items()}, "r8": 0})
    pages = [align.get_misaligned(store, NAME, offset=offset, limit=3) for offset in (0, 3, 6)]
    assert [[c.run_id for c in p.cases] for p in pages] == [["r1", "r2", "r3"], ["r4", "r5", "r6"], ["r7"]]
    assert [p.total for p in pages] == [7, 7, 7]
    assert [p.next_offset for p in pages] == [3, 6, None]
    aid = pages[0].alignment_run
    assert [p.notes for p in pages] == [
        [
            Note(
                text="4 more from offset 3.",
                next_steps=[
                    NextStep("show_misaligned", {"evaluator": NAME, "alignment_run": aid, "offset": 3})
                ],
            )
        ],
        [
            Note(
                text="1 more from offset 6.",
                next_steps=[
                    NextStep("show_misaligned", {"evaluator": NAME, "alignment_run": aid, "offset": 6})
                ],
            )
        ],
        [],
    ]
    with pytest.raises(InvalidInput) as e:
        align.get_misaligned(store, NAME, offset=-1)
    assert str(e.value) == "offset=-1, limit=10: offset must be ≥ 0 and limit 1–100."


async def test_long_texts_in_misaligned_cases_are_cut_with_a_note(store: Store) -> None:
    seed(store, {"r1": 1, "r2": 0}, outputs={"r1": "x" * 3000})
    await aligned_with(store, {"r1": 0, "r2": 0})
    page = align.get_misaligned(store, NAME, max_chars=100)
    [case] = page.cases
    assert case.outputs == {"answer": "x" * 100 + "… [2900 more characters]"}
    assert case.inputs == {"rid": "r1", "question": "Question r1?"}
    assert page.notes == [
        Note(text="Long texts were cut at 100 characters.", next_steps=[NextStep("show_run")])
    ]
    assert align.get_misaligned(store, NAME).cases[0].outputs == {
        "answer": "x" * 1200 + "… [1800 more characters]"
    }


async def test_misaligned_defaults_to_the_latest_draft_run_not_its_baseline(store: Store) -> None:
    seed(store, HUMAN)
    make_strict(store)
    with FakeJudgeServer(responder=scripted(HUMAN, {**HUMAN, "r2": 0})) as srv:
        report = await align.run_alignment(store, NAME, env=env_for(srv))
    assert report.baseline is not None and report.baseline.id > report.run.id
    page = align.get_misaligned(store, NAME)
    assert (page.alignment_run, page.prompt_ref) == (report.run.id, "draft")
    assert [c.run_id for c in page.cases] == ["r2"]


def test_misaligned_without_any_run_says_how_to_start_one(store: Store) -> None:
    seed(store, HUMAN)
    with pytest.raises(NotFound) as e:
        align.get_misaligned(store, NAME)
    assert str(e.value) == "Evaluator 'correctness' has no alignment run yet."
    assert e.value.next_steps == (NextStep("run_alignment", {"evaluator": NAME}),)
