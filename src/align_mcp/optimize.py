"""The optimizer: failure modes of misaligned dev examples, and prompt proposals checked on the held-out test split.

Everything the optimizer reads comes from the dev split; the test split is judged only to report how the draft
and the proposal fare on examples the optimizer never saw. Proposals are stored, never applied implicitly:
`apply_proposal` copies one into the draft, and only `save_prompt` makes it a version. DSPy (the `optimize`
extra) is imported lazily, on the first GEPA proposal.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import align, config, holdout, metrics
from .errors import (
    AlignError,
    Conflict,
    InvalidInput,
    JudgeConfigError,
    JudgeUnreachable,
    NotFound,
    OptimizerUnavailable,
)
from .evaluators import get as get_evaluator
from .evaluators import update_draft
from .judge import (
    ROOTS,
    VARIABLE,
    Endpoint,
    Judge,
    build_messages,
    cache_key,
    judge_example,
    resolve_endpoint,
    response_schema,
    template_variables,
    validate_template,
)
from .models import (
    Evaluator,
    FailureAnalysis,
    FailureMode,
    JsonDict,
    MisalignedCase,
    ModeOutcome,
    OptimizerBudget,
    Proposal,
    ProposalSummary,
    Score,
    ScoreType,
    SplitComparison,
)
from .queues import reference_set
from .store import Store, dumps, loads, now_iso

Progress = Callable[[int, int, str], Awaitable[None]]
R = TypeVar("R", bound=BaseModel)
Mode = Literal["gepa", "reflect"]

INSTALL_HINT = "The optimizer needs the optional DSPy extra: pip install 'align-mcp[optimize]'"
DEFAULT_BUDGET = 300
MAX_BUDGET = 100_000
CASE_CHARS = 600  # per text field of an example shown to the analysis and reflection calls
ANALYSIS_CHUNK = 25  # misaligned examples per analysis call
REFLECT_EXAMPLES = 12  # misaligned examples shown to the reflect-mode rewrite
KEYWORD_MODES_PER_DIRECTION = 3
MINIBATCH = 3  # GEPA reflection minibatch
REFLECTION_TEMPERATURE = 1.0  # GEPA explores: diverse rewrites beat the single most likely one
PATIENCE = 10  # GEPA steps without a better dev score before the search ends

_DIRECTION_LABELS = {
    "false_pass": ("False passes", "the judge passed outputs the human failed"),
    "false_fail": ("False fails", "the judge failed outputs the human passed"),
    "over": ("Scored too high", "the judge scored above the human"),
    "under": ("Scored too low", "the judge scored below the human"),
    "mismatch": ("Wrong label", "the judge chose another label than the human"),
}


# ---- public API -------------------------------------------------------------------------------------------


async def analyze_failures(
    store: Store,
    evaluator: str,
    alignment_run: int | None = None,
    use_llm: bool = True,
    *,
    env: config.Settings | None = None,
) -> FailureAnalysis:
    """Group the misaligned dev examples of an alignment run into a few named failure modes.

    Each mode has a one-line description, its example ids and its direction (false_pass: the judge passed what
    the human failed; false_fail: the reverse). `alignment_run` defaults to the latest dev run (as
    get_misaligned). With `use_llm` and a judge model configured, the judge model groups the examples in one
    structured call (a few when there are many examples); otherwise, or when that call fails, the examples are
    grouped by direction and by terms recurring in the human comments. Test-split examples are never included.
    The analysis is stored with the alignment run it came from.
    """
    ev = get_evaluator(store, evaluator)
    aid = alignment_run if alignment_run is not None else align.latest_run_id(store, evaluator)
    cases, judged, prompt_ref = _misaligned(store, evaluator, aid)
    method, modes, calls, notes = await _analyze(ev, cases, use_llm, env or config.load(), None)
    return _store_analysis(store, evaluator, aid, prompt_ref, method, judged, cases, modes, calls, notes)


async def propose_prompt(
    store: Store,
    evaluator: str,
    mode: Mode = "gepa",
    budget: int = DEFAULT_BUDGET,
    on_progress: Progress | None = None,
    *,
    concurrency: int | None = None,
    env: config.Settings | None = None,
) -> Proposal:
    """Propose a revised judge prompt from the draft's dev failures, and check it on the held-out test split.

    `mode='gepa'` (default) searches with DSPy's GEPA optimizer: candidate prompts are judged on dev examples
    and a reflection model rewrites the instructions from feedback carrying the human score and comment and
    the judge's score and reasoning. `mode='reflect'` makes one rewrite from the failure modes, for small
    budgets, and needs no DSPy. `budget` caps the model calls (judge, reflection and analysis calls; cache
    hits are free) and is never exceeded. The result holds the revised prompt (same template variables), its
    diff against the draft, the failure modes it addresses, and dev and test agreement and kappa of the draft
    vs the proposal with 95% intervals and McNemar's flip test. The proposal is stored but not applied:
    apply_proposal copies it into the draft, and only save_prompt makes it a version.
    """
    started = time.perf_counter()
    if mode not in ("gepa", "reflect"):
        raise InvalidInput(f"mode={mode!r} is not 'gepa' (DSPy GEPA search) or 'reflect' (one rewrite).")
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= MAX_BUDGET:
        raise InvalidInput(f"budget={budget!r} must be a whole number of model calls from 1 to {MAX_BUDGET}.")
    dspy = _load_dspy() if mode == "gepa" else None
    env = env or config.load()
    ev = get_evaluator(store, evaluator)
    endpoint = resolve_endpoint(ev.judge, env)
    dev, test = _holdout(store, evaluator)
    template = _Template.split(ev.draft)
    spend = _Budget(budget)
    judging = _Judging(store, ev, endpoint, spend, concurrency or env.concurrency, on_progress)
    judging.load_runs([rid for rid, _ in dev + test])
    try:
        covering = _covering_dev_run(store, ev, endpoint, dev)
        dev_cost = 0 if covering is not None else judging.uncached(ev.draft, [rid for rid, _ in dev])
        test_cost = judging.uncached(ev.draft, [rid for rid, _ in test])
        step = _gepa_step_cost(len(dev))
        floor = {
            "gepa": dev_cost + test_cost + step + len(test),
            "reflect": dev_cost + test_cost + 1 + len(dev) + len(test),
        }
        if budget < floor[mode]:
            raise InvalidInput(_budget_message(mode, budget, floor, dev_cost, test_cost, len(dev), len(test)))
        aid = (
            covering
            if covering is not None
            else await _judge_draft_on_dev(store, ev, spend, on_progress, env)
        )
        judging.adopt(ev.draft, store, aid)
        before_dev = judging.results.get(ev.draft, {})
        misaligned = [rid for rid, human in dev if _wrong(before_dev.get(rid), human)]
        if not misaligned:
            errors = sum(1 for rid, _ in dev if before_dev.get(rid) is None or before_dev[rid].error)
            raise InvalidInput(
                f"The draft of {evaluator!r} agrees with the human label on every judged dev example "
                f"({len(dev) - errors} of {len(dev)}{f'; {errors} could not be judged' if errors else ''}, "
                f"alignment run {aid}): there is nothing to optimize. Label more runs, especially ones you "
                "expect the judge to get wrong, and run_alignment again."
            )
        reserve = test_cost + len(test) + (0 if mode == "gepa" else len(dev))
        analysis, notes = await _analysis_for(
            store, ev, aid, env, spend, reserve + (step if mode == "gepa" else 1)
        )
        if mode == "gepa":
            assert dspy is not None
            stopped, skipped = await _gepa(dspy, judging, template, dev, store, reserve, endpoint, ev)
            if skipped:
                notes.append(
                    f"{len(skipped)} reflection repl(ies) could not be used and were skipped (first: {skipped[0]})."
                )
        else:
            stopped = False
            cases = _misaligned(store, evaluator, aid)[0]
            await _reflect(judging, ev, endpoint, template, analysis, cases, dev, reserve)
        chosen = judging.best(dev, template, ev.score_type)
        await judging.many(ev.draft, [rid for rid, _ in test])
        await judging.many(chosen, [rid for rid, _ in test])
        test_looks = store.count_test_evaluation(evaluator)
    finally:
        judging.stopped.set()
        with anyio.CancelScope(shield=True):
            await judging.aclose()
    return _store_proposal(
        store,
        ev,
        mode,
        template,
        chosen,
        dev,
        test,
        judging,
        analysis,
        aid,
        stopped,
        test_looks,
        notes,
        time.perf_counter() - started,
    )


def get_proposal(store: Store, proposal_id: int) -> Proposal:
    """A stored proposal: the revised prompt, its diff, the failure modes it addresses and its dev/test scores."""
    row = store.get_proposal(proposal_id)
    if row is None:
        raise NotFound(
            f"No proposal {proposal_id}. List an evaluator's proposals with list_proposals, or make one with "
            "propose_prompt."
        )
    return _proposal(row)


def list_proposals(store: Store, evaluator: str) -> list[ProposalSummary]:
    """An evaluator's proposals, oldest first, with dev and test agreement before and after."""
    get_evaluator(store, evaluator)
    out = []
    for row in store.proposals(evaluator):
        p = _proposal(row)
        out.append(
            ProposalSummary(
                id=p.id,
                evaluator=p.evaluator,
                mode=p.mode,
                status=p.status,
                changed=p.changed,
                dev_before=p.dev.before.agreement.value,
                dev_after=p.dev.after.agreement.value,
                test_before=p.test.before.agreement.value,
                test_after=p.test.after.agreement.value,
                calls_used=p.budget.used,
                created_at=p.created_at,
                applied_at=p.applied_at,
            )
        )
    return out


def apply_proposal(store: Store, evaluator: str, proposal_id: int, force: bool = False) -> Evaluator:
    """Copy a proposal's prompt into the evaluator's draft. Nothing is saved: save_prompt makes it a version.

    Refuses when the draft was edited after the proposal was made (those edits would be lost) unless `force`.
    """
    proposal = get_proposal(store, proposal_id)
    if proposal.evaluator != evaluator:
        raise InvalidInput(f"Proposal {proposal_id} belongs to {proposal.evaluator!r}, not {evaluator!r}.")
    if not proposal.changed:
        raise InvalidInput(
            f"Proposal {proposal_id} is identical to the draft it started from; there is nothing to apply."
        )
    current = get_evaluator(store, evaluator).draft
    if current == proposal.prompt:
        store.mark_proposal_applied(proposal_id)
        return get_evaluator(store, evaluator)
    if current != proposal.base_prompt and not force:
        raise Conflict(
            f"The draft of {evaluator!r} changed after proposal {proposal_id} was made; applying it would discard "
            "those edits. Compare them with get_evaluator, then apply with force=true, or propose again."
        )
    updated = update_draft(store, evaluator, prompt=proposal.prompt)
    store.mark_proposal_applied(proposal_id)
    return updated


# ---- optional dependency ----------------------------------------------------------------------------------

_dspy_ready = threading.Lock()
_dspy_configured = False


def _load_dspy() -> Any:
    """Import DSPy offline: no price-map download, no progress bars, no response cache, quiet logs."""
    global _dspy_configured
    # Without this, litellm (which DSPy may import) fetches a model price map from GitHub on first use.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    # GEPA and dspy.Evaluate draw tqdm bars on stderr, which an MCP client shows as log noise.
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        import dspy
    except ImportError as e:
        raise OptimizerUnavailable(INSTALL_HINT) from e
    with _dspy_ready:
        if not _dspy_configured:
            dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
            logging.getLogger("dspy").setLevel(logging.WARNING)
            _dspy_configured = True
    return dspy


_stdout_lock = threading.Lock()
_stdout_users = 0
_real_stdout: TextIO | None = None


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send sys.stdout to stderr while any GEPA search runs (reference-counted across threads).

    dspy's parallel evaluator draws progress bars on sys.stdout, which belongs to the CLI's output (and to the
    protocol, for MCP stdio transports that do not divert it). The MCP SDK writes through its own handle.
    """
    global _stdout_users, _real_stdout
    with _stdout_lock:
        if _stdout_users == 0:
            _real_stdout = sys.stdout
            sys.stdout = sys.stderr
        _stdout_users += 1
    try:
        yield
    finally:
        with _stdout_lock:
            _stdout_users -= 1
            if _stdout_users == 0 and _real_stdout is not None:
                sys.stdout = _real_stdout
                _real_stdout = None


# ---- templates ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Template:
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
    def split(cls, template: str) -> _Template:
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


def _meta_prompt(name: str) -> str:
    packaged = resources.files("align_mcp").joinpath("prompts", name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    # Running from a source checkout: prompts/ sits at the repository root.
    return (Path(__file__).resolve().parents[2] / "prompts" / name).read_text(encoding="utf-8")


# ---- budget and judging -----------------------------------------------------------------------------------


class _BudgetSpent(Exception):
    """A model call was refused because the budget is spent."""


class _Budget:
    """Counts model calls by kind and refuses the one that would go over the limit (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: Counter[str] = Counter()
        self.cache_hits = 0
        self.requests = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return sum(self.counts.values())

    @property
    def remaining(self) -> int:
        return self.limit - self.used

    def take(self, kind: str, n: int = 1) -> None:
        with self._lock:
            if self.used + n > self.limit:
                raise _BudgetSpent(f"{kind}: {self.used} of {self.limit} model calls used")
            self.counts[kind] += n

    def report(self, stopped: bool) -> OptimizerBudget:
        return OptimizerBudget(
            budget=self.limit,
            used=self.used,
            judge_calls=self.counts["judge"],
            reflection_calls=self.counts["reflection"],
            analysis_calls=self.counts["analysis"],
            cache_hits=self.cache_hits,
            stopped_by_budget=stopped,
        )


@dataclass(frozen=True)
class _Outcome:
    score: Score | None
    reasoning: str | None
    error: str | None


def _wrong(outcome: _Outcome | None, human: Score) -> bool:
    return outcome is not None and outcome.error is None and outcome.score != human


class _Judging:
    """Judge (template, run) pairs exactly as run_alignment does: same rendering, schema, cache and endpoint.

    A cache hit is free; every miss takes one call from the budget and is refused once the budget is spent.
    Results are kept per template, so candidates can be compared on the same examples afterwards.
    """

    def __init__(
        self,
        store: Store,
        ev: Evaluator,
        endpoint: Endpoint,
        budget: _Budget,
        concurrency: int,
        on_progress: Progress | None,
    ) -> None:
        self.store = store
        self.settings = ev.judge
        self.score_type = ev.score_type
        self.endpoint = endpoint
        self.schema = response_schema(ev.score_type, ev.judge.reasoning)
        self.budget = budget
        self.limiter = anyio.CapacityLimiter(max(1, concurrency))
        self.on_progress = on_progress
        self.runs: dict[str, JsonDict] = {}
        self.results: dict[str, dict[str, _Outcome]] = {}
        self.fatal: AlignError | None = None
        self.stopped = threading.Event()
        self._judge: Judge | None = None
        self._memo: dict[str, _Outcome] = {}
        self._inflight: dict[str, anyio.Event] = {}

    def load_runs(self, run_ids: Sequence[str]) -> None:
        self.runs.update(self.store.get_runs(run_ids))

    def _key(self, template: str, run_id: str) -> tuple[list[dict[str, str]], str]:
        messages = build_messages(template, self.runs[run_id], self.settings.reasoning)
        return messages, cache_key(self.endpoint.model, self.settings, messages, self.schema)

    def uncached(self, template: str, run_ids: Sequence[str]) -> int:
        """How many calls judging these runs with this template would make now."""
        keys = [self._key(template, rid)[1] for rid in run_ids if rid in self.runs]
        hits = self.store.cache_get(keys)
        return sum(1 for k in keys if k not in hits and k not in self._memo) + sum(
            1 for rid in run_ids if rid not in self.runs
        )

    def adopt(self, template: str, store: Store, alignment_id: int) -> None:
        """Take an alignment run's stored results as this template's results."""
        for r in store.alignment_results(alignment_id):
            score = loads(r["judge_score"]) if r["error"] is None else None
            self.results.setdefault(template, {})[r["run_id"]] = _Outcome(score, r["reasoning"], r["error"])

    async def one(self, template: str, run_id: str) -> _Outcome:
        if self.fatal is not None or self.stopped.is_set():
            raise _BudgetSpent("the optimizer is stopping")
        run = self.runs.get(run_id)
        if run is None:
            outcome = _Outcome(None, None, "run no longer in the store")
            self.results.setdefault(template, {})[run_id] = outcome
            return outcome
        messages, key = self._key(template, run_id)
        while key in self._inflight:
            await self._inflight[key].wait()
        found: _Outcome | None = self._memo.get(key)
        if found is None:
            hit = self.store.cache_get([key]).get(key)
            if hit is not None:
                found = _Outcome(loads(hit["judge_score"]), hit["reasoning"], None)
        if found is not None:
            self.budget.cache_hits += 1
            outcome = found
        else:
            self.budget.take("judge")
            done = anyio.Event()
            self._inflight[key] = done
            try:
                async with self.limiter:
                    verdict = await judge_example(self._client(), messages)
            except AlignError as e:
                self.fatal = self.fatal or e
                raise
            finally:
                del self._inflight[key]
                done.set()
            self.budget.requests += verdict.calls
            outcome = _Outcome(verdict.score, verdict.reasoning, verdict.error)
            if verdict.error is None and verdict.score is not None:
                self.store.cache_put(
                    [
                        {
                            "key": key,
                            "judge_score": dumps(verdict.score),
                            "reasoning": verdict.reasoning,
                            "prompt_tokens": verdict.prompt_tokens,
                            "completion_tokens": verdict.completion_tokens,
                            "cached_tokens": verdict.cached_tokens,
                            "created_at": now_iso(),
                        }
                    ]
                )
            if self.on_progress is not None:
                used, limit = self.budget.used, self.budget.limit
                await self.on_progress(used, limit, f"optimizer: {used}/{limit} model calls used")
        self._memo[key] = outcome
        self.results.setdefault(template, {})[run_id] = outcome
        return outcome

    async def many(self, template: str, run_ids: Sequence[str]) -> dict[str, _Outcome]:
        """Judge runs concurrently; a run refused by the budget gets an error outcome, a fatal error raises."""
        out: dict[str, _Outcome] = {}

        async def work(rid: str, scope: anyio.CancelScope) -> None:
            try:
                out[rid] = await self.one(template, rid)
            except _BudgetSpent:
                out[rid] = _Outcome(None, None, "not judged: the optimizer's call budget ran out")
                self.results.setdefault(template, {})[rid] = out[rid]
            except AlignError:
                scope.cancel()

        async with anyio.create_task_group() as tg:
            for rid in run_ids:
                tg.start_soon(work, rid, tg.cancel_scope)
        if self.fatal is not None:
            raise self.fatal
        return out

    def best(self, dev: Sequence[tuple[str, Score]], template: _Template, score_type: ScoreType) -> str:
        """The template with the best mean dev score among those judged on every dev example (draft on ties)."""
        best, best_score = template.original, -1.0
        for candidate, results in self.results.items():
            if any(rid not in results for rid, _ in dev) or template.problem(candidate) is not None:
                continue
            value = sum(_credit(score_type, human, results[rid]) for rid, human in dev) / max(1, len(dev))
            if value > best_score + 1e-12 or (candidate == template.original and value >= best_score - 1e-12):
                best, best_score = candidate, value
        return best

    def full_candidates(self, dev: Sequence[tuple[str, Score]]) -> int:
        return sum(1 for results in self.results.values() if all(rid in results for rid, _ in dev))

    def _client(self) -> Judge:
        if self._judge is None:
            self._judge = Judge(self.endpoint, self.settings, self.score_type)
        return self._judge

    async def aclose(self) -> None:
        if self._judge is not None:
            await self._judge.aclose()
            self._judge = None


def _credit(score_type: ScoreType, human: Score, outcome: _Outcome | None) -> float:
    """The optimizer's per-example score: 1 when the judge agrees; for ordinal scores, half credit one step off."""
    if outcome is None or outcome.error is not None or outcome.score is None:
        return 0.0
    if outcome.score == human:
        return 1.0
    if score_type.kind == "ordinal" and isinstance(human, int) and isinstance(outcome.score, int):
        return 0.5 if abs(human - outcome.score) == 1 else 0.0
    return 0.0


# ---- the steps of a proposal ------------------------------------------------------------------------------


def _holdout(store: Store, evaluator: str) -> tuple[list[tuple[str, Score]], list[tuple[str, Score]]]:
    if holdout.ensure_split(store, evaluator) is None:
        reason = holdout.needed_labels(reference_set(store, evaluator)) or "No holdout exists yet."
        raise InvalidInput(
            f"The optimizer checks its proposal on held-out examples, so {evaluator!r} needs a dev/test split "
            f"first. {reason}"
        )
    _, dev = holdout.examples_for(store, evaluator, "dev")
    _, test = holdout.examples_for(store, evaluator, "test")
    if not dev or not test:
        raise InvalidInput(
            f"The dev/test split of {evaluator!r} has {len(dev)} dev and {len(test)} test examples; the optimizer "
            "needs both. Label more runs."
        )
    return dev, test


def _covering_dev_run(
    store: Store, ev: Evaluator, endpoint: Endpoint, dev: Sequence[tuple[str, Score]]
) -> int | None:
    """A completed dev run of exactly the current draft and settings over exactly the current dev labels."""
    wanted = {rid: dumps(score) for rid, score in dev}
    settings = ev.judge.model_dump_json()
    for aid in reversed(store.alignment_run_ids(ev.name)[-20:]):
        row = store.get_alignment_run(aid)
        if row is None or row["split"] != "dev" or row["status"] != "completed":
            continue
        if row["prompt"] != ev.draft or row["judge"] != settings or row["model"] != endpoint.model:
            continue
        have = {r["run_id"]: r["human_score"] for r in store.alignment_results(aid)}
        if have == wanted:
            return aid
    return None


async def _judge_draft_on_dev(
    store: Store, ev: Evaluator, spend: _Budget, on_progress: Progress | None, env: config.Settings
) -> int:
    """Judge the draft on dev with run_alignment (stored like any alignment run); its calls count."""
    report = await align.run_alignment(
        store, ev.name, "draft", split="dev", compare=False, on_progress=on_progress, env=env
    )
    spend.take("judge", max(0, report.run.judged - report.run.cache_hits))
    spend.cache_hits += report.run.cache_hits
    if _run_prompt(store, report.run.id) != ev.draft:
        raise Conflict(f"The draft of {ev.name!r} changed while the optimizer started; propose again.")
    return report.run.id


def _run_prompt(store: Store, alignment_id: int) -> str:
    row = store.get_alignment_run(alignment_id)
    return str(row["prompt"]) if row else ""


def _gepa_step_cost(dev: int) -> int:
    """Worst-case calls of one GEPA step: parent and child minibatches, a reflection (and a retry), a dev eval."""
    return 2 * MINIBATCH + 2 + dev


def _budget_message(
    mode: str, budget: int, floor: dict[str, int], dev_cost: int, test_cost: int, dev: int, test: int
) -> str:
    parts = [
        f"the draft on dev: {dev_cost}" + (" (the rest is cached)" if dev_cost < dev else ""),
        f"the draft on test: {test_cost}",
    ]
    if mode == "gepa":
        parts += [f"one GEPA step: {_gepa_step_cost(dev)}", f"the proposal on test: {test}"]
    else:
        parts += ["one rewrite: 1", f"the proposal on dev: {dev}", f"the proposal on test: {test}"]
    other = "reflect" if mode == "gepa" else "gepa"
    return (
        f"budget={budget} model calls is below the minimum useful for mode={mode!r} here: {floor[mode]} "
        f"({', '.join(parts)}). Pass budget={floor[mode]} or more"
        + (f", or use mode={other!r} (needs {floor[other]})." if floor[other] < floor[mode] else ".")
    )


async def _analysis_for(
    store: Store, ev: Evaluator, aid: int, env: config.Settings, spend: _Budget, keep: int
) -> tuple[FailureAnalysis, list[str]]:
    """The stored analysis of this run, else a new one whose model calls leave `keep` calls of the budget.

    Returns the analysis and the notes worth repeating in the proposal.
    """
    row = store.latest_failure_analysis(aid, "llm") or store.latest_failure_analysis(aid)
    if row is not None:
        return _analysis(row), []
    cases, judged, prompt_ref = _misaligned(store, ev.name, aid)
    chunks = math.ceil(len(cases) / ANALYSIS_CHUNK)
    wanted = chunks + (1 if chunks > 1 else 0)
    use_llm = spend.remaining - wanted >= keep
    method, modes, calls, notes = await _analyze(ev, cases, use_llm, env, spend)
    if not use_llm:
        notes.append(
            f"The failure modes were grouped by comment terms: the {wanted} model call(s) of an analysis would "
            "have left too little of the budget."
        )
    analysis = _store_analysis(store, ev.name, aid, prompt_ref, method, judged, cases, modes, calls, notes)
    return analysis, notes


async def _gepa(
    dspy: Any,
    judging: _Judging,
    template: _Template,
    dev: Sequence[tuple[str, Score]],
    store: Store,
    reserve: int,
    endpoint: Endpoint,
    ev: Evaluator,
) -> tuple[bool, list[str]]:
    """Run GEPA in a worker thread; candidate prompts are judged on the event loop through `judging`.

    Returns whether the search stopped because the budget ran low, and the reflection replies it skipped.
    """
    token = anyio.lowlevel.current_token()
    labels = {lab["run_id"]: lab["comment"] for lab in store.current_labels(ev.name, [r for r, _ in dev])}
    base = judging.results.get(template.original, {})
    wrong = [rid for rid, human in dev if _wrong(base.get(rid), human)]
    right = [rid for rid, human in dev if rid not in set(wrong)]
    # Reflection learns from mistakes: train on every misaligned example plus as many agreeing ones (so a
    # rewrite that breaks them is caught early); dev as a whole is the validation set GEPA selects on.
    train_ids = wrong + right[: max(len(wrong), MINIBATCH)]
    search = _GepaSearch(dspy, judging, template, dev, train_ids, labels, token, reserve, endpoint, ev)
    try:
        stopped = await anyio.to_thread.run_sync(search.run, abandon_on_cancel=True)
    except BaseException:
        judging.stopped.set()
        raise
    return stopped, search.unusable


class _GepaSearch:
    """The blocking GEPA run: a dspy.Predict student whose calls go to the project's judge, counted."""

    def __init__(
        self,
        dspy: Any,
        judging: _Judging,
        template: _Template,
        dev: Sequence[tuple[str, Score]],
        train_ids: Sequence[str],
        comments: dict[str, str | None],
        token: Any,
        reserve: int,
        endpoint: Endpoint,
        ev: Evaluator,
    ) -> None:
        self.dspy = dspy
        self.judging = judging
        self.template = template
        self.dev = list(dev)
        self.train_ids = list(train_ids)
        self.comments = comments
        self.token = token
        self.reserve = reserve
        self.endpoint = endpoint
        self.ev = ev
        self.roots = [root for root in ROOTS if any(v.split(".")[0] == root for v in template.variables)]
        self.by_fields: dict[str, list[str]] = defaultdict(list)
        self.stopped_by_budget = False
        self.unusable: list[str] = []

    def _fields(self, run: JsonDict) -> dict[str, str]:
        return {root: json.dumps(run.get(root), ensure_ascii=False) for root in self.roots}

    def _fingerprint(self, fields: dict[str, Any]) -> str:
        return json.dumps([fields.get(root) for root in self.roots], ensure_ascii=False)

    def _examples(self, run_ids: Sequence[str]) -> list[Any]:
        humans = dict(self.dev)
        out = []
        for rid in run_ids:
            fields = self._fields(self.judging.runs[rid])
            same = self.by_fields[self._fingerprint(fields)]
            if rid not in same:
                same.append(rid)
            example = self.dspy.Example(
                **fields, run_id=rid, human_score=dumps(humans[rid]), human_comment=self.comments.get(rid)
            )
            out.append(example.with_inputs(*self.roots))
        return out

    def judge(self, instructions: str, fields: dict[str, Any]) -> dict[str, str]:
        """The student's one call: judge the example with the candidate instructions in the draft's template."""
        candidate = self.template.assemble(instructions)
        problem = self.template.problem(candidate)
        if problem is not None:
            return {
                "reasoning": f"Not judged: these instructions break the prompt template ({problem}).",
                "score": "",
            }
        # Runs that look alike to the judge share one call (the rest are cache hits), and all get the result.
        rids = self.by_fields[self._fingerprint(fields)]
        outcome = anyio.from_thread.run(self.judging.one, candidate, rids[0], token=self.token)
        for rid in rids[1:]:
            anyio.from_thread.run(self.judging.one, candidate, rid, token=self.token)
        if outcome.error is not None or outcome.score is None:
            return {"reasoning": f"The judge call failed: {outcome.error}", "score": ""}
        return {"reasoning": outcome.reasoning or "", "score": dumps(outcome.score)}

    def metric(
        self, gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
    ) -> Any:
        """Score 1 when the judge agrees with the human; feedback carries both scores, the comment and reasoning."""
        score_type = self.ev.score_type
        human = loads(gold.human_score)
        judged = loads(pred.score) if pred.score else None
        outcome = _Outcome(judged, pred.reasoning, None if judged is not None else pred.reasoning)
        credit = _credit(score_type, human, outcome)
        lines = [f"Human expert's score: {_describe(score_type, human)}."]
        if gold.human_comment:
            lines.append(f"Human expert's comment: {gold.human_comment}")
        if judged is None:
            lines.append(f"The judge gave no score: {pred.reasoning}")
        else:
            lines.append(f"Judge's score: {_describe(score_type, judged)}.")
            if pred.reasoning:
                lines.append(f"Judge's reasoning: {pred.reasoning}")
            if judged == human:
                lines.append("The judge agreed with the expert.")
            else:
                direction = align.direction_of(score_type, human, judged)
                lines.append(f"The judge was wrong ({_DIRECTION_LABELS[direction][1]}).")
        return self.dspy.Prediction(score=credit, feedback="\n".join(lines))

    def stop(self, state: Any) -> bool:
        if self.judging.fatal is not None or self.judging.stopped.is_set():
            return True
        if self.judging.budget.remaining - self.reserve < _gepa_step_cost(len(self.dev)):
            self.stopped_by_budget = True
            return True
        return False

    def run(self) -> bool:
        dspy = self.dspy
        from dspy.teleprompt.gepa import InstructionProposer
        from gepa.utils import NoImprovementStopper

        search = self
        budget = self.judging.budget
        adapter_base: Any = dspy.Adapter
        lm_base: Any = dspy.LM

        class JudgeAdapter(adapter_base):  # type: ignore[misc]
            """Turns the student's call into a call of the project's judge (same prompt, schema and cache)."""

            def __call__(
                self, lm: Any, lm_kwargs: Any, signature: Any, demos: Any, inputs: dict[str, Any]
            ) -> list[dict[str, str]]:
                return [search.judge(signature.instructions, inputs)]

        class CountedLM(lm_base):  # type: ignore[misc]
            """The reflection model; each call takes one call from the budget first."""

            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                if search.judging.stopped.is_set() or search.judging.fatal is not None:
                    raise _BudgetSpent("the optimizer is stopping")
                budget.take("reflection")
                return super().__call__(*args, **kwargs)

        settings = self.ev.judge
        reflection_lm = CountedLM(
            f"openai/{self.endpoint.model}",
            api_base=self.endpoint.base_url,
            api_key=self.endpoint.api_key,
            temperature=REFLECTION_TEMPERATURE,
            cache=False,
            num_retries=settings.max_retries,
            timeout=settings.timeout,
            engine="lm15",  # the stdlib engine: "auto" picks litellm when OPENAI_BASE_URL is set
        )
        fields: dict[str, Any] = {root: (str, dspy.InputField()) for root in self.roots}
        fields["reasoning"] = (str, dspy.OutputField(desc="Why, grounded in the example"))
        fields["score"] = (str, dspy.OutputField(desc=self.ev.score_type.describe()))
        student = dspy.Predict(dspy.make_signature(fields, self.template.instructions))
        dev = self._examples([rid for rid, _ in self.dev])
        train = self._examples(self.train_ids)
        proposer = InstructionProposer(
            base_instructions=_meta_prompt("optimizer_gepa.md"),
            additional_instructions=self.template.variables_rule(),
        )

        def propose(
            candidate: dict[str, str], reflective_dataset: Any, components_to_update: list[str]
        ) -> dict[str, str]:
            """GEPA's proposer, except that an unusable reply skips one step instead of ending the search."""
            from dspy.utils.exceptions import AdapterParseError, LMAuthError, LMError

            try:
                proposed: dict[str, str] = proposer(
                    candidate=candidate,
                    reflective_dataset=reflective_dataset,
                    components_to_update=components_to_update,
                )
            except (AdapterParseError, ValueError) as e:  # pydantic's ValidationError is a ValueError
                search.unusable.append(str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
                return {}
            except LMError as e:
                where = f"the reflection model {search.endpoint.model!r} at {search.endpoint.base_url}"
                failure: AlignError = (
                    JudgeConfigError(f"{where} refused the request: {e}. Check the API key and model name.")
                    if isinstance(e, LMAuthError)
                    else JudgeUnreachable(f"{where} failed: {e}. Check the server; nothing was stored.")
                )
                search.judging.fatal = search.judging.fatal or failure
                return {}
            return proposed

        # Judge calls are capped by self.stop (which keeps the final test evaluation's share); this cap only
        # ends loops that spin on cached evaluations.
        metric_cap = max(len(dev) + MINIBATCH, 4 * budget.remaining)
        with tempfile.TemporaryDirectory(prefix="align-mcp-gepa-") as log_dir:
            optimizer = dspy.GEPA(
                metric=self.metric,
                reflection_lm=reflection_lm,
                instruction_proposer=propose,
                max_metric_calls=metric_cap,
                reflection_minibatch_size=MINIBATCH,
                candidate_selection_strategy="pareto",
                use_merge=False,
                num_threads=int(self.judging.limiter.total_tokens),
                log_dir=log_dir,  # fresh per run: GEPA resumes from a directory that holds an old state
                seed=0,
                gepa_kwargs={"stop_callbacks": [self.stop, NoImprovementStopper(PATIENCE)]},
            )
            with _stdout_to_stderr(), dspy.context(lm=reflection_lm, adapter=JudgeAdapter()):
                try:
                    optimizer.compile(student, trainset=train, valset=dev)
                except _BudgetSpent:
                    self.stopped_by_budget = True
        if self.judging.fatal is not None:
            raise self.judging.fatal
        return self.stopped_by_budget


async def _reflect(
    judging: _Judging,
    ev: Evaluator,
    endpoint: Endpoint,
    template: _Template,
    analysis: FailureAnalysis,
    cases: Sequence[MisalignedCase],
    dev: Sequence[tuple[str, Score]],
    reserve: int,
) -> None:
    """One structured rewrite from the failure modes and misaligned dev examples; the result is judged on dev.

    An unusable reply (no JSON, or instructions that break the template) is asked again once when the budget
    still covers the evaluation after it.
    """
    by_id = {c.run_id: c for c in cases}
    queues = [[by_id[rid] for rid in mode.run_ids if rid in by_id] for mode in analysis.modes]
    shown: list[MisalignedCase] = []
    while len(shown) < REFLECT_EXAMPLES and any(queues):  # round-robin, so every mode is illustrated
        for queue in queues:
            if queue and len(shown) < REFLECT_EXAMPLES:
                shown.append(queue.pop(0))
    kind = "instructions" if template.tail else "template"
    modes = "\n".join(
        f"- {m.name} ({_direction_label(m.direction)}, {len(m.run_ids)} example(s)): {m.description}"
        for m in analysis.modes
    )
    user = "\n\n".join(
        [
            f"Score type: {ev.score_type.describe()}.",
            f"The judge's current {kind}:\n<instructions>\n{template.instructions}\n</instructions>",
            template.variables_rule(),
            f"Failure modes on the dev examples:\n{modes}",
            "Examples the judge got wrong:\n\n" + "\n\n".join(_case_text(c, ev.score_type) for c in shown),
        ]
    )
    system = _meta_prompt("optimizer_reflect.md")
    problem = ""
    for attempt in range(2):
        if attempt and judging.budget.remaining - 1 < reserve:
            break
        retry = f"\n\nYour previous reply could not be used: {problem}. Reply again." if attempt else ""
        judging.budget.take("reflection")
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user + retry}]
        try:
            revision = await _structured_call(endpoint, ev, messages, "prompt_revision", _Revision)
        except _ReplyProblem as e:
            problem = str(e)
            continue
        candidate = template.assemble(revision.instructions)
        if not revision.instructions.strip():
            problem = "the revised text is empty"
        elif (found := template.problem(candidate)) is not None:
            problem = f"the revised {kind} {found}"
        else:
            await judging.many(candidate, [rid for rid, _ in dev])
            return
    raise AlignError(
        f"The reflection model did not return usable instructions ({problem}). Try mode='gepa', or edit the "
        "draft by hand from the failure modes (analyze_failures)."
    )


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")  # strict JSON-schema mode wants additionalProperties: false


class _Revision(_Reply):
    analysis: str = Field(description="What to change and why, in a few sentences")
    instructions: str = Field(description="The complete revised text")


class _ModeItem(_Reply):
    name: str
    description: str
    run_ids: list[str]


class _Modes(_Reply):
    modes: list[_ModeItem]


class _MergedItem(_Reply):
    name: str
    description: str
    members: list[str]


class _Merged(_Reply):
    modes: list[_MergedItem]


# ---- model calls for analysis and reflection ----------------------------------------------------------------


class _ReplyProblem(Exception):
    """The model answered, but not with the JSON object asked for (or the call failed for this request only)."""


async def _structured_call(
    endpoint: Endpoint, ev: Evaluator, messages: list[dict[str, str]], name: str, reply: type[R]
) -> R:
    """One JSON-schema call to the judge endpoint; endpoint-wide failures raise the judge's errors."""
    import openai

    settings = ev.judge
    client = openai.AsyncOpenAI(
        api_key=endpoint.api_key,
        base_url=endpoint.base_url,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
    )
    schema = {"name": name, "strict": True, "schema": reply.model_json_schema()}
    kwargs: dict[str, Any] = {
        "model": endpoint.model,
        "messages": messages,
        "temperature": settings.temperature,
        "response_format": {"type": "json_schema", "json_schema": schema},
    }
    try:
        response = await client.chat.completions.create(**kwargs)
    except openai.APITimeoutError as e:
        raise _ReplyProblem(f"the call timed out after {settings.timeout:g}s") from e
    except openai.APIConnectionError as e:
        raise JudgeUnreachable(
            f"Cannot reach the judge model at {endpoint.base_url}: {e.__cause__ or e}. Check that the server is "
            "running and the base URL is right."
        ) from e
    except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as e:
        raise JudgeConfigError(
            f"The judge endpoint {endpoint.base_url} refused model {endpoint.model!r} ({e.status_code}). Check the "
            f"API key and {config.ENV_JUDGE_MODEL}."
        ) from e
    except openai.APIStatusError as e:
        raise _ReplyProblem(f"HTTP {e.status_code} from the model") from e
    finally:
        await client.close()
    content = (response.choices[0].message.content if response.choices else None) or ""
    text = content.strip()
    if text.startswith("```"):
        text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text)
    try:
        return reply.model_validate_json(text)
    except ValidationError as e:
        problem = e.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise _ReplyProblem(
            f"the reply does not match the schema ({where + ': ' if where else ''}{problem['msg']}): "
            f"{content[:120]!r}"
        ) from None


# ---- failure modes ------------------------------------------------------------------------------------------


def _misaligned(store: Store, evaluator: str, aid: int) -> tuple[list[MisalignedCase], int, str]:
    """All misaligned dev cases of a run (texts clipped), how many dev examples it judged, and its prompt ref."""
    cases: list[MisalignedCase] = []
    offset: int | None = 0
    prompt_ref = "draft"
    while offset is not None:
        page = align.get_misaligned(
            store, evaluator, alignment_run=aid, offset=offset, limit=100, max_chars=CASE_CHARS
        )
        cases.extend(page.cases)
        prompt_ref = page.prompt_ref
        offset = page.next_offset
    hidden = holdout.split_ids(store, evaluator, "test")
    judged = sum(
        1
        for r in store.alignment_results(aid)
        if r["error"] is None and r["judge_score"] is not None and r["run_id"] not in hidden
    )
    return cases, judged, prompt_ref


async def _analyze(
    ev: Evaluator, cases: Sequence[MisalignedCase], use_llm: bool, env: config.Settings, spend: _Budget | None
) -> tuple[Literal["llm", "keywords"], list[FailureMode], int, list[str]]:
    """(method, modes, model calls, notes): the judge model groups the cases, else comment terms do."""
    spend = spend or _Budget(MAX_BUDGET)
    before = spend.counts["analysis"]
    notes: list[str] = []
    if not cases:
        return "keywords", [], 0, ["No misaligned dev examples in this run: there is nothing to group."]
    if use_llm:
        try:
            endpoint: Endpoint | None = resolve_endpoint(ev.judge, env)
        except JudgeConfigError as e:
            endpoint = None
            notes.append(f"Grouped without a model: {e}")
        if endpoint is not None:
            try:
                modes = await _llm_modes(ev, endpoint, cases, spend)
            except (_ReplyProblem, _BudgetSpent, AlignError) as e:
                notes.append(
                    f"The judge model could not group the failures ({e}); they were grouped by direction and by "
                    "terms recurring in the human comments instead."
                )
            else:
                return "llm", modes, spend.counts["analysis"] - before, notes
    return "keywords", _keyword_modes(cases), spend.counts["analysis"] - before, notes


async def _llm_modes(
    ev: Evaluator, endpoint: Endpoint, cases: Sequence[MisalignedCase], spend: _Budget
) -> list[FailureMode]:
    system = _meta_prompt("optimizer_failure_modes.md")
    by_id = {c.run_id: c for c in cases}
    found: list[FailureMode] = []
    chunks = [list(cases[i : i + ANALYSIS_CHUNK]) for i in range(0, len(cases), ANALYSIS_CHUNK)]
    for chunk in chunks:
        user = f"Score type: {ev.score_type.describe()}.\n\n" + "\n\n".join(
            _case_text(c, ev.score_type) for c in chunk
        )
        spend.take("analysis")
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        reply = await _structured_call(endpoint, ev, messages, "failure_modes", _Modes)
        found.extend(_modes_from_reply(reply, chunk, by_id))
    if len(chunks) > 1:
        found = await _merge_modes(ev, endpoint, found, by_id, spend)
    return _ordered(found)


async def _merge_modes(
    ev: Evaluator,
    endpoint: Endpoint,
    found: list[FailureMode],
    by_id: dict[str, MisalignedCase],
    spend: _Budget,
) -> list[FailureMode]:
    """One call merging the modes that separate batches found under different names (kept as is on failure)."""
    keys = {f"m{i + 1}": mode for i, mode in enumerate(found)}
    listing = "\n".join(
        f"- {key}: {m.name} ({len(m.run_ids)} example(s)): {m.description}" for key, m in keys.items()
    )
    spend.take("analysis")
    messages = [
        {"role": "system", "content": _meta_prompt("optimizer_merge_modes.md")},
        {"role": "user", "content": f"Failure modes found in separate batches:\n{listing}"},
    ]
    try:
        reply = await _structured_call(endpoint, ev, messages, "failure_mode_merge", _Merged)
    except _ReplyProblem:
        return found
    merged = []
    for item in reply.modes:
        members = [keys.pop(k) for k in dict.fromkeys(item.members) if k in keys]
        if members:
            ids = [rid for m in members for rid in m.run_ids]
            merged.append(
                _mode(item.name or members[0].name, item.description or members[0].description, ids, by_id)
            )
    return merged + list(keys.values())


def _modes_from_reply(
    reply: _Modes, chunk: Sequence[MisalignedCase], by_id: dict[str, MisalignedCase]
) -> list[FailureMode]:
    """Modes from one analysis reply: unknown or repeated ids dropped, unassigned ones gathered in "Other"."""
    wanted = {c.run_id for c in chunk}
    taken: set[str] = set()
    modes = []
    for item in reply.modes:
        ids = [rid for rid in dict.fromkeys(item.run_ids) if rid in wanted and rid not in taken]
        taken.update(ids)
        if ids:
            modes.append(_mode(item.name or "Unnamed", item.description, ids, by_id))
    rest = [c.run_id for c in chunk if c.run_id not in taken]
    if rest:
        modes.append(_mode("Other", "Misaligned examples the analysis put in no failure mode.", rest, by_id))
    return modes


def _mode(
    name: str, description: str, run_ids: Sequence[str], by_id: dict[str, MisalignedCase]
) -> FailureMode:
    directions = sorted({by_id[rid].direction for rid in run_ids if rid in by_id})
    return FailureMode(
        name=name.strip()[:120] or "Unnamed",
        description=" ".join(description.split())[:400],
        direction=directions[0] if len(directions) == 1 else "mixed",
        run_ids=list(dict.fromkeys(run_ids)),
    )


def _ordered(modes: Sequence[FailureMode]) -> list[FailureMode]:
    return sorted(modes, key=lambda m: (m.name == "Other" or m.name.endswith(": other"), -len(m.run_ids)))


_STOPWORDS = frozenset(
    """about above after again against also although always another because been before being below between
    both cannot could does doing done down during each either else even every from further have having here
    into itself just like made make more most much must need never only other ought over same should since some
    such than that their theirs them then there these they this those though through under until very want
    were what when where which while whom whose will with within without would your yours answer output outputs
    judge human customer says said should".""".split()  # noqa: SIM905
)
_TERM = re.compile(r"[a-z][a-z'-]{3,}")


def _stem(word: str) -> str:
    word = word.strip("'-")
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4 and not word.endswith("ss"):
            return word[: len(word) - len(suffix)] + keep
    return word


def _terms(comment: str | None) -> dict[str, str]:
    """Stemmed key terms of a comment, each mapped to the first way it was written."""
    out: dict[str, str] = {}
    for word in _TERM.findall((comment or "").lower()):
        word = word.strip("'-")
        if word not in _STOPWORDS and len(word) >= 4:
            out.setdefault(_stem(word), word)
    return out


def _keyword_modes(cases: Sequence[MisalignedCase]) -> list[FailureMode]:
    """Group by direction, then greedily by the term shared by most of the remaining cases' human comments."""
    by_id = {c.run_id: c for c in cases}
    groups: dict[str, list[MisalignedCase]] = defaultdict(list)
    for case in cases:
        groups[case.direction].append(case)
    modes: list[FailureMode] = []
    for direction in sorted(groups, key=lambda d: (-len(groups[d]), d)):
        label, meaning = _DIRECTION_LABELS.get(direction, (direction, "the judge disagreed with the human"))
        terms = {c.run_id: _terms(c.human_comment) for c in groups[direction]}
        left = [c.run_id for c in groups[direction]]
        found = 0
        while left and found < KEYWORD_MODES_PER_DIRECTION:
            counts = Counter(t for rid in left for t in terms[rid])
            common = sorted((t for t, n in counts.items() if n >= 2), key=lambda t: (-counts[t], t))
            if not common:
                break
            term = common[0]
            members = [rid for rid in left if term in terms[rid]]
            shown = next(terms[rid][term] for rid in members)
            also = Counter(t for rid in members for t in terms[rid] if t != term)
            extra = [
                terms[rid][t] for t, n in also.most_common(2) if n >= 2 for rid in members if t in terms[rid]
            ]
            extra = list(dict.fromkeys(extra))[:2]
            with_terms = f" (with {', '.join(repr(e) for e in extra)})" if extra else ""
            modes.append(
                _mode(
                    f"{label}: '{shown}'",
                    f"{len(members)} case(s) where {meaning}; the human comments mention '{shown}'{with_terms}.",
                    members,
                    by_id,
                )
            )
            left = [rid for rid in left if rid not in set(members)]
            found += 1
        if left:
            modes.append(
                _mode(
                    f"{label}: other",
                    f"{len(left)} case(s) where {meaning}, with no term recurring in their human comments.",
                    left,
                    by_id,
                )
            )
    return _ordered(modes)


def _direction_label(direction: str) -> str:
    return _DIRECTION_LABELS[direction][0].lower() if direction in _DIRECTION_LABELS else direction


def _describe(score_type: ScoreType, value: Score) -> str:
    if score_type.kind == "binary":
        return f"{value} ({'pass' if value == 1 else 'fail'})"
    return json.dumps(value, ensure_ascii=False)


def _case_text(case: MisalignedCase, score_type: ScoreType) -> str:
    def show(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = [f'<example id="{case.run_id}">', f"Input: {show(case.inputs)}", f"Output: {show(case.outputs)}"]
    if case.reference_outputs is not None:
        lines.append(f"Reference output: {show(case.reference_outputs)}")
    lines.append(f"Human expert's score: {_describe(score_type, case.human_score)}")
    if case.human_comment:
        lines.append(f"Human expert's comment: {case.human_comment}")
    if case.judge_score is not None:
        lines.append(f"Judge's score: {_describe(score_type, case.judge_score)}")
    if case.judge_reasoning:
        lines.append(f"Judge's reasoning: {case.judge_reasoning}")
    lines.append("</example>")
    return "\n".join(lines)


def _store_analysis(
    store: Store,
    evaluator: str,
    aid: int,
    prompt_ref: str,
    method: Literal["llm", "keywords"],
    judged: int,
    cases: Sequence[MisalignedCase],
    modes: list[FailureMode],
    calls: int,
    notes: list[str],
) -> FailureAnalysis:
    result = FailureAnalysis(
        id=0,
        evaluator=evaluator,
        alignment_run=aid,
        prompt_ref=prompt_ref,
        method=method,
        judged=judged,
        misaligned=len(cases),
        modes=modes,
        model_calls=calls,
        created_at=datetime.fromisoformat(now_iso()),
        notes=notes,
    )
    new_id = store.insert_failure_analysis(evaluator, aid, method, result.model_dump_json(exclude={"id"}))
    return result.model_copy(update={"id": new_id})


def _analysis(row: dict[str, Any]) -> FailureAnalysis:
    return FailureAnalysis.model_validate({**json.loads(row["result"]), "id": row["id"]})


# ---- the proposal -------------------------------------------------------------------------------------------


def _compare(
    split: Literal["dev", "test"],
    examples: Sequence[tuple[str, Score]],
    judging: _Judging,
    base: str,
    chosen: str,
    score_type: ScoreType,
) -> SplitComparison:
    def outcome(template: str, rid: str) -> _Outcome | None:
        return judging.results.get(template, {}).get(rid)

    def pairs(template: str) -> list[tuple[Score, Score | None]]:
        out: list[tuple[Score, Score | None]] = []
        for rid, human in examples:
            o = outcome(template, rid)
            out.append((human, o.score if o is not None and o.error is None else None))
        return out

    def correct(template: str) -> dict[str, bool]:
        return {
            rid: o.score == human
            for rid, human in examples
            if (o := outcome(template, rid)) is not None and o.error is None and o.score is not None
        }

    return SplitComparison(
        split=split,
        n=len(examples),
        before=metrics.compute_metrics(score_type, pairs(base)),
        after=metrics.compute_metrics(score_type, pairs(chosen)),
        flips=metrics.flip_report(correct(base), correct(chosen), "draft", "proposal"),
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _verdict(dev: SplitComparison, test: SplitComparison, changed: bool) -> tuple[str, list[str]]:
    if not changed:
        return (
            f"No candidate agreed with the human labels more often than the draft on dev "
            f"({_pct(dev.before.agreement.value)}), so the proposal is the draft itself and there is nothing to "
            "apply. Read the failure modes and edit the draft by hand, label more runs, or try a larger budget.",
            [],
        )
    tb, ta = test.before.agreement.value, test.after.agreement.value
    text = (
        f"Dev agreement {_pct(dev.before.agreement.value)} -> {_pct(dev.after.agreement.value)}: "
        f"{dev.flips.verdict} On the held-out test split, which the optimizer never saw: {_pct(tb)} -> "
        f"{_pct(ta)}: {test.flips.verdict}"
    )
    warnings: list[str] = []
    if tb is not None and ta is not None and ta < tb:
        warnings.append(
            "The proposal does worse than the draft on the held-out test split: it probably fits the dev "
            "examples rather than the task. Do not apply it as is; label more runs and propose again."
        )
        text += " It does worse on test, so do not apply it as is."
    elif tb is not None and ta is not None and ta == tb:
        text += " It does no better on test, so its dev gain may not generalise; label more runs before trusting it."
    else:
        text += (
            " apply_proposal copies it into the draft (nothing is saved); run_alignment confirms it, and "
            "save_prompt keeps it as a version."
        )
    return text, warnings


def _store_proposal(
    store: Store,
    ev: Evaluator,
    mode: Mode,
    template: _Template,
    chosen: str,
    dev: Sequence[tuple[str, Score]],
    test: Sequence[tuple[str, Score]],
    judging: _Judging,
    analysis: FailureAnalysis,
    aid: int,
    stopped: bool,
    test_looks: int,
    notes: list[str],
    wall: float,
) -> Proposal:
    base = template.original
    changed = chosen != base
    dev_cmp = _compare("dev", dev, judging, base, chosen, ev.score_type)
    test_cmp = _compare("test", test, judging, base, chosen, ev.score_type)
    after = judging.results.get(chosen, {})
    humans = dict(dev)
    addresses = [
        ModeOutcome(
            name=m.name,
            description=m.description,
            direction=m.direction,
            cases=len(m.run_ids),
            fixed=sum(
                1
                for rid in m.run_ids
                if (o := after.get(rid)) is not None and o.error is None and o.score == humans.get(rid)
            ),
            run_ids=m.run_ids,
        )
        for m in analysis.modes
    ]
    verdict, warnings = _verdict(dev_cmp, test_cmp, changed)
    notes = list(notes)
    if stopped:
        notes.append(
            f"The search stopped when the budget ran low ({judging.budget.used} of {judging.budget.limit} calls "
            "used, keeping enough to judge the proposal on test); a larger budget lets it try more candidates."
        )
    retries = judging.budget.requests - judging.budget.counts["judge"]
    if retries > 0:
        notes.append(
            f"{retries} judge request(s) were retried (rate limits, timeouts or unparseable replies); the budget "
            "counts each judged example once."
        )
    notes.append(
        f"The draft and the proposal were judged once each on the held-out test split; the test split has now "
        f"been evaluated {test_looks} time(s). Test results are reported, never used to choose."
    )
    diff = "".join(
        difflib.unified_diff(
            base.splitlines(keepends=True),
            chosen.splitlines(keepends=True),
            fromfile="draft",
            tofile="proposal",
        )
    )
    proposal = Proposal(
        id=0,
        evaluator=ev.name,
        mode=mode,
        status="proposed",
        changed=changed,
        prompt=chosen,
        base_prompt=base,
        diff=diff,
        addresses=addresses,
        dev=dev_cmp,
        test=test_cmp,
        verdict=verdict,
        budget=judging.budget.report(stopped),
        candidates=judging.full_candidates(dev),
        seen_examples=len(dev),
        alignment_run=aid,
        analysis_id=analysis.id,
        wall_seconds=round(wall, 2),
        created_at=datetime.fromisoformat(now_iso()),
        warnings=warnings,
        notes=notes,
    )
    new_id = store.insert_proposal(
        {
            "evaluator": ev.name,
            "mode": mode,
            "alignment_id": aid,
            "analysis_id": analysis.id,
            "base_prompt": base,
            "prompt": chosen,
            "seen_run_ids": dumps([rid for rid, _ in dev]),
            "result": proposal.model_dump_json(exclude={"id", "status", "applied_at"}),
            "created_at": now_iso(),
        }
    )
    return proposal.model_copy(update={"id": new_id})


def _proposal(row: dict[str, Any]) -> Proposal:
    return Proposal.model_validate(
        {
            **json.loads(row["result"]),
            "id": row["id"],
            "status": "applied" if row["applied_at"] else "proposed",
            "applied_at": row["applied_at"],
        }
    )
