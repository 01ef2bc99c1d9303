"""Tools for alignment: judge the reference set with a prompt (or finish an interrupted run), read the
disagreements."""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ImageContent, TextContent
from pydantic import Field

from align_mcp.core.models import AlignmentReport, MisalignedPage, Model
from align_mcp.errors import InvalidInput, NextStep
from align_mcp.mcp.render import ProgressReporter, report_result
from align_mcp.mcp.state import store_of
from align_mcp.mcp.tools.arguments import EvaluatorName, PromptRef, Split
from align_mcp.mcp.tools.registry import tool


@tool("Run alignment", open_world=True, view="report")
async def run_alignment(
    evaluator: EvaluatorName,
    prompt: PromptRef = "draft",
    split: Split = None,
    compare: Annotated[
        bool,
        Field(description="Also judge the last saved version (flips)"),
    ] = True,
    resume: Annotated[
        int | None,
        Field(description="An interrupted run's id: finish it instead"),
    ] = None,
    retry_errors: Annotated[bool, Field(description="With resume: judge failed runs again")] = False,
    batch: Annotated[bool, Field(description="Via the Batch API: cheaper, slower")] = False,
    *,
    ctx: Context,
) -> Annotated[CallToolResult, AlignmentReport]:
    """Judge the labeled runs with a prompt and measure agreement with the human labels: agreement, Cohen's
    kappa, TPR/TNR with 95% intervals and, for the draft, the flips against the last saved version. Cached
    when unchanged; reports progress.
    A run where every example failed is an error naming the causes."""
    from align_mcp.engine import alignment

    store = store_of(ctx)
    progress = ProgressReporter(ctx)
    if resume is not None:
        owner = alignment.report(store, resume).run.evaluator
        if owner != evaluator:
            raise InvalidInput(
                f"Alignment run {resume} belongs to evaluator {owner!r}, not {evaluator!r}.",
                NextStep("list_alignment_runs", {"evaluator": evaluator}),
            )
        return report_result(
            await alignment.resume(
                store, resume, retry_errors=retry_errors, on_progress=progress, batch=batch
            )
        )
    if retry_errors:
        raise InvalidInput("retry_errors=true applies to a resumed run: pass resume=<alignment run id> too.")
    options: dict[str, Any] = {} if split is None else {"split": split}
    report = await alignment.run_alignment(
        store, evaluator, prompt, compare=compare, on_progress=progress, batch=batch, **options
    )
    return report_result(report)


@tool("Misaligned examples", read_only=True)
def get_misaligned(
    evaluator: EvaluatorName,
    alignment_run: Annotated[int | None, Field(description="Default: the latest draft run")] = None,
    direction: Annotated[
        Literal["false_pass", "false_fail", "over", "under", "mismatch"] | None,
        Field(description="binary: false_*; ordinal: over/under"),
    ] = None,
    offset: Annotated[int, Field(ge=0, description="The last page's next_offset")] = 0,
    limit: Annotated[int, Field(ge=1, le=20, description="Examples per page")] = 5,
    max_chars: Annotated[int, Field(ge=200, le=20_000, description="Longer strings are cut")] = 1200,
    *,
    ctx: Context,
) -> MisalignedPage:
    """Examples where the judge disagreed with the human, side by side: inputs, outputs, the human's score and
    comment, the judge's score and reasoning. The human comments say what the rubric misses."""
    from align_mcp.engine.alignment import get_misaligned as misaligned

    return misaligned(store_of(ctx), evaluator, alignment_run, direction, offset, limit, max_chars)


class ChartImage(Model):
    """An alignment chart drawn as a PNG image (the image is the result's image content)."""

    evaluator: str
    chart: Literal["agreement", "confusion"]
    alignment_run: int | None = Field(
        description="The run asked for the confusion matrix (None: the latest; always None for agreement)"
    )
    mime_type: str = "image/png"
    size: int = Field(description="The PNG's size in bytes")


@tool("Alignment chart", read_only=True)
def alignment_chart(
    evaluator: EvaluatorName,
    chart: Annotated[
        Literal["agreement", "confusion"],
        Field(
            description="agreement: agreement and kappa per saved version with 95% intervals; confusion: a run's"
        ),
    ] = "agreement",
    alignment_run: Annotated[int | None, Field(description="For confusion; default: the latest run")] = None,
    *,
    ctx: Context,
) -> Annotated[CallToolResult, ChartImage]:
    """The evaluator's alignment chart as a PNG image: agreement and Cohen's kappa per saved version on one split
    with their 95% intervals, or a run's confusion matrix. Needs the charts extra."""
    import base64

    from align_mcp.web import charts

    spec = charts.chart_spec(store_of(ctx), evaluator, chart, alignment_run)
    image = charts.png(spec)
    info = ChartImage(
        evaluator=evaluator,
        chart=chart,
        alignment_run=alignment_run if chart == "confusion" else None,
        size=len(image),
    )
    data = base64.b64encode(image).decode("ascii")
    return CallToolResult(
        content=[
            ImageContent(type="image", data=data, mime_type="image/png"),
            TextContent(type="text", text=f"The {chart} chart of {evaluator} (PNG, {len(image):,} bytes)."),
        ],
        structured_content=info.model_dump(mode="json"),
    )
