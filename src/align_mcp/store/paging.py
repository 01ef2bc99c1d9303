"""Run ids read a page at a time, for work over more runs than memory should hold."""

from __future__ import annotations

from collections.abc import Iterator

from align_mcp.store.database import Store

PAGE = 2000


def source_run_id_pages(store: Store, source: str, size: int = PAGE) -> Iterator[list[str]]:
    """The run ids of a source in insertion order (as `Store.run_ids` gives them), `size` at a time."""
    last = -1
    while True:
        rows = store.read(
            "SELECT rowid, id FROM runs WHERE source = ? AND rowid > ? ORDER BY rowid LIMIT ?",
            [source, last, size],
        )
        if not rows:
            return
        last = rows[-1][0]
        yield [r[1] for r in rows]
