"""Pairwise evaluators: two outputs per run, the judge asked in both orders (position swap) and mapped back, the
per-order figures, position consistency and the combined verdict, against the fake judge on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from align_mcp import config
from align_mcp.cli.main import main
from align_mcp.core import metrics
from align_mcp.core.models import JudgeSettings, Score, ScoreType
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators
from align_mcp.engine.ingest import get_run, import_runs
from align_mcp.engine.pairing import pair_sources
from align_mcp.engine.queues import submit_labels
from align_mcp.errors import ImportFormatError, InvalidInput, InvalidScore, NotFound
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer, Reply, prompt_text, section

pytestmark = pytest.mark.anyio

NAME = "preference"
MODEL = "judge-model"
PAIRWISE_TIES = ScoreType(kind="pairwise", ties=True)
# (human verdict, output A, output B): the judges below read "good" in an output as the better answer.
CASES: dict[str, tuple[Score, str, str]] = {
    "p1": ("A", "good one", "bad one"),
    "p2": ("A", "good two", "bad two"),
    "p3": ("A", "good three", "good three too"),
    "p4": ("B", "bad four", "good four"),
    "p5": ("B", "bad five", "good five"),
    "p6": ("A", "bad six", "bad six too"),
    "p7": ("tie", "ok seven", "ok seven too"),
    "p8": ("tie", "good eight", "bad eight"),
}


def env_for(srv: FakeJudgeServer) -> config.Settings:
    return config.Settings(
        db_path=Path("unused.db"),
        judge_model=MODEL,
        judge_base_url=srv.base_url,
        judge_api_key="sk-test",
        judge_base_url_var=config.ENV_JUDGE_BASE_URL,
        judge_api_key_var=config.ENV_JUDGE_API_KEY,
        concurrency=4,
    )


def seed(store: Store, score_type: ScoreType = PAIRWISE_TIES) -> None:
    evaluators.create(store, NAME, score_type, judge=JudgeSettings(max_retries=0))
    records = [
        {"id": rid, "inputs": {"rid": rid}, "outputs_a": {"answer": a}, "outputs_b": {"answer": b}}
        for rid, (_, a, b) in CASES.items()
    ]
    import_runs(store, "pairs", runs=records)
    submit_labels(store, NAME, [{"run_id": rid, "score": human} for rid, (human, _, _) in CASES.items()])


def shown(body: dict[str, Any]) -> tuple[str, str, str]:
    """The run id and the two outputs as this request shows them (first, second)."""
    text = prompt_text(body)
    rid = json.loads(section(text, "inputs") or "{}")["rid"]
    first, second = (json.loads(section(text, tag) or "{}")["answer"] for tag in ("output_a", "output_b"))
    return rid, first, second


def first_shown(body: dict[str, Any]) -> Reply:
    """A position-biased judge: whatever it is shown, the first output wins."""
    return Reply(score="A", reasoning="The first output is better.")


def by_content(on_tie: str = "tie") -> Callable[[dict[str, Any]], Reply]:
    """A judge that prefers the output saying "good"; when both or neither do, it answers `on_tie`."""

    def respond(body: dict[str, Any]) -> Reply:
        rid, first, second = shown(body)
        good_first, good_second = "good" in first, "good" in second
        score = "A" if good_first and not good_second else "B" if good_second and not good_first else on_tie
        return Reply(score=score, reasoning=f"{rid}: shown first {first!r}, picked {score}.")

    return respond


async def judged(store: Store, responder: Callable[[dict[str, Any]], Reply]) -> align.AlignmentReport:
    with FakeJudgeServer(responder=responder) as srv:
        return await align.run_alignment(store, NAME, env=env_for(srv))


def combined_pairs(store: Store, aid: int) -> list[tuple[Score, Score | None]]:
    return [(r.human_score, r.judge_score) for r in store.alignment_results(aid)]


async def test_a_judge_that_always_prefers_the_first_shown_is_never_consistent_and_agrees_only_on_ties(
    store: Store,
) -> None:
    seed(store)
    report = await judged(store, first_shown)
    m = report.run.metrics
    assert m is not None and m.pairwise is not None
    assert report.run.requests == 16  # every comparison judged in both orders
    # A first: it says A, right on p1, p2, p3, p6; B first: it says A, mapped back to B, right on p4, p5.
    assert (m.pairwise.original.k, m.pairwise.original.n) == (4, 8)
    assert (m.pairwise.swapped.k, m.pairwise.swapped.n) == (2, 8)
    assert m.pairwise.mean == pytest.approx(3 / 8)
    assert (m.pairwise.consistency.k, m.pairwise.consistency.value) == (0, 0.0)
    # Never the same winner twice, so every combined verdict is a tie: agreement is the share of human ties.
    assert {r.judge_score for r in store.alignment_results(report.run.id)} == {"tie"}
    assert m.agreement.value == 2 / 8
    assert m.agreement.ci == metrics.wilson(2, 8)


async def test_a_consistent_judge_names_the_same_winner_in_both_orders(store: Store) -> None:
    seed(store)
    report = await judged(store, by_content())
    m = report.run.metrics
    assert m is not None and m.pairwise is not None
    assert (m.pairwise.consistency.k, m.pairwise.consistency.n) == (8, 8)
    # Right on p1, p2 (A), p4, p5 (B) and p7 (tie); p3 and p6 look alike to it (tie), p8 has one "good" (A).
    assert (m.pairwise.original.k, m.pairwise.swapped.k, m.agreement.k) == (5, 5, 5)
    verdicts = {r.run_id: r.judge_score for r in store.alignment_results(report.run.id)}
    assert verdicts == {
        "p1": "A",
        "p2": "A",
        "p3": "tie",
        "p4": "B",
        "p5": "B",
        "p6": "tie",
        "p7": "tie",
        "p8": "A",
    }


async def test_per_order_and_combined_figures_match_the_hand_count(store: Store) -> None:
    seed(store)
    # Like the consistent judge, but where the outputs look alike it picks the first shown.
    report = await judged(store, by_content(on_tie="A"))
    m = report.run.metrics
    assert m is not None and m.pairwise is not None
    # A first: right on p1 p2 p3 p4 p5 p6 (6 of 8). B first (mapped back): right on p1 p2 p4 p5 (4 of 8).
    assert (m.pairwise.original.k, m.pairwise.original.n) == (6, 8)
    assert (m.pairwise.swapped.k, m.pairwise.swapped.n) == (4, 8)
    assert m.pairwise.mean == pytest.approx(5 / 8)
    assert m.pairwise.original.ci == metrics.wilson(6, 8)
    # Same winner on p1 p2 p4 p5 p8; p3, p6 and p7 become ties, which only p7's human gave.
    assert (m.pairwise.consistency.k, m.pairwise.consistency.n) == (5, 8)
    results = {r.run_id: r for r in store.alignment_results(report.run.id)}
    assert {rid: r.judge_score for rid, r in results.items()} == {
        "p1": "A",
        "p2": "A",
        "p3": "tie",
        "p4": "B",
        "p5": "B",
        "p6": "tie",
        "p7": "tie",
        "p8": "A",
    }
    assert results["p3"].orders is not None
    assert (results["p3"].orders.original, results["p3"].orders.swapped) == ("A", "B")
    assert (m.agreement.k, m.n) == (5, 8)
    pairs = combined_pairs(store, report.run.id)
    labels: list[Score] = ["A", "B", "tie"]
    assert m.kappa == metrics.cohen_kappa([(h, j) for h, j in pairs if j is not None], labels)
    assert m.confusion["A"] == {"A": 2, "B": 0, "tie": 2}


async def test_each_order_is_cached_so_a_rerun_makes_no_judge_call(store: Store) -> None:
    seed(store)
    with FakeJudgeServer(responder=by_content()) as srv:
        first = await align.run_alignment(store, NAME, env=env_for(srv))
        again = await align.run_alignment(store, NAME, env=env_for(srv))
        calls = srv.calls
    assert (first.run.requests, first.run.cache_hits) == (16, 0)
    assert (again.run.requests, again.run.cache_hits, calls) == (0, 8, 16)
    assert again.run.metrics == first.run.metrics


async def test_the_second_order_shows_output_b_first(store: Store) -> None:
    seed(store)
    with FakeJudgeServer(responder=by_content()) as srv:
        await align.run_alignment(store, NAME, env=env_for(srv))
        seen = sorted(shown(body) for body in srv.chat_bodies if shown(body)[0] == "p1")
    assert seen == [("p1", "bad one", "good one"), ("p1", "good one", "bad one")]


async def test_without_position_swap_each_comparison_is_judged_once(store: Store) -> None:
    seed(store, ScoreType(kind="pairwise", ties=True, swap=False))
    report = await judged(store, first_shown)
    m = report.run.metrics
    assert m is not None
    assert (report.run.requests, m.pairwise, m.agreement.k) == (8, None, 4)


async def test_misaligned_cases_show_both_outputs_and_both_orders_reasoning(store: Store) -> None:
    seed(store)
    await judged(store, by_content(on_tie="A"))
    page = align.get_misaligned(store, NAME)
    case = next(c for c in page.cases if c.run_id == "p3")
    assert (case.outputs, case.outputs_b) == ({"answer": "good three"}, {"answer": "good three too"})
    assert case.direction == "mismatch"
    assert (case.human_score, case.judge_score) == ("A", "tie")
    assert case.orders is not None
    assert case.orders.original_reasoning == "p3: shown first 'good three', picked A."
    assert case.orders.swapped_reasoning == "p3: shown first 'good three too', picked A."
    assert (case.orders.original, case.orders.swapped) == ("A", "B")


def test_a_pairwise_record_with_one_output_is_refused(store: Store) -> None:
    with pytest.raises(ImportFormatError) as caught:
        import_runs(store, "pairs", runs=[{"id": "x", "inputs": {"q": 1}, "outputs_a": {"answer": "a"}}])
    assert str(caught.value) == (
        'runs:1: a pairwise record needs two outputs, but it has "outputs_a" and no "outputs_b" (add '
        '"outputs_b", or give a single output as "outputs"). Fix that line and import again; nothing from this '
        "file was stored."
    )


def test_a_pairwise_run_keeps_both_outputs(store: Store) -> None:
    import_runs(
        store,
        "pairs",
        runs=[{"id": "x", "inputs": {"q": 1}, "outputs_a": {"answer": "a"}, "outputs_b": {"answer": "b"}}],
    )
    run = get_run(store, "x")
    assert (run.outputs, run.outputs_b) == ({"answer": "a"}, {"answer": "b"})


def test_tie_is_refused_by_an_evaluator_without_ties(store: Store) -> None:
    evaluators.create(store, NAME, ScoreType(kind="pairwise"))
    import_runs(
        store,
        "pairs",
        runs=[{"id": "x", "inputs": {"q": 1}, "outputs_a": {"answer": "a"}, "outputs_b": {"answer": "b"}}],
    )
    with pytest.raises(InvalidScore) as caught:
        submit_labels(store, NAME, [{"run_id": "x", "score": "tie"}])
    assert str(caught.value) == (
        "Label 1 (run 'x'): Score 'tie' is not valid: this pairwise evaluator allows no ties; use A or B."
    )
    receipt = submit_labels(store, NAME, [{"run_id": "x", "score": "b"}])
    assert receipt[0].score == "B"


def test_a_pairwise_prompt_must_show_both_outputs(store: Store) -> None:
    with pytest.raises(InvalidInput) as caught:
        evaluators.create(store, NAME, ScoreType(kind="pairwise"), prompt="Which is better? {{outputs}}")
    assert str(caught.value).startswith(
        "A pairwise prompt shows both outputs: add {{outputs_a}} and {{outputs_b}} (or paths such as "
        "{{outputs_a.answer}}) to the template."
    )


def test_the_default_pairwise_prompt_says_whether_ties_are_allowed(store: Store) -> None:
    with_ties = evaluators.create(store, "with_ties", PAIRWISE_TIES)
    without = evaluators.create(store, "without", ScoreType(kind="pairwise"))
    assert "Score tie only when neither output is better in any way that matters." in with_ties.draft
    assert "There are no ties" in without.draft
    assert "{{outputs_a}}" in without.draft and "{{outputs_b}}" in without.draft


# ---- pairing two sources ----------------------------------------------------------------------------------


def two_experiments(store: Store, b_examples: tuple[str, ...] = ("e1", "e2", "e3")) -> None:
    """Two experiments over one dataset: every run keeps its example in metadata.reference_example_id."""
    for source, examples in (("exp-a", ("e1", "e2", "e3")), ("exp-b", b_examples)):
        import_runs(
            store,
            source,
            runs=[
                {
                    "id": f"{source}-{e}",
                    "inputs": {"question": f"Q {e}"},
                    "outputs": {"answer": f"{source} answers {e}"},
                    "metadata": {"reference_example_id": e},
                }
                for e in examples
            ],
        )


def test_two_experiments_pair_into_pairwise_runs_by_their_example(store: Store) -> None:
    two_experiments(store)
    report = pair_sources(store, "exp-a", "exp-b", "a-vs-b")
    assert (report.pairs, report.inserted, report.unmatched_a, report.unmatched_b) == (3, 3, [], [])
    run = get_run(store, "exp-a-e2|exp-b-e2")
    assert (run.source, run.inputs) == ("a-vs-b", {"question": "Q e2"})
    assert (run.outputs, run.outputs_b) == ({"answer": "exp-a answers e2"}, {"answer": "exp-b answers e2"})
    assert run.metadata["run_a"] == "exp-a-e2" and run.metadata["run_b"] == "exp-b-e2"
    again = pair_sources(store, "exp-a", "exp-b", "a-vs-b")
    assert (again.pairs, again.inserted) == (3, 0)


def test_unmatched_examples_are_counted_and_named_unless_skipped(store: Store) -> None:
    two_experiments(store, b_examples=("e1", "e2", "e4"))
    with pytest.raises(InvalidInput) as caught:
        pair_sources(store, "exp-a", "exp-b", "a-vs-b")
    assert str(caught.value) == (
        "1 run(s) of 'exp-a' have a metadata.reference_example_id that no run of 'exp-b' has: 'exp-a-e3'; "
        "1 run(s) of 'exp-b' have a metadata.reference_example_id that no run of 'exp-a' has: 'exp-b-e4'. "
        "Pair the experiments over the same dataset examples, or skip the unmatched runs."
    )
    assert store.get_source("a-vs-b") is None
    report = pair_sources(store, "exp-a", "exp-b", "a-vs-b", skip_unmatched=True)
    assert (report.pairs, report.unmatched_a, report.unmatched_b) == (2, ["exp-a-e3"], ["exp-b-e4"])


def test_runs_without_the_key_are_counted_and_named(store: Store) -> None:
    two_experiments(store)
    with pytest.raises(InvalidInput) as caught:
        pair_sources(store, "exp-a", "exp-b", "a-vs-b", key="metadata.example_id")
    assert str(caught.value) == (
        "3 of 3 run(s) of 'exp-a' have no metadata.example_id: 'exp-a-e1', 'exp-a-e2', 'exp-a-e3'. Pair by a key "
        "every run has (LangSmith experiment runs keep their example in metadata.reference_example_id)."
    )


def test_pairing_an_unknown_source_names_the_known_ones(store: Store) -> None:
    two_experiments(store)
    with pytest.raises(NotFound) as caught:
        pair_sources(store, "exp-a", "exp-c", "a-vs-c")
    assert str(caught.value) == "No source named 'exp-c'. Known: exp-a, exp-b."


def test_the_cli_pairs_two_sources(store: Store, db_path: Path) -> None:
    two_experiments(store)
    result = CliRunner().invoke(
        main, ["--db", str(db_path), "pair", "exp-a", "exp-b", "--into", "a-vs-b"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        "Paired 3 example(s) of 'exp-a' (A) and 'exp-b' (B) by metadata.reference_example_id into 'a-vs-b': "
        "3 new pairwise run(s)."
    )


async def test_the_mcp_server_pairs_sources_and_asks_for_a_b_or_tie(db_path: Path) -> None:
    from mcp import Client
    from mcp.types import ElicitResult

    from align_mcp.mcp.server import create_server

    asked: list[Any] = []

    async def human(ctx: Any, params: Any) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action="accept", content={"score": "tie", "comment": "Both fine"})

    with Store(db_path) as store:
        two_experiments(store)
    server = create_server(db_path, tools=["all"])
    async with Client(server, cache=None, elicitation_callback=human) as client:
        paired = await client.call_tool(
            "pair_sources", {"source_a": "exp-a", "source_b": "exp-b", "into": "ab"}
        )
        assert not paired.is_error
        assert paired.structured_content is not None and paired.structured_content["pairs"] == 3
        created = await client.call_tool(
            "create_evaluator", {"name": NAME, "score_type": "pairwise", "ties": True}
        )
        assert not created.is_error
        await client.call_tool("add_to_queue", {"evaluator": NAME, "source": "ab"})
        items = await client.call_tool("next_items", {"evaluator": NAME, "limit": 1})
        assert items.structured_content is not None
        item = items.structured_content["items"][0]
        assert item["outputs_b"] == {"answer": f"exp-b answers {item['inputs']['question'][2:]}"}
        labeled = await client.call_tool("submit_label", {"evaluator": NAME, "run_id": item["run_id"]})
        assert not labeled.is_error
        assert labeled.structured_content is not None
        assert labeled.structured_content["receipt"]["score"] == "tie"
    [request] = asked
    assert request.requested_schema["properties"]["score"]["enum"] == ["A", "B", "tie"]
    assert "Output A:" in request.message and "Output B:" in request.message


# ---- the label and review pages -------------------------------------------------------------------------------


def test_the_label_page_offers_keys_a_b_t_and_shows_both_outputs_side_by_side(store: Store) -> None:
    from starlette.testclient import TestClient

    from align_mcp.engine.queues import add_to_queue
    from align_mcp.web.app import create_app

    two_experiments(store)
    pair_sources(store, "exp-a", "exp-b", "ab")
    evaluators.create(store, NAME, PAIRWISE_TIES)
    add_to_queue(store, NAME, source="ab")
    here = "http://127.0.0.1:8765"
    c = TestClient(create_app(store=store, token=None), base_url=here)
    page = c.get(f"/label/{NAME}").text
    for key, score, name in (("a", "A", "A is better"), ("b", "B", "B is better"), ("t", "tie", "tie")):
        assert f"data-score='{score}' data-key='{key}' data-name='{name}'" in page
    shown_run = c.post(
        "/api/next", json={"evaluator": NAME, "labeler": "ana"}, headers={"origin": here}
    ).json()
    html = shown_run["html"]
    assert "<div class='side-by-side pair'><section class=part><h3>output A</h3>" in html
    assert html.index("exp-a answers e1") < html.index("<h3>output B</h3>") < html.index("exp-b answers e1")


async def test_the_review_page_shows_both_orders_reasoning(store: Store) -> None:
    from starlette.testclient import TestClient

    from align_mcp.web.app import create_app

    seed(store)
    await judged(store, by_content(on_tie="A"))
    page = TestClient(create_app(store=store, token=None), base_url="http://127.0.0.1:8765").get(
        f"/review/{NAME}"
    )
    assert page.status_code == 200
    assert "A shown first: <span class='score-value s-A'>A</span>" in page.text
    assert "B shown first: <span class='score-value s-B'>B</span>" in page.text
    assert "p3: shown first &#x27;good three too&#x27;, picked A." in page.text


def test_a_pairwise_evaluator_queues_only_runs_with_two_outputs(store: Store) -> None:
    from align_mcp.engine.queues import add_to_queue

    two_experiments(store)
    pair_sources(store, "exp-a", "exp-b", "ab")
    evaluators.create(store, NAME, PAIRWISE_TIES)
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    with pytest.raises(InvalidInput) as caught:
        add_to_queue(store, NAME, source="exp-a")
    assert str(caught.value) == (
        "3 of these runs have one output ('exp-a-e1', 'exp-a-e2', 'exp-a-e3'), and pairwise evaluator "
        "'preference' compares two: import runs with outputs_a and outputs_b, or pair two sources."
    )
    with pytest.raises(InvalidInput) as refused:
        add_to_queue(store, "correctness", source="ab")
    assert str(refused.value).startswith(
        "3 of these runs are pairwise, with two outputs ('exp-a-e1|exp-b-e1'"
    )
    assert add_to_queue(store, NAME, source="ab").added == 3


# ---- resume and flips ----------------------------------------------------------------------------------------


async def test_resuming_judges_again_only_the_order_that_failed(store: Store) -> None:
    from align_mcp.testing.fakejudge import server_error

    seed(store)
    good = by_content()
    failed_once: list[str] = []

    def flaky(body: dict[str, Any]) -> Reply:
        rid, first, _ = shown(body)
        if rid == "p1" and first == "bad one" and not failed_once:  # p1 with B shown first
            failed_once.append(rid)
            return server_error()
        return good(body)

    with FakeJudgeServer(responder=flaky) as srv:
        report = await align.run_alignment(store, NAME, env=env_for(srv))
        assert (report.run.errors, report.run.requests) == (1, 16)
        [error] = report.error_examples
        assert error.run_id == "p1" and error.error is not None and error.error.startswith("B shown first: ")
        resumed = await align.resume(store, report.run.id, retry_errors=True, env=env_for(srv))
        calls = srv.calls
    assert calls == 17  # the failed order only: A shown first came from the cache
    assert resumed.run.errors == 0
    assert resumed.run.metrics is not None and resumed.run.metrics.agreement.k == 5


async def test_flips_against_the_saved_version_use_the_combined_verdict(store: Store) -> None:
    seed(store)
    strict = "Read both outputs in full."
    evaluators.update_draft(store, NAME, replace=("Rubric:", f"{strict}\n\nRubric:"))
    content = by_content()

    def respond(body: dict[str, Any]) -> Reply:
        return content(body) if strict in prompt_text(body) else first_shown(body)

    report = await judged(store, respond)
    assert report.flips is not None
    # v1 ends every comparison in a tie (right on p7, p8); the draft is right on p1 p2 p4 p5 p7.
    assert (sorted(report.flips.fixed), report.flips.broken) == (["p1", "p2", "p4", "p5"], ["p8"])
    assert report.flips.p_value == metrics.mcnemar_exact(4, 1)


# ---- diagnostics -------------------------------------------------------------------------------------------


async def test_self_consistency_samples_the_combined_verdict_of_both_orders(store: Store) -> None:
    from align_mcp.diagnose.consistency import self_consistency

    seed(store)
    with FakeJudgeServer(responder=first_shown) as srv:
        report = await self_consistency(store, NAME, k=3, run_ids=["p1", "p4"], env=env_for(srv))
        calls = srv.calls
    assert calls == 2 * 3 * 2  # runs x samples x orders
    assert report.requests == 12
    assert {e.run_id: e.scores for e in report.examples} == {"p1": ["tie"] * 3, "p4": ["tie"] * 3}


async def test_suggestions_count_a_call_per_order_within_the_budget(store: Store) -> None:
    from align_mcp.diagnose.suggestions import suggest_labels
    from align_mcp.engine.queues import add_to_queue

    two_experiments(store)
    pair_sources(store, "exp-a", "exp-b", "ab")
    evaluators.create(store, NAME, PAIRWISE_TIES)
    add_to_queue(store, NAME, source="ab")
    with FakeJudgeServer(responder=first_shown) as srv:
        report = await suggest_labels(store, NAME, budget=5, env=env_for(srv))
        calls = srv.calls
    # Two runs fit in a budget of 5 calls (two orders each); the third would need a sixth.
    assert (calls, report.judge_calls, report.unjudged) == (4, 4, 1)
