"""The MCP tools by area (runs, evaluators, queues and labels, alignment, the optimizer, diagnostics, judge
models, data out), and the toolsets ALIGN_MCP_TOOLS picks from."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from align_mcp import config
from align_mcp.errors import InvalidInput

AREAS = ("runs", "evaluators", "labels", "alignment", "optimizer", "diagnostics", "models", "data")
"""The tool modules, in the order of the loop; tools are listed in this order."""

CORE = (
    "import_runs",
    "create_evaluator",
    "list_evaluators",
    "get_evaluator",
    "add_to_queue",
    "list_queues",
    "next_items",
    "submit_label",
    "submit_labels",
    "run_alignment",
    "get_misaligned",
    "update_draft",
    "save_prompt",
    "list_versions",
    "analyze_failures",
    "propose_prompt",
)
"""The loop and the optimizer: the tools of the design's table, listed by default."""

MODELS = ("compare_models",)
"""Judge models compared on the same prompt and labeled runs."""

DIAGNOSTICS = (
    "triage_disagreements",
    "request_review",
    "adjudicate_label",
    "list_reviews",
    "check_consistency",
    "suggest_labels",
    "corrected_pass_rate",
)
"""Disagreement triage, blind second reviews, self-consistency, label suggestions, the corrected pass rate."""

DATA = ("export_reference_set", "judge_card")
"""Data out: the reference set as a file (the import format, or a LangSmith dataset) and the judge card."""


def registered_tools() -> list[tuple[Callable[..., Any], dict[str, Any]]]:
    """Every tool as (function, options for `MCPServer.add_tool`), area by area in the order of the loop."""
    from align_mcp.mcp.tools.registry import TOOLS

    modules = [importlib.import_module(f"{__name__}.{area}").__name__ for area in AREAS]
    return sorted(TOOLS.values(), key=lambda entry: modules.index(entry[0].__module__))


def toolsets() -> dict[str, tuple[str, ...]]:
    """The toolset names ALIGN_MCP_TOOLS accepts, each with its tools in listing order."""
    every = tuple(fn.__name__ for fn, _ in registered_tools())
    return {"core": CORE, "diagnostics": DIAGNOSTICS, "models": MODELS, "data": DATA, "all": every}


def select_tools(names: Sequence[str] | None = None) -> tuple[str, ...]:
    """The tools a server lists for these toolset and tool names (default: ALIGN_MCP_TOOLS, else `core`).

    An unknown name is an error that lists the valid ones.
    """
    wanted = list(names) if names is not None else config.tool_selection()
    sets = toolsets()
    every = sets["all"]
    unknown = [name for name in wanted if name not in sets and name not in every]
    if unknown or not wanted:
        shown = ", ".join(repr(name) for name in unknown) or "nothing"
        raise InvalidInput(
            f"{config.ENV_TOOLS} names {shown}, which is not a toolset or a tool. Toolsets: "
            f"{', '.join(sets)}. Tools: {', '.join(every)}. Use a comma-separated list of them, e.g. "
            f"{config.ENV_TOOLS}=core,triage_disagreements; unset, it is {config.DEFAULT_TOOLS}."
        )
    chosen = {tool for name in wanted for tool in sets.get(name, (name,))}
    return tuple(tool for tool in every if tool in chosen)
