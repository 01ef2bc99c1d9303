"""Juries (engine/jury.py, core/jury.py): several judge models per example, their verdicts combined by a rule,
each member's verdict cached and stored, each member's agreement and the split rate reported. The members are
told apart by model name at one fake judge on loopback."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result
from mcp import Client

from align_mcp.cli import main
from align_mcp.core.jury import combine, jury_problem
from align_mcp.core.models import JudgeSettings, JuryMember, Score, ScoreType
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators
from align_mcp.errors import InvalidInput, NextStep
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer, Reply, server_error
from conftest import EXAMPLE_RUNS
from test_align import BINARY, HUMAN, NAME, ORDINAL, env_for, rid_of, seed
from test_server import fails, ok, text

pytestmark = pytest.mark.anyio

CATEGORICAL = ScoreType(kind="categorical", labels=["good", "ok", "bad"])
# Member a agrees with every label; b is wrong on r4 and r8, c on r4 and r7. The majority is wrong on r4 only.
VERDICTS: dict[str, dict[str, Score]] = {
    "a": dict(HUMAN),
    "b": {**HUMAN, "r4": 0, "r8": 1},
    "c": {**HUMAN, "r4": 0, "r7": 1},
}


def by_model(
    tables: Mapping[str, Mapping[str, Score]],
    fail: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
) -> Callable[[dict[str, Any]], Reply]:
    """A responder answering each member (by model name) from its own table; (model, run id) pairs in `fail`
    get an HTTP 500."""

    def respond(body: dict[str, Any]) -> Reply:
        model, rid = str(body["model"]), rid_of(body)
        if (model, rid) in fail:
            return server_error()
        return Reply(score=tables[model][rid], reasoning=f"{model} on {rid}.")

    return respond


def jury(*models: str, rule: str = "majority") -> dict[str, Any]:
    return {"members": [{"model": m} for m in models], "combine": rule}


# ---- combining ------------------------------------------------------------------------------------------------


def test_combine_rules_break_ties_and_round_as_documented() -> None:
    assert combine("majority", BINARY, [1, 0, 1]) == 1
    assert combine("majority", BINARY, [1, 0]) == 0  # a split jury does not pass an output
    assert combine("majority", CATEGORICAL, ["bad", "ok"]) == "ok"  # the first tied label in the label order
    assert combine("any_fail", BINARY, [1, 1, 0]) == 0
    assert combine("any_fail", BINARY, [1, 1]) == 1
    assert combine("mean", ORDINAL, [3, 4]) == 4  # 3.5 rounds half up
    assert combine("mean", ORDINAL, [2, 2, 3]) == 2  # 2.33
    assert combine("mean", ORDINAL, [2, 3, 3]) == 3  # 2.67
    assert combine("median", ORDINAL, [2, 5]) == 2  # the lower middle verdict
    assert combine("median", ORDINAL, [1, 4, 5]) == 4


# ---- validation on write --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score_type", "settings", "message"),
    [
        (
            BINARY,
            jury("a", "b", rule="mean"),
            "combine='mean' does not fit a binary evaluator (it is for ordinal only); use majority or any_fail.",
        ),
        (
            ORDINAL,
            jury("a", "b", rule="any_fail"),
            "combine='any_fail' does not fit a ordinal evaluator (it is for binary only); use mean or median.",
        ),
        (
            ORDINAL,
            jury("a", "b", rule="majority"),
            "combine='majority' does not fit a ordinal evaluator (it is for binary and categorical and pairwise "
            "only); use mean or median.",
        ),
        (
            BINARY,
            jury("a"),
            "A jury needs at least 2 members; got 1. Add members, or clear combine for a single judge.",
        ),
        (
            CATEGORICAL,
            {"members": [{"model": "a"}, {"model": "b"}]},
            "A jury needs a combine rule; for a categorical evaluator use majority.",
        ),
        (
            BINARY,
            {"members": [{"model": "a"}, {"model": "b", "api_key_env": "HOME"}], "combine": "majority"},
            "Jury member 'b': api_key_env='HOME' is not allowed: name a variable ending in _API_KEY (e.g. "
            "AZURE_OPENAI_API_KEY), so no other secret can be sent to a judge endpoint.",
        ),
    ],
)
def test_a_jury_that_does_not_fit_is_refused_on_create_and_on_edit(
    store: Store, score_type: ScoreType, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as created:
        evaluators.create(store, NAME, score_type, judge=JudgeSettings.model_validate(settings))
    assert str(created.value) == message
    evaluators.create(store, NAME, score_type)
    with pytest.raises(InvalidInput) as edited:
        evaluators.update_draft(store, NAME, judge=settings)
    assert str(edited.value) == message
    assert evaluators.get(store, NAME).judge.members == []


def test_an_unknown_combine_rule_is_refused_naming_the_rules(store: Store) -> None:
    evaluators.create(store, NAME, BINARY)
    with pytest.raises(InvalidInput) as e:
        evaluators.update_draft(store, NAME, judge={"combine": "vote"})
    assert str(e.value) == (
        "Invalid judge settings {'combine': 'vote'}: combine: Input should be 'majority', 'mean', 'median' or "
        "'any_fail'."
    )


def test_a_saved_version_freezes_the_jury(store: Store) -> None:
    evaluators.create(store, NAME, BINARY)
    evaluators.update_draft(store, NAME, judge=jury("a", "b"))
    assert evaluators.get(store, NAME).draft_differs
    v = evaluators.save(store, NAME)
    evaluators.update_draft(store, NAME, judge={"combine": "any_fail"})
    assert v.judge.members == [JuryMember(model="a"), JuryMember(model="b")]
    assert evaluators.get_version(store, NAME, v.version).judge.combine == "majority"
    assert '"combine": "majority -> any_fail"' in evaluators.diff(store, NAME).diff


# ---- judging --------------------------------------------------------------------------------------------------


async def test_a_jury_reports_each_members_agreement_beside_the_jurys_and_the_split_rate(
    store: Store,
) -> None:
    seed(store, HUMAN)
    evaluators.update_draft(store, NAME, judge=jury("a", "b", "c"))
    with FakeJudgeServer(responder=by_model(VERDICTS)) as srv:
        report = await align.run_alignment(store, NAME, env=env_for(srv), compare=False)
        models = sorted(str(r.body["model"]) for r in srv.requests if r.path.endswith("/chat/completions"))
    run = report.run
    assert models == ["a"] * 8 + ["b"] * 8 + ["c"] * 8
    assert (run.total, run.judged, run.errors, run.requests, run.model) == (
        8,
        8,
        0,
        24,
        "jury(a, b, c; majority)",
    )
    assert run.metrics is not None and (run.metrics.agreement.k, run.metrics.agreement.n) == (7, 8)
    assert report.jury is not None
    assert [(m.member, m.agreement.k, m.agreement.n, m.errors) for m in report.jury.members] == [
        ("1:a", 8, 8, 0),
        ("2:b", 6, 8, 0),
        ("3:c", 6, 8, 0),
    ]
    assert (report.jury.split.k, report.jury.split.n) == (3, 8)  # r4, r7 and r8
    results = {r.run_id: r for r in store.alignment_results(run.id)}
    assert results["r4"].judge_score == 0
    assert results["r4"].reasoning == "[1:a] 1: a on r4.\n[2:b] 0: b on r4.\n[3:c] 0: c on r4."
    members = [(v.member, v.model, v.judge_score) for v in store.member_verdicts(run.id) if v.run_id == "r8"]
    assert members == [(0, "a", 0), (1, "b", 1), (2, "c", 0)]


async def test_members_share_the_runs_concurrency_limit(store: Store) -> None:
    seed(store, HUMAN)
    evaluators.update_draft(store, NAME, judge=jury("a", "b", "c"))
    with FakeJudgeServer(responder=by_model(VERDICTS), latency=0.05) as srv:
        await align.run_alignment(store, NAME, env=env_for(srv, concurrency=2), compare=False)
    assert (srv.calls, srv.max_in_flight) == (24, 2)


async def test_any_fail_fails_an_example_when_one_member_fails_it(store: Store) -> None:
    seed(store, HUMAN)
    evaluators.update_draft(store, NAME, judge=jury("a", "b", "c", rule="any_fail"))
    with FakeJudgeServer(responder=by_model(VERDICTS)) as srv:
        report = await align.run_alignment(store, NAME, env=env_for(srv), compare=False)
    judged = {r.run_id: r.judge_score for r in store.alignment_results(report.run.id)}
    assert judged == {**HUMAN, "r4": 0}


async def test_adding_a_member_reuses_the_other_members_cached_verdicts(store: Store) -> None:
    seed(store, HUMAN)
    evaluators.update_draft(store, NAME, judge=jury("a", "b"))
    with FakeJudgeServer(responder=by_model(VERDICTS)) as srv:
        first = await align.run_alignment(store, NAME, env=env_for(srv), compare=False)
        evaluators.update_draft(store, NAME, judge=jury("a", "b", "c"))
        second = await align.run_alignment(store, NAME, env=env_for(srv), compare=False)
        again = await align.run_alignment(store, NAME, env=env_for(srv), compare=False)
        calls = srv.calls
    assert (first.run.requests, second.run.requests, again.run.requests) == (16, 8, 0)
    assert calls == 24
    assert (again.run.cache_hits, again.run.judged) == (8, 8)
    assert again.jury is not None and (again.jury.split.k, again.jury.split.n) == (3, 8)


async def test_a_failed_member_is_left_out_and_an_example_no_member_judged_is_an_error(store: Store) -> None:
    seed(store, HUMAN)
    evaluators.update_draft(store, NAME, judge=jury("a", "b", "c"))
    fail = {("c", "r4"), ("a", "r2"), ("b", "r2"), ("c", "r2")}
    with FakeJudgeServer(responder=by_model(VERDICTS, fail)) as srv:
        report = await align.run_alignment(store, NAME, env=env_for(srv), compare=False)
    results = {r.run_id: r for r in store.alignment_results(report.run.id)}
    # r4: a says 1, b says 0, c failed: a tie of the two that answered goes to fail.
    assert (results["r4"].judge_score, results["r4"].error) == (0, None)
    assert results["r4"].reasoning == (
        "[1:a] 1: a on r4.\n[2:b] 0: b on r4.\n[3:c] error: HTTP 500 from the judge (after 1 attempt)"
    )
    assert results["r2"].judge_score is None
    assert results["r2"].error == "every jury member failed: " + "; ".join(
        f"{m}: HTTP 500 from the judge (after 1 attempt)" for m in ("1:a", "2:b", "3:c")
    )
    assert (report.run.judged, report.run.errors) == (7, 1)
    assert report.jury is not None
    assert [(m.member, m.n, m.errors) for m in report.jury.members] == [
        ("1:a", 7, 1),
        ("2:b", 7, 1),
        ("3:c", 6, 2),
    ]
    assert report.jury.member_errors == 4
    assert (report.jury.split.k, report.jury.split.n) == (3, 7)  # r4 (a vs b), r7, r8; r2 had no verdicts
    assert [n.text for n in report.jury.notes] == [
        "4 member verdict(s) failed; those examples were combined from the members that answered."
    ]


async def test_an_example_no_member_judged_is_judged_again_on_resume_and_its_member_verdicts_replaced(
    store: Store,
) -> None:
    seed(store, HUMAN)
    evaluators.update_draft(store, NAME, judge=jury("a", "b", "c"))
    with FakeJudgeServer(responder=by_model(VERDICTS, {("a", "r2"), ("b", "r2"), ("c", "r2")})) as srv:
        first = await align.run_alignment(store, NAME, env=env_for(srv), compare=False)
        srv.responder = by_model(VERDICTS)
        resumed = await align.resume(store, first.run.id, retry_errors=True, env=env_for(srv))
        calls = srv.calls

    assert (first.run.errors, resumed.run.errors, resumed.run.judged) == (1, 0, 8)
    assert calls == 24 + 3  # every member once per example, then the three members on r2 again
    assert resumed.jury is not None and resumed.jury.member_errors == 0
    r2 = [(v.model, v.judge_score, v.error) for v in store.member_verdicts(first.run.id) if v.run_id == "r2"]
    assert r2 == [("a", 1, None), ("b", 1, None), ("c", 1, None)]


# ---- surfaces -------------------------------------------------------------------------------------------------


def pass_or_fail_by_model(body: dict[str, Any]) -> Reply:
    """Member 'a' passes every output and member 'b' fails every one: they split on every example."""
    model = str(body["model"])
    return Reply(score=1 if model == "a" else 0, reasoning=f"{model} always says so.")


async def test_mcp_creates_a_jury_refuses_a_misfit_rule_and_reports_members_beside_the_jury(
    client: Client, judge: FakeJudgeServer
) -> None:
    judge.responder = pass_or_fail_by_model
    await ok(client, "import_runs", source="support", path=str(EXAMPLE_RUNS))
    created = await ok(
        client,
        "create_evaluator",
        name="correctness",
        judge={"members": [{"model": "a"}, {"model": "b", "temperature": 0.5}], "combine": "majority"},
    )
    message = await fails(client, "update_draft", evaluator="correctness", judge={"combine": "mean"})
    hot = await fails(client, "create_evaluator", name="hot", judge={"temperature": 9})
    result = await client.call_tool("run_alignment", {"evaluator": "correctness"})
    assert not result.is_error
    report = result.structured_content
    markdown = text(result)

    assert created["judge"]["members"] == [
        {"model": "a", "base_url": None, "api_key_env": None, "temperature": None, "prompt": None},
        {"model": "b", "base_url": None, "api_key_env": None, "temperature": 0.5, "prompt": None},
    ]
    assert message == (
        "Error executing tool update_draft: combine='mean' does not fit a binary evaluator (it is for ordinal "
        "only); use majority or any_fail."
    )
    assert hot == (
        "Error executing tool create_evaluator: Invalid judge settings {'temperature': 9.0}: temperature: Input "
        "should be less than or equal to 2."
    )
    assert report is not None
    n = report["run"]["metrics"]["n"]
    a, b = report["jury"]["members"]
    # Every example splits 1-1, and a tie goes to fail: the jury agrees exactly where member b does.
    assert (report["jury"]["split"]["k"], report["jury"]["split"]["n"]) == (n, n)
    assert report["run"]["metrics"]["agreement"]["k"] == b["agreement"]["k"]
    assert a["agreement"]["k"] + b["agreement"]["k"] == n
    assert "## Jury (majority)" in markdown
    assert f"Members split on 100.0% ({n}/{n}" in markdown
    assert re.search(r"^\| jury \| \d+\.\d% \(\d+/\d+", markdown, re.M)
    temperatures = {str(r.body["model"]): r.body.get("temperature") for r in judge.requests if r.body}
    assert temperatures == {"a": 0.0, "b": 0.5}


def test_cli_creates_edits_shows_and_aligns_a_jury(db_path: Path, judge: FakeJudgeServer) -> None:
    judge.responder = pass_or_fail_by_model
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(main, ["--db", str(db_path), *args], catch_exceptions=False)

    assert run("import", str(EXAMPLE_RUNS), "--source", "support").exit_code == 0
    b_at = f"b@{judge.base_url}"
    refused = run("evaluator", "create", "correctness", "--member", "a", "--member", b_at)
    created = run(
        "evaluator",
        "create",
        "correctness",
        "--member",
        "a",
        "--member",
        b_at,
        "--combine",
        "any_fail",
    )
    seated = run("evaluator", "show", "correctness")
    misfit = run("draft", "edit", "correctness", "--member", "a", "--member", "b", "--combine", "median")
    edited = run("draft", "edit", "correctness", "--member", "a", "--member", "b", "--combine", "majority")
    shown = run("evaluator", "show", "correctness")
    aligned = run("align", "correctness")

    assert (refused.exit_code, refused.stderr) == (
        1,
        "Error: A jury needs a combine rule; for a binary evaluator use majority or any_fail.\n",
    )
    assert (misfit.exit_code, misfit.stderr) == (
        1,
        "Error: combine='median' does not fit a binary evaluator (it is for ordinal only); use majority or "
        "any_fail.\n",
    )
    assert created.exit_code == 0, created.output
    assert f"jury (any_fail): a, {b_at}\n" in seated.stdout
    assert edited.exit_code == 0, edited.output
    assert "jury (majority): a, b\n" in shown.stdout
    assert aligned.exit_code == 0, aligned.output
    split = re.search(
        r"^Jury \(majority\): members split on (\d+)/(\d+) examples \(100\.0%\)$", aligned.stdout, re.M
    )
    assert split is not None and split.group(1) == split.group(2)
    assert re.search(r"^1:a +\d", aligned.stdout, re.M) and re.search(r"^jury +\d", aligned.stdout, re.M)
    # v1 (any_fail) and the draft (majority, tie -> fail) both fail every example: nothing flips.
    assert re.search(r"^Flips vs v1: ", aligned.stdout, re.M)
    assert "fixed:" not in aligned.stdout and "broken:" not in aligned.stdout


async def test_the_review_page_shows_the_members_beside_the_jury(store: Store) -> None:
    from starlette.testclient import TestClient

    from align_mcp.web.app import create_app

    seed(store, HUMAN)
    evaluators.update_draft(store, NAME, judge=jury("a", "b", "c"))
    with FakeJudgeServer(responder=by_model(VERDICTS)) as srv:
        await align.run_alignment(store, NAME, env=env_for(srv), compare=False)
    page = TestClient(create_app(store=store), base_url="http://127.0.0.1:8766").get(f"/review/{NAME}")

    section = re.search(r"<section class=jury>.*?</section>", page.text)
    assert section is not None
    assert section.group(0) == (
        "<section class=jury><h2>Jury (majority)</h2><p>Members split on 38% of 8 examples.</p>"
        "<table><tr><th>member</th><th>agreement</th><th>κ</th><th>judged</th><th>errors</th></tr>"
        "<tr><td>1:a</td><td>100%</td><td>1.00</td><td>8</td><td>0</td></tr>"
        "<tr><td>2:b</td><td>75%</td><td>0.50</td><td>8</td><td>0</td></tr>"
        "<tr><td>3:c</td><td>75%</td><td>0.50</td><td>8</td><td>0</td></tr>"
        "<tr><td>jury</td><td>88%</td><td>0.75</td><td>8</td><td>0</td></tr></table></section>"
    )


# ---- diagnostics ----------------------------------------------------------------------------------------------


async def test_triage_of_a_jury_run_asks_the_jurys_lead_model(store: Store) -> None:
    from align_mcp.diagnose import triage

    seed(store, HUMAN)
    evaluators.update_draft(store, NAME, judge=jury("a", "b", "c"))
    answer = by_model(VERDICTS)

    def respond(body: dict[str, Any]) -> Reply:
        if body["response_format"]["json_schema"]["name"] != "triage":
            return answer(body)
        schema = body["response_format"]["json_schema"]["schema"]
        ids = schema["properties"]["cases"]["items"]["properties"]["run_id"]["enum"]
        cases = [{"run_id": rid, "category": "judge_error", "reason": f"Because of {rid}."} for rid in ids]
        return Reply(content=json.dumps({"cases": cases}))

    with FakeJudgeServer(responder=respond) as srv:
        await align.run_alignment(store, NAME, env=env_for(srv), compare=False)
        report = await triage.triage(store, NAME, env=env_for(srv))
        asked = [
            r.body["model"]
            for r in srv.requests
            if r.body and "triage" in json.dumps(r.body["response_format"])
        ]

    assert (report.model, asked) == ("a", ["a"])  # the evaluator names no model of its own: the first member
    assert [(c.run_id, c.category) for c in report.cases] == [("r4", "judge_error")]


def test_repeated_samples_of_a_jury_are_refused_naming_the_alignment_run(store: Store) -> None:
    from align_mcp.diagnose.consistency import self_consistency

    seed(store, HUMAN)
    evaluators.update_draft(store, NAME, judge=jury("a", "b"))
    with pytest.raises(InvalidInput) as e:
        anyio.run(lambda: self_consistency(store, NAME, env=env_for(None)))
    assert str(e.value) == (
        "The draft of 'correctness' is a jury (a, b; majority), and repeated samples, label suggestions and the "
        "corrected pass rate judge with a single model. Measure the jury with an alignment run, whose report "
        "shows each member's agreement and how often they split."
    )
    assert e.value.next_steps == (NextStep("run_alignment", {"evaluator": NAME}),)


def test_a_jury_on_a_position_swapped_pairwise_evaluator_is_refused_and_allowed_without_swap() -> None:
    jury_settings = JudgeSettings(
        members=[JuryMember(model="a"), JuryMember(model="b"), JuryMember(model="c")], combine="majority"
    )
    assert jury_problem(jury_settings, ScoreType(kind="pairwise")) == (
        "A jury does not judge in both orders yet: a position-swapped pairwise evaluator takes one judge. "
        "Create the evaluator with position swap off for a jury, or clear members and combine."
    )
    assert jury_problem(jury_settings, ScoreType(kind="pairwise", swap=False)) is None


def test_a_members_own_prompt_must_show_both_outputs_of_a_pairwise_evaluator(store: Store) -> None:
    evaluators.create(store, "preference", ScoreType(kind="pairwise", swap=False))
    one_output = "Is this answer good? Score A or B.\n{{inputs}}\n{{outputs}}"

    with pytest.raises(InvalidInput) as e:
        evaluators.update_draft(
            store,
            "preference",
            judge={"members": [{"model": "a"}, {"model": "b", "prompt": one_output}], "combine": "majority"},
        )
    assert str(e.value) == (
        "The own prompt of jury member 'b': A pairwise prompt shows both outputs: add {{outputs_a}} and {{outputs_b}} "
        "(or paths such as {{outputs_a.answer}}) to the template."
    )
