"""The MCP surface: the server, its tools, resources and prompt, and the stdio / HTTP transports."""
