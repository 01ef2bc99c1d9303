"""The optimizer against the fake judge: failure modes, GEPA and reflect proposals, the budget and the holdout.

The judge is the fake server's simulated judge, whose verdicts follow the prompt's instructions: it misses wrong
numbers and fails correct refusals until the prompt tells it otherwise. The scripted reflection model adds
exactly those two instructions, so a working optimizer must find them and raise agreement on dev and on test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from align_mcp.core.models import Proposal, ScoreType
from align_mcp.core.templates import render, validate_template
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators, holdout, ingest
from align_mcp.errors import AlignError, Conflict, InvalidInput, NextStep, OptimizerUnavailable
from align_mcp.optimize import candidates
from align_mcp.optimize import failure_modes as failures
from align_mcp.optimize import proposals as optimize
from align_mcp.store import Store
from align_mcp.testing.fakejudge import (
    FakeJudgeServer,
    Reply,
    garbage,
    prompt_text,
    rate_limited,
    section,
    server_error,
    simulated_responder,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "support_runs.jsonl"
RUNS = {r["id"]: r for r in (json.loads(line) for line in SAMPLE.read_text().splitlines() if line)}
HUMAN = {rid: r["feedback"]["correctness"]["score"] for rid, r in RUNS.items()}

# The two rules the simulated judge lacks; the scripted reflection model proposes them.
NUMBERS_RULE = (
    "Every number in the output (prices, fees, durations, times, quantities) must match the reference output "
    "exactly; a wrong number makes the output incorrect."
)
HANDOFF_RULE = (
    "If the question is out of scope (legal, medical or financial advice, or unrelated to bike rental), politely "
    "declining and pointing the customer elsewhere is the correct answer: pass it when the reference output also "
    "declines."
)
GEPA_FLOOR = 100  # fresh store: draft on dev 33 + draft on test 13 + one GEPA step 41 + proposal on test 13


def schema_name(body: dict[str, Any]) -> str | None:
    fmt = body.get("response_format")
    return fmt.get("json_schema", {}).get("name") if isinstance(fmt, dict) else None


class ScriptedModel:
    """The simulated judge, plus scripted replies to the optimizer's analysis and reflection requests."""

    def __init__(self) -> None:
        self.requests: dict[str, list[dict[str, Any]]] = {
            "judge": [],
            "gepa": [],
            "reflect": [],
            "analysis": [],
            "merge": [],
        }
        self.analysis_reply: Reply | None = None
        self.bad_revisions: list[str] = []  # reflect-mode replies to send before the good one
        self.judge = simulated_responder

    def __call__(self, body: dict[str, Any]) -> Reply:
        text = prompt_text(body)
        if "new_instruction" in text:  # GEPA's instruction proposer (DSPy JSONAdapter)
            self.requests["gepa"].append(body)
            user = body["messages"][-1]["content"]
            current = user.split("[[ ## current_instruction ## ]]\n", 1)[1]
            current = current.split("\n\n[[ ## examples_with_feedback ## ]]", 1)[0]
            return Reply(content=json.dumps({"new_instruction": self.rewrite(current)}))
        if schema_name(body) == "prompt_revision":
            self.requests["reflect"].append(body)
            if self.bad_revisions:
                bad = self.bad_revisions.pop(0)
                return Reply(content=json.dumps({"analysis": "Oops.", "instructions": bad}))
            current = section(text, "instructions") or ""
            return Reply(
                content=json.dumps({"analysis": "Add two rules.", "instructions": self.rewrite(current)})
            )
        if schema_name(body) == "failure_modes":
            self.requests["analysis"].append(body)
            if self.analysis_reply is not None:
                return self.analysis_reply
            ids = re.findall(r'<example id="([^"]+)">', text)
            numbers = [i for i in ids if HUMAN[i] == 0]
            refusals = [i for i in ids if HUMAN[i] == 1]
            modes = [
                {
                    "name": "Misses wrong facts",
                    "description": "Passes outputs with wrong numbers.",
                    "run_ids": numbers,
                },
                {
                    "name": "Fails correct refusals",
                    "description": "Fails scoped hand-offs.",
                    "run_ids": refusals,
                },
                {
                    "name": "Invented",
                    "description": "Ids the model made up are dropped.",
                    "run_ids": ["nope"],
                },
            ]
            return Reply(content=json.dumps({"modes": modes}))
        if schema_name(body) == "failure_mode_merge":  # batches found the same modes: merge them by name
            self.requests["merge"].append(body)
            groups: dict[str, list[str]] = {}
            for key, name in re.findall(r"^- (m\d+): (.+?) \(\d+ example", text, flags=re.MULTILINE):
                groups.setdefault(name, []).append(key)
            merged = [
                {"name": n, "description": f"{n}, merged.", "members": keys} for n, keys in groups.items()
            ]
            return Reply(content=json.dumps({"modes": merged}))
        self.requests["judge"].append(body)
        return self.judge(body)

    @staticmethod
    def rewrite(current: str) -> str:
        if NUMBERS_RULE in current:  # already revised: propose a no-op, as a converged model would
            return current
        return f"{current.rstrip()}\n\n{NUMBERS_RULE}\n{HANDOFF_RULE}"


def perfect_judge(body: dict[str, Any]) -> Reply:
    """A judge that always agrees with the human label of the example it is shown."""
    shown = json.loads(section(prompt_text(body), "outputs") or "null")
    rid = next(rid for rid, run in RUNS.items() if run["outputs"] == shown)
    return Reply(score=HUMAN[rid], reasoning="Agrees with the expert.")


def make_store(path: Path) -> Store:
    store = Store(path)
    ingest.import_runs(store, "support", SAMPLE)
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    return store


def configure(mp: pytest.MonkeyPatch, db: Path, server: FakeJudgeServer | None) -> None:
    for name in ("ALIGN_MCP_JUDGE_BASE_URL", "ALIGN_MCP_JUDGE_API_KEY", "ALIGN_MCP_CONCURRENCY"):
        mp.delenv(name, raising=False)
    mp.setenv("ALIGN_MCP_DB", str(db))
    mp.setenv("OPENAI_API_KEY", "sk-test")
    mp.setenv("ALIGN_MCP_JUDGE_MODEL", "fake-judge")
    mp.setenv("OPENAI_BASE_URL", server.base_url if server else "http://127.0.0.1:9/v1")


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel()


@pytest.fixture
def server(model: ScriptedModel) -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer(responder=model) as srv:
        yield srv


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: FakeJudgeServer) -> Iterator[Store]:
    configure(monkeypatch, tmp_path / "align.db", server)
    s = make_store(tmp_path / "align.db")
    yield s
    s.close()


class GepaRun:
    def __init__(
        self, store: Store, server: FakeJudgeServer, model: ScriptedModel, proposal: Proposal
    ) -> None:
        self.store, self.server, self.model, self.proposal = store, server, model, proposal
        self.test_ids = holdout.split_ids(store, "correctness", "test")
        self.dev_ids = holdout.split_ids(store, "correctness", "dev")


@pytest.fixture(scope="module")
def gepa_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GepaRun]:
    """One GEPA proposal on a fresh store with a 150-call budget, shared by the tests that only read it."""
    model = ScriptedModel()
    db = tmp_path_factory.mktemp("gepa") / "align.db"
    with pytest.MonkeyPatch.context() as mp, FakeJudgeServer(responder=model) as srv:
        configure(mp, db, srv)
        store = make_store(db)
        proposal = anyio.run(lambda: optimize.propose_prompt(store, "correctness", budget=150))
        yield GepaRun(store, srv, model, proposal)
        store.close()


# ---- GEPA -------------------------------------------------------------------------------------------------


def test_gepa_proposal_adds_the_missing_instructions_and_raises_dev_and_test_agreement(
    gepa_run: GepaRun,
) -> None:
    p = gepa_run.proposal
    assert p.mode == "gepa" and p.changed and p.status == "proposed"
    assert NUMBERS_RULE in p.prompt and HANDOFF_RULE in p.prompt
    assert p.dev.before.agreement.value is not None and p.dev.after.agreement.value is not None
    assert p.dev.after.agreement.value > p.dev.before.agreement.value
    assert p.test.before.agreement.value is not None and p.test.after.agreement.value is not None
    assert p.test.after.agreement.value > p.test.before.agreement.value
    assert (
        p.dev.after.kappa is not None
        and p.dev.before.kappa is not None
        and p.dev.after.kappa > p.dev.before.kappa
    )
    assert p.dev.flips.fixed and not p.dev.flips.broken and p.dev.flips.p_value is not None
    assert p.dev.after.agreement.ci is not None and p.test.after.agreement.ci is not None
    assert "+" + NUMBERS_RULE in p.diff.splitlines()
    assert p.verdict.endswith(
        " Applying it copies it into the draft (nothing is saved); judging the reference set again confirms it, "
        "and saving the draft keeps it as a version."
    )
    assert not p.warnings


def test_gepa_proposal_is_the_drafts_template_with_its_variables_still_rendering(gepa_run: GepaRun) -> None:
    p = gepa_run.proposal
    validate_template(p.prompt)
    draft_tail = p.base_prompt[p.base_prompt.index("<inputs>") :]
    assert p.prompt.endswith(draft_tail)
    rendered = render(p.prompt, RUNS["pp-001"])
    assert "{{" not in rendered and "45-minute grace period" in rendered and NUMBERS_RULE in rendered


def test_gepa_metric_feedback_carries_both_scores_the_comment_and_the_reasoning(gepa_run: GepaRun) -> None:
    reflection = prompt_text(gepa_run.model.requests["gepa"][0])
    for sentence in (
        "Human expert's score:",
        "Human expert's comment:",
        "Judge's score:",
        "Judge's reasoning:",
    ):
        assert sentence in reflection
    assert "Turn that into general rules a grader can apply to new examples." in reflection  # our meta-prompt
    assert "[simulated judge]" in reflection  # the judge's own reasoning, from the project's judge path


def test_budget_is_reported_and_matches_the_calls_the_judge_received(gepa_run: GepaRun) -> None:
    b = gepa_run.proposal.budget
    assert b.budget == 150 and b.used <= 150
    assert b.used == gepa_run.server.calls == b.judge_calls + b.reflection_calls + b.analysis_calls
    assert b.reflection_calls == len(gepa_run.model.requests["gepa"]) >= 1
    assert b.judge_calls == len(gepa_run.model.requests["judge"])
    assert b.analysis_calls == len(gepa_run.model.requests["analysis"]) == 1


def test_no_test_example_reaches_the_optimizer_or_get_misaligned(gepa_run: GepaRun) -> None:
    store, test_ids = gepa_run.store, gepa_run.test_ids
    assert test_ids and not test_ids & gepa_run.dev_ids
    row = store.get_proposal(gepa_run.proposal.id)
    assert row is not None and set(row.seen_run_ids) == gepa_run.dev_ids
    test_answers = [RUNS[rid]["outputs"]["answer"] for rid in test_ids]
    for kind in ("gepa", "analysis"):
        for body in gepa_run.model.requests[kind]:
            text = prompt_text(body).replace("\\", "")
            assert not [a for a in test_answers if a in text], f"a test example reached a {kind} request"
    # Test examples were judged only to report the draft and the final proposal: no candidate was tried on them.
    prompts_on_test = {
        body["messages"][1]["content"].split("<inputs>")[0]
        for body in gepa_run.model.requests["judge"]
        if any(a in prompt_text(body) for a in test_answers)
    }
    assert len(prompts_on_test) == 2
    assert not {c.run_id for c in align.get_misaligned(store, "correctness", limit=100).cases} & test_ids
    assert holdout.info(store, "correctness") is not None
    assert holdout.info(store, "correctness").test_evaluations == 1  # type: ignore[union-attr]


def test_failure_modes_it_addresses_come_from_the_stored_analysis_of_the_drafts_dev_run(
    gepa_run: GepaRun,
) -> None:
    p = gepa_run.proposal
    row = gepa_run.store.latest_failure_analysis(p.alignment_run)
    assert row is not None and row.id == p.analysis_id and row.method == "llm"
    names = [m.name for m in p.addresses]
    assert names == ["Misses wrong facts", "Fails correct refusals"]
    assert all(m.fixed <= m.cases for m in p.addresses) and sum(m.fixed for m in p.addresses) >= 6


def test_a_budget_at_the_floor_stops_the_search_and_is_never_exceeded(
    store: Store, server: FakeJudgeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    proposal = anyio.run(lambda: optimize.propose_prompt(store, "correctness", budget=GEPA_FLOOR))
    assert proposal.budget.used <= GEPA_FLOOR and proposal.budget.used == server.calls
    assert proposal.budget.stopped_by_budget
    assert any("budget ran low" in note for note in proposal.notes)
    assert capsys.readouterr().out == ""  # dspy's progress bars stay off stdout (the CLI's output)


def test_a_budget_below_the_minimum_says_how_much_is_needed_and_calls_nothing(
    store: Store, server: FakeJudgeServer
) -> None:
    with pytest.raises(
        InvalidInput, match=rf"budget=40 .* minimum useful for mode='gepa' here: {GEPA_FLOOR} "
    ):
        anyio.run(lambda: optimize.propose_prompt(store, "correctness", budget=40))
    with pytest.raises(InvalidInput, match=r"mode='reflect' here: 93 "):
        anyio.run(lambda: optimize.propose_prompt(store, "correctness", mode="reflect", budget=40))
    assert server.calls == 0


# ---- reflect, apply and save --------------------------------------------------------------------------------


async def test_proposal_becomes_the_draft_only_on_apply_and_a_version_only_on_save(
    store: Store, server: FakeJudgeServer, model: ScriptedModel
) -> None:
    draft = evaluators.get(store, "correctness").draft
    proposal = await optimize.propose_prompt(store, "correctness", mode="reflect", budget=120)
    assert proposal.changed and NUMBERS_RULE in proposal.prompt
    ev = evaluators.get(store, "correctness")
    assert ev.draft == draft and [v.version for v in ev.versions] == [1]

    applied = optimize.apply_proposal(store, "correctness", proposal.id)
    assert applied.draft == proposal.prompt and [v.version for v in applied.versions] == [1]
    assert optimize.get_proposal(store, proposal.id).status == "applied"
    assert [(s.id, s.status) for s in optimize.list_proposals(store, "correctness")] == [
        (proposal.id, "applied")
    ]

    saved = evaluators.save(store, "correctness", "optimizer proposal")
    assert saved.version == 2 and saved.prompt == proposal.prompt
    assert server.calls == proposal.budget.used  # apply and save make no model calls


async def test_reflect_request_shows_the_failure_modes_and_the_human_comments(
    store: Store, model: ScriptedModel
) -> None:
    proposal = await optimize.propose_prompt(store, "correctness", mode="reflect", budget=120)
    assert proposal.budget.reflection_calls == 1 and proposal.budget.used <= 120
    body = model.requests["reflect"][0]
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    assert "Keep every template variable written in double braces" in system
    assert "- Misses wrong facts (false passes, 5 example(s)): Passes outputs with wrong numbers." in user
    assert RUNS["pp-001"]["feedback"]["correctness"]["comment"] in user
    assert "do not write template variables" in user
    assert proposal.dev.after.agreement.value == pytest.approx(31 / 33)


async def test_a_rewrite_that_breaks_the_template_is_asked_again_once(
    store: Store, model: ScriptedModel
) -> None:
    model.bad_revisions = ["Grade {{verdict}} carefully."]
    proposal = await optimize.propose_prompt(store, "correctness", mode="reflect", budget=120)
    assert proposal.changed and proposal.budget.reflection_calls == 2
    first, again = model.requests["reflect"]
    assert again["messages"][:2] == first["messages"]
    assert again["messages"][2] == {
        "role": "assistant",
        "content": json.dumps({"analysis": "Oops.", "instructions": "Grade {{verdict}} carefully."}),
    }
    assert again["messages"][3]["role"] == "user"
    assert again["messages"][3]["content"].startswith(
        "That reply was invalid (the revised instructions Unknown template variable(s): {{verdict}}."
    )
    assert again["messages"][3]["content"].endswith(
        "Reply again with only the JSON object that matches the schema."
    )
    model.bad_revisions = ["Grade {{verdict}} carefully.", ""]
    with pytest.raises(AlignError) as e:
        await optimize.propose_prompt(store, "correctness", mode="reflect", budget=120)
    assert str(e.value) == (
        "The reflection model did not return usable instructions (the revised text is empty). Try the gepa mode, "
        "or edit the draft by hand from the failure modes."
    )
    assert e.value.next_steps == (
        NextStep("propose_prompt", {"evaluator": "correctness", "mode": "gepa"}),
        NextStep("analyze_failures", {"evaluator": "correctness"}),
        NextStep("update_draft", {"evaluator": "correctness"}),
    )


async def test_a_rewrite_that_is_a_fragment_of_the_instructions_is_refused_with_a_clear_error(
    store: Store, model: ScriptedModel
) -> None:
    # A tiny model's reply fits the schema, but its "instructions" are a phrase: asked again once, then refused.
    current = candidates.Template.split(evaluators.get(store, "correctness").draft).instructions
    model.bad_revisions = ["Decision: 1 (pass) 2 (fail)", "Decision: 1 (pass) 0 (fail)"]
    with pytest.raises(AlignError) as e:
        await optimize.propose_prompt(store, "correctness", mode="reflect", budget=120)
    assert str(e.value) == (
        "The reflection model did not return usable instructions (the revision is 27 characters long, under half "
        f"of the current instructions ({len(current):,}): reply with the complete revised text, not a summary or a "
        "fragment). Try the gepa mode, or edit the draft by hand from the failure modes."
    )
    _, again = model.requests["reflect"]
    assert again["messages"][3]["content"].startswith(
        "That reply was invalid (the revision is 27 characters long"
    )
    assert store.proposals("correctness") == []


async def test_a_template_without_a_separate_example_block_is_rewritten_whole(
    store: Store, model: ScriptedModel
) -> None:
    woven = (
        "Grade the answer for correctness. <inputs>{{inputs}}</inputs> <outputs>{{outputs}}</outputs> "
        "<reference_outputs>{{reference_outputs}}</reference_outputs>\nScore 1 if correct, else 0.\n"
    )
    evaluators.update_draft(store, "correctness", prompt=woven)
    proposal = await optimize.propose_prompt(store, "correctness", mode="reflect", budget=120)
    user = model.requests["reflect"][0]["messages"][1]["content"]
    assert "The judge's current template:" in user and "keep every one exactly as written" in user
    assert proposal.changed and proposal.prompt.startswith(woven.strip())
    assert proposal.dev.after.agreement.value > proposal.dev.before.agreement.value  # type: ignore[operator]


def reasked(body: dict[str, Any]) -> Reply:
    """A judge that answers prose first and a verdict only when asked again: two requests per example."""
    if len(body["messages"]) == 2:
        return garbage("The output looks fine to me.")
    return simulated_responder(body)


async def test_the_budget_counts_every_request_re_asks_included_and_stops_at_it(
    store: Store, server: FakeJudgeServer, model: ScriptedModel
) -> None:
    model.judge = reasked
    proposal = await optimize.propose_prompt(store, "correctness", mode="reflect", budget=161)
    b = proposal.budget
    assert b.used == server.calls <= 161, (
        "every request the server received is counted, and never above budget"
    )
    assert b.used == b.judge_calls + b.reflection_calls + b.analysis_calls
    assert b.judge_calls == len(model.requests["judge"]) == 2 * b.examples_judged + (b.judge_calls % 2)
    assert b.reasks == b.examples_judged > 0
    assert b.stopped_by_budget and proposal.test.excluded > 0
    assert any(
        w.startswith("The budget ran out before every example was judged: ") for w in proposal.warnings
    )
    assert any(
        note.startswith(
            f"{b.judge_calls} judge request(s) judged {b.examples_judged} example(s): {b.reasks} re-ask(s)"
        )
        for note in proposal.notes
    ), proposal.notes


async def test_a_rate_limit_while_judging_candidates_is_reported_in_progress(
    store: Store, model: ScriptedModel
) -> None:
    limited: list[bool] = []
    lock = threading.Lock()

    def judge(body: dict[str, Any]) -> Reply:
        """A 429 to the first request that judges with the revised prompt (the optimizer's own judging)."""
        with lock:
            first = NUMBERS_RULE in prompt_text(body) and not limited
            if first:
                limited.append(True)
        return rate_limited(0) if first else simulated_responder(body)

    model.judge = judge
    progress: list[str] = []

    async def on_progress(done: int, total: int, message: str) -> None:
        progress.append(message)

    proposal = await optimize.propose_prompt(
        store, "correctness", mode="reflect", budget=200, on_progress=on_progress
    )
    waits = [m for m in progress if "waiting" in m]
    assert len(waits) == 1 and re.fullmatch(
        r"optimizer: \d+/200 model calls used; waiting 0\.0s after HTTP 429 from the judge", waits[0]
    )
    assert proposal.budget.used <= 200


async def test_a_draft_dev_run_beyond_the_budget_stops_at_it_and_says_so(
    store: Store, server: FakeJudgeServer, model: ScriptedModel
) -> None:
    asked: set[str] = set()
    lock = threading.Lock()

    def judge(body: dict[str, Any]) -> Reply:
        """A server error first, then prose, then a verdict when asked again: three requests per example."""
        with lock:
            first = (text := prompt_text(body)) not in asked
            asked.add(text)
        return server_error(500) if first else reasked(body)

    model.judge = judge
    with pytest.raises(InvalidInput) as e:
        await optimize.propose_prompt(store, "correctness", mode="reflect", budget=93)
    assert server.calls == 93, "the 33 dev examples need 99 requests; the budget stops them at 93"
    assert str(e.value).startswith(
        "budget=93 model calls ran out while judging the draft on dev (93 requests, retries and re-asks included)"
    )


async def test_before_and_after_on_test_are_measured_on_the_examples_both_prompts_judged(
    store: Store, model: ScriptedModel
) -> None:
    holdout.ensure_split(store, "correctness")
    broken = sorted(holdout.split_ids(store, "correctness", "test"))[:2]

    def judge(body: dict[str, Any]) -> Reply:
        text = prompt_text(body)
        if NUMBERS_RULE in text and any(RUNS[rid]["outputs"]["answer"] in text for rid in broken):
            return garbage("Cannot say.")
        return simulated_responder(body)

    model.judge = judge
    proposal = await optimize.propose_prompt(store, "correctness", mode="reflect", budget=200)
    t = proposal.test
    assert (t.n, t.excluded) == (13, 2)
    assert t.before.n == t.after.n == t.flips.n == 11, "both sides on the same 11 examples"
    assert t.before.errors == t.after.errors == 0
    assert (
        "On test, 2 of 13 example(s) are left out of the comparison, so both sides are measured on the same 11: "
        "the proposal could not judge 2 (first: unparseable reply after a re-ask: reply is not JSON: "
        "'Cannot say.')."
    ) in proposal.notes


async def test_apply_refuses_to_overwrite_draft_edits_unless_forced(store: Store) -> None:
    proposal = await optimize.propose_prompt(store, "correctness", mode="reflect", budget=120)
    evaluators.update_draft(store, "correctness", replace=("Think step by step", "Think carefully"))
    with pytest.raises(Conflict) as e:
        optimize.apply_proposal(store, "correctness", proposal.id)
    assert str(e.value) == (
        f"The draft of 'correctness' changed after proposal {proposal.id} was made; applying it would discard "
        "those edits."
    )
    assert e.value.next_steps == (
        NextStep("show_draft", {"evaluator": "correctness"}),
        NextStep("apply_proposal", {"evaluator": "correctness", "proposal_id": proposal.id, "force": True}),
        NextStep("propose_prompt", {"evaluator": "correctness"}),
    )
    assert optimize.apply_proposal(store, "correctness", proposal.id, force=True).draft == proposal.prompt


async def test_reflect_mode_needs_no_dspy_and_gepa_names_the_install_command(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "dspy", None)
    with pytest.raises(OptimizerUnavailable) as info:
        await optimize.propose_prompt(store, "correctness")
    assert str(info.value) == "The optimizer needs the optional DSPy extra: pip install 'align-mcp[optimize]'"
    proposal = await optimize.propose_prompt(store, "correctness", mode="reflect", budget=120)
    assert proposal.changed


# ---- bad input ----------------------------------------------------------------------------------------------


async def test_too_few_labels_for_a_split_says_how_many_are_needed(
    store: Store, server: FakeJudgeServer
) -> None:
    evaluators.create(store, "tone", ScoreType(kind="binary"))
    from align_mcp.engine.queues import submit_labels

    submit_labels(store, "tone", [{"run_id": rid, "score": HUMAN[rid]} for rid in list(RUNS)[:6]])
    with pytest.raises(InvalidInput, match=r"needs at least 10 labeled runs; there are 6\. Label 4 more"):
        await optimize.propose_prompt(store, "tone", mode="reflect")
    assert server.calls == 0


async def test_no_misaligned_dev_example_means_nothing_to_optimize(
    store: Store, model: ScriptedModel
) -> None:
    model.judge = perfect_judge
    with pytest.raises(InvalidInput, match="there is nothing to optimize") as e:
        await optimize.propose_prompt(store, "correctness", mode="reflect")
    assert str(e.value).endswith(
        "there is nothing to optimize. Label more runs, especially ones you expect the judge to get wrong."
    )
    assert e.value.next_steps == (
        NextStep("add_to_queue", {"evaluator": "correctness"}),
        NextStep("run_alignment", {"evaluator": "correctness"}),
    )


async def test_unknown_mode_and_bad_budgets_are_refused(store: Store) -> None:
    with pytest.raises(InvalidInput, match="mode='mipro'"):
        await optimize.propose_prompt(store, "correctness", mode="mipro")  # type: ignore[arg-type]
    for budget in (0, -5, 10**9):
        with pytest.raises(InvalidInput, match=f"budget={budget}"):
            await optimize.propose_prompt(store, "correctness", mode="reflect", budget=budget)


# ---- failure modes ------------------------------------------------------------------------------------------


async def test_analyze_failures_groups_dev_cases_with_the_model_and_stores_it_with_its_run(
    store: Store, model: ScriptedModel
) -> None:
    report = await align.run_alignment(store, "correctness")
    analysis = await failures.analyze_failures(store, "correctness")
    assert analysis.method == "llm" and analysis.alignment_run == report.run.id and analysis.model_calls == 1
    assert [m.name for m in analysis.modes] == ["Misses wrong facts", "Fails correct refusals"]
    ids = [rid for m in analysis.modes for rid in m.run_ids]
    assert sorted(ids) == sorted(ids_misaligned(store, report.run.id)) and "nope" not in ids
    assert {m.direction for m in analysis.modes} == {"false_pass", "false_fail"}
    assert not set(ids) & holdout.split_ids(store, "correctness", "test")
    row = store.latest_failure_analysis(report.run.id)
    assert row is not None and row.id == analysis.id
    assert "Lean on the experts' comments" in prompt_text(model.requests["analysis"][0])


def ids_misaligned(store: Store, aid: int) -> list[str]:
    return [c.run_id for c in align.get_misaligned(store, "correctness", alignment_run=aid, limit=100).cases]


async def test_without_a_model_failures_are_grouped_by_direction_and_comment_terms(
    store: Store, monkeypatch: pytest.MonkeyPatch, server: FakeJudgeServer
) -> None:
    report = await align.run_alignment(store, "correctness")
    monkeypatch.delenv("ALIGN_MCP_JUDGE_MODEL")
    calls = server.calls
    analysis = await failures.analyze_failures(store, "correctness")
    assert analysis.method == "keywords" and analysis.model_calls == 0 and server.calls == calls
    assert any("No judge model is configured" in note for note in analysis.notes)
    by_name = {m.name: m for m in analysis.modes}
    assert by_name["False passes: 'wrong'"].run_ids == ["pp-001", "pp-019", "pp-038"]
    assert by_name["False passes: 'wrong'"].direction == "false_pass"
    assert sorted(rid for m in analysis.modes for rid in m.run_ids) == sorted(
        ids_misaligned(store, report.run.id)
    )
    assert all(m.direction in ("false_pass", "false_fail") for m in analysis.modes)


async def test_many_failures_are_analysed_in_chunks_and_the_chunks_modes_merged(
    store: Store, model: ScriptedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = await align.run_alignment(store, "correctness")
    monkeypatch.setattr(failures, "ANALYSIS_CHUNK", 4)
    analysis = await failures.analyze_failures(store, "correctness")
    assert len(model.requests["analysis"]) == 3 and len(model.requests["merge"]) == 1
    assert analysis.method == "llm" and analysis.model_calls == 4
    assert [m.name for m in analysis.modes] == ["Misses wrong facts", "Fails correct refusals"]
    assert sorted(rid for m in analysis.modes for rid in m.run_ids) == sorted(
        ids_misaligned(store, report.run.id)
    )


async def test_an_unusable_analysis_reply_falls_back_to_comment_terms(
    store: Store, model: ScriptedModel
) -> None:
    await align.run_alignment(store, "correctness")
    model.analysis_reply = garbage("I would rather not.")
    analysis = await failures.analyze_failures(store, "correctness")
    # The unusable reply is shown to the model and asked again once: two calls, both counted.
    assert analysis.method == "keywords" and analysis.model_calls == 2
    first, again = model.requests["analysis"]
    assert again["messages"][:2] == first["messages"]
    assert again["messages"][2] == {"role": "assistant", "content": "I would rather not."}
    assert again["messages"][3]["content"].startswith(
        "That reply was invalid (the reply does not match the schema"
    )
    problem = "the reply does not match the schema (Invalid JSON: expected ident at line 1 column 2): 'I would rather not.'"
    assert problem in again["messages"][3]["content"]
    assert (
        f"The judge model could not group the failures ({problem}); they were grouped by direction and by terms "
        "recurring in the human comments instead."
    ) in analysis.notes


# ---- templates and imports ----------------------------------------------------------------------------------


def test_a_template_with_variables_in_its_instructions_is_rewritten_whole_and_keeps_them() -> None:
    woven = (
        "Grade the answer to {{inputs.question}}.\nAnswer: {{outputs}}\nReference: {{reference_outputs}}\n"
    )
    template = candidates.Template.split(woven)
    assert template.tail == "" and template.assemble(template.instructions) == woven
    assert (
        template.problem("Grade it.\nAnswer: {{outputs}}")
        == "it drops {{inputs.question}}, {{reference_outputs}}"
    )
    assert template.problem(woven.replace("Grade", "Judge")) is None
    split = candidates.Template.split("Be strict.\n\n<outputs>\n{{outputs}}\n</outputs>\n")
    assert (split.instructions, split.tail) == ("Be strict.", "<outputs>\n{{outputs}}\n</outputs>\n")
    assert split.assemble("Be lenient.  ") == "Be lenient.\n\n<outputs>\n{{outputs}}\n</outputs>\n"


def test_server_cli_and_optimize_do_not_import_dspy_at_start_up() -> None:
    code = "import sys, align_mcp.mcp.server, align_mcp.cli, align_mcp.optimize.proposals; print('dspy' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def pct_ci(rate: Any) -> str:
    return f"{rate.value:.1%} (95% CI {rate.ci.low:.1%}–{rate.ci.high:.1%})"


def test_cli_propose_proposal_and_proposals_show_every_agreement_with_its_interval(store: Store) -> None:
    from click.testing import CliRunner

    from align_mcp.cli.main import main

    def cli(*args: str) -> str:
        result = CliRunner().invoke(main, ["--db", str(store.path), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    proposed = cli("propose", "correctness", "--mode", "reflect", "--budget", "120")
    p = optimize.list_proposals(store, "correctness")[-1]
    full = optimize.get_proposal(store, p.id)
    for comp in (full.dev, full.test):
        line = (
            f"  {comp.split} (n = {comp.n}): agreement {pct_ci(comp.before.agreement)} -> "
            f"{pct_ci(comp.after.agreement)}; "
        )
        assert line in proposed
        assert line in cli("proposal", str(p.id))

    listing = cli("proposals", "correctness")
    row = next(line for line in listing.splitlines() if line.startswith(str(p.id)))
    for rate in (full.dev.before, full.dev.after, full.test.before, full.test.after):
        r = rate.agreement
        assert r.ci is not None
        assert f"{r.value:.1%} ({r.ci.low * 100:.1f}–{r.ci.high:.1%})" in row
    assert "Agreement with its 95% confidence interval (Wilson) in parentheses." in listing
