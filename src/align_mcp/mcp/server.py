"""The MCP server: the alignment loop as tools, resources and a prompt, built by create_server.

The SDK builds every tool from its typed function (`MCPServer.add_tool`). The engine behind the tools, the
openai client and DSPy load on the first call that needs them, and the store opens on the first request that
reads it.
"""

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from pydantic import Field

from align_mcp import __version__
from align_mcp.errors import AlignError, NotFound
from align_mcp.mcp import render
from align_mcp.mcp.state import AppState, store_of

F = TypeVar("F", bound=Callable[..., Any])

INSTRUCTIONS = """\
align-mcp aligns an LLM-as-judge evaluator with human labels. The loop: import_runs -> create_evaluator ->
add_to_queue -> next_items -> submit_label (the human's verdicts, never yours) -> run_alignment -> get_misaligned
-> update_draft -> run_alignment again -> save_prompt (only when the user agrees). Quote Cohen's kappa and the
95% intervals next to agreement; with fewer than 20 labels or one class under 20%, ask for more labels. The
prompt `align_evaluator` walks through the whole loop."""

# ---- resources ----------------------------------------------------------------------------------------------

_TEMPLATES: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []


def _as_resource_errors(fn: F) -> F:
    """Report domain errors as resource errors carrying their message (not found as not found)."""

    @functools.wraps(fn)
    def read(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NotFound as e:
            raise ResourceNotFoundError(render.error_text(e)) from e
        except AlignError as e:
            raise ResourceError(render.error_text(e)) from e

    return cast(F, read)


def _resource(uri: str, name: str, mime_type: str, description: str) -> Callable[[F], F]:
    """Register a resource template; domain errors become resource errors with their message."""

    def register(fn: F) -> F:
        _TEMPLATES.append(
            (uri, _as_resource_errors(fn), {"name": name, "mime_type": mime_type, "description": description})
        )
        return fn

    return register


@_resource(
    "align://evaluators/{name}",
    "evaluator",
    "application/json",
    "An evaluator: settings, draft, versions with scores, queue and recent alignment runs",
)
def evaluator_resource(name: str, ctx: Context) -> str:
    from align_mcp.engine.overview import evaluator_detail

    return render.dump_json(evaluator_detail(store_of(ctx), name))


@_resource("align://evaluators/{name}/draft", "draft", "text/plain", "The evaluator's draft prompt, in full")
def draft_resource(name: str, ctx: Context) -> str:
    from align_mcp.engine import evaluators

    return evaluators.get(store_of(ctx), name).draft


@_resource(
    "align://evaluators/{name}/versions",
    "versions",
    "application/json",
    "The evaluator's saved prompt versions with their alignment scores",
)
def versions_resource(name: str, ctx: Context) -> str:
    from align_mcp.engine import evaluators

    return render.dump_json(evaluators.get(store_of(ctx), name).versions)


@_resource(
    "align://evaluators/{name}/versions/{version}", "version", "text/plain", "One saved prompt version's text"
)
def version_resource(name: str, version: int, ctx: Context) -> str:
    from align_mcp.engine import evaluators

    return evaluators.get_version(store_of(ctx), name, version).prompt


@_resource(
    "align://queues/{evaluator}",
    "queue",
    "application/json",
    "An annotation queue's counts and label balance",
)
def queue_resource(evaluator: str, ctx: Context) -> str:
    from align_mcp.engine.queues import summary

    return render.dump_json(summary(store_of(ctx), evaluator))


@_resource("align://runs/{run_id}", "run", "application/json", "One run in full")
def run_resource(run_id: str, ctx: Context) -> str:
    from align_mcp.engine.ingest import get_run as fetch_run

    return render.dump_json(fetch_run(store_of(ctx), run_id))


@_resource(
    "align://reports/{alignment_run}",
    "alignment report",
    "text/markdown",
    "The report of one alignment run: metrics with intervals, comparison, flips, errors, notes",
)
def report_resource(alignment_run: int, ctx: Context) -> str:
    from align_mcp.engine.alignment import report

    return render.report_markdown(report(store_of(ctx), alignment_run))


# ---- prompt -------------------------------------------------------------------------------------------------


def align_evaluator(
    evaluator: Annotated[str, Field(description="The evaluator to align (optional)")] = "",
) -> str:
    """Walk through aligning an LLM-as-judge evaluator with human labels: the loop, how to read kappa and the
    intervals, and when to ask for more labels."""
    from align_mcp.core.templates import prompt_file

    name = f"**{evaluator}**" if evaluator.strip() else "(ask me which one, or create one)"
    return prompt_file("align_evaluator.md").replace("{{evaluator}}", name)


# ---- the server ---------------------------------------------------------------------------------------------


def create_server(db_path: Path | str | None = None) -> MCPServer[AppState]:
    """Build the MCP server on the store at `db_path` (default: ALIGN_MCP_DB or the user data directory).

    The store is opened on the first request that needs it and closed when the server's lifespan ends.
    """
    state = AppState(Path(db_path).expanduser() if db_path is not None else None)

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        try:
            yield state
        finally:
            state.close()

    server: MCPServer[AppState] = MCPServer(
        "align-mcp",
        title="align-mcp",
        description="Align LLM-as-judge evaluators with human labels",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
        lifespan=lifespan,
    )
    from align_mcp.mcp.tools import registered_tools

    for fn, options in registered_tools():
        server.add_tool(fn, **options)
    for uri, fn, options in _TEMPLATES:
        server.resource(uri, **options)(fn)

    @server.resource(
        "align://evaluators",
        name="evaluators",
        mime_type="application/json",
        description="All evaluators with their latest version and score",
    )
    @_as_resource_errors
    def evaluators_resource() -> str:
        from align_mcp.engine.overview import evaluator_list

        return render.dump_json(evaluator_list(state.store))

    @server.resource(
        "align://queues",
        name="queues",
        mime_type="application/json",
        description="All annotation queues with counts and label balance",
    )
    @_as_resource_errors
    def queues_resource() -> str:
        from align_mcp.engine.queues import list_queues as all_queues

        return render.dump_json(all_queues(state.store))

    server.prompt(name="align_evaluator", title="Align an evaluator")(align_evaluator)
    return server


__all__ = ["AppState", "create_server", "store_of"]
