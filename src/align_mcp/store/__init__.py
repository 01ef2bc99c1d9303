"""The SQLite store: the only code that knows tables, columns and how values are encoded in them."""

from align_mcp.store.codec import dumps, loads, now_iso
from align_mcp.store.database import (
    MISALIGNED_DIRECTIONS,
    CachedVerdict,
    Store,
    cache_row,
    open_store,
)
from align_mcp.store.rows import (
    EvaluatorRow,
    FeedbackRow,
    HoldoutSplit,
    LabelRow,
    NewLabel,
    NewRun,
    QueueCounts,
    Reservation,
    SampleRow,
    SourceRow,
    SplitRow,
    TriageRow,
    TriageVerdict,
    VersionRow,
)

__all__ = [
    "MISALIGNED_DIRECTIONS",
    "CachedVerdict",
    "EvaluatorRow",
    "FeedbackRow",
    "HoldoutSplit",
    "LabelRow",
    "NewLabel",
    "NewRun",
    "QueueCounts",
    "Reservation",
    "SampleRow",
    "SourceRow",
    "SplitRow",
    "Store",
    "TriageRow",
    "TriageVerdict",
    "VersionRow",
    "cache_row",
    "dumps",
    "loads",
    "now_iso",
    "open_store",
]
