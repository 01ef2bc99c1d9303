"""The MCP tools by area: runs, evaluators, queues and labels, alignment, the optimizer and diagnostics."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

AREAS = ("runs", "evaluators", "labels", "alignment", "optimizer", "diagnostics")
"""The tool modules, in the order of the loop; tools are listed in this order."""


def registered_tools() -> list[tuple[Callable[..., Any], dict[str, Any]]]:
    """Every tool as (function, options for `MCPServer.add_tool`), area by area in the order of the loop."""
    from align_mcp.mcp.tools.registry import TOOLS

    modules = [importlib.import_module(f"{__name__}.{area}").__name__ for area in AREAS]
    return sorted(TOOLS.values(), key=lambda entry: modules.index(entry[0].__module__))
