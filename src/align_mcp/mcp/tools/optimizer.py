"""Tools for the optimizer: failure modes, a proposed prompt checked on held-out runs, and applying it."""

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from align_mcp.core.models import FailureAnalysis, Proposal
from align_mcp.core.views import DraftUpdate, ProposalList
from align_mcp.mcp.render import ProgressReporter
from align_mcp.mcp.state import store_of
from align_mcp.mcp.tools.arguments import AlignmentRunId, EvaluatorName
from align_mcp.mcp.tools.registry import tool


@tool("Analyze failure modes", open_world=True)
async def analyze_failures(
    evaluator: EvaluatorName,
    alignment_run: AlignmentRunId = None,
    use_llm: Annotated[
        bool,
        Field(
            description="Let the judge model group the cases (one call); false groups them by direction and "
            "recurring words in the human comments, with no model call"
        ),
    ] = True,
    *,
    ctx: Context,
) -> FailureAnalysis:
    """Group the misaligned dev examples of an alignment run into a few named failure modes (what the judge gets
    wrong, with example ids). Held-out test examples are never included. Use it before editing the draft."""
    from align_mcp.optimize.failure_modes import analyze_failures as analyze

    return await analyze(store_of(ctx), evaluator, alignment_run, use_llm)


@tool("Propose a revised prompt", open_world=True)
async def propose_prompt(
    evaluator: EvaluatorName,
    mode: Annotated[
        Literal["gepa", "reflect"],
        Field(
            description="gepa: a search with DSPy's GEPA optimizer (needs the optimize extra); reflect: one "
            "rewrite from the failure modes, for small budgets"
        ),
    ] = "gepa",
    budget: Annotated[
        int,
        Field(
            ge=1,
            le=100_000,
            description="The most model requests it may make: every request counts, retries and re-asks "
            "included (cache hits are free)",
        ),
    ] = 300,
    *,
    ctx: Context,
) -> Proposal:
    """Let the optimizer propose a revised judge prompt from the draft's dev failures, checked on the held-out
    test split it never saw. Reports progress. The proposal is NOT applied: show it to the user; apply_proposal
    copies it into the draft only when they agree, and only save_prompt makes it a version."""
    from align_mcp.optimize.proposals import propose_prompt as propose

    return await propose(store_of(ctx), evaluator, mode, budget, on_progress=ProgressReporter(ctx))


@tool("List proposals", read_only=True)
def list_proposals(evaluator: EvaluatorName, *, ctx: Context) -> ProposalList:
    """An evaluator's optimizer proposals, oldest first, with dev and test agreement before and after each."""
    from align_mcp.optimize.overview import proposal_list

    return proposal_list(store_of(ctx), evaluator)


@tool("Apply a proposal to the draft", destructive=True, idempotent=True)
def apply_proposal(
    evaluator: EvaluatorName,
    proposal_id: Annotated[
        int, Field(description="The proposal's id, from propose_prompt or list_proposals")
    ],
    force: Annotated[
        bool, Field(description="Overwrite draft edits made after the proposal (they are lost)")
    ] = False,
    *,
    ctx: Context,
) -> DraftUpdate:
    """Copy an optimizer proposal into the evaluator's draft, when the user asked for it. Nothing is saved: test
    it with run_alignment, and save_prompt makes it a version."""
    from align_mcp.optimize.overview import apply_to_draft

    return apply_to_draft(store_of(ctx), evaluator, proposal_id, force)
