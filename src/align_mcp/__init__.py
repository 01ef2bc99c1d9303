"""align-mcp: align LLM-as-judge evaluators with human labels, from chat (MCP) or the command line."""

__version__ = "0.1.0"
