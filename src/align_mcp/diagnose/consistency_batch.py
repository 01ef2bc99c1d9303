"""Self-consistency samples judged through the Batch API: one request per run, sample and order.

Each request's custom id names its sample (`s<sample>o<order>:<run id>`), so the K repeated requests of a run,
identical in body, are K distinct requests, each judged afresh. Their verdicts are kept with the batch job,
never taken from or written to the judge cache (as online); once every part is merged, each (run, sample)
becomes one stored sample of the check: a pairwise run's two orders combined as online, an error line (or a
request the batch never ran) that sample's error. The job is stored with its check, so calling again with the
same arguments after an interruption polls it instead of sending again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from align_mcp.core.models import ScoreType
from align_mcp.diagnose.sampling import Prompt
from align_mcp.engine import swap
from align_mcp.engine.batches import BatchOptions, run_job
from align_mcp.errors import AlignError
from align_mcp.llm.client import Message
from align_mcp.llm.judge import Verdict, build_messages
from align_mcp.llm.runner import Progress
from align_mcp.store import NewSample, Store
from align_mcp.store import batches as batch_jobs

KIND = "consistency"


def sample_request_id(sample: int, order: int, run_id: str) -> str:
    """The request id of one order of one sample of a run."""
    return f"s{sample}o{order}:{run_id}"


def run_of(custom: str) -> str:
    """The run id a request id names."""
    return custom.split(":", 1)[1]


def _resumable(
    store: Store, evaluator: str, prompt: Prompt, k: int, run_ids: Sequence[str]
) -> tuple[int, int] | None:
    """An open consistency job (and its check) of this evaluator and judge that sampled these runs with this
    prompt, settings and k: an interrupted call with the same arguments."""
    endpoint = prompt.endpoint
    wanted = set(run_ids)
    for job in batch_jobs.open_jobs(store, KIND, evaluator, endpoint.base_url, endpoint.model):
        check = None if job.check_id is None else store.get_consistency_check(job.check_id)
        if check is None or (check.prompt, check.judge, check.k, check.temperature) != (
            prompt.text,
            prompt.settings,
            k,
            prompt.settings.temperature,
        ):
            continue
        if {run_of(cid) for cid in batch_jobs.submitted_ids(store, job.id)} <= wanted:
            return job.id, check.id
    return None


async def sample_in_batch(
    store: Store,
    evaluator: str,
    score_type: ScoreType,
    prompt: Prompt,
    run_ids: Sequence[str],
    k: int,
    options: BatchOptions,
    on_progress: Progress | None,
) -> tuple[int, int]:
    """Judge every run k times through the Batch API (never the cache) and store the verdicts as a check's
    samples; the check's id and the batch job's. Resumes the stored job of an interrupted call with the same arguments."""
    runs = store.get_runs(run_ids)
    shown = {
        rid: [
            build_messages(prompt.text, view, prompt.settings.reasoning)
            for view in swap.views(score_type, runs[rid].as_dict())
        ]
        for rid in run_ids
    }

    def requests() -> Iterator[tuple[str, list[Message]]]:
        for i in range(k):
            for rid in run_ids:
                for order, messages in enumerate(shown[rid]):
                    yield sample_request_id(i, order, rid), messages

    found = _resumable(store, evaluator, prompt, k, run_ids)
    if found is not None:
        job_id, check_id = found
    else:
        check_id = store.create_consistency_check(
            evaluator,
            prompt.ref,
            prompt.text,
            prompt.settings,
            prompt.endpoint.model,
            prompt.settings.temperature,
            k,
        )
        job_id = batch_jobs.create_job(
            store, KIND, evaluator, None, prompt.endpoint.base_url, prompt.endpoint.model, check_id
        )
    try:
        await run_job(
            store,
            job_id,
            requests,
            prompt.endpoint,
            prompt.settings,
            score_type,
            what=f"self-consistency ({prompt.ref}, k={k})",
            on_progress=on_progress,
            options=options,
        )
    except AlignError as e:
        raise type(e)(
            f"{e} Consistency check {check_id} keeps its batch job {job_id}: call again with the same arguments "
            "to poll it instead of sending again."
        ) from e
    verdicts = batch_jobs.results(store, job_id)
    errors = batch_jobs.errors(store, job_id)
    samples = []
    for i in range(k):
        for rid in run_ids:
            judged = []
            for order in range(len(shown[rid])):
                cid = sample_request_id(i, order, rid)
                hit = verdicts.get(cid)
                if hit is not None:
                    judged.append(
                        Verdict(
                            hit.judge_score,
                            hit.reasoning,
                            None,
                            hit.prompt_tokens,
                            hit.completion_tokens,
                            hit.cached_tokens,
                            calls=1,
                        )
                    )
                else:
                    error = errors.get(cid)
                    judged.append(
                        Verdict(None, None, error.error if error else "no result from the batch", calls=1)
                    )
            verdict, _ = swap.combine(judged)
            samples.append(
                NewSample(
                    run_id=rid,
                    sample=i,
                    judge_score=verdict.score,
                    reasoning=verdict.reasoning,
                    error=verdict.error,
                    prompt_tokens=verdict.prompt_tokens,
                    completion_tokens=verdict.completion_tokens,
                    latency_ms=None,
                    requests=verdict.calls,
                    reasks=0,
                )
            )
    store.record_samples(check_id, samples)
    store.finish_consistency_check(check_id, "completed")
    return check_id, job_id
