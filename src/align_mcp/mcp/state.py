"""What a running MCP server holds between requests: its store, opened on first use."""

from __future__ import annotations

import threading
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mcp.server.mcpserver import Context

if TYPE_CHECKING:
    from align_mcp.store import Store


class AppState:
    """The server's store, opened on first use so that start-up and tools/list never touch SQLite."""

    def __init__(self, db_path: Path | None, tools: Collection[str] | None = None) -> None:
        self.db_path = db_path
        self.tools: frozenset[str] | None = None if tools is None else frozenset(tools)
        """The tools this server lists (None: every tool); hints name only these."""
        self._store: Store | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                from align_mcp.store import open_store

                self._store = open_store(self.db_path)
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def store_of(ctx: Context) -> Store:
    """The store of the server handling this request."""
    state = cast(AppState, ctx.request_context.lifespan_context)
    return state.store


def tools_of(ctx: Context) -> frozenset[str] | None:
    """The tools the server handling this request lists (None: every tool)."""
    state = cast(AppState, ctx.request_context.lifespan_context)
    return state.tools
