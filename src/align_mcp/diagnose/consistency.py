"""Judge self-consistency: the same runs judged K times, and how often the verdict flips."""

from __future__ import annotations

import random
from collections.abc import Sequence

from align_mcp import config
from align_mcp.core import metrics
from align_mcp.core.metrics import flip_share
from align_mcp.core.models import ConsistencyReport, ExampleConsistency, Score
from align_mcp.diagnose.consistency_batch import sample_in_batch
from align_mcp.diagnose.sampling import most_common, resolve, sample_repeatedly
from align_mcp.engine import holdout
from align_mcp.engine.batches import BatchOptions, cost_note
from align_mcp.engine.evaluators import get as get_evaluator
from align_mcp.engine.ingest import check_run_ids
from align_mcp.errors import EmptyReferenceSet, InvalidInput, NotFound
from align_mcp.llm.runner import Progress, Tally
from align_mcp.store import Store

MAX_K = 20
MAX_SAMPLE = 500


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
    batch: bool | BatchOptions = False,
) -> ConsistencyReport:
    """Judge the same runs K times and report how often the verdict flips.

    Each of the K calls is a separate request (the result cache is bypassed; no reliance on the API's `n`), at
    the prompt's temperature unless `temperature` is given. Runs are `run_ids`, or a seeded random `sample` of
    the labeled dev runs (all labeled runs before a holdout exists). Verdicts are stored, so the misaligned
    view can flag unstable runs (unstable_run_ids). At temperature 0 many servers are deterministic: agreement
    there says little, and the report says so. `batch` sends the samples through the provider's Batch API (True,
    or BatchOptions): one request per run, sample and order, never the cache; calling again with the same
    arguments after an interruption polls the stored batches instead of sending again.
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
    chosen = resolve(store, evaluator, prompt, env, temperature)
    if batch is not False:
        options = batch if isinstance(batch, BatchOptions) else BatchOptions()
        check_id, job_id = await sample_in_batch(
            store, evaluator, ev.score_type, chosen, ids, k, options, on_progress
        )
        report = consistency_report(store, check_id)
        if (cost := cost_note(store, [job_id])) is not None:
            report.notes.append(cost)
        return report
    tally = Tally(on_progress, k * len(ids), f"self-consistency ({chosen.ref}, k={k})")
    check_id = await sample_repeatedly(
        store, evaluator, ev.score_type, chosen, ids, k, concurrency or env.concurrency, tally
    )
    return consistency_report(store, check_id)


def consistency_report(store: Store, check_id: int) -> ConsistencyReport:
    """The stored result of one self-consistency check."""
    check = store.get_consistency_check(check_id)
    if check is None:
        raise NotFound(f"No self-consistency check {check_id}.")
    k = check.k
    scores: dict[str, list[Score | None]] = {}
    calls = judged = requests = reasks = 0
    for r in store.consistency_samples(check_id):
        scores.setdefault(r.run_id, [None] * k)[r.sample] = r.judge_score if r.error is None else None
        calls += 1
        judged += r.error is None
        requests += r.requests
        reasks += r.reasks
    examples = []
    for rid, verdicts in scores.items():
        valid = [s for s in verdicts if s is not None]
        share = flip_share(verdicts)
        examples.append(
            ExampleConsistency(
                run_id=rid,
                scores=verdicts,
                modal_score=most_common(valid) if valid else None,
                flip_share=share,
                flipped=len(set(valid)) > 1,
                errors=k - len(valid),
            )
        )
    examples.sort(key=lambda e: (-(e.flip_share or 0), e.run_id))
    measured = [e for e in examples if e.flip_share is not None]
    flipped = [e.run_id for e in measured if e.flipped]
    errors = sum(e.errors for e in examples)
    temperature = check.temperature
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
        notes.append(f"{errors} sample(s) failed and are left out of every rate.")
    if check.status != "completed":
        notes.append(f"Check {check_id} is {check.status}: some samples are missing.")
    return ConsistencyReport(
        check_id=check_id,
        evaluator=check.evaluator,
        prompt_ref=check.prompt_ref,
        model=check.model,
        temperature=temperature,
        k=k,
        n=len(examples),
        flip_rate=metrics.rate(len(flipped), len(measured)),
        mean_flip_share=(sum(e.flip_share or 0 for e in measured) / len(measured) if measured else None),
        errors=errors,
        judge_calls=calls,
        judged=judged,
        requests=requests,
        reasks=reasks,
        examples=examples,
        notes=notes,
    )
