"""Tools for judge models: the same prompt judged by several models, compared on agreement, cost and latency."""

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from align_mcp.core.comparison import JudgeModel, ModelComparison
from align_mcp.mcp.render import ProgressReporter
from align_mcp.mcp.state import store_of
from align_mcp.mcp.tools.arguments import EvaluatorName, PromptRef, Split
from align_mcp.mcp.tools.registry import tool


@tool("Compare judge models", open_world=True)
async def compare_models(
    evaluator: EvaluatorName,
    models: Annotated[
        list[JudgeModel],
        Field(
            min_length=2,
            max_length=10,
            description="The judge models, e.g. [{'model': 'gpt-4.1-mini'}, {'model': 'llama3.1', "
            "'base_url': 'http://localhost:11434/v1'}]",
        ),
    ],
    prompt: PromptRef = "draft",
    split: Split = None,
    *,
    ctx: Context,
) -> ModelComparison:
    """Judge the labeled runs with the same prompt once per model and compare them side by side: agreement,
    kappa, TPR/TNR with 95% intervals, errors, tokens, cost, latency p50/p95, McNemar against the best model, and
    the agreement-cost Pareto front. Cost needs each model's price (given here or in the prices file); without
    one, tokens are shown and no cost. One judge call per run and model (cached verdicts are reused)."""
    from align_mcp.engine.compare import compare_models as compare

    return await compare(
        store_of(ctx),
        evaluator,
        models,
        prompt,
        split=split or "auto",
        on_progress=ProgressReporter(ctx),
    )
