"""`python -m align_mcp.cli`: the command line, as the `align-mcp` script runs it."""

from align_mcp.cli.main import main

main()
