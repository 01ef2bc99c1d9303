"""The simulated judge answers every structured request align-mcp makes offline: failure modes, their merge, a
reflective rewrite of the prompt and triage, through the real engine on the PedalPoint sample runs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from align_mcp.core.models import ScoreType
from align_mcp.core.templates import template_variables
from align_mcp.diagnose.triage import triage, triage_messages, triage_schema
from align_mcp.engine import alignment, evaluators, ingest
from align_mcp.optimize.failure_modes import analyze_failures
from align_mcp.optimize.proposals import propose_prompt
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer, prompt_text
from align_mcp.testing.simulated import (
    HANDOFF_RULE,
    NUMBERS_RULE,
    RULES_HEADING,
    SIMULATED_PREFIX,
    simulated_responder,
    structured_reply,
)
from conftest import EXAMPLE_RUNS

pytestmark = pytest.mark.anyio

WRONG_FIGURES = {"pp-001", "pp-019", "pp-038", "pp-044"}
CORRECT_HAND_OFFS = {"pp-013", "pp-022", "pp-026", "pp-028"}


@pytest.fixture
def aligned(store: Store, judge: FakeJudgeServer) -> Store:
    """The sample runs with their labels and a binary 'correctness' judge, whose judge is the simulated one."""
    ingest.import_runs(store, "support", path=EXAMPLE_RUNS)
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    return store


async def align_v1(store: Store) -> None:
    report = await alignment.run_alignment(store, "correctness", "v1")
    assert report.run.split == "dev" and report.run.judged == 33


async def test_failure_modes_come_from_the_simulated_model_not_the_keyword_fallback(
    aligned: Store, judge: FakeJudgeServer
) -> None:
    await align_v1(aligned)
    analysis = await analyze_failures(aligned, "correctness")
    assert analysis.method == "llm" and analysis.model_calls == 1 and analysis.notes == []
    modes = {m.name: (m.direction, set(m.run_ids)) for m in analysis.modes}
    assert modes == {
        "Misses wrong figures": ("false_pass", WRONG_FIGURES),
        "Penalises correct hand-offs": ("false_fail", CORRECT_HAND_OFFS),
        "Too literal about wording": ("false_fail", {"pp-021"}),
        "Passes what the experts fault": ("false_pass", {"pp-009"}),
    }
    assert all(m.description.startswith(SIMULATED_PREFIX) for m in analysis.modes)
    [request] = [
        b for b in judge.chat_bodies if b["response_format"]["json_schema"]["name"] == "failure_modes"
    ]
    assert "Group these examples into a few failure modes" in prompt_text(request)


async def test_triage_classifies_every_case_by_what_the_rubric_says(aligned: Store) -> None:
    await align_v1(aligned)
    report = await triage(aligned, "correctness")
    assert report.counts == {"judge_error": 1, "label_error": 0, "rubric_gap": 9, "unclassified": 0}
    by_id = {c.run_id: c for c in report.cases}
    assert all(c.reason is not None and c.reason.startswith(SIMULATED_PREFIX) for c in report.cases)
    first = by_id["pp-001"]
    assert first.category == "rubric_gap"
    assert first.reason == (
        "[simulated judge] The human failed a wrong figure (the output states 45 minutes where the reference "
        "says 15 minutes), but the rubric does not say that figures must match the reference."
    )
    assert by_id["pp-021"].category == "judge_error"
    assert {rid for rid, c in by_id.items() if c.category == "rubric_gap"} >= CORRECT_HAND_OFFS


async def test_reflect_proposal_adds_the_rules_the_failure_modes_call_for(aligned: Store) -> None:
    await align_v1(aligned)
    proposal = await propose_prompt(aligned, "correctness", "reflect", 120)
    assert proposal.changed and proposal.status == "proposed"
    assert f"{RULES_HEADING}\n- {NUMBERS_RULE}\n- {HANDOFF_RULE}\n\nThink step by step" in proposal.prompt
    assert set(template_variables(proposal.prompt)) == set(template_variables(proposal.base_prompt))
    assert proposal.dev.before.agreement.value is not None and proposal.dev.after.agreement.value is not None
    assert proposal.dev.after.agreement.value > proposal.dev.before.agreement.value
    assert proposal.dev.flips.fixed and not proposal.dev.flips.broken
    assert (
        proposal.test.after.agreement.value is not None and proposal.test.before.agreement.value is not None
    )
    assert proposal.test.after.agreement.value >= proposal.test.before.agreement.value
    assert proposal.budget.used <= 120


# ---- the replies themselves ------------------------------------------------------------------------------------


def body(name: str, *messages: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "model": "simulated-judge",
        "messages": [{"role": "user", "content": m} for m in messages],
        "response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema or {}}},
    }


def answer(request: dict[str, Any]) -> Any:
    reply = simulated_responder(request)
    assert reply.content is not None
    return json.loads(reply.content)


def test_modes_found_in_separate_batches_merge_by_name() -> None:
    listing = (
        "Failure modes found in separate batches:\n"
        "- m1: Misses wrong figures (3 example(s)): [simulated judge] The judge passes wrong figures.\n"
        "- m2: Penalises correct hand-offs (2 example(s)): The judge fails correct hand-offs.\n"
        "- m3: Misses wrong figures (1 example(s)): [simulated judge] The judge passes wrong figures."
    )
    assert answer(body("failure_mode_merge", listing)) == {
        "modes": [
            {
                "name": "Misses wrong figures",
                "description": "[simulated judge] The judge passes wrong figures.",
                "members": ["m1", "m3"],
            },
            {
                "name": "Penalises correct hand-offs",
                "description": "[simulated judge] The judge fails correct hand-offs.",
                "members": ["m2"],
            },
        ]
    }


def revision_request(instructions: str, modes: str) -> dict[str, Any]:
    user = (
        "Score type: binary.\n\n"
        f"The judge's current instructions:\n<instructions>\n{instructions}\n</instructions>\n\n"
        f"Failure modes on the dev examples:\n{modes}"
    )
    return body("prompt_revision", "You improve the grading instructions of an LLM judge.", user)


def test_reflection_appends_rules_after_the_last_list_of_instructions_without_variables() -> None:
    instructions = "Grade the answer.\n\nRubric:\n- Pass correct answers.\n- Fail wrong ones.\n\nBe brief."
    reply = answer(revision_request(instructions, "- Misses wrong figures (false passes, 3 example(s)): x"))
    assert reply["instructions"] == (
        "Grade the answer.\n\nRubric:\n- Pass correct answers.\n- Fail wrong ones.\n\n"
        f"{RULES_HEADING}\n- {NUMBERS_RULE}\n\nBe brief."
    )
    assert reply["analysis"].startswith(SIMULATED_PREFIX)


def test_reflection_leaves_instructions_that_already_have_the_rules_unchanged() -> None:
    instructions = f"Grade the answer.\n\n- {NUMBERS_RULE}\n- {HANDOFF_RULE}"
    modes = (
        "- Misses wrong figures (false passes, 3 example(s)): x\n"
        "- Penalises correct hand-offs (false fails, 2 example(s)): y"
    )
    reply = answer(revision_request(instructions, modes))
    assert reply == {
        "analysis": "[simulated judge] The failure modes (Misses wrong figures, Penalises correct hand-offs) call "
        "for no rule the instructions lack and the simulated judge knows; the instructions are unchanged.",
        "instructions": instructions,
    }


def triage_case(run_id: str, human: int, judge: int, comment: str, output: str, reference: str) -> Any:
    from align_mcp.core.models import MisalignedCase

    return MisalignedCase(
        run_id=run_id,
        direction="false_pass" if judge == 1 else "false_fail",
        inputs={"question": "How much is the deposit?"},
        outputs={"answer": output},
        reference_outputs={"answer": reference},
        human_score=human,
        human_comment=comment,
        judge_score=judge,
        judge_reasoning="[simulated judge] ...",
    )


def test_triage_flags_a_label_its_own_comment_contradicts_and_a_judge_that_ignored_the_rubric() -> None:
    cases = [
        triage_case(
            "slip", 1, 0, "Wrong: the deposit is €150.", "The deposit is €50.", "The deposit is €150."
        ),
        triage_case("missed", 0, 1, "Wrong amount.", "The deposit is €50.", "The deposit is €150."),
    ]
    rubric = f"Grade the answer.\n- {NUMBERS_RULE}\n\n<outputs>\n{{{{outputs}}}}\n</outputs>"
    messages = triage_messages("correctness", ScoreType(kind="binary"), rubric, cases)
    request = {"model": "m", "messages": messages, "response_format": triage_schema(["slip", "missed"])}
    assert answer(request) == {
        "cases": [
            {
                "run_id": "slip",
                "category": "label_error",
                "reason": '[simulated judge] The human\'s own comment ("Wrong: the deposit is €150.") contradicts '
                "the score they gave; a second labeler should look at it.",
            },
            {
                "run_id": "missed",
                "category": "judge_error",
                "reason": "[simulated judge] The rubric asks for figures to match the reference, and the output "
                "states €50 where the reference says €150: the judge missed it.",
            },
        ]
    }


def test_a_verdict_request_still_gets_a_verdict() -> None:
    reply = simulated_responder(body("judgement", "<outputs>\nYes.\n</outputs>"))
    assert reply.content is None and reply.reasoning.startswith(SIMULATED_PREFIX)
    assert structured_reply(body("judgement", "anything")) is None
