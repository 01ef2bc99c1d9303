"""The `align-mcp` command line."""

from align_mcp.cli.main import main

__all__ = ["main"]
