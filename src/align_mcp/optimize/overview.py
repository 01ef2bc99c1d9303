"""What the optimizer holds for an evaluator: its proposals listed, and one proposal copied into the draft."""

from __future__ import annotations

from align_mcp.core.models import Note
from align_mcp.core.views import DraftUpdate, ProposalList
from align_mcp.engine import evaluators
from align_mcp.errors import NextStep
from align_mcp.optimize import proposals
from align_mcp.store import Store


def proposal_list(store: Store, evaluator: str) -> ProposalList:
    """An evaluator's proposals, oldest first, with dev and test agreement before and after each."""
    items = proposals.list_proposals(store, evaluator)
    notes = (
        []
        if items
        else [
            Note(text="No proposals yet.", next_steps=[NextStep("propose_prompt", {"evaluator": evaluator})])
        ]
    )
    return ProposalList(evaluator=evaluator, proposals=items, notes=notes)


def apply_to_draft(store: Store, evaluator: str, proposal_id: int, force: bool = False) -> DraftUpdate:
    """Copy a proposal into the draft (nothing is saved) and return the draft's diff against the last version."""
    proposals.apply_proposal(store, evaluator, proposal_id, force)
    return evaluators.draft_update(store, evaluator)
