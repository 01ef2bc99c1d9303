"""Tool registration: a tool's title and hints, its domain errors as tool errors, its result in MCP words."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel

from align_mcp.errors import AlignError
from align_mcp.mcp import priority, render
from align_mcp.mcp.state import tools_of
from align_mcp.web.apps import VIEW_URIS, ViewName

F = TypeVar("F", bound=Callable[..., Any])

TOOLS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}
"""Every registered tool: name -> (the function the server calls, options for `MCPServer.add_tool`)."""


def _rendered(result: Any) -> Any:
    if isinstance(result, BaseModel) and not isinstance(result, CallToolResult):
        return render.structured(result)
    return result


def _enabled(kwargs: dict[str, Any]) -> frozenset[str] | None:
    ctx = kwargs.get("ctx")
    return None if ctx is None else tools_of(ctx)


def rendered(fn: F) -> F:
    """The tool as the server calls it: domain errors become tool errors worded for MCP (with the tool to call
    next, among the tools this server lists), and a result model becomes structured content with its notes
    worded for MCP."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            # The async tools are the ones that judge (alignment, comparison, optimizer, diagnostics): on a shared
            # server they give way to the requests people are waiting on.
            with render.enabled_tools(_enabled(kwargs)), priority.background():
                try:
                    return _rendered(await fn(*args, **kwargs))
                except AlignError as e:
                    raise ToolError(render.error_text(e)) from e

        return cast(F, run_async)

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with render.enabled_tools(_enabled(kwargs)):
            try:
                return _rendered(fn(*args, **kwargs))
            except AlignError as e:
                raise ToolError(render.error_text(e)) from e

    return cast(F, run)


def tool(
    title: str,
    *,
    read_only: bool = False,
    destructive: bool = False,
    idempotent: bool = False,
    open_world: bool = False,
    view: ViewName | None = None,
) -> Callable[[F], F]:
    """Register a module-level function as a tool of every server `create_server` builds; `view` links the MCP
    App view that shows its result (`_meta.ui.resourceUri`, listed to hosts that negotiated MCP Apps)."""

    def register(fn: F) -> F:
        annotations = ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=False if read_only else destructive,
            idempotent_hint=True if read_only else idempotent,
            open_world_hint=open_world,
        )
        options = {
            "title": title,
            "description": inspect.cleandoc(fn.__doc__ or ""),
            "annotations": annotations,
        }
        if view is not None:
            options["meta"] = {"ui": {"resourceUri": VIEW_URIS[view]}}
        TOOLS[fn.__name__] = (rendered(fn), options)
        return fn

    return register
