"""DSPy's GEPA search for judge instructions; its candidates are judged by the project's judge."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import anyio

from align_mcp.core.models import Evaluator, JsonDict, Score
from align_mcp.core.templates import ROOTS, prompt_file
from align_mcp.engine import alignment
from align_mcp.errors import AlignError, JudgeConfigError, JudgeUnreachable, OptimizerUnavailable
from align_mcp.llm.client import redact
from align_mcp.llm.endpoint import Endpoint
from align_mcp.llm.runner import BudgetSpent
from align_mcp.optimize.candidates import Judging, Outcome, Template, example_credit, is_wrong
from align_mcp.optimize.failure_modes import DIRECTION_LABELS, describe_score
from align_mcp.store import Store

INSTALL_HINT = "The optimizer needs the optional DSPy extra: pip install 'align-mcp[optimize]'"
MINIBATCH = 3  # GEPA reflection minibatch
REFLECTION_TEMPERATURE = 1.0  # GEPA explores: diverse rewrites beat the single most likely one
PATIENCE = 10  # GEPA steps without a better dev score before the search ends


# ---- optional dependency ----------------------------------------------------------------------------------

_dspy_ready = threading.Lock()
_dspy_configured = False


def load_dspy() -> Any:
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


# ---- the search ---------------------------------------------------------------------------------------------


def gepa_step_cost(dev: int, per: int = 1) -> int:
    """Worst-case calls of one GEPA step: parent and child minibatches, a reflection (and a retry), a dev eval;
    each judged example costs `per` calls (one per jury member)."""
    return (2 * MINIBATCH + dev) * per + 2


async def gepa_search(
    dspy: Any,
    judging: Judging,
    template: Template,
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
    labels = {lab.run_id: lab.comment for lab in store.current_labels(ev.name, [r for r, _ in dev])}
    base = judging.results.get(template.original, {})
    wrong = [rid for rid, human in dev if is_wrong(base.get(rid), human)]
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
        judging: Judging,
        template: Template,
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
                **fields,
                run_id=rid,
                human_score=json.dumps(humans[rid], ensure_ascii=False),
                human_comment=self.comments.get(rid),
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
        return {"reasoning": outcome.reasoning or "", "score": json.dumps(outcome.score, ensure_ascii=False)}

    def metric(
        self, gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
    ) -> Any:
        """Score 1 when the judge agrees with the human; feedback carries both scores, the comment and reasoning."""
        score_type = self.ev.score_type
        human = json.loads(gold.human_score)
        judged = json.loads(pred.score) if pred.score else None
        outcome = Outcome(judged, pred.reasoning, None if judged is not None else pred.reasoning)
        credit = example_credit(score_type, human, outcome)
        lines = [f"Human expert's score: {describe_score(score_type, human)}."]
        if gold.human_comment:
            lines.append(f"Human expert's comment: {gold.human_comment}")
        if judged is None:
            lines.append(f"The judge gave no score: {pred.reasoning}")
        else:
            lines.append(f"Judge's score: {describe_score(score_type, judged)}.")
            if pred.reasoning:
                lines.append(f"Judge's reasoning: {pred.reasoning}")
            if judged == human:
                lines.append("The judge agreed with the expert.")
            else:
                direction = alignment.direction_of(score_type, human, judged)
                lines.append(f"The judge was wrong ({DIRECTION_LABELS[direction][1]}).")
        return self.dspy.Prediction(score=credit, feedback="\n".join(lines))

    def stop(self, state: Any) -> bool:
        if self.judging.fatal is not None or self.judging.stopped.is_set():
            return True
        if self.judging.budget.remaining - self.reserve < gepa_step_cost(
            len(self.dev), self.judging.calls_per_example
        ):
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
                    raise BudgetSpent("the optimizer is stopping")
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
            base_instructions=prompt_file("optimizer_gepa.md"),
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
                said = redact(str(e), [search.endpoint.api_key])  # a provider's error may quote the key
                failure: AlignError = (
                    JudgeConfigError(
                        f"{where} refused the request: {said}. Check the API key and model name."
                    )
                    if isinstance(e, LMAuthError)
                    else JudgeUnreachable(f"{where} failed: {said}. Check the server; nothing was stored.")
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
                num_threads=self.judging.concurrency,
                log_dir=log_dir,  # fresh per run: GEPA resumes from a directory that holds an old state
                seed=0,
                gepa_kwargs={"stop_callbacks": [self.stop, NoImprovementStopper(PATIENCE)]},
            )
            with _stdout_to_stderr(), dspy.context(lm=reflection_lm, adapter=JudgeAdapter()):
                try:
                    optimizer.compile(student, trainset=train, valset=dev)
                except BudgetSpent:
                    self.stopped_by_budget = True
        if self.judging.fatal is not None:
            raise self.judging.fatal
        return self.stopped_by_budget
