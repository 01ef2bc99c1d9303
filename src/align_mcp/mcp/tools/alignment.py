"""Tools for alignment: judge the reference set with a prompt, finish an interrupted run, read the disagreements."""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from align_mcp.core.models import AlignmentReport, MisalignedPage
from align_mcp.mcp.render import ProgressReporter, report_result
from align_mcp.mcp.state import store_of
from align_mcp.mcp.tools.arguments import EvaluatorName, PromptRef, Split
from align_mcp.mcp.tools.registry import tool


@tool("Run alignment", open_world=True)
async def run_alignment(
    evaluator: EvaluatorName,
    prompt: PromptRef = "draft",
    split: Split = None,
    compare: Annotated[
        bool,
        Field(description="Also report the last saved version on the same runs, with fixed/broken flips"),
    ] = True,
    *,
    ctx: Context,
) -> Annotated[CallToolResult, AlignmentReport]:
    """Judge every labeled run with a prompt and measure agreement with the human labels: agreement, Cohen's
    kappa, TPR/TNR with 95% intervals, and (for the draft) the comparison with the last saved version, with
    McNemar's test on the runs it fixed and broke.

    Calls the judge model once per labeled run (unchanged prompts come from the cache; retries and re-asks are
    counted apart) and reports progress. If cancelled or interrupted, finished results are kept: finish with
    resume_alignment. A run in which every example failed is an error naming the first causes.
    """
    from align_mcp.engine.alignment import run_alignment as align_runs

    options: dict[str, Any] = {} if split is None else {"split": split}
    report = await align_runs(
        store_of(ctx), evaluator, prompt, compare=compare, on_progress=ProgressReporter(ctx), **options
    )
    return report_result(report)


@tool("Resume an alignment run", idempotent=True, open_world=True)
async def resume_alignment(
    alignment_run: Annotated[
        int, Field(description="The alignment run's id (get_evaluator lists recent runs)")
    ],
    retry_errors: Annotated[
        bool, Field(description="Also judge again the runs whose judge call failed")
    ] = False,
    *,
    ctx: Context,
) -> Annotated[CallToolResult, AlignmentReport]:
    """Finish an interrupted or cancelled alignment run: only runs without a stored result are judged."""
    from align_mcp.engine.alignment import resume

    report = await resume(
        store_of(ctx), alignment_run, retry_errors=retry_errors, on_progress=ProgressReporter(ctx)
    )
    return report_result(report)


@tool("Misaligned examples", read_only=True)
def get_misaligned(
    evaluator: EvaluatorName,
    alignment_run: Annotated[
        int | None, Field(description="Alignment run id; omit for the evaluator's latest draft run")
    ] = None,
    direction: Annotated[
        Literal["false_pass", "false_fail", "over", "under", "mismatch"] | None,
        Field(
            description="Only one kind: false_pass / false_fail (binary), over / under (ordinal), "
            "mismatch (categorical)"
        ),
    ] = None,
    offset: Annotated[
        int, Field(ge=0, description="Skip this many (use next_offset from the last page)")
    ] = 0,
    limit: Annotated[int, Field(ge=1, le=20, description="Examples per page")] = 5,
    max_chars: Annotated[
        int, Field(ge=200, le=20_000, description="Longer strings are cut; get_run returns a run in full")
    ] = 1200,
    *,
    ctx: Context,
) -> MisalignedPage:
    """Examples where the judge disagreed with the human, side by side: inputs, outputs, the human's score and
    comment, the judge's score and reasoning. Read the human comments: they say what the rubric is missing."""
    from align_mcp.engine.alignment import get_misaligned as misaligned

    return misaligned(store_of(ctx), evaluator, alignment_run, direction, offset, limit, max_chars)
