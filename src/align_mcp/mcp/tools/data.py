"""Tools for data out: the reference set as a file to import again or take to LangSmith, and the judge card."""

import os
from pathlib import Path
from typing import Annotated

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent
from pydantic import Field

from align_mcp import config
from align_mcp.core.cards import JudgeCard, card_markdown
from align_mcp.core.exports import ExportFormat, ExportReport
from align_mcp.errors import InvalidInput
from align_mcp.mcp import render
from align_mcp.mcp.state import store_of
from align_mcp.mcp.tools.arguments import EvaluatorName
from align_mcp.mcp.tools.registry import tool

MAX_INLINE_CHARS = 100_000
"""The longest export returned inline (without a path): a bigger one must go to a file."""


@tool("Export a reference set")
def export_reference_set(
    evaluator: EvaluatorName,
    format: Annotated[
        ExportFormat,
        Field(
            description="jsonl or csv (import_runs reads them back), or langsmith (a LangSmith dataset file)"
        ),
    ] = "jsonl",
    path: Annotated[
        str | None,
        Field(description="A new file on the server's machine to write; default: returned inline when small"),
    ] = None,
    *,
    ctx: Context,
) -> ExportReport:
    """The evaluator's labeled runs with current labels, label history, labelers, comments, dates, the rubric
    version of each label and the dev/test split, in the import format (so import_runs restores them in another
    store). With `path`, writes a new file there (never replaces one); without, returns the content inline."""
    from align_mcp.engine.exports import export_reference_set as export

    if path is not None:
        path = check_export_path(path)
    return export(store_of(ctx), evaluator, format, path, overwrite=False, max_inline=MAX_INLINE_CHARS)


def check_export_path(path: str) -> str:
    """With ALIGN_MCP_IMPORT_ROOT set, exports must be written inside it too (a shared server writes no other file),
    where import_runs can read them back. Returns the path resolved."""
    target = Path(path).expanduser().resolve()
    root = os.environ.get(config.ENV_IMPORT_ROOT)
    if root:
        base = Path(root).expanduser().resolve()
        if not target.is_relative_to(base):
            raise InvalidInput(
                f"Export path {path!r} is outside {config.ENV_IMPORT_ROOT} ({base}). Give a path under that "
                "directory, or leave out path to get the export inline."
            )
    return str(target)


@tool("Judge card", read_only=True)
def judge_card(
    evaluator: EvaluatorName,
    version: Annotated[int | None, Field(ge=1, description="A saved version; default: the latest")] = None,
    *,
    ctx: Context,
) -> Annotated[CallToolResult, JudgeCard]:
    """A saved version's judge card for a pull request or a model registry, as Markdown text and as data: prompt
    and judge settings, test-split figures with 95% intervals and how often test was judged, label counts and
    balance, labels by rubric version, inter-annotator kappa, dates. Also at align://cards/{evaluator}."""
    from align_mcp.engine.card import judge_card as card

    made = card(store_of(ctx), evaluator, version)
    return CallToolResult(
        content=[TextContent(type="text", text=card_markdown(made))], structured_content=render.as_data(made)
    )
