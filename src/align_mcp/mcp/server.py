"""The MCP server: the alignment loop as tools, resources and a prompt, built by create_server.

The SDK builds every tool from its typed function (`MCPServer.add_tool`). The engine behind the tools, the
openai client and DSPy load on the first call that needs them, and the store opens on the first request that
reads it.
"""

import functools
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

from mcp.server import MCPServer
from mcp.server.apps import Apps, client_supports_apps
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
    ToolError,
    UnexpectedToolError,
)
from mcp.types import CallToolResult, InputRequiredResult, ListToolsResult, PaginatedRequestParams
from mcp.types import Tool as MCPTool
from pydantic import Field

from align_mcp import __version__, config
from align_mcp.errors import AlignError, NotFound
from align_mcp.mcp import argument_errors, listing, render
from align_mcp.mcp.state import AppState, store_of, tools_of

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
    """Report domain errors as resource errors carrying their message (not found as not found), with next
    steps naming the tools this server lists."""

    @functools.wraps(fn)
    def read(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")
        with render.enabled_tools(None if ctx is None else tools_of(ctx)):
            try:
                return fn(*args, **kwargs)
            except NotFound as e:
                raise ResourceNotFoundError(render.error_text(e)) from e
            except AlignError as e:
                raise ResourceError(render.error_text(e)) from e

    return cast(F, read)


def _number(text: str, what: str, uri: str, version: bool = False) -> int:
    """A number in a resource address (`7`; for a version also `v7`, as tools take it)."""
    digits = text[1:] if version and text[:1] in ("v", "V") else text
    if not digits.isdigit():
        shown = "a version such as v2 (or 2)" if version else "a whole number such as 3"
        raise NotFound(f"{what} {text!r} in {uri} is not {shown}.")
    return int(digits)


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
    "align://evaluators/{name}/versions/{version}",
    "version",
    "text/plain",
    "One saved prompt version's text; the version as v2 or 2",
)
def version_resource(name: str, version: str, ctx: Context) -> str:
    from align_mcp.engine import evaluators

    number = _number(version, "Version", f"align://evaluators/{name}/versions/{version}", version=True)
    return evaluators.get_version(store_of(ctx), name, number).prompt


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
def report_resource(alignment_run: str, ctx: Context) -> str:
    from align_mcp.engine.alignment import report

    number = _number(alignment_run, "Alignment run", f"align://reports/{alignment_run}")
    return render.report_markdown(report(store_of(ctx), number))


@_resource(
    "align://proposals/{proposal_id}",
    "proposal",
    "application/json",
    "An optimizer proposal in full: the proposed and the original prompt, the diff, the scores",
)
def proposal_resource(proposal_id: str, ctx: Context) -> str:
    from align_mcp.optimize.proposals import get_proposal

    number = _number(proposal_id, "Proposal", f"align://proposals/{proposal_id}")
    return render.dump_json(get_proposal(store_of(ctx), number))


@_resource(
    "align://charts/{evaluator}/{chart}",
    "chart",
    "image/png",
    "An alignment chart as PNG: agreement (per saved version, with 95% intervals) or confusion (the latest run)",
)
def chart_resource(evaluator: str, chart: str, ctx: Context) -> bytes:
    from align_mcp.web import charts

    if chart not in charts.CHART_KINDS:
        raise NotFound(f"No chart named {chart!r}; charts: {', '.join(charts.CHART_KINDS)}.")
    return charts.png(charts.chart_spec(store_of(ctx), evaluator, chart))


@_resource(
    "align://cards/{evaluator}",
    "judge card",
    "text/markdown",
    "The judge card of the latest saved version: prompt, judge, test-split figures, labels, agreement, dates",
)
def card_resource(evaluator: str, ctx: Context) -> str:
    from align_mcp.core.cards import card_markdown
    from align_mcp.engine.card import judge_card

    return card_markdown(judge_card(store_of(ctx), evaluator))


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


class AlignServer(MCPServer[AppState]):
    """The SDK's server, listing compact schemas (each result kind's full schema is a resource) and wording
    argument errors for the assistant."""

    async def result_schemas(self) -> dict[str, dict[str, Any]]:
        """The full output schema of each result kind its tools return, by kind name."""
        out: dict[str, dict[str, Any]] = {}
        for tool in await super().list_tools():
            kind = listing.result_kind(tool.output_schema)
            if kind is not None and tool.output_schema is not None:
                out[kind] = listing.without_titles(tool.output_schema)
        return out

    async def list_tools(self, apps: bool = False) -> list[MCPTool]:
        """The tools as listed; with `apps`, each carries the MCP App view that shows its result (only for a
        host that negotiated MCP Apps: other hosts get the listing without it, unchanged in size)."""
        tools = await super().list_tools()
        return [_listed(tool, apps) for tool in tools]

    async def _handle_list_tools(
        self, ctx: ServerRequestContext[AppState], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        return ListToolsResult(tools=await self.list_tools(apps=client_supports_apps(ctx)))

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppState, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """The SDK's call, with arguments (and form answers) it refuses worded for the assistant, and a tool
        this server does not list named as such."""
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            if isinstance(e, UnexpectedToolError):
                raise
            raise ToolError(await self._refusal(name, arguments, context, e)) from e

    async def _refusal(
        self, name: str, arguments: dict[str, Any], context: Context[AppState, Any] | None, error: ToolError
    ) -> str:
        from align_mcp.mcp.tools import toolsets

        listed = {tool.name: tool for tool in await self.list_tools()}
        if name not in listed:
            if name in toolsets()["all"]:
                return (
                    f"{name} is not enabled on this server, which lists the tools {config.ENV_TOOLS} selects "
                    f"({', '.join(listed)}). The user can add it, e.g. {config.ENV_TOOLS}=core,{name}."
                )
            return f"Unknown tool {name!r}. This server lists: {', '.join(listed)}."
        prefix = f"Error executing tool {name}: "
        cause = argument_errors.validation_error_in(error)
        if name == "submit_label" and "Resolver " in str(error):
            retry = render.call("submit_label", {k: arguments.get(k) for k in ("evaluator", "run_id")})
            allowed = _score_words(arguments.get("evaluator"), context)
            return prefix + argument_errors.form_error(cause, allowed, retry)
        if cause is not None and cause.title.endswith("Arguments"):
            return prefix + argument_errors.argument_error(name, cause, listed[name].input_schema)
        return str(error)


def _score_words(evaluator: Any, context: Context[AppState, Any] | None) -> str | None:
    """What the evaluator's score type allows, in words (None when the evaluator cannot be read)."""
    if not isinstance(evaluator, str) or context is None:
        return None
    from align_mcp.engine import evaluators

    try:
        return evaluators.get(store_of(cast(Context, context)), evaluator).score_type.describe()
    except AlignError:
        return None


def _listed(tool: MCPTool, apps: bool) -> MCPTool:
    kind = listing.result_kind(tool.output_schema)
    output = tool.output_schema
    if output is not None:
        output = listing.shared_output_schema(output, kind) if kind else listing.output_schema(output)
    annotations = None if tool.annotations is None else tool.annotations.model_copy(update={"title": None})
    return tool.model_copy(
        update={
            "input_schema": listing.input_schema(tool.input_schema),
            "output_schema": output,
            "annotations": annotations,
            "meta": tool.meta if apps else _without_view(tool.meta),
        }
    )


def _without_view(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """A tool's `_meta` without the MCP App view link (`ui`), for hosts without MCP Apps."""
    if not meta:
        return meta
    rest = {key: value for key, value in meta.items() if key != "ui"}
    return rest or None


def _views() -> Apps:
    """The MCP Apps extension: the label view and the alignment report as `ui://` HTML resources."""
    from align_mcp.web.apps import DESCRIPTIONS, TITLES, VIEW_URIS, view_html

    apps = Apps()
    for view, uri in VIEW_URIS.items():
        apps.add_html_resource(
            uri,
            view_html(view),
            name=f"{view} view",
            title=TITLES[view],
            description=DESCRIPTIONS[view],
            prefers_border=True,
        )
    return apps


def create_server(
    db_path: Path | str | None = None, tools: Sequence[str] | None = None
) -> MCPServer[AppState]:
    """Build the MCP server on the store at `db_path` (default: ALIGN_MCP_DB or the user data directory),
    listing the toolsets or tools named in `tools` (default: ALIGN_MCP_TOOLS, else `core`).

    The store is opened on the first request that needs it and closed when the server's lifespan ends. An
    unknown tool or toolset name raises InvalidInput listing the valid ones.
    """
    from align_mcp.mcp.tools import registered_tools, select_tools

    selected = select_tools(tools)
    state = AppState(Path(db_path).expanduser() if db_path is not None else None, selected)

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        try:
            yield state
        finally:
            state.close()

    server = AlignServer(
        "align-mcp",
        title="align-mcp",
        description="Align LLM-as-judge evaluators with human labels",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
        lifespan=lifespan,
        extensions=[_views()],
    )
    for fn, options in registered_tools():
        if fn.__name__ in selected:
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

        with render.enabled_tools(state.tools):
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

        with render.enabled_tools(state.tools):
            return render.dump_json(all_queues(state.store))

    @server.resource(
        "align://schemas/{kind}",
        name="result schema",
        mime_type="application/json",
        description="The full JSON schema of one result kind; each tool's output schema names its kind",
    )
    async def schema_resource(kind: str) -> str:
        schemas = await server.result_schemas()
        if kind not in schemas:
            raise ResourceNotFoundError(
                f"No result kind {kind!r} on this server. Known: {', '.join(sorted(schemas))}."
            )
        return json.dumps(schemas[kind], indent=2, ensure_ascii=False)

    server.prompt(
        name="align_evaluator",
        title="Align an evaluator",
        description=" ".join((align_evaluator.__doc__ or "").split()),
    )(align_evaluator)
    return server


__all__ = ["AlignServer", "AppState", "create_server", "store_of"]
