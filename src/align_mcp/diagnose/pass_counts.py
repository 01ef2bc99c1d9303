"""Unlabeled runs of a pass-rate estimate read a page at a time, judged through the Batch API, and counted.

Nothing here holds every run or verdict: run ids are read from the store in pages, the requests for the Batch
API are made lazily from each page (those with a cached verdict are left out), and once the batches are merged
the verdicts are read back page by page and counted. The estimate needs only the counts; the verdicts
themselves are kept (as pass/fail in run order) only while there are few enough to resample one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field

from align_mcp.core.metrics import EXACT_RESAMPLE
from align_mcp.core.models import ScoreType
from align_mcp.diagnose.sampling import Prompt
from align_mcp.engine import swap
from align_mcp.engine.batches import BatchOptions, run_job
from align_mcp.engine.ingest import check_run_ids
from align_mcp.errors import InvalidInput, NextStep, NotFound
from align_mcp.llm.client import Message
from align_mcp.llm.judge import Verdict, build_messages, cache_key, response_schema
from align_mcp.llm.runner import Progress
from align_mcp.store import Store
from align_mcp.store import batches as batch_jobs
from align_mcp.store.paging import PAGE, source_run_id_pages

KIND = "pass_rate"


@dataclass(frozen=True)
class Unlabeled:
    """The unlabeled runs of an estimate: `pages()` reads their ids again each time it is called, in order."""

    pages: Callable[[], Iterator[list[str]]]
    count: int
    already_labeled: int


@dataclass
class Counted:
    """The judge's verdicts on the unlabeled runs, counted; `verdicts` (pass or not, in run order) is kept only
    while there are at most EXACT_RESAMPLE of them, else None."""

    passes: int = 0
    fails: int = 0
    errors: int = 0
    first_error: str | None = None
    requests: int = 0
    reasks: int = 0
    verdicts: list[bool] | None = field(default_factory=list)
    job_ids: list[int] = field(default_factory=list)


def unlabeled_runs(
    store: Store, evaluator: str, run_ids: Sequence[str] | None, source: str | None
) -> Unlabeled:
    """The runs (`run_ids`, or every run of `source`) without a current human label for `evaluator`; refuses
    when none are named or all are labeled."""
    if run_ids is not None and source is not None:
        raise InvalidInput("Give run_ids or a source, not both.")
    if run_ids is not None:
        ids = check_run_ids(store, run_ids)

        def named() -> Iterator[list[str]]:
            for start in range(0, len(ids), PAGE):
                yield ids[start : start + PAGE]

        all_pages = named
    elif source is not None:
        if store.get_source(source) is None:
            known = [s.name for s in store.list_sources()]
            raise NotFound(
                f"No source named {source!r}. Known: {', '.join(known) or 'none'}.", NextStep("import_runs")
            )

        def of_source() -> Iterator[list[str]]:
            return source_run_id_pages(store, source)

        all_pages = of_source
    else:
        raise InvalidInput(
            "Say which unlabeled runs to estimate the pass rate of: run_ids=[...] or source=..."
        )

    def pages() -> Iterator[list[str]]:
        for page in all_pages():
            labeled = store.current_label_rows(evaluator, page)
            unlabeled = [rid for rid in page if rid not in labeled]
            if unlabeled:
                yield unlabeled

    total = count = 0
    for page in all_pages():
        total += len(page)
        count += len(page) - len(store.current_label_rows(evaluator, page))
    if not count:
        raise InvalidInput(
            f"All {total} run(s) already have a human label for {evaluator!r}; the corrected pass rate "
            "is for unlabeled runs."
        )
    return Unlabeled(pages, count, total - count)


Shown = list[tuple[str, list[tuple[list[Message], str]]]]


async def count_in_batch(
    store: Store,
    evaluator: str,
    score_type: ScoreType,
    prompt: Prompt,
    unlabeled: Unlabeled,
    options: BatchOptions,
    on_progress: Progress | None,
) -> Counted:
    """Judge the unlabeled runs through the Batch API (cached verdicts are not asked again) and count the
    verdicts. An interrupted call's batch jobs (same evaluator and judge) are polled and merged first, so calling
    again resends nothing they hold; a request one of them answered with an error is not sent again."""
    endpoint, settings = prompt.endpoint, prompt.settings
    schema = response_schema(score_type, settings.reasoning)
    what = f"unlabeled runs ({prompt.ref})"

    def shown(page: list[str]) -> Shown:
        runs = store.get_runs(page)
        out: Shown = []
        for rid in page:
            run = runs.get(rid)
            if run is None:
                continue  # undecodable (get_runs says why in the log): left out, as online
            orders = [
                build_messages(prompt.text, view, settings.reasoning)
                for view in swap.views(score_type, run.as_dict())
            ]
            out.append((rid, [(m, cache_key(endpoint, settings, m, schema)) for m in orders]))
        return out

    def failed_in(job_ids: Sequence[int], keys: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for job_id in job_ids:
            out.update({k: e.error for k, e in batch_jobs.errors(store, job_id, keys).items()})
        return out

    def requests(skip_failed_of: Sequence[int]) -> Callable[[], Generator[tuple[str, list[Message]]]]:
        def made() -> Generator[tuple[str, list[Message]]]:
            for page in unlabeled.pages():
                page_shown = shown(page)
                keys = [key for _, orders in page_shown for _, key in orders]
                hits = store.cache_get(keys)
                failed = failed_in(skip_failed_of, [k for k in keys if k not in hits])
                sent: set[str] = set()
                for _, orders in page_shown:
                    for messages, key in orders:
                        if key not in hits and key not in failed and key not in sent:
                            sent.add(key)
                            yield key, messages

        return made

    counted = Counted()
    for open_job in batch_jobs.open_jobs(store, KIND, evaluator, endpoint.base_url, endpoint.model):
        await run_job(
            store,
            open_job.id,
            requests(()),
            endpoint,
            settings,
            score_type,
            what=what,
            on_progress=on_progress,
            options=options,
        )
        counted.job_ids.append(open_job.id)
    left = requests(counted.job_ids)
    probe = left()
    anything_left = next(probe, None) is not None
    probe.close()
    if anything_left:
        job_id = batch_jobs.create_job(store, KIND, evaluator, None, endpoint.base_url, endpoint.model)
        await run_job(
            store,
            job_id,
            left,
            endpoint,
            settings,
            score_type,
            what=what,
            on_progress=on_progress,
            options=options,
        )
        counted.job_ids.append(job_id)
    for job_id in counted.job_ids:
        job = batch_jobs.get_job(store, job_id)
        counted.requests += job.requests if job is not None else 0

    for page in unlabeled.pages():
        page_shown = shown(page)
        keys = [key for _, orders in page_shown for _, key in orders]
        hits = store.cache_get(keys)
        failed = failed_in(counted.job_ids, [k for k in keys if k not in hits])
        for _, orders in page_shown:
            judged = []
            for _, key in orders:
                hit = hits.get(key)
                if hit is not None:
                    judged.append(swap.from_cache(hit))
                else:
                    judged.append(Verdict(None, None, failed.get(key, "no result from the batch")))
            verdict, _ = swap.combine(judged)
            if verdict.score is None:
                counted.errors += 1
                counted.first_error = counted.first_error or verdict.error
                continue
            passed = score_type.is_pass(verdict.score)
            counted.passes += passed
            counted.fails += not passed
            if counted.verdicts is not None:
                counted.verdicts.append(passed)
                if len(counted.verdicts) > EXACT_RESAMPLE:
                    counted.verdicts = None
    return counted
