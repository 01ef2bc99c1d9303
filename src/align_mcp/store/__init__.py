"""The SQLite store: the only code that knows tables, columns and how values are encoded in them."""

from align_mcp.store.database import (
    MISALIGNED_DIRECTIONS,
    CachedVerdict,
    Store,
    cache_row,
    dumps,
    loads,
    now_iso,
    open_store,
)

__all__ = [
    "MISALIGNED_DIRECTIONS",
    "CachedVerdict",
    "Store",
    "cache_row",
    "dumps",
    "loads",
    "now_iso",
    "open_store",
]
