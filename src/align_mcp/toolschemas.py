"""Prebuilt JSON schemas for the MCP tools, so that a server lists its tools without building them.

Building a tool's argument model and its input and output JSON schemas is most of what `create_server` costs
(~150 ms for 27 tools), and importing the tools module with the pydantic models behind it much of the rest.
Each tool's listing (name, title, description, annotations, input and output schema) is generated once
(`make schemas`, or `python -m align_mcp.toolschemas`) into `tool_schemas.json` beside this module, stamped
with a fingerprint of what produces it: the source of the modules that define the tools and their types, and
the versions of the MCP SDK and pydantic. A server uses the file only when the stamp matches what is running;
otherwise it builds every tool as usual and remembers the listings in the user's cache directory
(`tool_schemas-<stamp digest>.json`), so that only the first start after an upgrade of mcp or pydantic pays for
the build. The argument model a call validates against is still built from the function, on the tool's first
call.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp.server.mcpserver.tools import Tool

SCHEMA_FILE = Path(__file__).with_name("tool_schemas.json")

# The modules whose text decides the tools' schemas: the tool functions, their argument and result types.
SOURCES = ("tools.py", "models.py")
# The packages whose code turns those functions into schemas.
PACKAGES = ("mcp", "pydantic")

ToolEntry = dict[str, Any]
ENTRY_KEYS = {"name", "title", "description", "annotations", "is_async", "input_schema", "output_schema"}


def fingerprint() -> dict[str, str]:
    """What the schemas depend on: a digest of the defining sources and the generating packages' versions."""
    return dict(_fingerprint())


@functools.cache
def _fingerprint() -> dict[str, str]:
    # Computed once per process: the sources and the installed packages do not change under a running server.
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in SOURCES:
        digest.update(name.encode())
        digest.update((here / name).read_bytes())
    stamp = {"sources": digest.hexdigest()}
    for package in PACKAGES:
        try:
            stamp[package] = metadata.version(package)
        except metadata.PackageNotFoundError:  # pragma: no cover - both are dependencies
            stamp[package] = "unknown"
    return stamp


def cache_file() -> Path:
    """Where this process's listings are remembered when the shipped file is stale: one file per stamp."""
    import platformdirs

    stamp = hashlib.sha256(json.dumps(fingerprint(), sort_keys=True).encode()).hexdigest()[:16]
    return Path(platformdirs.user_cache_dir("align-mcp", appauthor=False)) / f"tool_schemas-{stamp}.json"


def read(path: Path) -> list[ToolEntry] | None:
    """The tool listings in one file, in registration order; None when it is missing, damaged or stale."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != fingerprint():
        return None
    tools = data.get("tools")
    if not isinstance(tools, list) or not all(isinstance(t, dict) and t.keys() >= ENTRY_KEYS for t in tools):
        return None
    if len({t["name"] for t in tools}) != len(tools):
        return None
    return tools


def load() -> list[ToolEntry] | None:
    """The current tool listings: the shipped file's, else the user cache's, else None (build the tools)."""
    return read(SCHEMA_FILE) or read(cache_file())


def remember(tools: list[Tool]) -> Path | None:
    """Keep the listings of tools just built in the user cache for the next start; returns the file written.

    Best effort: a cache directory that cannot be written only means the next start builds the tools again.
    Listings remembered for other stamps (older sources or package versions) are removed.
    """
    target = cache_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tool_schemas-", suffix=".json", dir=target.parent)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render([entry(tool) for tool in tools]))
        os.replace(tmp, target)  # atomic: a concurrent start reads the old file or the whole new one
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return None
    for old in target.parent.glob("tool_schemas-*.json"):
        if old != target:
            with contextlib.suppress(OSError):
                old.unlink()
    return target


def entry(tool: Tool) -> ToolEntry:
    """One tool's listing, from the SDK's own Tool."""
    annotations = tool.annotations
    return {
        "name": tool.name,
        "title": tool.title,
        "description": tool.description,
        "annotations": annotations.model_dump(by_alias=True, exclude_none=True) if annotations else None,
        "is_async": tool.is_async,
        "input_schema": tool.parameters,
        "output_schema": tool.output_schema,
    }


def build() -> list[ToolEntry]:
    """Each tool's listing, exactly as the MCP SDK builds it from the function."""
    from mcp.server.mcpserver.tools import Tool

    from .tools import registered_tools

    return [entry(Tool.from_function(fn, **options)) for fn, options in registered_tools()]


def render(entries: list[ToolEntry]) -> str:
    """The file's text: stable key order, so a regenerated file only differs where a listing changed."""
    return json.dumps({"fingerprint": fingerprint(), "tools": entries}, indent=1, sort_keys=True) + "\n"


def write(path: Path | None = None) -> int:
    """Regenerate the schema file; returns how many tools it holds."""
    entries = build()
    (path or SCHEMA_FILE).write_text(render(entries), encoding="utf-8")
    return len(entries)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        expected = render(build())
        current = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
        if current != expected:
            print(f"{SCHEMA_FILE} is stale: run `make schemas` and commit it.", file=sys.stderr)
            return 1
        print(f"{SCHEMA_FILE} is current.")
        return 0
    if args:
        print("usage: python -m align_mcp.toolschemas [--check]", file=sys.stderr)
        return 2
    count = write()
    print(f"Wrote the schemas of {count} tools to {SCHEMA_FILE}.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
