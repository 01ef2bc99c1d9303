"""A jury's alignment run: every member judges each pending example, each verdict cached on its own, and the
combined verdict becomes the example's judge score; plus each member's agreement and the jury's split rate."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

import anyio

from align_mcp import config
from align_mcp.core import metrics
from align_mcp.core.jury import jury_verdict, member_label, member_settings, split
from align_mcp.core.models import JudgeSettings, JuryReport, MemberAgreement, Note, Score, ScoreType
from align_mcp.engine import pending as pending_runs
from align_mcp.errors import AlignError
from align_mcp.llm.client import OnRequest
from align_mcp.llm.endpoint import Endpoint, resolve_endpoint
from align_mcp.llm.judge import Judge, Verdict, build_messages, cache_key, open_judge, response_schema
from align_mcp.llm.runner import Progress, Tally, run_batch
from align_mcp.store import AlignmentRunRow, CacheEntry, MemberVerdict, NewResult, RunRow, Store


@dataclass(frozen=True)
class Member:
    """One member resolved for a run: its label, settings, endpoint and own prompt template (None: the shared one)."""

    label: str
    settings: JudgeSettings
    endpoint: Endpoint
    own_prompt: str | None

    def template(self, shared: str) -> str:
        return self.own_prompt if self.own_prompt is not None else shared


def members(settings: JudgeSettings, env: config.Settings) -> list[Member]:
    """The jury's members with their endpoints resolved (a JudgeConfigError names the member's missing piece)."""
    out = []
    for i, m in enumerate(settings.members):
        own = member_settings(settings, m)
        out.append(Member(member_label(m, i), own, resolve_endpoint(own, env), m.prompt))
    return out


def jury_endpoint(settings: JudgeSettings, env: config.Settings) -> Endpoint:
    """What a jury run records as its model and endpoint (no key: each member is called at its own endpoint)."""
    resolved = members(settings, env)
    return Endpoint(
        base_url=" ".join(m.endpoint.base_url for m in resolved),
        api_key="",
        model=f"jury({', '.join(m.endpoint.model for m in resolved)}; {settings.combine})",
    )


def _combined(
    rid: str, settings: JudgeSettings, score_type: ScoreType, verdicts: list[tuple[str, Verdict]]
) -> NewResult:
    """The example's result: the rule over the members that answered, each member's line as the reasoning, the
    calls and tokens of all of them; an error only when no member answered."""
    assert settings.combine is not None
    score, reasoning, error = jury_verdict(
        settings.combine, score_type, [(label, v.score, v.reasoning, v.error) for label, v in verdicts]
    )

    def total(values: list[int | None]) -> int | None:
        known = [x for x in values if x is not None]
        return sum(known) if known else None

    return NewResult(
        run_id=rid,
        judge_score=score,
        reasoning=reasoning,
        error=error,
        prompt_tokens=total([v.prompt_tokens for _, v in verdicts]),
        completion_tokens=total([v.completion_tokens for _, v in verdicts]),
        cached_tokens=total([v.cached_tokens for _, v in verdicts]),
        latency_ms=max((v.latency_ms or 0.0 for _, v in verdicts), default=0.0),
        cached=all(v.calls == 0 for _, v in verdicts),
        requests=sum(v.calls for _, v in verdicts),
        reasks=sum(v.reasks for _, v in verdicts),
        waited_s=sum(v.waited_s for _, v in verdicts),
    )


async def judge_pending(
    store: Store,
    aid: int,
    row: AlignmentRunRow,
    score_type: ScoreType,
    env: config.Settings,
    concurrency: int,
    on_progress: Progress | None,
    what: str,
    on_request: OnRequest | None = None,
) -> AlignError | None:
    """Judge the run's pending examples with every member (one call per member, all sharing `concurrency`);
    return the AlignError that stopped the batch, if one did. An example is recorded once all its members have
    answered; a member's error leaves it out of the combination, and only an example no member could judge is
    an error."""
    settings = row.judge
    jury = members(settings, env)
    schema = response_schema(score_type, settings.reasoning)
    pending = store.pending_examples(aid)

    def calls(run: RunRow) -> list[tuple[list[dict[str, str]], str]]:
        """One call per member: its messages and cache key."""
        out = []
        for m in jury:
            messages = build_messages(m.template(row.prompt), run.as_dict(), settings.reasoning)
            out.append((messages, cache_key(m.endpoint, m.settings, messages, schema)))
        return out

    shown, problems = pending_runs.shown(store, [rid for rid, _ in pending], calls)
    keys = {(rid, i): call for rid, member_calls in shown for i, call in enumerate(member_calls)}
    verdicts: dict[str, dict[int, Verdict]] = {rid: {} for rid, _ in shown}
    unjudgeable = [
        NewResult(rid, None, None, problem, None, None, None, None, cached=False) for rid, problem in problems
    ]
    hits = store.cache_get([key for _, key in keys.values()])
    work: list[tuple[str, int]] = []
    for (rid, i), (_, key) in keys.items():
        hit = hits.get(key)
        if hit is None:
            work.append((rid, i))
        else:
            verdicts[rid][i] = Verdict(
                hit.judge_score,
                hit.reasoning,
                None,
                hit.prompt_tokens,
                hit.completion_tokens,
                hit.cached_tokens,
                0.0,
            )
    complete = [rid for rid, got in verdicts.items() if len(got) == len(jury)]
    store.record_results(
        aid, [*unjudgeable, *(_result(rid, jury, settings, score_type, verdicts) for rid in complete)]
    )
    store.record_member_verdicts(
        aid, [mv for rid in complete for mv in _member_rows(rid, jury, verdicts[rid])]
    )
    store.reopen_alignment_run(aid)
    done = row.total - len(pending) + len(unjudgeable) + len(complete)
    if on_progress is not None:
        await on_progress(done, row.total, f"{what}: {done}/{row.total} judged ({len(complete)} from cache)")
    if not work:
        return None
    tally = Tally(on_progress, len(work), what, detail=" jury verdicts")
    async with AsyncExitStack() as stack:
        judges: dict[int, Judge] = {}
        for i in sorted({i for _, i in work}):
            m = jury[i]
            judges[i] = await stack.enter_async_context(
                open_judge(m.endpoint, m.settings, score_type, on_wait=tally.waiting, on_request=on_request)
            )

        async def one(item: tuple[str, int]) -> None:
            rid, i = item
            messages, key = keys[rid, i]
            verdict = await judges[i].judge_example(messages)
            got = verdicts[rid]
            got[i] = verdict
            cache = [CacheEntry.of(key, verdict)] if verdict.error is None else []
            if len(got) < len(jury):
                if cache:
                    await anyio.to_thread.run_sync(store.cache_put, cache)
                return
            result = _result(rid, jury, settings, score_type, verdicts)
            rows = _member_rows(rid, jury, got)

            def record() -> None:
                with store.transaction():
                    store.record_results(aid, [result], cache)
                    store.record_member_verdicts(aid, rows)

            await anyio.to_thread.run_sync(record)

        try:
            await run_batch(work, one, concurrency=concurrency, progress=tally)
        except AlignError as e:
            return e
    return None


def _result(
    rid: str,
    jury: list[Member],
    settings: JudgeSettings,
    score_type: ScoreType,
    verdicts: dict[str, dict[int, Verdict]],
) -> NewResult:
    got = verdicts[rid]
    return _combined(rid, settings, score_type, [(m.label, got[i]) for i, m in enumerate(jury)])


def _member_rows(rid: str, jury: list[Member], got: dict[int, Verdict]) -> list[MemberVerdict]:
    return [
        MemberVerdict(
            rid, i, m.endpoint.model, got[i].score, got[i].reasoning, got[i].error, got[i].calls == 0
        )
        for i, m in enumerate(jury)
    ]


def report(store: Store, aid: int, settings: JudgeSettings, score_type: ScoreType) -> JuryReport | None:
    """Each member's agreement with the humans beside the jury's, and how often the members split (examples with
    at least two member verdicts on which they differ); None for a single judge's run."""
    if not settings.members or settings.combine is None:
        return None
    humans = {r.run_id: r.human_score for r in store.alignment_results(aid)}
    by_member: dict[int, list[MemberVerdict]] = {}
    by_run: dict[str, list[Score]] = {}
    for v in store.member_verdicts(aid):
        by_member.setdefault(v.member, []).append(v)
        if v.error is None and v.judge_score is not None:
            by_run.setdefault(v.run_id, []).append(v.judge_score)
    agreements = []
    for i, m in enumerate(settings.members):
        rows = [v for v in by_member.get(i, []) if v.run_id in humans]
        pairs = [(humans[v.run_id], v.judge_score if v.error is None else None) for v in rows]
        computed = metrics.compute_metrics(score_type, pairs) if pairs else None
        agreements.append(
            MemberAgreement(
                member=member_label(m, i),
                model=m.model,
                n=computed.n if computed else 0,
                errors=computed.errors if computed else 0,
                agreement=computed.agreement if computed else metrics.rate(0, 0),
                kappa=computed.kappa if computed else None,
            )
        )
    voted = [scores for scores in by_run.values() if len(scores) >= 2]
    splits = sum(1 for scores in voted if split(scores))
    member_errors = sum(a.errors for a in agreements)
    notes = []
    if member_errors:
        notes.append(
            Note(
                text=f"{member_errors} member verdict(s) failed; those examples were combined from the members "
                "that answered."
            )
        )
    return JuryReport(
        combine=settings.combine,
        members=agreements,
        split=metrics.rate(splits, len(voted)),
        member_errors=member_errors,
        notes=notes,
    )
