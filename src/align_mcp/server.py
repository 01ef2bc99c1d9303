"""The MCP server: the alignment loop as tools, resources and a prompt, built by create_server.

Start-up stays close to a bare MCPServer: the tools are listed from prebuilt schemas (see toolschemas), and the
module behind them (tools.py, with the pydantic models it uses) loads on the first tool call. The store opens
on the first request that needs it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations
from pydantic import Field

from . import __version__
from .errors import AlignError, NotFound

if TYPE_CHECKING:
    from .store import Store

F = TypeVar("F", bound=Callable[..., Any])

INSTRUCTIONS = """\
align-mcp aligns an LLM-as-judge evaluator with human labels. The loop: import_runs -> create_evaluator ->
add_to_queue -> next_items -> submit_label (the human's verdicts, never yours) -> run_alignment -> get_misaligned
-> update_draft -> run_alignment again -> save_prompt (only when the user agrees). Quote Cohen's kappa and the
95% intervals next to agreement; with fewer than 20 labels or one class under 20%, ask for more labels. The
prompt `align_evaluator` walks through the whole loop."""

# ---- state --------------------------------------------------------------------------------------------------


class AppState:
    """The server's store, opened on first use so that start-up and tools/list never touch SQLite."""

    def __init__(self, db_path: Path | None) -> None:
        self.db_path = db_path
        self._store: Store | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                from .store import open_store

                self._store = open_store(self.db_path)
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def store_of(ctx: Context) -> Store:
    """The store of the server handling this request."""
    state = cast(AppState, ctx.request_context.lifespan_context)
    return state.store


# ---- tools --------------------------------------------------------------------------------------------------


def _deferred(name: str) -> Callable[..., Any]:
    """A stand-in for a tool's function that imports the tools module when called."""

    def call(*args: Any, **kwargs: Any) -> Any:
        from .tools import tool_definition

        return tool_definition(name)[0](*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


class PrebuiltTool(Tool):
    """A tool listed from its prebuilt entry (see toolschemas); the SDK builds the real tool on the first call.

    Listing needs only the name, title, description, annotations and the two schemas. The argument model that
    validates a call and the output conversion come from `Tool.from_function` on the function in tools.py,
    exactly as without prebuilt schemas, built once when the tool is first called: the call-time fields of this
    object (fn_metadata, context_kwarg, resolvers) are left empty, and `run` delegates to `built_tool`.
    """

    prebuilt_output_schema: dict[str, Any] | None = Field(default=None, exclude=True)

    @classmethod
    def prebuilt(cls, entry: dict[str, Any]) -> PrebuiltTool:
        # model_construct: the entry was written from the SDK's own Tool; fn_metadata is left to `built_tool`.
        annotations = entry.get("annotations")
        return cls.model_construct(
            fn=_deferred(entry["name"]),
            name=entry["name"],
            title=entry.get("title"),
            description=entry["description"],
            parameters=entry["input_schema"],
            is_async=entry["is_async"],
            context_kwarg=None,
            resolved_params={},
            resolver_plans={},
            annotations=ToolAnnotations.model_validate(annotations) if annotations else None,
            icons=None,
            meta=None,
            prebuilt_output_schema=entry["output_schema"],
        )

    @cached_property
    def output_schema(self) -> dict[str, Any] | None:
        return self.prebuilt_output_schema

    @cached_property
    def built_tool(self) -> Tool:
        from .tools import tool_definition

        fn, options = tool_definition(self.name)
        return Tool.from_function(fn, **options)

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        return await self.built_tool.run(arguments, context, convert_result=convert_result)


def _server_tools() -> list[Tool]:
    """The tools, listed from the prebuilt schemas when they are current; otherwise built, and remembered."""
    from . import toolschemas

    entries = toolschemas.load()
    if entries is not None:
        return [PrebuiltTool.prebuilt(entry) for entry in entries]
    from .tools import registered_tools

    tools = [Tool.from_function(fn, **options) for fn, options in registered_tools()]
    toolschemas.remember(tools)
    return tools


# ---- resources ----------------------------------------------------------------------------------------------

_TEMPLATES: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []


def _as_resource_errors(fn: F) -> F:
    """Report domain errors as resource errors carrying their message (not found as not found)."""

    @functools.wraps(fn)
    def read(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NotFound as e:
            raise ResourceNotFoundError(str(e)) from e
        except AlignError as e:
            raise ResourceError(str(e)) from e

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
    from .tools import dump_json, evaluator_detail

    return dump_json(evaluator_detail(store_of(ctx), name, max_chars=10**9))


@_resource("align://evaluators/{name}/draft", "draft", "text/plain", "The evaluator's draft prompt, in full")
def draft_resource(name: str, ctx: Context) -> str:
    from . import evaluators

    return evaluators.get(store_of(ctx), name).draft


@_resource(
    "align://evaluators/{name}/versions",
    "versions",
    "application/json",
    "The evaluator's saved prompt versions with their alignment scores",
)
def versions_resource(name: str, ctx: Context) -> str:
    from . import evaluators
    from .tools import dump_json

    return dump_json(evaluators.get(store_of(ctx), name).versions)


@_resource(
    "align://evaluators/{name}/versions/{version}", "version", "text/plain", "One saved prompt version's text"
)
def version_resource(name: str, version: int, ctx: Context) -> str:
    from . import evaluators

    return evaluators.get_version(store_of(ctx), name, version).prompt


@_resource(
    "align://queues/{evaluator}",
    "queue",
    "application/json",
    "An annotation queue's counts and label balance",
)
def queue_resource(evaluator: str, ctx: Context) -> str:
    from .queues import summary
    from .tools import dump_json

    return dump_json(summary(store_of(ctx), evaluator))


@_resource("align://runs/{run_id}", "run", "application/json", "One run in full")
def run_resource(run_id: str, ctx: Context) -> str:
    from .ingest import get_run as fetch_run
    from .tools import dump_json

    return dump_json(fetch_run(store_of(ctx), run_id))


@_resource(
    "align://reports/{alignment_run}",
    "alignment report",
    "text/markdown",
    "The report of one alignment run: metrics with intervals, comparison, flips, errors, notes",
)
def report_resource(alignment_run: int, ctx: Context) -> str:
    from .align import report
    from .reports import report_markdown

    return report_markdown(report(store_of(ctx), alignment_run))


# ---- prompt -------------------------------------------------------------------------------------------------


def align_evaluator(
    evaluator: Annotated[str, Field(description="The evaluator to align (optional)")] = "",
) -> str:
    """Walk through aligning an LLM-as-judge evaluator with human labels: the loop, how to read kappa and the
    intervals, and when to ask for more labels."""
    from .judge import _prompt_file

    name = f"**{evaluator}**" if evaluator.strip() else "(ask me which one, or create one)"
    return _prompt_file("align_evaluator.md").replace("{{evaluator}}", name)


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
        tools=_server_tools(),
        title="align-mcp",
        description="Align LLM-as-judge evaluators with human labels",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
        lifespan=lifespan,
    )
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
        from .tools import dump_json, evaluator_list

        return dump_json(evaluator_list(state.store))

    @server.resource(
        "align://queues",
        name="queues",
        mime_type="application/json",
        description="All annotation queues with counts and label balance",
    )
    @_as_resource_errors
    def queues_resource() -> str:
        from .queues import list_queues as all_queues
        from .tools import dump_json

        return dump_json(all_queues(state.store))

    server.prompt(name="align_evaluator", title="Align an evaluator")(align_evaluator)
    return server


__all__ = ["AppState", "PrebuiltTool", "create_server", "store_of"]
