"""Tools for the runs: import them from a file or inline, and read one in full."""

import os
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field

from align_mcp import config
from align_mcp.core.models import ImportFormat, ImportReport, SourceKind
from align_mcp.core.pairwise import PairReport
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
        Field(description="The source the runs join (created on first use), e.g. 'support-v2'"),
    ],
    path: Annotated[
        str | None,
        Field(description="A JSONL or CSV file on the server's machine (or give runs)"),
    ] = None,
    runs: Annotated[
        list[dict[str, Any]] | None,
        Field(
            description='Inline runs: {"id"?, "inputs", "outputs", "reference_outputs"?, "metadata"?, '
            '"feedback"?: {"<key>": {"score", "comment"?}}}'
        ),
    ] = None,
    kind: Annotated[
        SourceKind,
        Field(description="experiment (offline, over a dataset) or project (online tracing)"),
    ] = "experiment",
    format: Annotated[
        ImportFormat | None,
        Field(description="Default: detected"),
    ] = None,
    *,
    ctx: Context,
) -> ImportReport:
    """Import the user's LLM app outputs (runs) to label and judge. All or nothing: a bad record fails with its
    line number. Stored runs are skipped; `feedback` labels go to evaluators with that key."""
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


@tool("Pair two sources", idempotent=True)
def pair_sources(
    source_a: Annotated[str, Field(description="The experiment whose outputs are output A")],
    source_b: Annotated[str, Field(description="The experiment whose outputs are output B")],
    into: Annotated[str, Field(description="The source the pairwise runs join (created on first use)")],
    key: Annotated[
        str,
        Field(
            description="The path both runs of a pair share: id, or under inputs, metadata, reference_outputs"
        ),
    ] = "metadata.reference_example_id",
    skip_unmatched: Annotated[
        bool, Field(description="Leave out runs whose key the other source lacks (else an error lists them)")
    ] = False,
    *,
    ctx: Context,
) -> PairReport:
    """Pair two experiments over one dataset into pairwise runs (outputs A and B of one input), matched by an
    example key, for an evaluator with the pairwise score type. Every run needs the key, once per source."""
    from align_mcp.engine.pairing import pair_sources as pair

    return pair(store_of(ctx), source_a, source_b, into, key, skip_unmatched=skip_unmatched)


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
