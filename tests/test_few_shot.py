"""Few-shot examples from human corrections: chosen from dev only, shown before the example, frozen on save.

The judge is scripted to grade the "tricky" runs right only when the human's correction of one of them is in its
prompt: a judge that learns from the examples. The corrections come from the saved version's dev run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from align_mcp.core.cards import card_markdown
from align_mcp.core.comparison import JudgeModel
from align_mcp.core.few_shot import Correction, FewShotSettings, parse_settings, render_block, select
from align_mcp.core.models import ScoreType
from align_mcp.core.templates import fill_few_shot, render
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators, few_shot, holdout, ingest, queues
from align_mcp.engine.card import judge_card
from align_mcp.engine.compare import compare_models
from align_mcp.errors import InvalidInput
from align_mcp.optimize import proposals
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer, Reply, prompt_text, section, verdict, when_shown

pytestmark = pytest.mark.anyio

RULE = "TRICKY-RULE: a tricky answer is wrong however confident it sounds."
FEW_SHOT_PROMPT = (
    "Grade the answer for correctness: 1 pass, 0 fail.\n\n{{few_shot_examples}}\n\n"
    "<inputs>\n{{inputs}}\n</inputs>\n\n<outputs>\n{{outputs}}\n</outputs>\n"
)


def make_runs() -> list[dict[str, Any]]:
    """30 runs: 10 tricky (human 0, the judge says 1 unless taught), 10 plain fails and 10 plain passes."""
    runs = []
    for i in range(30):
        kind = "TRICKY" if i < 10 else "FAIL" if i < 20 else "PASS"
        score = 1 if kind == "PASS" else 0
        comment = RULE if kind == "TRICKY" else f"plain {kind.lower()}"
        runs.append(
            {
                "id": f"run-{i:02d}",
                "inputs": {"question": f"question {i:02d}"},
                "outputs": {"answer": f"ans-run-{i:02d} {kind}"},
                "feedback": {"correctness": {"score": score, "comment": comment}},
            }
        )
    return runs


def plain(body: dict[str, Any]) -> Reply:
    judged = section(prompt_text(body), "outputs") or ""
    return verdict(1 if "PASS" in judged else 0)


LEARNER = when_shown([("TRICKY", "TRICKY-RULE", verdict(0), verdict(1))], plain)


@pytest.fixture
def fs_store(store: Store, judge: FakeJudgeServer) -> Store:
    ingest.import_runs(store, "app", runs=make_runs())
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    judge.responder = LEARNER
    return store


def agreement(report: Any) -> float:
    value = report.run.metrics.agreement.value
    assert value is not None
    return float(value)


async def test_few_shot_draft_raises_dev_and_test_agreement_and_never_shows_a_test_run(
    fs_store: Store, judge: FakeJudgeServer
) -> None:
    v1_dev = await align.run_alignment(fs_store, "correctness")  # the draft equals v1: v1's dev run
    test_ids = holdout.split_ids(fs_store, "correctness", "test")
    assert v1_dev.run.split == "dev" and test_ids
    evaluators.edit_draft(fs_store, "correctness", prompt=FEW_SHOT_PROMPT, few_shot_settings="k=2")

    dev = await align.run_alignment(fs_store, "correctness")
    test = await align.run_alignment(fs_store, "correctness", split="test")
    v1_test = await align.run_alignment(fs_store, "correctness", prompt=1, split="test")

    assert agreement(dev) == 1.0 > agreement(v1_dev)
    assert agreement(test) == 1.0 > agreement(v1_test)
    bodies = judge.chat_bodies
    assert any(RULE in prompt_text(b) for b in bodies)
    for body in bodies:
        text = prompt_text(body)
        shown = text[: text.rindex("<inputs>")]  # everything before the example being judged
        leaked = [rid for rid in test_ids if f"ans-{rid}" in shown]
        assert leaked == [], f"test-split runs {leaked} appear in a prompt"


async def test_the_block_is_the_same_for_every_example_and_sits_before_it(fs_store: Store) -> None:
    await align.run_alignment(fs_store, "correctness")
    evaluators.edit_draft(fs_store, "correctness", prompt=FEW_SHOT_PROMPT)
    text = evaluators.prompt_for(fs_store, "correctness", "draft")[1]
    dev = holdout.split_ids(fs_store, "correctness", "dev")
    selection = few_shot.choose(fs_store, "correctness")

    assert set(selection.run_ids) <= dev and len(selection.run_ids) == 5  # k defaults to 5
    first = render(text, {"inputs": {"q": "one"}, "outputs": {"a": "A"}})
    second = render(text, {"inputs": {"q": "two"}, "outputs": {"a": "B"}})
    prefix = first[: first.index("<inputs>")]
    assert second.startswith(prefix) and RULE in prefix
    assert prefix.count("<example") == 5 and "Expert score: 0" in prefix


async def test_saving_freezes_the_examples_into_the_version(fs_store: Store) -> None:
    await align.run_alignment(fs_store, "correctness")
    evaluators.edit_draft(fs_store, "correctness", prompt=FEW_SHOT_PROMPT, few_shot_settings="k=1")
    saved = evaluators.save_version(fs_store, "correctness", "few-shot")
    frozen = fs_store.version_few_shot("correctness", saved.version)
    assert frozen is not None and len(frozen.run_ids) == 1
    before = evaluators.prompt_for(fs_store, "correctness", saved.version)[1]

    # The human now explains the shown correction differently: the draft follows, the version does not.
    queues.submit_label(fs_store, "correctness", frozen.run_ids[0], 0, comment="A NEW EXPLANATION")
    evaluators.edit_draft(fs_store, "correctness", few_shot_settings="strategy=random,seed=3")

    assert evaluators.prompt_for(fs_store, "correctness", saved.version)[1] == before
    assert frozen.block in before and "A NEW EXPLANATION" not in before
    assert any(
        n.text
        == f"Its few-shot examples are frozen (k=1,strategy=recent): 1 example(s) ({frozen.run_ids[0]}). "
        f"v{saved.version} always shows these, whatever is labeled later."
        for n in saved.notes
    )
    assert evaluators.get(fs_store, "correctness").draft_differs  # the strategy changed since v2


async def test_k_above_the_corrections_available_is_refused_naming_how_many(fs_store: Store) -> None:
    aid = (await align.run_alignment(fs_store, "correctness")).run.id
    available = few_shot.corrections(fs_store, "correctness").items
    n = len(available)
    assert 0 < n < 9

    with pytest.raises(InvalidInput) as e:
        evaluators.edit_draft(fs_store, "correctness", few_shot_settings="k=9")
    assert str(e.value) == (
        f"Few-shot k=9 is more than the {n} correction(s) 'correctness' has (dev runs where v1's judge and the "
        f"human disagree, alignment run {aid}). Use k={n} or less, or label more runs the judge gets wrong."
    )


async def test_the_variable_without_corrections_says_so_and_shows_no_empty_block(fs_store: Store) -> None:
    update = evaluators.edit_draft(fs_store, "correctness", prompt=FEW_SHOT_PROMPT)
    text = evaluators.prompt_for(fs_store, "correctness", "draft")[1]

    assert update.notes[0].text == (
        "{{few_shot_examples}} shows no examples yet: they come from the dev split only, and 'correctness' has no "
        "dev/test split yet. Label more runs of both classes (the split is made at the next alignment run once "
        "there are enough)."
    )
    assert text.startswith("Grade the answer for correctness: 1 pass, 0 fail.\n\n\n\n<inputs>")
    assert "(missing)" not in render(text, {"inputs": {}, "outputs": {}})

    report = await align.run_alignment(fs_store, "correctness")  # the split exists now, no version is aligned
    assert report.notes[0].text == (
        "{{few_shot_examples}} shows no examples yet: they are the dev runs where the judge of a saved version "
        "and the human disagree, and no saved version of 'correctness' has a completed alignment run. Judge the "
        "reference set with v1 first."
    )


def test_the_variable_must_come_before_the_example_and_only_once(fs_store: Store) -> None:
    after = "Grade.\n\n<outputs>{{outputs}}</outputs>\n\n{{few_shot_examples}}"
    with pytest.raises(InvalidInput) as e:
        evaluators.edit_draft(fs_store, "correctness", prompt=after)
    assert str(e.value) == (
        "{{few_shot_examples}} comes after {{outputs}}: put it before every variable of the example, so all the "
        "judge's requests share the prompt up to the example (and providers can cache it)."
    )
    with pytest.raises(InvalidInput, match=r"shows \{\{few_shot_examples\}\} 2 times"):
        evaluators.edit_draft(
            fs_store, "correctness", prompt="{{few_shot_examples}}{{few_shot_examples}}{{outputs}}"
        )


def test_settings_parse_and_bad_settings_name_the_fix() -> None:
    assert parse_settings("k=3, strategy=random, seed=7") == FewShotSettings(k=3, strategy="random", seed=7)
    assert parse_settings("strategy=cover", FewShotSettings(k=2)) == FewShotSettings(k=2, strategy="cover")
    with pytest.raises(InvalidInput) as e:
        parse_settings("n=3")
    assert str(e.value) == (
        "Few-shot setting 'n=3' is not understood: write k=N, strategy=recent|random|cover and seed=N, separated "
        "by commas (e.g. 'k=5,strategy=random,seed=1')."
    )
    with pytest.raises(
        InvalidInput, match=r"^Few-shot strategy 'best' is not one of recent, random, cover\.$"
    ):
        parse_settings("strategy=best")
    with pytest.raises(InvalidInput, match=r"^Few-shot k=0 must be from 1 to 50\.$"):
        parse_settings("k=0")


def correction(rid: str, minutes: int) -> Correction:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return Correction(rid, {"inputs": {"q": rid}, "outputs": {"a": "{{inputs}}"}}, 0, 1, f"why {rid}", at)


def test_strategies_pick_recent_seeded_random_and_one_per_failure_mode() -> None:
    items = [correction(f"r{i}", i) for i in range(6)]
    recent = select(items, FewShotSettings(k=2))
    rand = select(items, FewShotSettings(k=3, strategy="random", seed=4))
    cover = select(items, FewShotSettings(k=3, strategy="cover"), modes=[["r0", "r1"], ["r2"]])

    assert [c.run_id for c in recent] == ["r5", "r4"]
    assert rand == select(list(reversed(items)), FewShotSettings(k=3, strategy="random", seed=4))
    assert [c.run_id for c in cover] == ["r1", "r2", "r5"]


def test_example_text_that_looks_like_a_variable_stays_literal() -> None:
    block = render_block([correction("r1", 0)])
    text = fill_few_shot("{{few_shot_examples}}\n<outputs>{{outputs}}</outputs>", block)

    shown = render(text, {"inputs": {"q": "SECRET"}, "outputs": {"a": "judged"}})
    assert "SECRET" not in shown and '"a": "{ {inputs}}"' in shown
    assert json.dumps("why r1")[1:-1] in shown


async def test_mcp_update_draft_sets_few_shot(fs_store: Store, client: Any) -> None:
    await align.run_alignment(fs_store, "correctness")
    with anyio.fail_after(10):
        result = await client.call_tool(
            "update_draft",
            {"evaluator": "correctness", "prompt": FEW_SHOT_PROMPT, "few_shot": "k=2,strategy=cover"},
        )
    assert not result.is_error, result
    assert fs_store.draft_few_shot("correctness") == FewShotSettings(k=2, strategy="cover")
    first = json.dumps(result.structured_content["notes"][0])
    assert "strategy=cover takes one example per failure mode of alignment run " in first


async def test_propose_fewshot_searches_on_dev_checks_test_and_applies_only_when_asked(
    fs_store: Store,
) -> None:
    await align.run_alignment(fs_store, "correctness")
    draft = evaluators.get(fs_store, "correctness").draft

    proposal = await proposals.propose_prompt(fs_store, "correctness", mode="fewshot", budget=200)

    assert proposal.changed and proposal.mode == "fewshot"
    assert proposal.few_shot == "k=1,strategy=recent"  # the cheapest selection that fixes every tricky run
    assert (
        "{{few_shot_examples}}" in proposal.prompt
        and "few-shot settings: k=1,strategy=recent" in proposal.diff
    )
    assert proposal.dev.after.agreement.value == 1.0 > (proposal.dev.before.agreement.value or 0)
    assert proposal.test.after.agreement.value == 1.0 > (proposal.test.before.agreement.value or 0)
    assert proposal.budget.used <= 200
    assert evaluators.get(fs_store, "correctness").draft == draft  # never applied implicitly

    proposals.apply_proposal(fs_store, "correctness", proposal.id)
    assert evaluators.get(fs_store, "correctness").draft == proposal.prompt
    assert fs_store.draft_few_shot("correctness") == FewShotSettings(k=1)


async def test_propose_fewshot_without_corrections_says_why(fs_store: Store) -> None:
    await align.run_alignment(fs_store, "correctness", prompt=1, split="dev")
    for i in range(10):  # the human comes round to the judge on every tricky run: nothing left to correct
        queues.submit_label(fs_store, "correctness", f"run-{i:02d}", 1)
    await align.run_alignment(fs_store, "correctness", prompt=1, split="dev")

    with pytest.raises(InvalidInput) as e:
        await proposals.propose_prompt(fs_store, "correctness", mode="fewshot", budget=200)
    assert str(e.value).startswith(
        "mode='fewshot' picks examples from the corrections of 'correctness', and there are none: "
        "{{few_shot_examples}} shows no examples: v1's judge agrees with the human on every judged dev example "
        "of alignment run "
    )


async def test_cli_draft_edit_sets_few_shot_and_refuses_a_k_above_the_corrections(
    fs_store: Store, db_path: Any, tmp_path: Any
) -> None:
    from click.testing import CliRunner

    from align_mcp.cli import main

    aid = (await align.run_alignment(fs_store, "correctness")).run.id
    n = len(few_shot.corrections(fs_store, "correctness").items)
    prompt = tmp_path / "prompt.md"
    prompt.write_text(FEW_SHOT_PROMPT, encoding="utf-8")

    def cli(*args: str) -> Any:
        return CliRunner().invoke(main, ["--db", str(db_path), *args], catch_exceptions=False)

    done = cli(
        "draft", "edit", "correctness", "--file", str(prompt), "--few-shot", "k=2,strategy=random,seed=1"
    )
    assert done.exit_code == 0, done.output
    assert "few-shot settings: none -> k=2,strategy=random,seed=1" in done.output
    shown = json.loads(cli("draft", "show", "correctness", "--json").output)
    assert shown["few_shot"] == "k=2,strategy=random,seed=1"

    refused = cli("draft", "edit", "correctness", "--few-shot", "k=40")
    assert refused.exit_code != 0
    assert (
        f"Few-shot k=40 is more than the {n} correction(s) 'correctness' has (dev runs where v1's judge and the "
        f"human disagree, alignment run {aid})." in " ".join(refused.output.split())
    )


# ---- with pairwise evaluators and juries ----------------------------------------------------------------------

PAIRWISE_FEW_SHOT = (
    "Which answer is better? Score A, B or tie.\n\n{{few_shot_examples}}\n\n<inputs>\n{{inputs}}\n</inputs>\n\n"
    "<output_a>\n{{outputs_a}}\n</output_a>\n\n<output_b>\n{{outputs_b}}\n</output_b>\n"
)


def pairwise_runs() -> list[dict[str, Any]]:
    """24 pairs, the human preferring A in half and B in the other half; every output names its run."""
    return [
        {
            "id": f"pair-{i:02d}",
            "inputs": {"question": f"question {i:02d}"},
            "outputs_a": {"answer": f"first of pair-{i:02d}"},
            "outputs_b": {"answer": f"second of pair-{i:02d}"},
            "feedback": {"preference": {"score": "A" if i % 2 else "B", "comment": f"why pair-{i:02d}"}},
        }
        for i in range(24)
    ]


async def test_a_pairwise_block_shows_both_outputs_and_the_experts_verdict_and_never_a_test_run(
    store: Store, judge: FakeJudgeServer
) -> None:
    ingest.import_runs(store, "pairs", runs=pairwise_runs())
    evaluators.create(store, "preference", ScoreType(kind="pairwise", ties=True))
    judge.responder = lambda body: verdict(
        "A"
    )  # always the output shown first: a tie once both orders combine
    v1 = await align.run_alignment(store, "preference")
    found = few_shot.corrections(store, "preference")
    results = {r.run_id: r for r in store.alignment_results(v1.run.id)}
    test_ids = holdout.split_ids(store, "preference", "test")

    # The corrections are against the combined verdict: a human "A" is corrected although A-first said "A".
    assert found.items and {c.judge_score for c in found.items} == {"tie"}
    human_a = [c for c in found.items if c.human_score == "A"]
    assert human_a and all(results[c.run_id].orders.original == "A" for c in human_a)  # type: ignore[union-attr]
    assert not {c.run_id for c in found.items} & test_ids

    evaluators.edit_draft(store, "preference", prompt=PAIRWISE_FEW_SHOT, few_shot_settings="k=3")
    selection = few_shot.choose(store, "preference")
    judge.requests.clear()
    await align.run_alignment(store, "preference")
    await align.run_alignment(store, "preference", split="test")

    by_id = {r["id"]: r for r in pairwise_runs()}
    assert len(selection.run_ids) == 3
    for rid in selection.run_ids:
        run = by_id[rid]
        shown = (
            f"Output A:\n{json.dumps(run['outputs_a'], indent=2)}\n\n"
            f"Output B:\n{json.dumps(run['outputs_b'], indent=2)}\n\n"
            f"Expert score: {json.dumps(run['feedback']['preference']['score'])}\nExpert explanation: why {rid}\n"
        )
        assert shown in selection.block
    bodies = judge.chat_bodies  # the draft's, and v1's on test as the draft's baseline there
    drafts = [b for b in bodies if "Which answer is better?" in prompt_text(b)]
    assert len(drafts) == 2 * len(results) + 2 * len(test_ids)  # both orders of every dev and test pair
    for body in bodies:
        text = prompt_text(body)
        prefix = text[: text.rindex("<inputs>")]  # everything before the example being judged
        assert body not in drafts or selection.block in prefix
        leaked = [rid for rid in test_ids if rid in prefix]
        assert leaked == [], f"test-split runs {leaked} appear in a prompt"


OWN_PROMPT = "MEMBER-OWN: grade the answer, 1 pass, 0 fail.\n\n{{few_shot_examples}}\n\n<outputs>\n{{outputs}}\n</outputs>\n"


async def test_jury_members_see_the_single_judges_prompt_and_a_member_prompt_gets_the_same_block(
    fs_store: Store, judge: FakeJudgeServer
) -> None:
    await align.run_alignment(fs_store, "correctness")  # v1's dev run: where the corrections come from
    evaluators.edit_draft(fs_store, "correctness", prompt=FEW_SHOT_PROMPT, few_shot_settings="k=2")
    single = evaluators.prompt_for(fs_store, "correctness", "draft")[1]
    members = [{"model": "m1"}, {"model": "m2"}, {"model": "m3", "prompt": OWN_PROMPT}]
    evaluators.edit_draft(fs_store, "correctness", judge={"members": members, "combine": "majority"})
    block = few_shot.choose(fs_store, "correctness").block
    judge.requests.clear()

    report = await align.run_alignment(fs_store, "correctness")

    assert report.jury is not None and block and block in single
    shared_prefix = single[: single.index("<inputs>")]
    bodies = judge.chat_bodies
    for body in bodies:
        text = prompt_text(body)
        assert "(missing)" not in text and "(none)" not in text  # what an unfilled variable reads
        if body["model"] == "m3":
            assert "MEMBER-OWN" in text and block in text and shared_prefix not in text
        else:
            assert shared_prefix in text and "MEMBER-OWN" not in text
    assert {b["model"] for b in bodies} == {"m1", "m2", "m3"}

    # Saved, the version freezes the block for the member's own prompt too.
    saved = evaluators.save_version(fs_store, "correctness", "jury with examples")
    frozen = fs_store.version_few_shot("correctness", saved.version)
    judge_settings = evaluators.prompt_for(fs_store, "correctness", saved.version)[2]
    own = judge_settings.members[2].prompt
    assert (
        frozen is not None and own is not None and frozen.block in own and "{{few_shot_examples}}" not in own
    )


async def test_propose_fewshot_for_a_jury_judges_every_selection_with_its_members(
    fs_store: Store, judge: FakeJudgeServer
) -> None:
    await align.run_alignment(fs_store, "correctness")  # v1 (one judge) on dev: the corrections
    jury = {"members": [{"model": "m1"}, {"model": "m2"}, {"model": "m3"}], "combine": "majority"}
    evaluators.edit_draft(fs_store, "correctness", judge=jury)
    judge.requests.clear()

    proposal = await proposals.propose_prompt(fs_store, "correctness", mode="fewshot", budget=1000)

    assert proposal.changed and proposal.test.after.agreement.value == 1.0
    assert {b["model"] for b in judge.chat_bodies} == {"m1", "m2", "m3"}


async def test_propose_fewshot_refuses_a_member_whose_own_prompt_shows_the_examples(fs_store: Store) -> None:
    await align.run_alignment(fs_store, "correctness")
    members = [{"model": "m1"}, {"model": "m2", "prompt": OWN_PROMPT}]
    evaluators.edit_draft(fs_store, "correctness", judge={"members": members, "combine": "majority"})

    with pytest.raises(InvalidInput) as e:
        await proposals.propose_prompt(fs_store, "correctness", mode="fewshot", budget=1000)
    assert str(e.value) == (
        "mode='fewshot' tries selections of examples in the shared prompt of 'correctness', but jury member(s) "
        "m2 show {{few_shot_examples}} in their own prompt, which the search cannot vary with it. Take the "
        "variable out of the members' own prompts (or their own prompts out), then propose again."
    )


async def test_every_compared_model_is_shown_the_same_examples(
    fs_store: Store, judge: FakeJudgeServer
) -> None:
    await align.run_alignment(fs_store, "correctness")
    evaluators.edit_draft(fs_store, "correctness", prompt=FEW_SHOT_PROMPT, few_shot_settings="k=2")
    block = few_shot.choose(fs_store, "correctness").block
    judge.requests.clear()

    result = await compare_models(fs_store, "correctness", [JudgeModel(model="m1"), JudgeModel(model="m2")])

    bodies = judge.chat_bodies
    assert block and {b["model"] for b in bodies} == {"m1", "m2"}
    assert all(block in prompt_text(b) for b in bodies)
    assert [r.metrics.agreement.value for r in result.models if r.metrics] == [1.0, 1.0]


async def test_the_judge_card_names_the_examples_a_version_froze(fs_store: Store) -> None:
    await align.run_alignment(fs_store, "correctness")
    evaluators.edit_draft(fs_store, "correctness", prompt=FEW_SHOT_PROMPT, few_shot_settings="k=2")
    saved = evaluators.save_version(fs_store, "correctness", "few-shot")
    frozen = fs_store.version_few_shot("correctness", saved.version)

    card = judge_card(fs_store, "correctness")

    assert frozen is not None and card.few_shot == frozen
    assert (
        f"## Few-shot examples\n\nFrozen when v{saved.version} was saved (k=2,strategy=recent): "
        f"{', '.join(frozen.run_ids)}. They fill {{{{few_shot_examples}}}} in the prompt below.\n"
    ) in card_markdown(card)


def pairwise_learner(body: dict[str, Any]) -> Reply:
    """A pairwise judge that always picks the output shown first (a tie once both orders combine) until the prompt
    shows it an expert's example; then it picks the output the human prefers, wherever it is shown."""
    text = prompt_text(body)
    if "Expert score" not in text:
        return verdict("A")
    first = section(text, "output_a") or ""
    rid = first[first.index("pair-") : first.index("pair-") + 7]
    human = "A" if int(rid[-2:]) % 2 else "B"
    run_a_first = "first of" in first
    return verdict("A" if (human == "A") == run_a_first else "B")


async def test_propose_fewshot_on_a_pairwise_evaluator_judges_both_orders_and_finds_the_examples(
    store: Store, judge: FakeJudgeServer
) -> None:
    ingest.import_runs(store, "pairs", runs=pairwise_runs())
    evaluators.create(store, "preference", ScoreType(kind="pairwise", ties=True))
    evaluators.update_draft(store, "preference", PAIRWISE_FEW_SHOT.replace("{{few_shot_examples}}\n\n", ""))
    evaluators.save(store, "preference")
    judge.responder = pairwise_learner
    await align.run_alignment(store, "preference")  # v2 on dev: every verdict a tie, every run a correction
    judge.requests.clear()

    proposal = await proposals.propose_prompt(store, "preference", mode="fewshot", budget=1000)

    assert proposal.changed and proposal.few_shot == "k=1,strategy=recent"
    assert (proposal.dev.before.agreement.value, proposal.dev.after.agreement.value) == (0.0, 1.0)
    assert (proposal.test.before.agreement.value, proposal.test.after.agreement.value) == (0.0, 1.0)
    asked = [section(prompt_text(b), "inputs") for b in judge.chat_bodies]
    assert all(asked.count(q) % 2 == 0 for q in asked)  # every pair judged in both orders
