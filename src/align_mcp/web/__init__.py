"""The labeling and review pages: a Starlette app over the engine, served by `align-mcp ui` and under /ui."""
