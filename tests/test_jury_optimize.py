"""The optimizer with a jury: every member judges each candidate, a member's own prompt is left alone, the
jury's lead model reflects, and the budget counts one call per member per example."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from align_mcp.engine import evaluators
from align_mcp.errors import InvalidInput
from align_mcp.optimize import proposals as optimize
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer, prompt_text
from test_optimize import NUMBERS_RULE, ScriptedModel, configure, make_store, schema_name

pytestmark = pytest.mark.anyio

OWN = "Grade with your own rubric.\n\n<outputs>\n{{outputs}}\n</outputs>"


@pytest.fixture
def scripted() -> ScriptedModel:
    return ScriptedModel()


@pytest.fixture
def fake(scripted: ScriptedModel) -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer(responder=scripted) as srv:
        yield srv


@pytest.fixture
def jury_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeJudgeServer) -> Iterator[Store]:
    """The support runs, and 'correctness' judged by a majority of members a and b (no model of its own)."""
    configure(monkeypatch, tmp_path / "align.db", fake)
    s = make_store(tmp_path / "align.db")
    evaluators.update_draft(
        s, "correctness", judge={"members": [{"model": "a"}, {"model": "b"}], "combine": "majority"}
    )
    yield s
    s.close()


async def test_a_jury_proposal_is_judged_by_every_member_and_reflected_by_the_first(
    jury_store: Store, fake: FakeJudgeServer, scripted: ScriptedModel
) -> None:
    evaluators.update_draft(
        jury_store,
        "correctness",
        judge={
            "members": [{"model": "a"}, {"model": "b"}, {"model": "c", "prompt": OWN}],
            "combine": "majority",
        },
    )
    proposal = await optimize.propose_prompt(jury_store, "correctness", mode="reflect", budget=400)

    judged = Counter(str(body["model"]) for body in scripted.requests["judge"])
    own = [body for body in scripted.requests["judge"] if body["model"] == "c"]
    assert proposal.changed and NUMBERS_RULE in proposal.prompt
    # The draft and the proposal, each on 33 dev and 13 test examples; c keeps its own prompt, judged once each.
    assert judged == {"a": 92, "b": 92, "c": 46}
    assert all(body["messages"][1]["content"].startswith("Grade with your own rubric.") for body in own)
    shared = [body for body in scripted.requests["judge"] if body["model"] == "a"]
    assert any(
        NUMBERS_RULE in prompt_text(body) for body in shared
    )  # the candidate reached the shared members
    assert [str(body["model"]) for body in scripted.requests["reflect"]] == ["a"]
    assert {schema_name(body) for body in scripted.requests["analysis"]} <= {"failure_modes"}
    assert proposal.budget.used == fake.calls
    assert proposal.budget.judge_calls == sum(judged.values())


def test_a_jury_budget_below_the_minimum_counts_a_call_per_member(
    jury_store: Store, fake: FakeJudgeServer
) -> None:
    with pytest.raises(InvalidInput) as e:
        anyio.run(lambda: optimize.propose_prompt(jury_store, "correctness", mode="reflect", budget=40))
    assert str(e.value) == (
        "budget=40 model calls is below the minimum useful for mode='reflect' here: 185 (the draft on dev: 66, "
        "the draft on test: 26, one rewrite: 1, the proposal on dev: 66, the proposal on test: 26). Pass "
        "budget=185 or more."
    )
    assert fake.calls == 0


async def test_a_members_own_prompt_showing_few_shot_examples_is_filled_while_the_optimizer_judges(
    jury_store: Store, fake: FakeJudgeServer, scripted: ScriptedModel
) -> None:
    own = "Grade with your own rubric.\n\n{{few_shot_examples}}\n\n<outputs>\n{{outputs}}\n</outputs>"
    members = [{"model": "a"}, {"model": "b"}, {"model": "c", "prompt": own}]
    evaluators.update_draft(jury_store, "correctness", judge={"members": members, "combine": "majority"})

    proposal = await optimize.propose_prompt(jury_store, "correctness", mode="reflect", budget=400)

    bodies = [body for body in scripted.requests["judge"] if body["model"] == "c"]
    assert proposal.changed and bodies
    # Unfilled, the variable would read "(none)" there.
    assert not any("rubric.\n\n(none)" in prompt_text(body) for body in bodies)
    assert all(body["messages"][1]["content"].startswith("Grade with your own rubric.") for body in bodies)
