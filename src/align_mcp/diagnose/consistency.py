"""Judge sampling: self-consistency, suggested next labels and the corrected pass rate of unlabeled runs."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from align_mcp import config
from align_mcp.core import metrics
from align_mcp.core.metrics import flip_share
from align_mcp.core.models import (
    ConsistencyReport,
    ExampleConsistency,
    JudgeSettings,
    LabelSuggestion,
    PassRateReport,
    Score,
    ScoreType,
    SuggestionReport,
)
from align_mcp.engine import holdout
from align_mcp.engine.alignment import run_alignment
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.engine.evaluators import prompt_for
from align_mcp.engine.ingest import check_run_ids
from align_mcp.engine.queues import balance
from align_mcp.engine.samples import latest_samples
from align_mcp.errors import AlignError, EmptyReferenceSet, InvalidInput, JudgeUnreachable, NotFound
from align_mcp.llm.endpoint import Endpoint, resolve_endpoint
from align_mcp.llm.judge import Verdict, build_messages, cache_key, open_judge, response_schema
from align_mcp.llm.runner import Progress, Tally, run_batch
from align_mcp.store import Store, cache_row, dumps, loads, now_iso

T = TypeVar("T")

MAX_K = 20
MAX_SAMPLE = 500
MAX_REPEATS = 10
MAX_BUDGET = 10_000
CLASS_WEIGHT = 0.5


# ---- shared judge plumbing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prompt:
    ref: str
    text: str
    settings: JudgeSettings
    endpoint: Endpoint


@dataclass(frozen=True)
class _Job:
    run_id: str
    messages: list[dict[str, str]]
    key: str


def _resolve(
    store: Store, evaluator: str, prompt: str | int, env: config.Settings, temperature: float | None = None
) -> _Prompt:
    ref, text, settings, _ = prompt_for(store, evaluator, prompt)
    if temperature is not None:
        settings = settings.model_copy(update={"temperature": temperature})
    return _Prompt(ref, text, settings, resolve_endpoint(settings, env))


def _lookup(
    store: Store, score_type: ScoreType, prompt: _Prompt, runs: dict[str, dict[str, Any]]
) -> tuple[dict[str, Score], list[_Job]]:
    """Cached verdicts of `prompt` on `runs`, and the judge calls still needed for the rest."""
    schema = response_schema(score_type, prompt.settings.reasoning)
    jobs = []
    for rid, run in runs.items():
        messages = build_messages(prompt.text, run, prompt.settings.reasoning)
        jobs.append(_Job(rid, messages, cache_key(prompt.endpoint.model, prompt.settings, messages, schema)))
    hits = store.cache_get([job.key for job in jobs])
    found = {job.run_id: loads(hits[job.key]["judge_score"]) for job in jobs if job.key in hits}
    return found, [job for job in jobs if job.key not in hits]


async def _judge_jobs(
    store: Store,
    score_type: ScoreType,
    prompt: _Prompt,
    jobs: Sequence[_Job],
    concurrency: int,
    tally: Tally,
) -> dict[str, Verdict]:
    """Judge each job once, caching successful verdicts exactly as alignment runs do."""
    verdicts: dict[str, Verdict] = {}
    if not jobs:
        return verdicts
    async with open_judge(prompt.endpoint, prompt.settings, score_type) as judge:

        async def one(job: _Job) -> None:
            verdict = await judge.judge_example(job.messages)
            verdicts[job.run_id] = verdict
            if verdict.error is None:
                store.cache_put([cache_row(job.key, verdict)])

        await run_batch(jobs, one, concurrency=concurrency, progress=tally)
    return verdicts


def _score_name(score_type: ScoreType, score: Score) -> str:
    if score_type.kind == "binary":
        return f"{'pass' if score == 1 else 'fail'} ({score})"
    return repr(score)


# ---- judge self-consistency --------------------------------------------------------------------------------


def _most_common(valid: Sequence[Score]) -> Score:
    key = Counter(dumps(s) for s in valid).most_common(1)[0][0]
    return next(s for s in valid if dumps(s) == key)


async def _sample(
    store: Store,
    evaluator: str,
    score_type: ScoreType,
    prompt: _Prompt,
    run_ids: Sequence[str],
    k: int,
    concurrency: int,
    tally: Tally,
) -> int:
    """Judge every run k times with independent calls (never the cache); store the verdicts as a check."""
    runs = store.get_runs(run_ids)
    messages = {rid: build_messages(prompt.text, runs[rid], prompt.settings.reasoning) for rid in run_ids}
    check_id = store.create_consistency_check(
        {
            "evaluator": evaluator,
            "prompt_ref": prompt.ref,
            "prompt": prompt.text,
            "judge": prompt.settings.model_dump_json(),
            "model": prompt.endpoint.model,
            "temperature": prompt.settings.temperature,
            "k": k,
            "status": "running",
            "started_at": now_iso(),
        }
    )
    jobs = [(rid, i) for i in range(k) for rid in run_ids]
    status = "interrupted"
    try:
        async with open_judge(prompt.endpoint, prompt.settings, score_type) as judge:

            async def one(job: tuple[str, int]) -> None:
                rid, i = job
                verdict = await judge.judge_example(messages[rid])
                store.record_samples(
                    check_id,
                    [
                        {
                            "run_id": rid,
                            "sample": i,
                            "judge_score": dumps(verdict.score) if verdict.score is not None else None,
                            "reasoning": verdict.reasoning,
                            "error": verdict.error,
                            "prompt_tokens": verdict.prompt_tokens,
                            "completion_tokens": verdict.completion_tokens,
                            "latency_ms": verdict.latency_ms,
                        }
                    ],
                )

            await run_batch(jobs, one, concurrency=concurrency, progress=tally)
        status = "completed"
    except AlignError as e:
        kept = len(store.consistency_samples(check_id))
        raise type(e)(f"{e} Consistency check {check_id}: {kept} of {len(jobs)} samples kept.") from e
    finally:
        with anyio.CancelScope(shield=True):
            store.update_consistency_check(check_id, status=status, finished_at=now_iso())
    return check_id


async def self_consistency(
    store: Store,
    evaluator: str,
    *,
    k: int = 5,
    run_ids: Sequence[str] | None = None,
    sample: int = 20,
    prompt: str | int = "draft",
    temperature: float | None = None,
    seed: int = 0,
    concurrency: int | None = None,
    on_progress: Progress | None = None,
    env: config.Settings | None = None,
) -> ConsistencyReport:
    """Judge the same runs K times and report how often the verdict flips.

    Each of the K calls is a separate request (the result cache is bypassed; no reliance on the API's `n`), at
    the prompt's temperature unless `temperature` is given. Runs are `run_ids`, or a seeded random `sample` of
    the labeled dev runs (all labeled runs before a holdout exists). Verdicts are stored, so the misaligned
    view can flag unstable runs (unstable_run_ids). At temperature 0 many servers are deterministic: agreement
    there says little, and the report says so.
    """
    env = env or config.load()
    ev = get_evaluator(store, evaluator)
    if not 2 <= k <= MAX_K:
        raise InvalidInput(
            f"k={k}: self-consistency compares repeated verdicts, so it needs at least 2 samples per run "
            f"(at most {MAX_K})."
        )
    if temperature is not None and not 0 <= temperature <= 2:
        raise InvalidInput(f"temperature={temperature} must be between 0 and 2.")
    if not 1 <= sample <= MAX_SAMPLE:
        raise InvalidInput(f"sample={sample} must be between 1 and {MAX_SAMPLE}.")
    if run_ids is not None:
        ids = check_run_ids(store, run_ids)
        if len(ids) > MAX_SAMPLE:
            raise InvalidInput(f"{len(ids)} run ids; check at most {MAX_SAMPLE} per call.")
    else:
        _, examples = holdout.examples_for(store, evaluator, "auto")
        if not examples:
            raise EmptyReferenceSet(
                f"Evaluator {evaluator!r} has no labeled runs to sample from. Pass run_ids=[...] to check "
                "any runs, or label some first."
            )
        ids = [rid for rid, _ in examples]
        if len(ids) > sample:
            ids = sorted(random.Random(seed).sample(ids, sample))
    chosen = _resolve(store, evaluator, prompt, env, temperature)
    tally = Tally(on_progress, k * len(ids), f"self-consistency ({chosen.ref}, k={k})")
    check_id = await _sample(
        store, evaluator, ev.score_type, chosen, ids, k, concurrency or env.concurrency, tally
    )
    return consistency_report(store, check_id)


def consistency_report(store: Store, check_id: int) -> ConsistencyReport:
    """The stored result of one self-consistency check."""
    check = store.get_consistency_check(check_id)
    if check is None:
        raise NotFound(f"No self-consistency check {check_id}.")
    k = int(check["k"])
    scores: dict[str, list[Score | None]] = {}
    calls = 0
    for r in store.consistency_samples(check_id):
        scores.setdefault(r["run_id"], [None] * k)[r["sample"]] = (
            loads(r["judge_score"]) if r["error"] is None else None
        )
        calls += 1
    examples = []
    for rid, verdicts in scores.items():
        valid = [s for s in verdicts if s is not None]
        share = flip_share(verdicts)
        examples.append(
            ExampleConsistency(
                run_id=rid,
                scores=verdicts,
                modal_score=_most_common(valid) if valid else None,
                flip_share=share,
                flipped=len({dumps(s) for s in valid}) > 1,
                errors=k - len(valid),
            )
        )
    examples.sort(key=lambda e: (-(e.flip_share or 0), e.run_id))
    measured = [e for e in examples if e.flip_share is not None]
    flipped = [e.run_id for e in measured if e.flipped]
    errors = sum(e.errors for e in examples)
    temperature = float(check["temperature"])
    notes = []
    if measured and not flipped:
        if temperature == 0:
            notes.append(
                f"All {k} samples agreed on every run at temperature 0. Many servers are deterministic at "
                "temperature 0, so this says little about how sure the judge is; rerun with temperature=0.7 "
                "(or the temperature you will use) to probe it."
            )
        else:
            notes.append(
                f"All {k} samples agreed on every run at temperature {temperature:g}: the judge is stable."
            )
    if flipped:
        notes.append(
            f"{len(flipped)} of {len(measured)} run(s) flip between samples at temperature {temperature:g}: "
            "there the verdict is close to a coin toss, usually because the rubric leaves the case open. "
            "The misaligned view flags them as unstable."
        )
    if errors:
        notes.append(f"{errors} judge call(s) failed and are left out of every rate.")
    if check["status"] != "completed":
        notes.append(f"Check {check_id} is {check['status']}: some samples are missing.")
    return ConsistencyReport(
        check_id=check_id,
        evaluator=check["evaluator"],
        prompt_ref=check["prompt_ref"],
        model=check["model"],
        temperature=temperature,
        k=k,
        n=len(examples),
        flip_rate=metrics.rate(len(flipped), len(measured)),
        mean_flip_share=(sum(e.flip_share or 0 for e in measured) / len(measured) if measured else None),
        errors=errors,
        judge_calls=calls,
        examples=examples,
        notes=notes,
    )


# ---- suggested next labels ---------------------------------------------------------------------------------


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
            f"The queue of {evaluator!r} has no unlabeled runs to rank. Add some with add_to_queue."
        )
    notes: list[str] = []
    draft = _resolve(store, evaluator, "draft", env)
    saved: _Prompt | None = None
    if ev.latest_version is not None:
        latest = _resolve(store, evaluator, ev.latest_version, env)
        if latest.text == draft.text and latest.settings == draft.settings:
            notes.append(
                f"The draft equals {latest.ref}, so there is no version disagreement to rank by; edit the "
                "draft (update_draft) to use it."
            )
        else:
            saved = latest
    runs = store.get_runs(candidates)
    order = {rid: i for i, rid in enumerate(candidates)}
    draft_scores, draft_jobs = _lookup(store, score_type, draft, runs)
    saved_scores, saved_jobs = _lookup(store, score_type, saved, runs) if saved else ({}, [])
    hits = len(draft_scores) + len(saved_scores)
    # Spend the budget run by run, so the runs judged get both verdicts.
    planned = sorted(
        [(0, job) for job in draft_jobs] + [(1, job) for job in saved_jobs],
        key=lambda pj: (order[pj[1].run_id], pj[0]),
    )[:budget]
    spare = budget - len(planned)
    repeat_ids = candidates[: spare // repeats] if repeats else []
    tally = Tally(on_progress, len(planned) + len(repeat_ids) * repeats, "suggest labels")
    limit = concurrency or env.concurrency
    for which, scores, prompt in ((0, draft_scores, draft), (1, saved_scores, saved)):
        jobs = [job for w, job in planned if w == which]
        if prompt is not None and jobs:
            verdicts = await _judge_jobs(store, score_type, prompt, jobs, limit, tally)
            scores.update({rid: v.score for rid, v in verdicts.items() if v.score is not None})
    if repeat_ids:
        await _sample(store, evaluator, score_type, draft, repeat_ids, repeats, limit, tally)
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
            predicted = _most_common([x for x in samples[rid] if x is not None])
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
            f"{unjudged} of {len(candidates)} queued run(s) have no draft verdict: the budget of {budget} "
            "judge calls ran out. Raise budget to rank them; verdicts are cached, so no call is repeated."
        )
    if not any(flip_share(v) for v in samples.values()) and not repeats:
        notes.append(
            "No repeated judge samples disagree yet: pass repeats=3 (or run self_consistency on queued "
            "runs) to rank by judge instability too."
        )
    notes.append(
        "Label these with submit_label; show the labeler the run (get_run), not the judge's verdicts, so "
        "the label stays independent."
    )
    return SuggestionReport(
        evaluator=evaluator,
        candidates=len(candidates),
        suggestions=suggestions[:n],
        saved_version=int(saved.ref[1:]) if saved else None,
        judge_calls=len(planned) + len(repeat_ids) * repeats,
        cache_hits=hits,
        budget=budget,
        unjudged=unjudged,
        notes=notes,
    )


# ---- corrected pass rate -----------------------------------------------------------------------------------


def _unlabeled_ids(
    store: Store, evaluator: str, run_ids: Sequence[str] | None, source: str | None
) -> tuple[list[str], int]:
    if run_ids is not None and source is not None:
        raise InvalidInput("Give run_ids or a source, not both.")
    if run_ids is not None:
        ids = check_run_ids(store, run_ids)
    elif source is not None:
        if store.get_source(source) is None:
            known = [s["name"] for s in store.list_sources()]
            raise NotFound(
                f"No source named {source!r}. Known: {', '.join(known) or 'none'}. "
                "Import runs with import_runs."
            )
        ids = store.run_ids(source=source)
    else:
        raise InvalidInput(
            "Say which unlabeled runs to estimate the pass rate of: run_ids=[...] or source=..."
        )
    labeled = store.current_label_rows(evaluator, ids)
    unlabeled = [rid for rid in ids if rid not in labeled]
    if not unlabeled:
        raise InvalidInput(
            f"All {len(ids)} run(s) already have a human label for {evaluator!r}; the corrected pass rate "
            "is for unlabeled runs."
        )
    return unlabeled, len(ids) - len(unlabeled)


def _test_run(
    store: Store, evaluator: str, prompt: _Prompt, examples: Sequence[tuple[str, Score]]
) -> int | None:
    """A completed, error-free test-split run of exactly this prompt over exactly these labels, if any."""
    wanted = {rid: dumps(score) for rid, score in examples}
    for aid in reversed(store.alignment_run_ids(evaluator)):
        row = store.alignment_run_row(aid)
        if (
            row is None
            or row["split"] != "test"
            or row["status"] != "completed"
            or (row["prompt"], row["judge"], row["model"])
            != (prompt.text, prompt.settings.model_dump_json(), prompt.endpoint.model)
        ):
            continue
        results = store.alignment_results(aid)
        if (
            all(r["error"] is None for r in results)
            and {r["run_id"]: r["human_score"] for r in results} == wanted
        ):
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
) -> PassRateReport:
    """Estimate the true pass rate of unlabeled runs from the judge's verdicts, corrected for its errors.

    θ = (p_obs + TNR − 1) / (TPR + TNR − 1), clipped to [0, 1], with a bootstrap 95% interval; p_obs is the
    share of the unlabeled runs (`run_ids`, or every unlabeled run of `source`) the judge passes with `prompt`
    (default: the latest saved version), and TPR / TNR come from the evaluator's labeled test split judged
    with the same prompt (judged now if needed, which counts as a look at the test split). Refuses when a
    class is missing from the test split or TPR + TNR ≤ 1 (the judge is no better than chance). Verdicts are
    cached.
    """
    env = env or config.load()
    ev = get_evaluator(store, evaluator)
    score_type = ev.score_type
    if not 1 <= n_boot <= 100_000:
        raise InvalidInput(f"n_boot={n_boot} must be between 1 and 100000.")
    ids, already_labeled = _unlabeled_ids(store, evaluator, run_ids, source)
    chosen = _resolve(store, evaluator, prompt, env)
    _, examples = holdout.examples_for(store, evaluator, "test")
    humans = [(score_type.is_pass(h), score_type.is_pass(h)) for _, h in examples]
    if len({h for h, _ in humans}) < 2:
        metrics.corrected_pass_rate([True], humans)  # refuses a missing class before any bootstrap: its words

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
        )
        aid = report.run.id
    labeled = [
        (score_type.is_pass(loads(r["human_score"])), score_type.is_pass(loads(r["judge_score"])))
        for r in store.alignment_results(aid)
        if r["error"] is None and r["judge_score"] is not None
    ]
    positives = [j for h, j in labeled if h]
    negatives = [not j for h, j in labeled if not h]
    if (
        not positives
        or not negatives
        or (sum(positives) / len(positives) + sum(negatives) / len(negatives) <= 1)
    ):
        metrics.corrected_pass_rate([True], labeled)  # refuses before any bootstrap and before judging more

    runs = store.get_runs(ids)
    found, jobs = _lookup(store, score_type, chosen, runs)
    tally = Tally(on_progress, len(jobs), f"unlabeled runs ({chosen.ref})")
    verdicts = await _judge_jobs(store, score_type, chosen, jobs, concurrency or env.concurrency, tally)
    found.update({rid: v.score for rid, v in verdicts.items() if v.score is not None})
    failed = [v.error for v in verdicts.values() if v.score is None]
    if not found:
        raise JudgeUnreachable(
            f"None of the {len(ids)} unlabeled runs could be judged (first error: {failed[0]}). Check the "
            "judge and call this again; verdicts that succeed are cached."
        )
    estimate = metrics.corrected_pass_rate(
        [score_type.is_pass(found[rid]) for rid in ids if rid in found], labeled, n_boot=n_boot, seed=seed
    )
    split = holdout.info(store, evaluator)
    notes = [
        f"The judge passes {estimate.observed:.0%} of {estimate.n_unlabeled} unlabeled run(s); corrected "
        f"for its test-split error rates (TPR {estimate.tpr:.0%}, TNR {estimate.tnr:.0%}) the true pass "
        f"rate is about {estimate.corrected:.0%} (95% interval "
        f"{estimate.ci.low:.0%}–{estimate.ci.high:.0%}).",
        f"TPR and TNR come from alignment run {aid} on the test split "
        + (
            "(reused: no new look at the test split)."
            if reused
            else "(judged now; counted as a test evaluation)."
        ),
    ]
    if score_type.kind == "ordinal":
        notes.append(f"'Pass' means a score above the middle of {score_type.min}..{score_type.max}.")
    elif score_type.kind == "categorical":
        notes.append(f"'Pass' means the first label, {(score_type.labels or [''])[0]!r}.")
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
    if failed:
        notes.append(
            f"{len(failed)} unlabeled run(s) could not be judged and are left out; call again to retry."
        )
    if already_labeled:
        notes.append(f"{already_labeled} run(s) already have a human label and were left out.")
    tp, p = sum(positives), len(positives)
    tn, f = sum(negatives), len(negatives)
    return PassRateReport(
        evaluator=evaluator,
        prompt_ref=chosen.ref,
        model=chosen.endpoint.model,
        observed=estimate.observed,
        corrected=estimate.corrected,
        ci=estimate.ci,
        tpr=metrics.rate(tp, p),
        tnr=metrics.rate(tn, f),
        clipped=estimate.clipped,
        n_unlabeled=estimate.n_unlabeled,
        n_labeled=estimate.n_labeled,
        n_boot=estimate.n_boot,
        skipped_resamples=estimate.skipped_resamples,
        unlabeled_errors=len(failed),
        already_labeled=already_labeled,
        test_alignment_run=aid,
        test_evaluations=split.test_evaluations if split else 0,
        notes=notes,
    )
