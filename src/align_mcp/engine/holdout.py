"""The enforced holdout: a stratified dev/test split of the reference set, fixed once and kept stable."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence

from align_mcp.core.models import Score, SplitInfo
from align_mcp.engine.queues import reference_set
from align_mcp.errors import InvalidInput
from align_mcp.store import HoldoutSplit, SplitRow, Store

TEST_SHARE = 0.3
MIN_SPLIT_LABELS = 10
MIN_PER_CLASS = 2
SEED = "align-mcp-holdout-v1"


def _order(run_id: str) -> str:
    return hashlib.sha256(f"{SEED}:{run_id}".encode()).hexdigest()


def needed_labels(examples: list[tuple[str, Score]]) -> str | None:
    """Why no split can be made yet (and how many labels would fix it), or None."""
    counts = Counter(str(score) for _, score in examples)
    missing = max(0, MIN_SPLIT_LABELS - len(examples))
    if missing:
        return (
            f"A dev/test holdout needs at least {MIN_SPLIT_LABELS} labeled runs; there are {len(examples)}. "
            f"Label {missing} more."
        )
    if len(counts) < 2 or min(counts.values()) < MIN_PER_CLASS:
        return (
            f"A stratified dev/test holdout needs at least {MIN_PER_CLASS} labeled runs of each of two score "
            f"values; the counts are {dict(counts)}. Label more runs of the rarer value."
        )
    return None


def record_shown(store: Store, evaluator: str, run_ids: Sequence[str]) -> None:
    """Remember runs a view showed with their human label and the judge's verdict before they had a split.

    A person who tunes the prompt by hand on them has fitted it to them, so the split keeps them in dev (see
    ensure_split). Runs that already have a split are left alone; a view of runs all split writes nothing.
    """
    fresh = store.unsplit_unshown(evaluator, run_ids)
    if fresh:
        store.record_shown(evaluator, fresh)


def ensure_split(store: Store, evaluator: str) -> SplitInfo | None:
    """Assign labeled runs without a split, keeping ~30% of every stratum (human score) in test.

    Assignments never change, so a run that was held out stays held out; new labels fill each stratum
    toward its target ratio in a seeded, order-independent way. Runs shown with their labels before they had a
    split (record_shown) go to dev, and the stratum's test share is filled from the others. Returns None while
    too few labels exist.
    """
    examples = reference_set(store, evaluator)
    rows = store.split_rows(evaluator)
    if not rows and needed_labels(examples) is not None:
        return None
    if _additions(examples, rows, set()):
        # Decided again inside the write transaction: another process may have assigned splits meanwhile.
        with store.transaction():
            additions = _additions(
                reference_set(store, evaluator), store.split_rows(evaluator), store.shown_run_ids(evaluator)
            )
            if additions:
                store.insert_splits(evaluator, additions)
    return info(store, evaluator)


def _additions(examples: list[tuple[str, Score]], rows: list[SplitRow], shown: set[str]) -> list[SplitRow]:
    """The split of every labeled run that has none yet, filling each stratum toward its test share.

    Shown runs go to dev first, so the test share is filled from runs nobody has seen judged.
    """
    assigned = {r.run_id for r in rows}
    have: dict[Score, Counter[HoldoutSplit]] = defaultdict(Counter)
    for r in rows:
        have[r.stratum][r.split] += 1
    new: dict[Score, list[str]] = defaultdict(list)
    for run_id, score in examples:
        if run_id not in assigned:
            new[score].append(run_id)
    additions: list[SplitRow] = []
    for stratum, ids in new.items():
        counts = have[stratum]
        for run_id in sorted(ids, key=lambda rid: (rid not in shown, _order(rid))):
            total = counts["dev"] + counts["test"] + 1
            fill = counts["test"] + 1 <= round(TEST_SHARE * total)
            split: HoldoutSplit = "test" if fill and run_id not in shown else "dev"
            counts[split] += 1
            additions.append(SplitRow(run_id, split, stratum))
    return additions


def info(store: Store, evaluator: str) -> SplitInfo | None:
    rows = store.split_rows(evaluator)
    if not rows:
        return None
    by_class: dict[str, dict[str, int]] = defaultdict(lambda: {"dev": 0, "test": 0})
    for r in rows:
        by_class[str(r.stratum)][r.split] += 1
    row = store.get_evaluator(evaluator)
    shown = store.shown_run_ids(evaluator)
    return SplitInfo(
        kept_in_dev=sum(1 for r in rows if r.split == "dev" and r.run_id in shown),
        dev=sum(1 for r in rows if r.split == "dev"),
        test=sum(1 for r in rows if r.split == "test"),
        by_class=dict(by_class),
        test_evaluations=row.test_evaluations if row else 0,
    )


def split_ids(store: Store, evaluator: str, split: str) -> set[str]:
    return {r.run_id for r in store.split_rows(evaluator) if r.split == split}


def examples_for(store: Store, evaluator: str, split: str) -> tuple[str, list[tuple[str, Score]]]:
    """The (split actually used, examples) for a requested split: 'auto' means dev once a holdout exists."""
    if split not in ("auto", "dev", "test", "all"):
        raise InvalidInput(f"split={split!r} is not one of auto, dev, test, all.")
    examples = reference_set(store, evaluator)
    if split == "all":
        return "all", examples
    made = ensure_split(store, evaluator)
    if made is None:
        if split == "auto":
            return "all", examples
        reason = needed_labels(examples) or "No holdout exists yet."
        raise InvalidInput(f"There is no {split} split for {evaluator!r} yet. {reason}")
    used = "dev" if split == "auto" else split
    ids = split_ids(store, evaluator, used)
    return used, [(rid, score) for rid, score in examples if rid in ids]
