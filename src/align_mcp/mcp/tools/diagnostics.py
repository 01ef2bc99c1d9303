"""Tools for diagnostics: triage, blind second reviews, judge self-consistency, label suggestions, pass rate."""

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from align_mcp.core.models import (
    ConsistencyReport,
    PassRateReport,
    ReviewItem,
    ReviewReport,
    ReviewRequestReport,
    SuggestionReport,
    TriageReport,
)
from align_mcp.mcp.render import ProgressReporter
from align_mcp.mcp.state import store_of
from align_mcp.mcp.tools.arguments import AlignmentRunId, EvaluatorName, RunIds, ScoreValue
from align_mcp.mcp.tools.registry import tool


@tool("Triage disagreements", open_world=True)
async def triage_disagreements(
    evaluator: EvaluatorName,
    alignment_run: AlignmentRunId = None,
    run_ids: Annotated[
        list[str] | None, Field(description="Only these misaligned dev cases (e.g. ones left unclassified)")
    ] = None,
    limit: Annotated[int, Field(ge=1, le=200, description="Most cases to classify in this call")] = 50,
    *,
    ctx: Context,
) -> TriageReport:
    """Classify each misaligned dev case as judge_error (the judge misapplied the rubric), label_error (the human
    label looks wrong: consider request_review) or rubric_gap (the rubric does not decide it: add an instruction),
    each with a short reason. Uses the judge model, one call per 10 cases. Test examples are never included."""
    from align_mcp.diagnose.triage import triage

    return await triage(
        store_of(ctx),
        evaluator,
        alignment_run=alignment_run,
        run_ids=run_ids,
        limit=limit,
        on_progress=ProgressReporter(ctx),
    )


@tool("Request a blind second review")
def request_review(
    evaluator: EvaluatorName,
    run_ids: RunIds,
    reason: Annotated[str | None, Field(max_length=2000, description="Why the label is doubted")] = None,
    *,
    ctx: Context,
) -> ReviewRequestReport:
    """Send doubted labels back to the queue for a blind second review by a different labeler (next_items never
    shows the first label). Agreeing reviews keep the label; disagreeing ones leave the reference set until
    adjudicate_label settles them. Every label stays in the history."""
    from align_mcp.engine.reviews import request_review as request

    return request(store_of(ctx), evaluator, run_ids, reason)


@tool("Adjudicate a label", destructive=True, idempotent=True)
def adjudicate_label(
    evaluator: EvaluatorName,
    run_id: Annotated[str, Field(description="The run under review")],
    score: Annotated[
        ScoreValue, Field(description="The final human score (the human's decision, never yours)")
    ],
    labeler: Annotated[str, Field(min_length=1, description="Who decides")],
    comment: Annotated[str | None, Field(max_length=20_000)] = None,
    *,
    ctx: Context,
) -> ReviewItem:
    """Settle a disputed (or pending) second review with the human's final label; the reference set uses it."""
    from align_mcp.engine.reviews import adjudicate

    return adjudicate(store_of(ctx), evaluator, run_id, score, labeler, comment)


@tool("List second reviews", read_only=True)
def list_reviews(evaluator: EvaluatorName, *, ctx: Context) -> ReviewReport:
    """Second reviews and their status, with inter-annotator agreement (Cohen's kappa) over the blind pairs. This
    view shows both labels: never show it to the second labeler before they label."""
    from align_mcp.engine.reviews import list_reviews as reviews

    return reviews(store_of(ctx), evaluator)


@tool("Check judge self-consistency", open_world=True)
async def check_consistency(
    evaluator: EvaluatorName,
    k: Annotated[int, Field(ge=2, le=20, description="Verdicts per run")] = 5,
    sample: Annotated[int, Field(ge=1, le=500, description="Labeled runs to re-judge")] = 20,
    prompt: Annotated[str, Field(description="'draft', 'latest' or a version such as 'v2'")] = "draft",
    temperature: Annotated[
        float | None, Field(ge=0, le=2, description="Sampling temperature; omit for the evaluator's")
    ] = None,
    batch: Annotated[bool, Field(description="Via the Batch API: cheaper, slower")] = False,
    *,
    ctx: Context,
) -> ConsistencyReport:
    """Re-judge a sample of labeled runs k times (bypassing the cache) and report how often the verdict flips and
    which runs are unstable; get_misaligned then flags them (flip_share). Costs k x sample judge calls."""
    from align_mcp.diagnose.consistency import self_consistency

    return await self_consistency(
        store_of(ctx),
        evaluator,
        k=k,
        sample=sample,
        prompt=prompt,
        temperature=temperature,
        on_progress=ProgressReporter(ctx),
        batch=batch,
    )


@tool("Suggest runs to label", open_world=True)
async def suggest_labels(
    evaluator: EvaluatorName,
    n: Annotated[int, Field(ge=1, le=100, description="How many runs to suggest")] = 10,
    budget: Annotated[
        int, Field(ge=0, le=10_000, description="Most judge calls to make (cache hits are free)")
    ] = 50,
    repeats: Annotated[
        int, Field(ge=0, le=10, description="Extra samples per run to measure instability")
    ] = 0,
    *,
    ctx: Context,
) -> SuggestionReport:
    """Rank the unlabeled runs in the queue by how much a human label would teach: where the draft and the last
    saved version disagree, where repeated samples disagree, and where a class is under-represented."""
    from align_mcp.diagnose.suggestions import suggest_labels as suggest

    return await suggest(
        store_of(ctx), evaluator, n=n, budget=budget, repeats=repeats, on_progress=ProgressReporter(ctx)
    )


@tool("Estimate the corrected pass rate", open_world=True)
async def corrected_pass_rate(
    evaluator: EvaluatorName,
    source: Annotated[str | None, Field(description="Estimate over this source's unlabeled runs")] = None,
    run_ids: Annotated[list[str] | None, Field(max_length=100_000, description="Or these run ids")] = None,
    prompt: Annotated[str, Field(description="'latest', 'draft' or a version such as 'v2'")] = "latest",
    batch: Annotated[bool, Field(description="Via the Batch API: cheaper, slower")] = False,
    *,
    ctx: Context,
) -> PassRateReport:
    """Estimate the true pass rate of unlabeled runs from the judge's verdicts, corrected for its measured error
    rates on the labeled test split: (p_obs + TNR - 1) / (TPR + TNR - 1) with a bootstrap 95% interval. Refuses
    when the judge is no better than chance or a class is missing. Judging test counts as a look at test."""
    from align_mcp.diagnose.pass_rate import corrected_pass_rate as estimate

    return await estimate(
        store_of(ctx),
        evaluator,
        run_ids=run_ids,
        source=source,
        prompt=prompt,
        on_progress=ProgressReporter(ctx),
        batch=batch,
    )
