"""The MCP tool listing: characters of tools/list on the wire and what a host shows the model, per toolset.

The server is built as `align-mcp serve` builds it, with the default configuration (ALIGN_MCP_TOOLS unset, so
`core`), and with ALIGN_MCP_TOOLS=all beside it. Sizes are compact JSON characters: the whole `{"tools": [...]}`
result ("wire"), and each tool's name + description + input schema ("model-visible", what a host puts in the
model's context). They are deterministic: --quick measures the same thing.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio

from _common import BenchResult, Figure, at_most, env

NAME = "listing"
DESCRIPTION = "characters of tools/list: on the wire and model-visible, default (core) and all"
WIRE_TARGET = 35_000
VISIBLE_TARGET = 12_000
# Issue 11's reference figures: this server before the toolsets, and the reference filesystem server.
BEFORE = {"wire": 100_716, "visible": 27_727}
FILESYSTEM = {"wire": 12_983, "visible": 7_650}


def _measure(selection: str | None) -> dict[str, Any]:
    from align_mcp.mcp.listing import listing_size
    from align_mcp.mcp.server import create_server

    async def listed() -> Any:
        return await create_server(":memory:").list_tools()

    with env(ALIGN_MCP_TOOLS=selection):
        tools = anyio.run(listed)
    size = listing_size(tools)
    biggest = sorted(
        (
            (len(json.dumps(t.model_dump(mode="json", by_alias=True, exclude_none=True))), t.name)
            for t in tools
        ),
        reverse=True,
    )[:3]
    return {"tools": size.tools, "wire": size.wire, "visible": size.visible, "largest": biggest}


def run(quick: bool = False) -> BenchResult:
    result = BenchResult(NAME)
    default = _measure(None)  # ALIGN_MCP_TOOLS unset: the server's default, core
    every = _measure("all")
    result.add(
        Figure(
            f"default (core, {default['tools']} tools): tools/list on the wire",
            default["wire"],
            "chars",
            f"≤ {WIRE_TARGET:,}",
            at_most(default["wire"], WIRE_TARGET),
            note=f"before: {BEFORE['wire']:,}; filesystem server: {FILESYSTEM['wire']:,}",
        ),
        Figure(
            f"default (core, {default['tools']} tools): model-visible (name + description + inputSchema)",
            default["visible"],
            "chars",
            f"≤ {VISIBLE_TARGET:,}",
            at_most(default["visible"], VISIBLE_TARGET),
            note=f"before: {BEFORE['visible']:,}; filesystem server: {FILESYSTEM['visible']:,}",
        ),
        Figure(f"all ({every['tools']} tools): tools/list on the wire", every["wire"], "chars"),
        Figure(f"all ({every['tools']} tools): model-visible", every["visible"], "chars"),
        Figure("default wire / before", default["wire"] / BEFORE["wire"], "×"),
        Figure("default model-visible / before", default["visible"] / BEFORE["visible"], "×"),
    )
    result.details = {"default": default, "all": every, "before": BEFORE, "filesystem_server": FILESYSTEM}
    return result


if __name__ == "__main__":
    out = run("--quick" in sys.argv)
    for f in out.figures:
        print(f"{f.name:80s} {f.shown()}  {f.note}")
    print(json.dumps(out.details, indent=1))
