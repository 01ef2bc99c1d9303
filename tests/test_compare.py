"""Comparing judge models (engine/compare.py): one prompt over the same labeled runs per model, within one
concurrency limit, with cost from the user's prices, McNemar against the best and the Pareto front; the prices
file; the `compare` command and the `compare_models` tool. The judges are the fake server on loopback."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from align_mcp import config
from align_mcp.cli import main
from align_mcp.core.comparison import JudgeModel, ModelPrice, cost_usd, pareto_front, percentile
from align_mcp.core.models import JudgeSettings, Score, ScoreType
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators, holdout
from align_mcp.engine.compare import compare_models
from align_mcp.engine.ingest import import_runs
from align_mcp.engine.queues import submit_labels
from align_mcp.errors import InvalidInput, JudgeConfigError, NextStep, NotFound
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer, Reply, server_error
from conftest import rid_of
from test_pairwise import NAME as PAIR_NAME
from test_pairwise import by_content, first_shown
from test_pairwise import env_for as pair_env
from test_pairwise import seed as seed_pairs

pytestmark = pytest.mark.anyio

NAME = "correctness"
# Eight labeled runs: r0-r3 pass, r4-r7 fail (fewer than ten, so no holdout: every label is used).
HUMAN: dict[str, Score] = {f"r{i}": 1 if i < 4 else 0 for i in range(8)}
PRICE = ModelPrice(input=1.0, cached_input=0.5, output=4.0)


def seed(store: Store, labels: Mapping[str, Score] = HUMAN) -> None:
    evaluators.create(store, NAME, ScoreType(kind="binary"), judge=JudgeSettings(max_retries=0))
    runs = [{"id": rid, "inputs": {"rid": rid}, "outputs": {"answer": f"Answer {rid}."}} for rid in labels]
    import_runs(store, "support", runs=runs)
    submit_labels(store, NAME, [{"run_id": rid, "score": s} for rid, s in labels.items()], labeler="ann")


def responder(body: dict[str, Any]) -> Reply:
    """`exact` agrees with every label; `lenient` passes everything; `contrary` gets r0 and r5 wrong."""
    rid = rid_of(body)
    human = HUMAN[rid]
    if body["model"] == "lenient":
        return Reply(score=1, prompt_tokens=100, completion_tokens=10)
    if body["model"] == "contrary" and rid in ("r0", "r5"):
        return Reply(score=1 - int(human), prompt_tokens=200, completion_tokens=20)
    return Reply(score=human, prompt_tokens=200, completion_tokens=20)


@pytest.fixture
def judge(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer(responder=responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        yield srv


def models(*names: str, priced: bool = True) -> list[JudgeModel]:
    return [JudgeModel(model=n, price=PRICE if priced else None) for n in names]


async def test_each_model_judges_the_same_prompt_and_is_reported_side_by_side(
    store: Store, judge: FakeJudgeServer
) -> None:
    seed(store)
    c = await compare_models(store, NAME, models("exact", "lenient"))

    assert {b["model"] for b in judge.chat_bodies} == {"exact", "lenient"}
    prompts = {m: [b["messages"] for b in judge.chat_bodies if b["model"] == m] for m in ("exact", "lenient")}
    assert sorted(map(json.dumps, prompts["exact"])) == sorted(map(json.dumps, prompts["lenient"]))
    exact, lenient = c.models
    assert (c.split, c.examples, c.best) == ("all", 8, "exact")
    assert exact.metrics is not None and exact.metrics.agreement.value == 1.0
    assert lenient.metrics is not None and lenient.metrics.agreement.value == 0.5
    assert lenient.metrics.tpr is not None and lenient.metrics.tpr.value == 1.0
    assert lenient.metrics.tnr is not None and lenient.metrics.tnr.value == 0.0
    assert (exact.prompt_tokens, exact.completion_tokens) == (1600, 160)
    assert exact.cost_usd == pytest.approx((1600 * 1.0 + 160 * 4.0) / 1e6)
    assert lenient.cost_usd == pytest.approx((800 * 1.0 + 80 * 4.0) / 1e6)
    assert exact.vs_best is None
    assert lenient.vs_best is not None
    assert (lenient.vs_best.n, len(lenient.vs_best.broken), lenient.vs_best.p_value) == (8, 4, 0.125)
    # exact agrees more, lenient costs less: neither dominates the other.
    assert c.pareto_basis == "cost"
    assert (exact.pareto, lenient.pareto) == (True, True)
    assert exact.latency_n == 8 and exact.latency_p50_ms is not None
    assert c.notes == []


async def test_a_dominated_model_is_off_the_pareto_front(store: Store, judge: FakeJudgeServer) -> None:
    seed(store)
    c = await compare_models(store, NAME, models("exact", "contrary"))
    exact, contrary = c.models
    assert (exact.pareto, contrary.pareto) == (True, False)
    assert contrary.vs_best is not None
    assert contrary.vs_best.verdict == (
        "contrary fixed 0 and broke 2 of 8 shared examples; McNemar p = 0.5: not distinguishable from noise at "
        "the 0.05 level — label more examples or look at the flips."
    )


async def test_without_a_price_tokens_are_shown_and_no_cost_is_made_up(
    store: Store, judge: FakeJudgeServer
) -> None:
    seed(store)
    c = await compare_models(
        store, NAME, [JudgeModel(model="exact", price=PRICE), JudgeModel(model="lenient")]
    )
    exact, lenient = c.models
    assert exact.cost_usd is not None
    assert (lenient.price, lenient.cost_usd, lenient.prompt_tokens) == (None, None, 800)
    assert c.pareto_basis == "tokens"
    assert [n.text for n in c.notes] == [
        f"No price for lenient: tokens are shown, not a cost. Set USD per million tokens in "
        f'{config.prices_path()} (one [models."NAME"] table with input, output and optionally cached_input) or '
        "give the model a price.",
        "The Pareto front is over agreement and tokens (prompt + completion), because not every model has a "
        "price: tokens are not dollars, and models price them differently.",
    ]


async def test_prices_come_from_the_prices_file_when_the_model_has_none(
    store: Store, judge: FakeJudgeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store)
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[models.exact]\ninput = 2\noutput = 8\n\n[models."lenient"]\ninput = 0.5\noutput = 1\n'
    )
    monkeypatch.setenv(config.ENV_PRICES, str(prices))
    c = await compare_models(store, NAME, models("exact", "lenient", priced=False))
    exact, lenient = c.models
    assert (exact.price_source, exact.price) == ("prices file", ModelPrice(input=2, output=8))
    assert exact.cost_usd == pytest.approx((1600 * 2 + 160 * 8) / 1e6)
    assert lenient.cost_usd == pytest.approx((800 * 0.5 + 80 * 1) / 1e6)


async def test_all_models_share_one_concurrency_limit(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(store)
    with FakeJudgeServer(responder=responder, latency=0.05) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        await compare_models(store, NAME, models("exact", "lenient", "contrary"), concurrency=4)
    assert srv.calls == 24
    assert srv.max_in_flight == 4


async def test_a_second_comparison_reuses_every_models_verdicts(store: Store, judge: FakeJudgeServer) -> None:
    seed(store)
    first = await compare_models(store, NAME, models("exact", "lenient"))
    calls = judge.calls
    second = await compare_models(store, NAME, models("lenient", "exact", "contrary"))
    assert judge.calls == calls + 8  # only the new model is asked
    runs = {r.label: r.alignment_run for r in first.models}
    assert {r.label: r.alignment_run for r in second.models if r.label in runs} == runs
    # The latency of reused verdicts is the latency they were judged with.
    assert second.models[0].latency_n == 8


async def test_verdicts_cached_under_another_endpoint_are_not_reused(
    store: Store, judge: FakeJudgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store)
    monkeypatch.setenv("OTHER_API_KEY", "sk-other")
    await compare_models(store, NAME, models("exact", "lenient"))
    with FakeJudgeServer(responder=responder) as other:
        c = await compare_models(
            store,
            NAME,
            [
                JudgeModel(model="exact"),
                JudgeModel(model="exact", base_url=other.base_url, api_key_env="OTHER_API_KEY"),
            ],
        )
        assert other.calls == 8
        assert {r.headers.get("authorization") for r in other.requests} == {"Bearer sk-other"}
    assert [r.label for r in c.models] == [f"exact @ {judge.base_url}", f"exact @ {other.base_url}"]
    assert c.models[0].cache_hits == 0 and c.models[0].alignment_run is not None


async def test_a_model_that_fails_is_reported_and_the_others_are_judged(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store)

    def broken(body: dict[str, Any]) -> Reply:
        return server_error(500) if body["model"] == "down" else responder(body)

    with FakeJudgeServer(responder=broken) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        c = await compare_models(store, NAME, models("exact", "down"))
    exact, down = c.models
    assert (exact.status, exact.judged) == ("completed", 8)
    assert (
        down.status,
        down.judged,
        down.errors,
        down.metrics.agreement.value if down.metrics else None,
    ) == (
        "failed",
        0,
        8,
        None,
    )
    assert down.failure is not None and down.failure.startswith(f"Alignment run {down.alignment_run} failed")
    assert (c.best, down.pareto, c.pareto_basis) == ("exact", None, None)
    [note] = [n for n in c.notes if n.text.startswith("down ")]
    assert note.text == f"down could not be judged on every example, so it is not ranked: {down.failure}"
    assert note.next_steps == [NextStep("resume_alignment", {"alignment_run": down.alignment_run})]


async def test_comparison_runs_are_never_the_evaluators_latest_run(
    store: Store, judge: FakeJudgeServer
) -> None:
    seed(store)
    await compare_models(store, NAME, models("exact", "lenient"))
    with pytest.raises(NotFound, match="has no alignment run yet"):
        align.latest_run_id(store, NAME)
    assert len(align.list_runs(store, NAME)) == 2


async def test_a_test_split_comparison_counts_as_one_look(store: Store, judge: FakeJudgeServer) -> None:
    labels: dict[str, Score] = {f"r{i:02d}": i % 2 for i in range(40)}
    HUMAN.update(labels)
    try:
        seed(store, labels)
        c = await compare_models(store, NAME, models("exact", "lenient"), split="test")
    finally:
        for rid in labels:
            HUMAN.pop(rid)
    info = holdout.info(store, NAME)
    assert info is not None and info.test_evaluations == 1
    assert c.split == "test"
    assert c.notes[-1].text == (
        f"This comparison judged the held-out test split ({c.examples} examples); the test split has been "
        "evaluated 1 time(s) in all. Compare models on dev and check test rarely."
    )


async def test_two_to_ten_distinct_models_are_needed(store: Store, judge: FakeJudgeServer) -> None:
    seed(store)
    with pytest.raises(InvalidInput) as one:
        await compare_models(store, NAME, models("exact"))
    assert str(one.value) == "1 model(s) given: compare between 2 and 10 judge models at a time."
    with pytest.raises(InvalidInput) as twice:
        await compare_models(store, NAME, models("exact", "exact"))
    assert str(twice.value) == f"Model 'exact' at {judge.base_url} is given twice; name each model once."
    assert judge.calls == 0


async def test_a_model_whose_key_variable_is_unset_is_named_before_any_call(
    store: Store, judge: FakeJudgeServer
) -> None:
    seed(store)
    with pytest.raises(JudgeConfigError) as e:
        await compare_models(
            store, NAME, [JudgeModel(model="exact"), JudgeModel(model="x", api_key_env="NO_SUCH_API_KEY")]
        )
    assert str(e.value) == (
        "Model 'x': The evaluator reads its judge API key from NO_SUCH_API_KEY, which is not set. Set NO_SUCH_API_KEY, "
        "or clear the evaluator's api_key_env."
    )
    assert judge.calls == 0 and align.list_runs(store, NAME) == []


# ---- prices, cost and the front ----------------------------------------------------------------------------


def test_cached_input_tokens_cost_their_own_price() -> None:
    assert cost_usd(PRICE, 1_000_000, 400_000, 100_000) == pytest.approx(0.6 + 0.2 + 0.4)
    assert cost_usd(ModelPrice(input=1, output=2), 1_000_000, 400_000, 0) == pytest.approx(1.0)


def test_pareto_front_keeps_only_undominated_points() -> None:
    assert pareto_front([(0.9, 3.0), (0.8, 1.0), (0.8, 2.0), (0.9, 3.0), (0.7, 1.0)]) == [
        True,
        True,
        False,
        True,
        False,
    ]


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert (percentile([4.0, 1.0, 3.0, 2.0], 0.5), percentile(list(range(1, 101)), 0.95)) == (2.0, 95)


def test_a_prices_file_is_read_in_dollars_per_million_tokens(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[models."gpt-4.1-mini"]\ninput = 0.4\ncached_input = 0.1\noutput = 1.6\n')
    assert config.load_prices(path) == {"gpt-4.1-mini": config.Price(0.4, 0.1, 1.6)}


def test_no_prices_file_at_the_default_path_means_no_prices() -> None:
    assert not config.prices_path().exists()
    assert config.load_prices() == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "[models.a]\ninput = 1\noutput = \n",
            "is not valid TOML: Invalid value (at line 3, column 10). Fix that line.",
        ),
        (
            "[models.a]\ninput = -1\noutput = 2\n",
            '[models."a"] input = -1 is not a number ≥ 0 (USD per million tokens).',
        ),
        (
            "[models.a]\ninput = 1\noutput = 'x'\n",
            "[models.\"a\"] output = 'x' is not a number ≥ 0 (USD per million tokens).",
        ),
        ("[models.a]\ninput = 1\n", '[models."a"] has no output; set it in USD per million tokens.'),
        (
            "[models.a]\ninput = 1\noutput = 2\nouput = 3\n",
            '[models."a"] has unknown key(s) ouput; the keys are input, cached_input, output.',
        ),
    ],
)
def test_a_bad_prices_file_names_the_file_and_the_key(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as e:
        config.load_prices(path)
    sep = " " if problem.startswith("is not valid") else ": "
    assert str(e.value) == f"The prices file {path}{sep}{problem}"


def test_a_prices_file_named_in_the_environment_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config.ENV_PRICES, str(tmp_path / "missing.toml"))
    with pytest.raises(InvalidInput) as e:
        config.load_prices()
    assert str(e.value) == (
        f"The prices file {tmp_path / 'missing.toml'} does not exist. Create it, or unset ALIGN_MCP_PRICES to use "
        f"{config.default_prices_path()}."
    )


# ---- surfaces -----------------------------------------------------------------------------------------------


def test_compare_command_prints_one_table(
    db_path: Path, store: Store, judge: FakeJudgeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store)
    prices = tmp_path / "prices.toml"
    prices.write_text("[models.exact]\ninput = 1\noutput = 4\n\n[models.lenient]\ninput = 1\noutput = 4\n")
    monkeypatch.setenv("OTHER_API_KEY", "sk-other")
    result = CliRunner().invoke(
        main,
        [
            "--db",
            str(db_path),
            "compare",
            NAME,
            "--model",
            "exact",
            "--model",
            f"lenient@{judge.base_url}#OTHER_API_KEY",
            "--prices",
            str(prices),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "correctness, draft: 2 judge models on 8 all examples"
    assert lines[1].split("  ")[0] == "model"
    assert "front (cost)" in lines[1]
    exact = next(line for line in lines if line.startswith("exact "))
    lenient = next(line for line in lines if line.startswith("lenient "))
    for cell in ("100.0% (68%–100%)", "1.00", "1,600 / 160", "$0.00224", "best", "yes"):
        assert cell in exact
    for cell in ("50.0% (22%–78%)", "0.00", "800 / 80", "$0.00112", "p = 0.12", "yes"):
        assert cell in lenient
    assert {
        r.headers.get("authorization") for r in judge.requests if r.body and r.body.get("model") == "lenient"
    } == {"Bearer sk-other"}


def test_compare_command_refuses_a_malformed_model(db_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--db", str(db_path), "compare", NAME, "--model", "a#", "--model", "b"]
    )
    assert result.exit_code == 2
    assert (
        "Invalid value for '--model': 'a#' is not MODEL, MODEL@BASE_URL, MODEL#KEY_ENV or MODEL@BASE_URL#KEY_ENV "
        "(e.g. llama3.1@http://localhost:11434/v1 or gpt-4.1-mini#OPENAI_API_KEY)."
    ) in result.stderr


async def test_compare_models_tool_is_in_the_models_toolset_only(
    store: Store, judge: FakeJudgeServer, db_path: Path
) -> None:
    from mcp import Client

    from align_mcp.mcp.server import create_server
    from align_mcp.mcp.tools import select_tools

    assert select_tools(["models"]) == ("compare_models",)
    assert "compare_models" not in select_tools(["core"])
    assert "compare_models" in select_tools(["all"])
    seed(store)
    async with Client(create_server(db_path, tools=["models"]), cache=None) as client:
        listed = [t.name for t in (await client.list_tools()).tools]
        assert listed == ["compare_models"]
        result = await client.call_tool(
            "compare_models",
            {
                "evaluator": NAME,
                "models": [{"model": "exact", "price": {"input": 1, "output": 4}}, {"model": "lenient"}],
            },
        )
    assert not result.is_error
    data = result.structured_content
    assert data is not None
    assert [(m["label"], m["metrics"]["agreement"]["value"], m["cost_usd"]) for m in data["models"]] == [
        ("exact", 1.0, pytest.approx(0.00224)),
        ("lenient", 0.5, None),
    ]
    assert data["best"] == "exact" and data["pareto_basis"] == "tokens"


def test_compare_command_reads_the_prices_file_it_is_given(
    db_path: Path, store: Store, judge: FakeJudgeServer, tmp_path: Path
) -> None:
    seed(store)
    prices = tmp_path / "team-prices.toml"
    prices.write_text("[models.exact]\ninput = 1\noutput = 4\n")
    result = CliRunner().invoke(
        main,
        [
            "--db",
            str(db_path),
            "compare",
            NAME,
            "--model",
            "exact",
            "--model",
            "lenient",
            "--prices",
            str(prices),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "front (tokens)" in result.stdout
    assert (
        f"note: No price for lenient: tokens are shown, not a cost. Set USD per million tokens in {prices} (one "
        '[models."NAME"] table with input, output and optionally cached_input) or give the model a price.'
    ) in result.stdout.splitlines()


def test_compare_command_stops_at_a_bad_prices_file_before_any_call(
    db_path: Path, store: Store, judge: FakeJudgeServer, tmp_path: Path
) -> None:
    seed(store)
    prices = tmp_path / "prices.toml"
    prices.write_text("[models.exact]\ninput = 1\noutput = -4\n")
    result = CliRunner().invoke(
        main,
        [
            "--db",
            str(db_path),
            "compare",
            NAME,
            "--model",
            "exact",
            "--model",
            "lenient",
            "--prices",
            str(prices),
        ],
    )
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f'Error: The prices file {prices}: [models."exact"] output = -4 is not a number ≥ 0 (USD per million '
        "tokens).\n"
    )
    assert judge.calls == 0


async def test_a_model_nobody_can_reach_is_not_ranked_and_the_others_are(
    store: Store, judge: FakeJudgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store)
    monkeypatch.setenv("NOWHERE_API_KEY", "sk-nowhere")
    gone = JudgeModel(model="gone", base_url="http://127.0.0.1:9/v1", api_key_env="NOWHERE_API_KEY")
    c = await compare_models(store, NAME, [JudgeModel(model="exact"), JudgeModel(model="lenient"), gone])
    exact, lenient, unreachable = c.models
    assert (exact.status, lenient.status, unreachable.status) == ("completed", "completed", "interrupted")
    assert unreachable.failure is not None and "127.0.0.1:9" in unreachable.failure
    assert (exact.pareto, lenient.pareto, unreachable.pareto, unreachable.vs_best) == (True, True, None, None)
    assert judge.calls == 16


async def test_a_pairwise_comparison_judges_both_orders_per_model_and_ranks_the_combined_verdict(
    store: Store,
) -> None:
    fair = by_content()

    def respond(body: dict[str, Any]) -> Reply:
        return first_shown(body) if body["model"] == "biased" else fair(body)

    seed_pairs(store)
    with FakeJudgeServer(responder=respond) as srv:
        result = await compare_models(store, PAIR_NAME, models("biased", "fair"), env=pair_env(srv))
        asked = Counter(str(b["model"]) for b in srv.chat_bodies)

    assert asked == {"biased": 16, "fair": 16}  # 8 pairs, each shown in both orders
    biased, fair_row = result.models
    assert biased.metrics is not None and fair_row.metrics is not None
    # By hand (test_pairwise.CASES): the content judge agrees on p1, p2, p4, p5 and p7; the biased one always
    # ends in a tie, so it agrees on the two human ties only, and never names the same winner twice.
    assert (fair_row.metrics.agreement.k, biased.metrics.agreement.k) == (5, 2)
    assert biased.metrics.pairwise is not None and biased.metrics.pairwise.consistency.k == 0
    assert result.best == "fair"
