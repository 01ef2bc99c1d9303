"""Stored self-consistency samples: the latest repeated verdicts per run, and the runs whose verdicts flip."""

from __future__ import annotations

from align_mcp.core.metrics import flip_share
from align_mcp.core.models import Score
from align_mcp.store import Store


def latest_samples(store: Store, evaluator: str, prompt: str | None = None) -> dict[str, list[Score | None]]:
    """Per run, the verdicts of the latest completed consistency check that sampled it."""
    latest: dict[str, tuple[int, list[Score | None]]] = {}
    for r in store.completed_samples(evaluator, prompt):
        check, scores = latest.get(r.run_id, (-1, []))
        if r.check_id != check:
            check, scores = r.check_id, []
            latest[r.run_id] = (check, scores)
        scores.append(r.judge_score if r.error is None else None)
    return {rid: scores for rid, (_, scores) in latest.items()}


def unstable_run_ids(store: Store, evaluator: str, prompt: str | None = None) -> dict[str, float]:
    """Runs whose repeated judge verdicts disagree: run_id -> flip share (share of samples off the mode).

    Reads the latest completed self-consistency samples per run; `prompt` (a prompt text) keeps only checks of
    that exact prompt. Stable runs and runs never sampled are absent.
    """
    out = {}
    for rid, scores in latest_samples(store, evaluator, prompt).items():
        share = flip_share(scores)
        if share:
            out[rid] = share
    return out
