"""The judge card (engine/card.py, core/cards.py): a saved version's prompt and judge, its test-split figures with
intervals and how often test was looked at, label counts and balance, inter-annotator κ, and dates."""

from __future__ import annotations

from typing import Any

import pytest

from align_mcp.core.cards import card_markdown
from align_mcp.core.models import JudgeSettings, ScoreType
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators
from align_mcp.engine.card import judge_card
from align_mcp.engine.ingest import import_runs
from align_mcp.engine.queues import submit_labels
from align_mcp.engine.reviews import request_review
from align_mcp.errors import NotFound
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer
from test_pairwise import NAME as PAIRWISE_NAME
from test_pairwise import env_for, first_shown, seed

pytestmark = pytest.mark.anyio
NAME = "correctness"


async def test_a_card_holds_the_version_its_test_figures_labels_and_agreement(
    store: Store, support_runs: list[dict[str, Any]], judge: FakeJudgeServer
) -> None:
    evaluators.create(store, NAME, ScoreType(kind="binary"), judge=JudgeSettings(max_retries=0))
    import_runs(store, "support", runs=support_runs)
    evaluators.update_draft(store, NAME, evaluators.get(store, NAME).draft + "\nEvery figure must match ```.")
    evaluators.save(store, NAME, "figures rule")
    first = [r["id"] for r in support_runs[:4]]
    request_review(store, NAME, first)
    submit_labels(
        store,
        NAME,
        [{"run_id": r["id"], "score": r["feedback"][NAME]["score"]} for r in support_runs[:4]],
        "second",
    )
    dev = await align.run_alignment(store, NAME, 2, split="dev")
    test = await align.run_alignment(store, NAME, 2, split="test")

    card = judge_card(store, NAME)

    assert (card.version, card.message, card.model) == (2, "figures rule", "simulated-judge")
    assert card.prompt == evaluators.get_version(store, NAME, 2).prompt
    assert card.test is not None and card.test.alignment_run == test.run.id
    assert card.test.metrics == test.run.metrics
    assert card.dev is not None and card.dev.metrics == dev.run.metrics
    assert card.test_evaluations == 1
    assert card.balance.total == 46 and card.labels_by_rubric == {"1": 42, "2": 4}
    assert card.stale_labels == 42
    assert card.annotator_agreement is not None and (
        card.annotator_agreement.n,
        card.annotator_agreement.kappa,
    ) == (4, 1.0)
    assert card.notes == []
    text = card_markdown(card)
    m = test.run.metrics
    assert m is not None and m.agreement.ci is not None and m.agreement.value is not None
    assert text.startswith(f"# Judge card: {NAME} v2\n")
    assert "| test split looked at | 1 time(s) |" in text
    assert (
        f"| agreement | {m.agreement.value:.1%} ({m.agreement.k}/{m.agreement.n}) | "
        f"{m.agreement.ci.low:.1%} – {m.agreement.ci.high:.1%} |"
    ) in text
    assert "- By rubric: 42 under v1, 4 under v2; 42 possibly stale (instructions changed since)." in text
    assert "- Inter-annotator agreement: κ = 1.00, 100.0% (4/4) agree, over 4 doubly labeled run(s)." in text
    assert "\n````text\n" + card.prompt + "\n````\n" in text  # a fence longer than the prompt's own backticks


def test_a_card_without_a_test_run_says_so_and_without_a_version_is_refused(store: Store) -> None:
    evaluators.create(store, NAME, ScoreType(kind="binary"))

    card = judge_card(store, NAME)

    assert (card.test, card.dev, card.annotator_agreement) == (None, None, None)
    assert card.notes == [
        "No completed test-split run of v1 yet: judge v1 on the held-out test split to put figures on this card "
        "that no prompt edit has seen."
    ]
    assert "- Inter-annotator agreement: no blind second reviews yet." in card_markdown(card)
    with pytest.raises(NotFound) as e:
        judge_card(store, NAME, 3)
    assert str(e.value) == f"Evaluator {NAME!r} has no version 3. Known: v1."


async def test_a_pairwise_card_shows_each_orders_agreement_and_the_position_consistency(store: Store) -> None:
    seed(store)  # 8 labeled pairs (no holdout yet): the card shows the all-labels run
    with FakeJudgeServer(responder=first_shown) as srv:
        run = await align.run_alignment(store, PAIRWISE_NAME, 1, env=env_for(srv))

    card = judge_card(store, PAIRWISE_NAME)

    assert card.dev is not None and card.dev.metrics == run.run.metrics
    p = card.dev.metrics.pairwise
    assert p is not None and (p.original.k, p.swapped.k, p.consistency.k, p.consistency.n) == (4, 2, 0, 8)
    text = card_markdown(card)
    assert "| agreement, A shown first | 50.0% (4/8) |" in text
    assert "| agreement, B shown first | 25.0% (2/8) |" in text
    assert "| mean of the two orders | 37.5% | — |" in text
    assert "| same winner in both orders | 0.0% (0/8) |" in text
    assert (
        "Agreement and κ above are of the combined verdict: the winner both orders named, else a tie." in text
    )
