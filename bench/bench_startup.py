"""MCP stdio cold start: spawn -> tools listed, `align-mcp serve` vs a bare MCPServer with one tool.

Each round spawns both servers, alternating which goes first, through the SDK's stdio Client; the figure is
the median of the per-round ratios over 15 rounds (the machine is shared: single rounds swing by ±30%). The
ratio of the fastest starts is printed beside it, since noise only ever adds time.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import anyio

from _common import BenchResult, Figure, at_most, median

NAME = "startup"
DESCRIPTION = "MCP stdio cold start (spawn -> tools listed) vs a bare MCPServer with one tool"

BARE_SERVER = """
from mcp.server import MCPServer

server = MCPServer("bare")


@server.tool()
def ping() -> str:
    \"\"\"Answer pong.\"\"\"
    return "pong"


server.run("stdio")
"""


async def _spawn_and_list(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    started = time.perf_counter()
    async with Client(params) as client:
        tools = await client.list_tools()
        elapsed = time.perf_counter() - started
    return elapsed, len(tools.tools)


def run(quick: bool = False) -> BenchResult:
    result = BenchResult(NAME)
    rounds = 1 if quick else 15
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        bare = Path(tmp) / "bare_server.py"
        bare.write_text(BARE_SERVER)
        # No PYTHONDONTWRITEBYTECODE (any non-empty value, even "0", disables .pyc writing): the untimed first
        # start writes align-mcp's .pyc files, as pip did for the SDK's at install time.
        env = {"ALIGN_MCP_DB": str(Path(tmp) / "align.db")}
        for k in ("HOME", "PATH", "LANG", "XDG_DATA_HOME"):
            if k in os.environ:
                env[k] = os.environ[k]
        ours_cmd = [sys.executable, "-m", "align_mcp.cli", "serve"]
        bare_cmd = [sys.executable, str(bare)]
        # One untimed start each (not in --quick): warms the OS page cache and .pyc files.
        n_ours = n_bare = 0
        if not quick:
            _, n_ours = anyio.run(_spawn_and_list, ours_cmd, env)
            _, n_bare = anyio.run(_spawn_and_list, bare_cmd, env)
        ours: list[float] = []
        theirs: list[float] = []
        for r in range(rounds):
            pair = [(ours_cmd, ours), (bare_cmd, theirs)]
            for cmd, sink in pair if r % 2 == 0 else pair[::-1]:
                elapsed, tools = anyio.run(_spawn_and_list, cmd, env)
                sink.append(elapsed)
                if cmd is ours_cmd:
                    n_ours = tools
                else:
                    n_bare = tools
    ratio = median([a / b for a, b in zip(ours, theirs, strict=True)])
    result.add(
        Figure(f"align-mcp serve: spawn -> {n_ours} tools listed (median of {rounds})", median(ours), "s"),
        Figure("bare MCPServer with one tool: spawn -> tools listed", median(theirs), "s"),
        Figure("align-mcp serve / bare MCPServer", ratio, "×", "≤ 1.3×", at_most(ratio, 1.3)),
        Figure("same, fastest start / fastest start", min(ours) / min(theirs), "×"),
    )
    result.details = {"align_mcp_s": ours, "bare_s": theirs, "tools": n_ours, "bare_tools": n_bare}
    return result


if __name__ == "__main__":
    out = run("--quick" in sys.argv)
    for f in out.figures:
        print(f"{f.name:70s} {f.shown()}")
