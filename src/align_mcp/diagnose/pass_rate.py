"""The corrected pass rate of unlabeled runs: the judge's pass rate, corrected for its test-split errors."""

from __future__ import annotations

from collections.abc import Sequence

from align_mcp import config
from align_mcp.core import metrics
from align_mcp.core.models import Interval, PassRateReport, Score, ScoreType
from align_mcp.diagnose.pass_counts import Counted, Unlabeled, count_in_batch, unlabeled_runs
from align_mcp.diagnose.sampling import Prompt, judge_jobs, lookup, resolve
from align_mcp.engine import holdout
from align_mcp.engine.alignment import run_alignment
from align_mcp.engine.batches import BatchOptions, cost_note
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.errors import InvalidInput, JudgeUnreachable
from align_mcp.llm.runner import Progress, Tally
from align_mcp.store import Store

MIN_UNLABELED = 10
"""Fewest judged unlabeled runs an estimate is given for. Below it the percentile bootstrap has so few distinct
resamples that its interval says little about the runs they stand for (one run gives "100%–100%")."""


def _test_run(
    store: Store, evaluator: str, prompt: Prompt, examples: Sequence[tuple[str, Score]]
) -> int | None:
    """A completed, error-free test-split run of exactly this prompt over exactly these labels, if any."""
    wanted = dict(examples)
    for aid in reversed(store.alignment_run_ids(evaluator)):
        row = store.alignment_run_row(aid)
        if (
            row is None
            or row.split != "test"
            or row.status != "completed"
            or (row.prompt, row.judge, row.model) != (prompt.text, prompt.settings, prompt.endpoint.model)
        ):
            continue
        results = store.alignment_results(aid)
        if all(r.error is None for r in results) and {r.run_id: r.human_score for r in results} == wanted:
            return aid
    return None


async def corrected_pass_rate(
    store: Store,
    evaluator: str,
    run_ids: Sequence[str] | None = None,
    source: str | None = None,
    prompt: str | int = "latest",
    *,
    n_boot: int = 2000,
    seed: int = 0,
    concurrency: int | None = None,
    on_progress: Progress | None = None,
    env: config.Settings | None = None,
    batch: bool | BatchOptions = False,
) -> PassRateReport:
    """Estimate the true pass rate of unlabeled runs from the judge's verdicts, corrected for its errors.

    θ = (p_obs + TNR − 1) / (TPR + TNR − 1), clipped to [0, 1], with a bootstrap 95% interval; p_obs is the
    share of the unlabeled runs (`run_ids`, or every unlabeled run of `source`) the judge passes with `prompt`
    (default: the latest saved version), and TPR / TNR come from the evaluator's labeled test split judged
    with the same prompt (judged now if needed, which counts as a look at the test split). Refuses when a
    class is missing from the test split or TPR + TNR ≤ 1 (the judge is no better than chance). Verdicts are
    cached. `batch` judges through the provider's Batch API (True, or BatchOptions); calling again after an
    interruption polls and merges the stored batches instead of sending them again.
    """
    env = env or config.load()
    ev = get_evaluator(store, evaluator)
    score_type = ev.score_type
    if not 1 <= n_boot <= 100_000:
        raise InvalidInput(f"n_boot={n_boot} must be between 1 and 100000.")
    unlabeled = unlabeled_runs(store, evaluator, run_ids, source)
    already_labeled = unlabeled.already_labeled
    chosen = resolve(store, evaluator, prompt, env)
    _, examples = holdout.examples_for(store, evaluator, "test")
    humans = [(score_type.is_pass(h), score_type.is_pass(h)) for _, h in examples]
    if len({h for h, _ in humans}) < 2:
        metrics.corrected_pass_rate([True], humans)  # refuses a missing class before any bootstrap: its words
    if unlabeled.count < MIN_UNLABELED:
        raise InvalidInput(
            f"Only {unlabeled.count} unlabeled run(s) to estimate the pass rate of; the corrected pass rate needs "
            f"at least {MIN_UNLABELED} ({MIN_UNLABELED - unlabeled.count} more), since an interval over fewer says "
            "nothing about the runs they stand for. Give more unlabeled runs: more ids, or a source with more "
            "of them."
        )

    aid = _test_run(store, evaluator, chosen, examples)
    reused = aid is not None
    if aid is None:
        report = await run_alignment(
            store,
            evaluator,
            prompt,
            split="test",
            compare=False,
            concurrency=concurrency,
            on_progress=on_progress,
            env=env,
            batch=batch,
        )
        aid = report.run.id
    labeled = [
        (score_type.is_pass(r.human_score), score_type.is_pass(r.judge_score))
        for r in store.alignment_results(aid)
        if r.error is None and r.judge_score is not None
    ]
    positives = [j for h, j in labeled if h]
    negatives = [not j for h, j in labeled if not h]
    if (
        not positives
        or not negatives
        or (sum(positives) / len(positives) + sum(negatives) / len(negatives) <= 1)
    ):
        metrics.corrected_pass_rate([True], labeled)  # refuses before any bootstrap and before judging more

    if batch is not False:
        options = batch if isinstance(batch, BatchOptions) else BatchOptions()
        counted = await count_in_batch(store, evaluator, score_type, chosen, unlabeled, options, on_progress)
    else:
        counted = await _count_online(
            store, score_type, chosen, unlabeled, concurrency or env.concurrency, on_progress
        )
    batch_ids = counted.job_ids
    judged = counted.passes + counted.fails
    if not judged:
        raise JudgeUnreachable(
            f"None of the {unlabeled.count} unlabeled runs could be judged (first error: {counted.first_error}). "
            "Check the judge and call this again; verdicts that succeed are cached."
        )
    if judged < MIN_UNLABELED:
        raise JudgeUnreachable(
            f"Only {judged} of the {unlabeled.count} unlabeled runs could be judged (first error: "
            f"{counted.first_error}); the corrected pass rate needs at least {MIN_UNLABELED}. Check the judge and "
            "call this again; verdicts that succeed are cached."
        )
    verdicts_pass: list[bool] | metrics.PassCount = (
        counted.verdicts
        if counted.verdicts is not None
        else metrics.PassCount(passes=counted.passes, total=judged)
    )
    estimate = metrics.corrected_pass_rate(verdicts_pass, labeled, n_boot=n_boot, seed=seed)
    ci, widened = _honest_interval(estimate.ci, counted.passes, judged, estimate.tpr, estimate.tnr)
    split = holdout.info(store, evaluator)
    notes = [
        f"The judge passes {estimate.observed:.0%} of {estimate.n_unlabeled} unlabeled run(s); corrected "
        f"for its test-split error rates (TPR {estimate.tpr:.0%}, TNR {estimate.tnr:.0%}) the true pass "
        f"rate is about {estimate.corrected:.0%} (95% interval {ci.low:.0%}–{ci.high:.0%}).",
        f"TPR and TNR come from alignment run {aid} on the test split "
        + (
            "(reused: no new look at the test split)."
            if reused
            else "(judged now; counted as a test evaluation)."
        ),
    ]
    if widened is not None:
        verdict = "passed" if estimate.observed == 1 else "failed"
        notes.append(
            f"The judge {verdict} all {estimate.n_unlabeled} unlabeled runs, so resampling them cannot show how "
            f"far the pass rate of the runs they stand for could be from {estimate.observed:.0%}: the interval "
            f"was widened to carry the Wilson 95% interval of that pass rate ({widened.low:.0%}–"
            f"{widened.high:.0%}) through the correction (the bootstrap alone gave "
            f"{estimate.ci.low:.0%}–{estimate.ci.high:.0%})."
        )
    if score_type.kind == "ordinal":
        notes.append(f"'Pass' means a score above the middle of {score_type.min}..{score_type.max}.")
    elif score_type.kind == "categorical":
        notes.append(f"'Pass' means the first label, {(score_type.labels or [''])[0]!r}.")
    elif score_type.kind == "pairwise":
        notes.append("'Pass' means output A wins (the combined verdict is A): the estimate is A's win rate.")
    if estimate.clipped:
        notes.append(
            "The raw estimate fell outside [0, 1] and was clipped: the unlabeled runs may differ from the "
            "labeled ones, or the test split is too small to pin down TPR and TNR."
        )
    if len(labeled) < 30:
        notes.append(
            f"TPR and TNR rest on {len(labeled)} test label(s), which is why the interval is wide; more "
            "labels narrow it."
        )
    if counted.errors:
        notes.append(
            f"{counted.errors} unlabeled run(s) could not be judged and are left out; call again to retry."
        )
    if already_labeled:
        notes.append(f"{already_labeled} run(s) already have a human label and were left out.")
    if (cost := cost_note(store, batch_ids)) is not None:
        notes.append(cost)
    tp, p = sum(positives), len(positives)
    tn, f = sum(negatives), len(negatives)
    return PassRateReport(
        evaluator=evaluator,
        prompt_ref=chosen.ref,
        model=chosen.endpoint.model,
        observed=estimate.observed,
        corrected=estimate.corrected,
        ci=ci,
        ci_widened=widened is not None,
        tpr=metrics.rate(tp, p),
        tnr=metrics.rate(tn, f),
        clipped=estimate.clipped,
        n_unlabeled=estimate.n_unlabeled,
        n_labeled=estimate.n_labeled,
        n_boot=estimate.n_boot,
        skipped_resamples=estimate.skipped_resamples,
        unlabeled_errors=counted.errors,
        requests=counted.requests,
        reasks=counted.reasks,
        already_labeled=already_labeled,
        test_alignment_run=aid,
        test_evaluations=split.test_evaluations if split else 0,
        notes=notes,
    )


async def _count_online(
    store: Store,
    score_type: ScoreType,
    chosen: Prompt,
    unlabeled: Unlabeled,
    concurrency: int,
    on_progress: Progress | None,
) -> Counted:
    """Judge the unlabeled runs online (cached verdicts first) and count the verdicts, in run order."""
    ids = [rid for page in unlabeled.pages() for rid in page]
    found, jobs = lookup(store, score_type, chosen, store.get_runs(ids))
    tally = Tally(on_progress, len(jobs), f"unlabeled runs ({chosen.ref})")
    verdicts = await judge_jobs(store, score_type, chosen, jobs, concurrency, tally)
    found.update({rid: v.score for rid, v in verdicts.items() if v.score is not None})
    failed = [v.error for v in verdicts.values() if v.score is None]
    passed = [score_type.is_pass(found[rid]) for rid in ids if rid in found]
    return Counted(
        passes=sum(passed),
        fails=len(passed) - sum(passed),
        errors=len(failed),
        first_error=failed[0] if failed else None,
        requests=sum(v.calls for v in verdicts.values()),
        reasks=sum(v.reasks for v in verdicts.values()),
        verdicts=passed,
    )


def _honest_interval(
    boot: Interval, passes: int, m: int, tpr: float, tnr: float
) -> tuple[Interval, Interval | None]:
    """The reported interval, and the Wilson interval of p_obs when it had to widen the bootstrap's.

    When the judge gave every unlabeled run the same verdict, every resample of them has the same pass rate, so
    the percentile bootstrap sees no sampling error in p_obs at all. Then the interval is widened to include the
    corrected rate at both Wilson 95% bounds of p_obs (TPR and TNR as measured).
    """
    if 0 < passes < m:
        return boot, None
    p_obs = metrics.wilson(passes, m)
    assert p_obs is not None  # m >= MIN_UNLABELED

    def corrected(p: float) -> float:
        return min(1.0, max(0.0, (p + tnr - 1) / (tpr + tnr - 1)))

    return Interval(
        low=min(boot.low, corrected(p_obs.low)), high=max(boot.high, corrected(p_obs.high))
    ), p_obs
