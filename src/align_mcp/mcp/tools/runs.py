"""Tools for the runs: import them from a file or inline, and read one in full."""

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from align_mcp import config
from align_mcp.core.models import ImportReport, SourceKind
from align_mcp.core.views import RunDetail
from align_mcp.errors import InvalidInput
from align_mcp.mcp.render import GET_RUN_MAX_CHARS
from align_mcp.mcp.state import store_of
from align_mcp.mcp.tools.arguments import DEFAULT_RUN_CHARS
from align_mcp.mcp.tools.registry import tool


@tool("Import runs", idempotent=True)
def import_runs(
    source: Annotated[
        str,
        Field(description="Name of the source to add the runs to (created on first use), e.g. 'support-v2'"),
    ],
    path: Annotated[
        str | None,
        Field(
            description="Path of a JSONL or CSV file on the machine running the server. Give path or runs."
        ),
    ] = None,
    runs: Annotated[
        list[dict[str, Any]] | None,
        Field(
            description='Inline runs: [{"id"?, "inputs": {...}, "outputs": {...}, "reference_outputs"?, '
            '"metadata"?, "feedback"?: {"<key>": {"score": ..., "comment"?}}}]. Give path or runs.'
        ),
    ] = None,
    kind: Annotated[
        SourceKind,
        Field(description="'experiment' (offline run over a dataset) or 'project' (online tracing)"),
    ] = "experiment",
    format: Annotated[
        Literal["jsonl", "csv"] | None,
        Field(description="File format; detected from the extension if omitted"),
    ] = None,
    *,
    ctx: Context,
) -> ImportReport:
    """Import the outputs of the user's LLM app (runs) so they can be queued for labeling and judged.

    All or nothing: a bad record fails the import with its line number and stores nothing. Re-importing is safe
    (runs whose id is already stored are skipped). Human labels carried in `feedback` become labels of every
    evaluator with that feedback key.
    """
    from align_mcp.engine.ingest import import_runs as run_import

    if path is not None:
        check_import_path(path)
    return run_import(store_of(ctx), source, path=path, runs=runs, kind=kind, fmt=format)


def check_import_path(path: str) -> None:
    """With ALIGN_MCP_IMPORT_ROOT set, file imports must resolve inside it (a shared server reads no other file)."""
    root = os.environ.get(config.ENV_IMPORT_ROOT)
    if not root:
        return
    base = Path(root).expanduser().resolve()
    target = Path(path).expanduser().resolve()
    if not target.is_relative_to(base):
        raise InvalidInput(
            f"Import path {path!r} is outside {config.ENV_IMPORT_ROOT} ({base}). Put the file under that "
            "directory, or pass the runs inline."
        )


@tool("Get a run", read_only=True)
def get_run(
    run_id: Annotated[str, Field(description="The run's id, as shown by next_items or get_misaligned")],
    max_chars: Annotated[
        int,
        Field(
            ge=200, le=GET_RUN_MAX_CHARS, description="Longer strings inside the run are cut to this length"
        ),
    ] = DEFAULT_RUN_CHARS,
    *,
    ctx: Context,
) -> RunDetail:
    """One run in full: inputs, outputs, reference outputs and metadata (for texts cut short elsewhere)."""
    from align_mcp.engine.ingest import run_detail

    return run_detail(store_of(ctx), run_id, max_chars)
