"""Suggested next labels: the queue's unlabeled runs ranked by how much a human label would teach."""

from __future__ import annotations

from align_mcp import config
from align_mcp.core.metrics import flip_share
from align_mcp.core.models import LabelSuggestion, Note, Score, ScoreType, SuggestionReport
from align_mcp.diagnose.sampling import Prompt, judge_jobs, lookup, most_common, resolve, sample_repeatedly
from align_mcp.engine import swap
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.engine.queues import balance
from align_mcp.engine.samples import latest_samples
from align_mcp.errors import InvalidInput, NextStep
from align_mcp.llm.runner import Progress, Tally
from align_mcp.store import Store

MAX_REPEATS = 10
MAX_BUDGET = 10_000
CLASS_WEIGHT = 0.5


def _score_name(score_type: ScoreType, score: Score) -> str:
    if score_type.kind == "binary":
        return f"{'pass' if score == 1 else 'fail'} ({score})"
    return repr(score)


async def suggest_labels(
    store: Store,
    evaluator: str,
    *,
    n: int = 10,
    budget: int = 50,
    repeats: int = 0,
    concurrency: int | None = None,
    on_progress: Progress | None = None,
    env: config.Settings | None = None,
) -> SuggestionReport:
    """Rank the queue's unlabeled runs by how much a human label would teach, and return the top `n`.

    Signals, summed into `value`: the latest saved version and the draft disagree on the run (1); repeated
    judge samples of it disagree (0–1, from stored self-consistency samples, plus `repeats` fresh draft
    samples per run when given); the verdict falls in a class that is under-represented among the labels (up
    to 0.5). At most `budget` judge calls are made, run by run in queue order; cached verdicts are free, so
    calling again with a larger budget continues where this one stopped. Show the human the run (get_run),
    not the judge's verdicts, so the label stays independent.
    """
    env = env or config.load()
    ev = get_evaluator(store, evaluator)
    score_type = ev.score_type
    if not 1 <= n <= 100:
        raise InvalidInput(f"n={n} must be between 1 and 100.")
    if not 0 <= budget <= MAX_BUDGET:
        raise InvalidInput(f"budget={budget} judge calls must be between 0 and {MAX_BUDGET}.")
    if repeats != 0 and not 2 <= repeats <= MAX_REPEATS:
        raise InvalidInput(
            f"repeats={repeats}: give 0 (use stored samples only) or 2 to {MAX_REPEATS} samples per run."
        )
    pending = store.pending_ids(evaluator)
    labeled = store.current_label_rows(evaluator, pending)  # runs back in the queue for a second review
    candidates = [rid for rid in pending if rid not in labeled]
    if not candidates:
        raise InvalidInput(
            f"The queue of {evaluator!r} has no unlabeled runs to rank.",
            NextStep("add_to_queue", {"evaluator": evaluator}),
        )
    notes: list[Note] = []
    draft = resolve(store, evaluator, "draft", env)
    saved: Prompt | None = None
    if ev.latest_version is not None:
        latest = resolve(store, evaluator, ev.latest_version, env)
        if latest.text == draft.text and latest.settings == draft.settings:
            notes.append(
                Note(
                    text=f"The draft equals {latest.ref}, so there is no version disagreement to rank by.",
                    next_steps=[NextStep("update_draft", {"evaluator": evaluator})],
                )
            )
        else:
            saved = latest
    runs = store.get_runs(candidates)
    order = {rid: i for i, rid in enumerate(candidates)}
    draft_scores, draft_jobs = lookup(store, score_type, draft, runs)
    saved_scores, saved_jobs = lookup(store, score_type, saved, runs) if saved else ({}, [])
    hits = len(draft_scores) + len(saved_scores)
    # Spend the budget run by run, so the runs judged get both verdicts (a job takes a call per order it shows).
    planned = []
    calls = 0
    for which, job in sorted(
        [(0, job) for job in draft_jobs] + [(1, job) for job in saved_jobs],
        key=lambda pj: (order[pj[1].run_id], pj[0]),
    ):
        if calls + len(job.orders) > budget:
            break
        planned.append((which, job))
        calls += len(job.orders)
    spare = budget - calls
    per_run = swap.judgements_per_run(score_type)
    repeat_ids = candidates[: spare // (repeats * per_run)] if repeats else []
    tally = Tally(on_progress, len(planned) + len(repeat_ids) * repeats, "suggest labels")
    limit = concurrency or env.concurrency
    requests = reasks = 0
    for which, scores, prompt in ((0, draft_scores, draft), (1, saved_scores, saved)):
        jobs = [job for w, job in planned if w == which]
        if prompt is not None and jobs:
            verdicts = await judge_jobs(store, score_type, prompt, jobs, limit, tally)
            scores.update({rid: v.score for rid, v in verdicts.items() if v.score is not None})
            requests += sum(v.calls for v in verdicts.values())
            reasks += sum(v.reasks for v in verdicts.values())
    if repeat_ids:
        check = await sample_repeatedly(
            store, evaluator, score_type, draft, repeat_ids, repeats, limit, tally
        )
        taken = store.consistency_samples(check)
        requests += sum(s.requests for s in taken)
        reasks += sum(s.reasks for s in taken)
    samples = latest_samples(store, evaluator)

    counts = balance(store, evaluator, score_type).counts
    total = sum(counts.values())
    values = score_type.values()
    suggestions = []
    for rid in candidates:
        reasons: list[str] = []
        value = 0.0
        d, s = draft_scores.get(rid), saved_scores.get(rid)
        if d is not None and s is not None and d != s:
            value += 1
            assert saved is not None
            reasons.append(f"{saved.ref} and the draft disagree on it")
        share = flip_share(samples.get(rid, []))
        if share:
            valid = [x for x in samples[rid] if x is not None]
            value += share / (1 - 1 / min(len(valid), len(values)))
            reasons.append(f"repeated judge verdicts disagree ({share:.0%} off the most common)")
        predicted = d if d is not None else s
        if predicted is None and samples.get(rid) and any(x is not None for x in samples[rid]):
            predicted = most_common([x for x in samples[rid] if x is not None])
        if predicted is not None:
            have = counts.get(str(predicted), 0) / total if total else 0.0
            deficit = max(0.0, 1 / len(values) - have) * len(values)
            if deficit > 0:
                value += CLASS_WEIGHT * deficit
                reasons.append(
                    f"the judge predicts {_score_name(score_type, predicted)}, {have:.0%} of labels so far "
                    "(under-represented)"
                )
        if not reasons:
            reasons.append("no disagreement signal" if d is not None else "not judged within the budget")
        suggestions.append(
            LabelSuggestion(
                run_id=rid,
                value=round(value, 4),
                reason="; ".join(reasons),
                draft_score=d,
                saved_score=s,
                flip_share=share,
                predicted=predicted,
            )
        )
    suggestions.sort(key=lambda x: (-x.value, order[x.run_id]))
    unjudged = sum(1 for rid in candidates if rid not in draft_scores)
    if unjudged:
        notes.append(
            Note(
                text=f"{unjudged} of {len(candidates)} queued run(s) have no draft verdict: the budget of {budget} "
                "judge calls ran out. Raise budget to rank them; verdicts are cached, so no call is repeated."
            )
        )
    if not any(flip_share(v) for v in samples.values()) and not repeats:
        notes.append(
            Note(
                text="No repeated judge samples disagree yet, so judge instability does not rank the queue.",
                next_steps=[
                    NextStep("suggest_labels", {"evaluator": evaluator, "repeats": 3}),
                    NextStep("check_consistency", {"evaluator": evaluator}),
                ],
            )
        )
    notes.append(
        Note(
            text="Show the labeler the run, not the judge's verdicts, so the label stays independent.",
            next_steps=[NextStep("show_run"), NextStep("label", {"evaluator": evaluator})],
        )
    )
    return SuggestionReport(
        evaluator=evaluator,
        candidates=len(candidates),
        suggestions=suggestions[:n],
        saved_version=int(saved.ref[1:]) if saved else None,
        judge_calls=calls + len(repeat_ids) * repeats * per_run,
        requests=requests,
        reasks=reasks,
        cache_hits=hits,
        budget=budget,
        unjudged=unjudged,
        notes=notes,
    )
