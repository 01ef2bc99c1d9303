"""Tools for the optimizer: failure modes, a proposed prompt checked on held-out runs, and applying it."""

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from align_mcp.core.models import (
    FailureAnalysis,
    Model,
    ModeOutcome,
    OptimizerBudget,
    Proposal,
    SplitComparison,
)
from align_mcp.core.views import DraftUpdate, ProposalList
from align_mcp.mcp.render import SteadyProgress
from align_mcp.mcp.state import store_of
from align_mcp.mcp.tools.arguments import AlignmentRunId, EvaluatorName
from align_mcp.mcp.tools.registry import tool


@tool("Analyze failure modes", open_world=True)
async def analyze_failures(
    evaluator: EvaluatorName,
    alignment_run: AlignmentRunId = None,
    use_llm: Annotated[
        bool,
        Field(description="One judge-model call groups them; false: by direction and comment words"),
    ] = True,
    *,
    ctx: Context,
) -> FailureAnalysis:
    """Group an alignment run's misaligned dev examples into named failure modes (what the judge gets wrong,
    with example ids); test examples are never included. Use it before editing the draft."""
    from align_mcp.optimize.failure_modes import analyze_failures as analyze

    return await analyze(store_of(ctx), evaluator, alignment_run, use_llm)


class ProposalBrief(Model):
    """An optimizer proposal as the conversation needs it: whether the prompt changed, the diff, the scores.
    The full old and new prompts are in the resource `align://proposals/{id}`."""

    id: int
    evaluator: str
    mode: Literal["gepa", "reflect", "fewshot"]
    changed: bool = Field(
        description="False when no candidate beat the draft; the proposal is then the draft"
    )
    diff: str = Field(description="Unified diff of the proposal against the draft it started from")
    resource: str = Field(description="The resource holding the full proposed and original prompts")
    addresses: list[ModeOutcome]
    dev: SplitComparison
    test: SplitComparison = Field(description="Examples the optimizer never saw: the honest estimate")
    verdict: str
    budget: OptimizerBudget
    candidates: int
    seen_examples: int
    alignment_run: int
    warnings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    few_shot: str | None = Field(
        default=None, description="mode fewshot: the few-shot settings applying sets"
    )

    @classmethod
    def of(cls, proposal: Proposal) -> "ProposalBrief":
        fields = {name: getattr(proposal, name) for name in cls.model_fields if name != "resource"}
        return cls(**fields, resource=f"align://proposals/{proposal.id}")


@tool("Propose a revised prompt", open_world=True)
async def propose_prompt(
    evaluator: EvaluatorName,
    mode: Annotated[
        Literal["gepa", "reflect", "fewshot"],
        Field(
            description="gepa: DSPy's GEPA search (optimize extra); reflect: one rewrite, for small budgets; "
            "fewshot: pick examples"
        ),
    ] = "gepa",
    budget: Annotated[
        int,
        Field(
            ge=1,
            le=100_000,
            description="Most model requests, retries and re-asks included (cache hits are free)",
        ),
    ] = 300,
    *,
    ctx: Context,
) -> ProposalBrief:
    """Propose a revised judge prompt from the draft's dev failures, checked on the held-out test split; reports
    progress. Returns whether it changed, the diff and scores; full prompts: resource align://proposals/{id}.
    Nothing is applied: show the user."""
    from align_mcp.optimize.proposals import propose_prompt as propose

    proposal = await propose(store_of(ctx), evaluator, mode, budget, on_progress=SteadyProgress(ctx))
    return ProposalBrief.of(proposal)


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
