"""Candidate judge prompts: the part the optimizer rewrites, judged on labeled runs within a call budget."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from align_mcp.core.jury import jury_verdict
from align_mcp.core.models import Evaluator, JsonDict, Score, ScoreType
from align_mcp.core.templates import VARIABLE, template_variables, validate_template
from align_mcp.engine import swap
from align_mcp.engine.jury import Member
from align_mcp.errors import AlignError, InvalidInput
from align_mcp.llm.client import ModelClient
from align_mcp.llm.endpoint import Endpoint
from align_mcp.llm.judge import Judge, Verdict, build_messages, cache_key, response_schema
from align_mcp.llm.runner import Budget, BudgetSpent, Progress, run_batch
from align_mcp.store import CacheEntry, Store

MAX_BUDGET = 100_000  # the most model requests one proposal may be given


# ---- templates ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A judge template split into the instructions the optimizer rewrites and the example block it keeps.

    The example block starts at the blank-line-separated paragraph holding the first {{variable}}. When the
    variables are woven into the instructions (no separate block), the whole template is rewritten and must
    keep every variable.
    """

    original: str
    instructions: str
    separator: str
    tail: str

    @classmethod
    def split(cls, template: str) -> Template:
        first = VARIABLE.search(template)
        cut = template.rfind("\n\n", 0, first.start()) if first is not None else -1
        head = template[:cut].strip() if cut > 0 else ""
        if not head:
            return cls(template, template.strip(), template[len(template.rstrip()) :], "")
        body_end = len(template[:cut].rstrip())
        tail_start = len(template) - len(template[cut:].lstrip())
        return cls(template, head, template[body_end:tail_start], template[tail_start:])

    @property
    def variables(self) -> list[str]:
        return sorted(set(template_variables(self.original)))

    def assemble(self, instructions: str) -> str:
        if instructions.strip() == self.instructions:
            return self.original
        return instructions.strip() + self.separator + self.tail

    def problem(self, template: str) -> str | None:
        """Why a candidate template cannot be used (it must validate and keep every variable), or None."""
        try:
            validate_template(template)
        except InvalidInput as e:
            return str(e)
        missing = sorted(set(self.variables) - set(template_variables(template)))
        if missing:
            return "it drops " + ", ".join("{{" + v + "}}" for v in missing)
        return None

    def variables_rule(self) -> str:
        if self.tail:
            return (
                "The example is attached after these instructions automatically: do not write template variables "
                "or placeholders in double braces such as {{outputs}}."
            )
        shown = ", ".join("{{" + v + "}}" for v in self.variables)
        return (
            f"The instructions contain template variables in double braces ({shown}) that are filled with the "
            "example: keep every one exactly as written, and add no new ones."
        )


# ---- budget and judging -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    score: Score | None
    reasoning: str | None
    error: str | None


def is_wrong(outcome: Outcome | None, human: Score) -> bool:
    return outcome is not None and outcome.error is None and outcome.score != human


class Judging:
    """Judge (template, run) pairs exactly as run_alignment does: same rendering, schema, cache and endpoint.

    With jury `members`, each member judges every pair (a member with its own prompt keeps it; the others judge
    the candidate) and their verdicts combine by the evaluator's rule, as in an alignment run. A cache hit is free; every request a miss makes (retries and the re-ask included) is taken from the budget,
    and a request the spent budget refuses ends that example unjudged. Results are kept per template, so
    candidates can be compared on the same examples afterwards.
    """

    def __init__(
        self,
        store: Store,
        ev: Evaluator,
        endpoint: Endpoint,
        budget: Budget,
        concurrency: int,
        on_progress: Progress | None,
        members: Sequence[Member] = (),
    ) -> None:
        self.store = store
        self.settings = ev.judge
        self.members = list(members)
        self.score_type = ev.score_type
        self.endpoint = endpoint
        self.schema = response_schema(ev.score_type, ev.judge.reasoning)
        self.budget = budget
        self.concurrency = max(1, concurrency)
        self.on_progress = on_progress
        self.planned: int | None = (
            None  # the calls the proposal expects to make: the total progress counts to
        )
        self.runs: dict[str, JsonDict] = {}
        self.results: dict[str, dict[str, Outcome]] = {}
        self.fatal: AlignError | None = None
        self.stopped = threading.Event()
        self._judges: dict[int, Judge] = {}
        self._memo: dict[str, Outcome] = {}
        self._inflight: dict[str, anyio.Event] = {}

    def load_runs(self, run_ids: Sequence[str]) -> None:
        self.runs.update({rid: run.as_dict() for rid, run in self.store.get_runs(run_ids).items()})

    @property
    def calls_per_example(self) -> int:
        """Judge calls one uncached example costs: one per jury member, else one per order it is shown in."""
        return len(self.members) if self.members else swap.judgements_per_run(self.score_type)

    def _keys(self, template: str, run_id: str) -> list[tuple[list[dict[str, str]], str]]:
        """The messages and cache key of each judge call for this pair: one per jury member, else one per order
        the run is shown in (two for a position-swapped pairwise run). A jury never judges a swapped pairwise
        evaluator (refused when the jury is set)."""
        out = []
        if not self.members:
            for view in swap.views(self.score_type, self.runs[run_id]):
                messages = build_messages(template, view, self.settings.reasoning)
                out.append((messages, cache_key(self.endpoint, self.settings, messages, self.schema)))
            return out
        for m in self.members:
            messages = build_messages(m.template(template), self.runs[run_id], self.settings.reasoning)
            out.append((messages, cache_key(m.endpoint, m.settings, messages, self.schema)))
        return out

    def uncached(self, template: str, run_ids: Sequence[str]) -> int:
        """How many calls judging these runs with this template would make now."""
        keys = [key for rid in run_ids if rid in self.runs for _, key in self._keys(template, rid)]
        hits = self.store.cache_get(keys)
        return sum(1 for k in keys if k not in hits and k not in self._memo) + sum(
            self.calls_per_example for rid in run_ids if rid not in self.runs
        )

    def adopt(self, template: str, store: Store, alignment_id: int) -> None:
        """Take an alignment run's stored results as this template's results."""
        for r in store.alignment_results(alignment_id):
            score = r.judge_score if r.error is None else None
            self.results.setdefault(template, {})[r.run_id] = Outcome(score, r.reasoning, r.error)

    async def one(self, template: str, run_id: str) -> Outcome:
        if self.fatal is not None or self.stopped.is_set():
            raise BudgetSpent("the optimizer is stopping")
        run = self.runs.get(run_id)
        if run is None:
            outcome = Outcome(None, None, "run no longer in the store")
            self.results.setdefault(template, {})[run_id] = outcome
            return outcome
        calls = self._keys(template, run_id)
        if self.members:
            outcome = self._combined([await self._call(i, *call) for i, call in enumerate(calls)])
        elif len(calls) == 1:
            outcome = await self._call(0, *calls[0])
        else:
            outcomes = [await self._call(0, *call) for call in calls]
            verdict, _ = swap.combine([Verdict(o.score, o.reasoning, o.error) for o in outcomes])
            outcome = Outcome(verdict.score, verdict.reasoning, verdict.error)
        self.results.setdefault(template, {})[run_id] = outcome
        return outcome

    def _combined(self, verdicts: list[Outcome]) -> Outcome:
        """The jury's outcome: the rule over the members that answered; an error only when none did."""
        assert self.settings.combine is not None
        members = [
            (m.label, v.score, v.reasoning, v.error) for m, v in zip(self.members, verdicts, strict=True)
        ]
        return Outcome(*jury_verdict(self.settings.combine, self.score_type, members))

    async def _call(self, index: int, messages: list[dict[str, str]], key: str) -> Outcome:
        """One judge call (member `index` of a jury, or the judge), from the memo or the cache when there."""
        while key in self._inflight:
            await self._inflight[key].wait()
        found: Outcome | None = self._memo.get(key)
        if found is None:
            hit = self.store.cache_get([key]).get(key)
            if hit is not None:
                found = Outcome(hit.judge_score, hit.reasoning, None)
        if found is not None:
            self.budget.cache_hits += 1
            outcome = found
        else:
            if self.budget.remaining <= 0:  # refuse before waiting on anything; the client takes each request
                raise BudgetSpent(f"judge: {self.budget.used} of {self.budget.limit} model calls used")
            done = anyio.Event()
            self._inflight[key] = done
            try:
                verdict = await self._get_judge(index).judge_example(messages)
            except AlignError as e:
                self.fatal = self.fatal or e
                raise
            finally:
                del self._inflight[key]
                done.set()
            self.budget.reasks += verdict.reasks
            if verdict.error is None:
                self.budget.judged += 1
            outcome = Outcome(verdict.score, verdict.reasoning, verdict.error)
            if verdict.error is None and verdict.score is not None:
                self.store.cache_put([CacheEntry.of(key, verdict)])
            if self.on_progress is not None:
                used, limit = self.budget.used, self.budget.limit
                total = max(used, self.planned or limit)
                await self.on_progress(used, total, f"optimizer: {used} of {limit} model calls used")
        self._memo[key] = outcome
        return outcome

    async def many(self, template: str, run_ids: Sequence[str]) -> dict[str, Outcome]:
        """Judge runs concurrently; a run refused by the budget gets an error outcome, a fatal error raises."""
        out: dict[str, Outcome] = {}

        async def work(rid: str) -> None:
            out[rid] = await self.one(template, rid)

        def refused(rid: str) -> None:
            self.budget.refused += 1
            out[rid] = Outcome(None, None, "not judged: the optimizer's call budget ran out")
            self.results.setdefault(template, {})[rid] = out[rid]

        try:
            await run_batch(run_ids, work, concurrency=self.concurrency, refused=refused)
        except AlignError:
            if self.fatal is None:
                raise
        if self.fatal is not None:
            raise self.fatal
        return out

    def best(self, dev: Sequence[tuple[str, Score]], template: Template, score_type: ScoreType) -> str:
        """The template with the best mean dev score among those judged on every dev example (draft on ties)."""
        best, best_score = template.original, -1.0
        for candidate, results in self.results.items():
            if any(rid not in results for rid, _ in dev) or template.problem(candidate) is not None:
                continue
            value = sum(example_credit(score_type, human, results[rid]) for rid, human in dev) / max(
                1, len(dev)
            )
            if value > best_score + 1e-12 or (candidate == template.original and value >= best_score - 1e-12):
                best, best_score = candidate, value
        return best

    def full_candidates(self, dev: Sequence[tuple[str, Score]]) -> int:
        return sum(1 for results in self.results.values() if all(rid in results for rid, _ in dev))

    def _get_judge(self, index: int) -> Judge:
        if index not in self._judges:
            endpoint, settings = (
                (self.members[index].endpoint, self.members[index].settings)
                if self.members
                else (self.endpoint, self.settings)
            )
            client = ModelClient(
                endpoint, settings, on_request=self.budget.taker("judge"), on_wait=self._waiting
            )
            self._judges[index] = Judge(client, self.score_type, self.settings.reasoning)
        return self._judges[index]

    async def _waiting(self, seconds: float, why: str) -> None:
        if self.on_progress is not None:
            used, limit = self.budget.used, self.budget.limit
            message = f"optimizer: {used}/{limit} model calls used; waiting {seconds:.1f}s after {why}"
            await self.on_progress(used, limit, message)

    async def aclose(self) -> None:
        judges, self._judges = list(self._judges.values()), {}
        for judge in judges:
            await judge.client.aclose()


def example_credit(score_type: ScoreType, human: Score, outcome: Outcome | None) -> float:
    """The optimizer's per-example score: 1 when the judge agrees; for ordinal scores, half credit one step off."""
    if outcome is None or outcome.error is not None or outcome.score is None:
        return 0.0
    if outcome.score == human:
        return 1.0
    if score_type.kind == "ordinal" and isinstance(human, int) and isinstance(outcome.score, int):
        return 0.5 if abs(human - outcome.score) == 1 else 0.0
    return 0.0
