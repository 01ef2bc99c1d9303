"""Shared pydantic types: the shapes the Python API, the CLI and the MCP server exchange."""

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    Field,
    GetJsonSchemaHandler,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from align_mcp.errors import InvalidInput, InvalidScore, NextStep

ScoreKind = Literal["binary", "categorical", "ordinal", "pairwise"]
SourceKind = Literal["experiment", "project"]
ImportFormat = Literal["jsonl", "csv", "langfuse", "phoenix", "opik", "mlflow", "otel"]
Score = int | str
JsonDict = dict[str, Any]


class Model(BaseModel):
    """The base of every shared type.

    Validators and serializers are built when the class is defined. The MCP server needs nearly every type at
    start-up (as a tool's output schema), and a deferred type is rebuilt for each schema that nests it.
    """


NOTE_WORDS = "note_words"
"""The serialization-context key of a surface's note renderer: `model_dump(context={NOTE_WORDS: render})`."""


class Note(Model):
    """A remark on a result in the engine's words, and the steps that follow from it.

    Each surface shows a note as one line of text: `text`, then every step worded its own way. Dumped with a
    renderer under NOTE_WORDS in the serialization context, a note becomes that line, which is why its JSON
    schema is a string; a plain string validates as a note without steps.
    """

    text: str
    next_steps: list[NextStep] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value

    @model_serializer(mode="wrap")
    def _as_line(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        context = info.context
        render: Callable[[Note], str] | None = context.get(NOTE_WORDS) if isinstance(context, dict) else None
        return handler(self) if render is None else render(self)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string"}


_BINARY_WORDS: dict[str, int] = {
    "1": 1,
    "0": 0,
    "pass": 1,
    "fail": 0,
    "true": 1,
    "false": 0,
    "yes": 1,
    "no": 0,
    "correct": 1,
    "incorrect": 0,
}


_PAIRWISE_WORDS: dict[str, str] = {"a": "A", "b": "B", "tie": "tie", "t": "tie"}


class ScoreType(Model):
    """What a score may be: binary 0/1, one of fixed labels, an integer in a range, or the better of two outputs."""

    kind: ScoreKind = Field(
        description="binary (0 = fail, 1 = pass), categorical (labels), ordinal (min..max) or pairwise (A / B)"
    )
    labels: list[str] | None = Field(default=None, description="categorical only: the allowed labels")
    min: int | None = Field(default=None, description="ordinal only: lowest score")
    max: int | None = Field(default=None, description="ordinal only: highest score")
    # Left out of dumps at their defaults, so the other score types read as before.
    ties: bool = Field(
        default=False, exclude_if=lambda v: v is False, description="pairwise only: 'tie' is an allowed score"
    )
    swap: bool = Field(
        default=True,
        exclude_if=lambda v: v is True,
        description="pairwise only: judge each comparison in both orders and map the answers back (position swap)",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.kind != "pairwise" and (self.ties or not self.swap):
            raise InvalidInput(
                f"ties and position swap apply to pairwise evaluators only, not to a {self.kind} one."
            )
        if self.kind == "categorical":
            if not self.labels or len(self.labels) < 2:
                raise InvalidInput(
                    "A categorical score type needs at least two labels, e.g. labels=good,ok,bad."
                )
            if len(set(self.labels)) != len(self.labels):
                raise InvalidInput(f"Categorical labels must be distinct; got {self.labels}.")
        elif self.kind == "ordinal":
            if self.min is None or self.max is None or self.min >= self.max:
                raise InvalidInput(
                    f"An ordinal score type needs min < max (got min={self.min}, max={self.max}), e.g. 1..5."
                )
            if self.max - self.min > 100:
                raise InvalidInput(
                    f"An ordinal range of {self.min}..{self.max} is too wide; use at most 101 values."
                )
        return self

    def ambiguous_labels(self) -> list[tuple[str, str]]:
        """Pairs of categorical labels a score cannot tell apart (scores match labels ignoring case and
        surrounding spaces), e.g. ('Good', 'good')."""
        seen: dict[str, str] = {}
        pairs: list[tuple[str, str]] = []
        for label in self.labels or []:
            folded = label.strip().casefold()
            if folded in seen:
                pairs.append((seen[folded], label))
            else:
                seen[folded] = label
        return pairs

    def values(self) -> list[Score]:
        """Allowed values, in order."""
        if self.kind == "binary":
            return [0, 1]
        if self.kind == "pairwise":
            return ["A", "B", "tie"] if self.ties else ["A", "B"]
        if self.kind == "categorical":
            return list(self.labels or [])
        assert self.min is not None and self.max is not None
        return list(range(self.min, self.max + 1))

    def describe(self) -> str:
        if self.kind == "binary":
            return "binary (0 = fail, 1 = pass)"
        if self.kind == "categorical":
            return "categorical (" + ", ".join(self.labels or []) + ")"
        if self.kind == "pairwise":
            return "pairwise (A, B" + (" or tie)" if self.ties else "; no ties)")
        return f"ordinal ({self.min}..{self.max})"

    def validate_score(self, value: object) -> Score:
        """Coerce a user-given score to the canonical value or raise InvalidScore naming the allowed ones."""
        if self.kind == "binary":
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, int | float) and value in (0, 1):
                return int(value)
            if isinstance(value, str) and value.strip().lower() in _BINARY_WORDS:
                return _BINARY_WORDS[value.strip().lower()]
            raise InvalidScore(
                f"Score {value!r} is not valid for a binary evaluator; use 1 (pass) or 0 (fail)."
            )
        if self.kind == "categorical":
            labels = self.labels or []
            if isinstance(value, str):
                if value in labels:
                    return value
                folded = {label.lower(): label for label in labels}
                if value.strip().lower() in folded:
                    return folded[value.strip().lower()]
            raise InvalidScore(f"Score {value!r} is not one of this evaluator's labels: {', '.join(labels)}.")
        if self.kind == "pairwise":
            word = _PAIRWISE_WORDS.get(value.strip().casefold()) if isinstance(value, str) else None
            if word == "tie" and not self.ties:
                raise InvalidScore(
                    f"Score {value!r} is not valid: this pairwise evaluator allows no ties; use A or B."
                )
            if word is None:
                raise InvalidScore(
                    f"Score {value!r} is not valid for a pairwise evaluator; use A or B"
                    + (" or tie." if self.ties else ".")
                )
            return word
        assert self.min is not None and self.max is not None
        number: int | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                number = None
        if number is None or not self.min <= number <= self.max:
            raise InvalidScore(
                f"Score {value!r} is not valid for an ordinal evaluator; use an integer from {self.min} to {self.max}."
            )
        return number

    def is_pass(self, value: Score) -> bool:
        """Binary view used for TPR/TNR: pass = 1 (binary) or the upper half of an ordinal range."""
        if self.kind == "binary":
            return value == 1
        if self.kind == "ordinal":
            assert self.min is not None and self.max is not None and isinstance(value, int)
            return value > (self.min + self.max) / 2
        if self.kind == "pairwise":
            return value == "A"
        return value == (self.labels or [""])[0]


API_KEY_ENV = re.compile(r"[A-Z][A-Z0-9_]*_API_KEY")
"""The variables an evaluator may read its judge key from: names ending in _API_KEY, matched whole."""


def api_key_env_problem(name: str) -> str | None:
    """Why `name` may not be an evaluator's api_key_env, or None: the one rule for writing and for calling."""
    if API_KEY_ENV.fullmatch(name):
        return None
    return (
        f"api_key_env={name!r} is not allowed: name a variable ending in _API_KEY (e.g. AZURE_OPENAI_API_KEY), "
        "so no other secret can be sent to a judge endpoint."
    )


Combine = Literal["majority", "mean", "median", "any_fail"]
"""How a jury's member verdicts become one: see core.jury for the exact rules (ties, rounding)."""


class JuryMember(Model):
    """One judge of a jury: its own model (and endpoint), optionally its own temperature and prompt."""

    model: str = Field(description="Model name")
    base_url: str | None = Field(default=None, description="Default: the evaluator's")
    api_key_env: str | None = Field(default=None, description="Default: the evaluator's")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    prompt: str | None = Field(default=None, description="Own template; default: the draft")


class JudgeSettings(Model):
    """How the judge model is called. Secrets are never stored: only the name of the env var holding the key.

    With `members` (two or more) the evaluator is a jury: each member judges every example and `combine` makes
    their verdicts one.
    """

    model: str | None = Field(default=None, description="Model name; falls back to ALIGN_MCP_JUDGE_MODEL")
    base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible base URL; falls back to ALIGN_MCP_JUDGE_BASE_URL / OPENAI_BASE_URL",
    )
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the API key (never the key itself)",
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    reasoning: bool = Field(default=True, description="Ask the judge for its reasoning before the score")
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    timeout: float = Field(default=60.0, gt=0, le=3600, description="Seconds per judge call")
    max_retries: int = Field(default=4, ge=0, le=20)
    members: list[JuryMember] = Field(default_factory=list, description="A jury's judges; empty: one judge")
    combine: Combine | None = Field(default=None, description="How a jury's verdicts combine")

    def hashed(self) -> dict[str, Any]:
        """The settings as identity material; a single judge leaves out the jury fields, so its identity is the
        same as before juries existed."""
        return self.model_dump(exclude=None if self.members else {"members", "combine"})


class VersionSummary(Model):
    version: int
    message: str | None = None
    created_at: datetime
    agreement: float | None = Field(
        default=None,
        description="Agreement of the latest dev (or all-labels) alignment run of exactly this prompt",
    )
    kappa: float | None = None
    n: int | None = Field(default=None, description="Examples in that alignment run")


class PromptVersion(Model):
    """An immutable saved prompt."""

    evaluator: str
    version: int
    prompt: str
    judge: JudgeSettings
    message: str | None = None
    created_at: datetime


class Evaluator(Model):
    """A judge: feedback key, score type, judge settings, the mutable draft and the saved versions."""

    name: str
    feedback_key: str
    description: str | None = None
    score_type: ScoreType
    judge: JudgeSettings
    draft: str = Field(description="The working prompt; edits change only this until save_prompt")
    draft_updated_at: datetime
    draft_differs: bool = Field(description="True when the draft differs from the last saved version")
    versions: list[VersionSummary] = Field(default_factory=list)
    created_at: datetime
    few_shot: str | None = Field(
        default=None, description="The draft's few-shot settings when set, e.g. k=5,strategy=recent"
    )
    notes: list[Note] = Field(
        default_factory=list, description="Remarks on the prompt just written, e.g. a path no stored run has"
    )

    @property
    def latest_version(self) -> int | None:
        return self.versions[-1].version if self.versions else None


class Source(Model):
    name: str
    kind: SourceKind
    runs: int = 0
    created_at: datetime


class Run(Model):
    """One output of the user's app."""

    id: str
    source: str
    inputs: JsonDict = Field(default_factory=dict)
    outputs: JsonDict = Field(default_factory=dict, description="The output judged (pairwise: output A)")
    outputs_b: JsonDict | None = Field(
        default=None, exclude_if=lambda v: v is None, description="Pairwise runs only: output B"
    )
    reference_outputs: JsonDict | None = None
    metadata: JsonDict = Field(default_factory=dict)


class ImportedFeedback(Model):
    """Human labels carried by an import (`feedback` in JSONL)."""

    key: str
    count: int
    evaluators: list[str] = Field(description="Evaluators with this feedback key that received the labels")


class ImportReport(Model):
    source: str
    kind: SourceKind
    inserted: int = Field(description="New runs stored")
    skipped: int = Field(description="Runs whose id was already stored (imports are idempotent by run id)")
    duplicates: int = Field(
        default=0,
        description="Records repeating an earlier record of this import (same id, same content): stored once",
    )
    labels: int = Field(default=0, description="Human labels imported from `feedback`")
    feedback: list[ImportedFeedback] = Field(default_factory=list)
    unmatched_feedback_keys: list[str] = Field(
        default_factory=list,
        description="Feedback keys with no evaluator yet: create one with that feedback key and re-import",
    )


class Label(Model):
    evaluator: str
    run_id: str
    score: Score
    comment: str | None = None
    labeler: str | None = None
    created_at: datetime
    current: bool = True


class QueueItem(Model):
    """A run waiting for (or having) a human label, shown to a labeler."""

    run_id: str
    source: str
    inputs: JsonDict
    outputs: JsonDict
    outputs_b: JsonDict | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Pairwise runs only: output B (outputs is A)",
    )
    reference_outputs: JsonDict | None = None
    metadata: JsonDict = Field(default_factory=dict)
    reserved_until: datetime | None = None


class Balance(Model):
    """Label counts per score value, with guidance."""

    counts: dict[str, int]
    total: int
    warnings: list[str] = Field(default_factory=list)


class QueueSummary(Model):
    evaluator: str
    feedback_key: str
    score_type: str
    pending: int = Field(description="Queued runs without a label")
    reserved: int = Field(description="Pending runs currently reserved by a labeler")
    labeled: int = Field(description="Runs with a current human label (the reference set)")
    balance: Balance
    stale: int = Field(default=0, description="Labels given under since-changed instructions")


class AddToQueueReport(Model):
    evaluator: str
    added: int
    already_queued: int
    pending: int


class LabelReceipt(Model):
    evaluator: str
    run_id: str
    score: Score
    relabeled: bool = Field(description="True when this replaced an earlier label (history is kept)")
    labeled: int = Field(description="Runs in the reference set now (labeled and not disputed)")
    pending: int
    disputed: bool = Field(
        default=False,
        description="True when this blind second label differs from the first: the run left the reference set "
        "until a final label settles it",
    )
    notes: list[Note] = Field(default_factory=list)


class Interval(Model):
    low: float
    high: float


class Rate(Model):
    """A proportion k/n with its Wilson 95% interval."""

    value: float | None
    k: int
    n: int
    ci: Interval | None = None


class PairOrders(Model):
    """A pairwise comparison judged in both orders; each score is mapped back to the run's A and B."""

    original: Score | None = Field(description="The verdict with A shown first")
    swapped: Score | None = Field(description="The verdict with B shown first, mapped back to the run's A/B")
    original_reasoning: str | None = None
    swapped_reasoning: str | None = None


class PairwiseFigures(Model):
    """Agreement of a position-swapped pairwise run per order, and how often both orders named the same winner.
    The run's own agreement, kappa and interval are those of the combined verdict (the consistent winner, else
    a tie)."""

    original: Rate = Field(description="Agreement with A shown first")
    swapped: Rate = Field(description="Agreement with B shown first (answers mapped back)")
    mean: float | None = Field(description="Mean of the two orders' agreement (the LLMBar convention)")
    consistency: Rate = Field(description="Share of comparisons with the same winner in both orders")


class Metrics(Model):
    """Agreement statistics for one set of (human, judge) pairs. Errors are counted, never scored."""

    kind: ScoreKind
    n: int = Field(description="Examples with both a human and a judge score")
    errors: int = Field(description="Examples whose judge call failed; excluded from every rate")
    agreement: Rate
    kappa: float | None = Field(default=None, description="Cohen's kappa (quadratic-weighted for ordinal)")
    kappa_ci: Interval | None = Field(
        default=None, description="kappa's 95% interval (asymptotic); null when it cannot be estimated"
    )
    # binary
    tpr: Rate | None = Field(default=None, description="Recall on human pass: judge said pass / human pass")
    tnr: Rate | None = Field(default=None, description="Recall on human fail: judge said fail / human fail")
    precision: Rate | None = Field(default=None, description="Human pass / judge pass")
    false_pass: int | None = None
    false_fail: int | None = None
    # ordinal
    within_one: Rate | None = None
    unweighted_kappa: float | None = None
    # categorical
    per_label_recall: dict[str, Rate] | None = None
    confusion: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="confusion[human][judge] = count"
    )
    # pairwise
    pairwise: PairwiseFigures | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Pairwise with position swap: each order's agreement and position consistency",
    )


class FlipReport(Model):
    """Which examples a prompt fixed or broke relative to a baseline, and whether that is more than noise."""

    baseline: str
    candidate: str
    n: int = Field(description="Examples judged without error by both")
    fixed: list[str] = Field(description="Run ids wrong under the baseline and right under the candidate")
    broken: list[str] = Field(description="Run ids right under the baseline and wrong under the candidate")
    both_right: int
    both_wrong: int
    p_value: float | None = Field(description="McNemar's exact two-sided p-value on fixed vs broken")
    verdict: str


class ExampleResult(Model):
    """One judged example of an alignment run."""

    run_id: str
    human_score: Score
    judge_score: Score | None = None
    reasoning: str | None = None
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    latency_ms: float | None = None
    cached: bool = False

    @property
    def aligned(self) -> bool | None:
        if self.error is not None or self.judge_score is None:
            return None
        return self.judge_score == self.human_score


AlignmentStatus = Literal["running", "completed", "interrupted", "failed"]


class AlignmentSummary(Model):
    """An alignment run: which prompt, over which examples, with what result, and what it cost."""

    id: int
    evaluator: str
    prompt_ref: str = Field(description="'draft' or 'v<N>'")
    version: int | None = None
    split: str = Field(description="Which labeled examples: all, dev or test")
    status: AlignmentStatus = Field(
        description="running, completed, interrupted (stopped before every example was done: resume it) or "
        "failed (every example ended in an error: nothing was judged)"
    )
    model: str
    started_at: datetime
    finished_at: datetime | None = None
    total: int = Field(description="Examples in the reference set when the run started")
    done: int = Field(description="Examples with a stored result: judged + errors")
    judged: int = Field(description="Examples the judge scored (from the cache or by a request)")
    errors: int = Field(description="Examples that could not be judged (each keeps its error)")
    cache_hits: int = Field(description="Examples judged from the cache, with no request")
    requests: int = Field(description="HTTP requests sent to the judge: retries and re-asks included")
    reasks: int = Field(description="Requests that asked again after an unusable reply")
    waited_s: float = Field(description="Seconds spent waiting between attempts (rate limits, backoff)")
    prompt_tokens: int
    completion_tokens: int
    metrics: Metrics | None = None


class SplitInfo(Model):
    """The enforced holdout: dev (seen by misaligned views and the optimizer) vs test (held out)."""

    dev: int
    test: int
    test_share: float = 0.3
    by_class: dict[str, dict[str, int]] = Field(description="by_class[score] = {'dev': n, 'test': n}")
    test_evaluations: int = Field(description="How many times the test split has been judged so far")
    kept_in_dev: int = Field(
        default=0,
        description="Dev runs kept out of test because a view showed them with their labels and verdicts "
        "before the split was made (a prompt tuned on them must not be validated on them)",
    )


class RubricAgreement(Model):
    """Agreement on the labels given under one rubric (the latest saved version when they were given)."""

    rubric_version: int = Field(
        description="The saved version the labels were given under; 0: before any save"
    )
    n: int
    agreement: Rate
    stale: bool = Field(description="The instructions changed since: these labels may need a relabel")


class MemberAgreement(Model):
    """One jury member's agreement with the human labels, on the examples it judged."""

    member: str = Field(description="Position and model, e.g. '2:gpt-4.1-mini'")
    model: str
    n: int = Field(description="Examples this member judged without error")
    errors: int = Field(description="Examples whose call to this member failed")
    agreement: Rate
    kappa: float | None = None


class JuryReport(Model):
    """A jury's members beside the jury: each member's agreement, and how often they split."""

    combine: Combine
    members: list[MemberAgreement]
    split: Rate = Field(
        description="Examples on which the members that answered disagreed / examples with 2+ verdicts"
    )
    member_errors: int = Field(description="Member verdicts that failed (the rest were combined)")
    notes: list[Note] = Field(default_factory=list)


class AlignmentReport(Model):
    """The result of run_alignment: metrics, the comparison with the last saved version, and errors."""

    run: AlignmentSummary
    baseline: AlignmentSummary | None = Field(
        default=None, description="The last saved version judged on the same examples"
    )
    flips: FlipReport | None = None
    error_examples: list[ExampleResult] = Field(
        default_factory=list, description="First examples that errored"
    )
    holdout: SplitInfo | None = Field(
        default=None, description="The dev/test split; None until enough labels exist to make one"
    )
    jury: JuryReport | None = Field(default=None, description="A jury's members' agreement and split rate")
    warnings: list[Note] = Field(default_factory=list)
    notes: list[Note] = Field(default_factory=list)
    by_rubric: list[RubricAgreement] = Field(
        default_factory=list, description="Agreement split by the rubric version the labels were given under"
    )
    stale_labels: int = Field(
        default=0, description="Labels given under instructions a later saved version changed"
    )


class MisalignedCase(Model):
    run_id: str
    direction: str = Field(description="false_pass, false_fail, or over/under/mismatch for other score types")
    inputs: JsonDict
    outputs: JsonDict
    outputs_b: JsonDict | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Pairwise runs only: output B (outputs is A)",
    )
    reference_outputs: JsonDict | None = None
    human_score: Score
    human_comment: str | None = None
    labeler: str | None = None
    judge_score: Score | None
    judge_reasoning: str | None = None
    orders: PairOrders | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Pairwise with position swap: each order's verdict (as A/B of the run) and reasoning",
    )
    flip_share: float | None = Field(
        default=None,
        description="Share of repeated judge verdicts off the most common one (self-consistency check); "
        "set only when the verdict flips: the rubric leaves this case open",
    )


class MisalignedPage(Model):
    alignment_run: int
    evaluator: str
    prompt_ref: str
    total: int = Field(description="Misaligned examples matching the filter")
    offset: int
    cases: list[MisalignedCase]
    next_offset: int | None = Field(default=None, description="Pass as offset to get the next page")
    notes: list[Note] = Field(default_factory=list)


class DraftDiff(Model):
    evaluator: str
    base_version: int | None
    changed: bool
    diff: str = Field(description="Unified diff of the draft against the last saved version")


# ---- diagnose: triage, blind reviews, self-consistency, label suggestions, corrected pass rate ------------

TriageCategory = Literal["judge_error", "label_error", "rubric_gap"]
ReviewStatus = Literal["pending", "agreed", "disputed", "adjudicated"]


class TriagedCase(Model):
    """One misaligned dev case and what the judge model thinks went wrong."""

    run_id: str
    direction: str = Field(description="false_pass, false_fail, or over/under/mismatch for other score types")
    human_score: Score
    judge_score: Score | None
    category: TriageCategory | None = Field(
        default=None,
        description="judge_error (the judge misapplied the rubric), label_error (the human label looks wrong) "
        "or rubric_gap (the rubric does not decide this case); None when the case could not be classified",
    )
    reason: str | None = Field(default=None, description="One or two sentences explaining the category")
    error: str | None = Field(default=None, description="Why the case could not be classified")


class TriageReport(Model):
    """Disagreement triage of an alignment run's misaligned dev cases."""

    evaluator: str
    alignment_run: int
    prompt_ref: str
    model: str
    cases: list[TriagedCase]
    counts: dict[str, int] = Field(description="Cases per category (plus 'unclassified')")
    remaining: int = Field(description="Misaligned dev cases left out by `limit`")
    judge_calls: int = Field(description="HTTP requests to the judge model (retries and re-asks included)")
    reasks: int = Field(description="Requests that asked again after an unusable reply")
    notes: list[Note] = Field(default_factory=list)


class ReviewItem(Model):
    """A label sent back for a blind second review, and where it stands.

    This view shows every label: give it to whoever coordinates the review, never to the second labeler.
    """

    run_id: str
    status: ReviewStatus = Field(
        description="pending (waiting for a second label), agreed, disputed (the two labels differ; "
        "excluded from the reference set until adjudicated) or adjudicated"
    )
    reason: str | None = Field(
        default=None, description="Why the label was sent back (e.g. the triage reason)"
    )
    first_score: Score
    first_labeler: str | None = None
    second_score: Score | None = None
    second_labeler: str | None = None
    final_score: Score | None = Field(default=None, description="The adjudicating label, when there is one")
    final_labeler: str | None = None
    in_reference_set: bool = Field(description="Whether the run currently counts in the reference set")
    reference_score: Score | None = Field(default=None, description="The score the reference set uses")
    requested_at: datetime
    resolved_at: datetime | None = None


class ReviewRequestReport(Model):
    evaluator: str
    requested: list[str] = Field(description="Run ids now waiting in the queue for a blind second label")
    pending_reviews: int = Field(description="Open reviews (pending or disputed) for this evaluator")
    notes: list[str] = Field(default_factory=list)


class AnnotatorAgreement(Model):
    """Inter-annotator agreement over runs with a first label and a blind second label (request_review)."""

    evaluator: str
    n: int = Field(description="Runs with a first and a blind second label")
    agreement: Rate
    kappa: float | None = Field(default=None, description="Cohen's kappa (quadratic-weighted for ordinal)")
    kappa_ci: Interval | None = Field(
        default=None, description="kappa's 95% interval (asymptotic); null when it cannot be estimated"
    )
    unweighted_kappa: float | None = Field(default=None, description="Ordinal only: unweighted Cohen's kappa")
    disagreements: list[str] = Field(description="Run ids where the two labels differ")
    notes: list[str] = Field(default_factory=list)


class ReviewReport(Model):
    evaluator: str
    counts: dict[str, int] = Field(description="Reviews per status")
    reviews: list[ReviewItem]
    agreement: AnnotatorAgreement | None = Field(
        default=None, description="Inter-annotator agreement, when some reviews have their second label"
    )


class ExampleConsistency(Model):
    """K repeated judge verdicts on one run."""

    run_id: str
    scores: list[Score | None] = Field(description="The K verdicts in order; None where the call failed")
    modal_score: Score | None = Field(description="The most frequent verdict")
    flip_share: float | None = Field(
        description="Instability: share of valid verdicts that differ from the modal one (0 = stable)"
    )
    flipped: bool = Field(description="True when the valid verdicts are not all the same")
    errors: int


class ConsistencyReport(Model):
    """Judge self-consistency: the same request sent K times, bypassing the result cache."""

    check_id: int
    evaluator: str
    prompt_ref: str
    model: str
    temperature: float
    k: int
    n: int = Field(description="Runs sampled")
    flip_rate: Rate = Field(description="Share of runs (with at least 2 valid verdicts) whose verdict flips")
    mean_flip_share: float | None = Field(description="Mean per-run instability")
    errors: int = Field(description="Samples that failed (excluded from every rate)")
    judge_calls: int = Field(description="Samples taken: k per run, each a separate judgement")
    judged: int = Field(description="Samples judged without error")
    requests: int = Field(description="HTTP requests to the judge (retries and re-asks included)")
    reasks: int = Field(description="Requests that asked again after an unusable reply")
    examples: list[ExampleConsistency] = Field(description="Per run, most unstable first")
    notes: list[str] = Field(default_factory=list)


class LabelSuggestion(Model):
    run_id: str
    value: float = Field(
        description="Labeling value: version disagreement (1) + sample instability (0–1) + 0.5 × class deficit"
    )
    reason: str
    draft_score: Score | None = None
    saved_score: Score | None = Field(default=None, description="The latest saved version's verdict")
    flip_share: float | None = Field(default=None, description="Instability over stored repeated samples")
    predicted: Score | None = Field(default=None, description="The verdict used for the class-balance signal")


class SuggestionReport(Model):
    """Queued unlabeled runs ranked by how much a human label would teach."""

    evaluator: str
    candidates: int = Field(description="Unlabeled runs in the queue")
    suggestions: list[LabelSuggestion]
    saved_version: int | None = Field(description="The saved version compared with the draft, if they differ")
    judge_calls: int = Field(description="Judgements made (draft, saved version and repeated samples)")
    requests: int = Field(description="HTTP requests to the judge (retries and re-asks included)")
    reasks: int = Field(description="Requests that asked again after an unusable reply")
    cache_hits: int
    budget: int
    unjudged: int = Field(description="Candidates without a draft verdict because the budget ran out")
    notes: list[Note] = Field(default_factory=list)


class PassRateReport(Model):
    """The true pass rate of unlabeled runs, estimated from the judge's verdicts and its measured error rates."""

    evaluator: str
    prompt_ref: str
    model: str
    observed: float = Field(description="Share of the unlabeled runs the judge passed (p_obs)")
    corrected: float = Field(
        description="Estimated true pass rate: (p_obs + TNR − 1) / (TPR + TNR − 1), clipped to [0, 1]"
    )
    ci: Interval = Field(description="Percentile bootstrap 95% interval over the labeled and unlabeled runs")
    ci_widened: bool = Field(
        default=False,
        description="True when the judge gave every unlabeled run the same verdict and the interval was widened "
        "to the Wilson bounds of its pass rate (the bootstrap alone would be a single point)",
    )
    tpr: Rate = Field(description="Judge pass among human pass, on the labeled test split")
    tnr: Rate = Field(description="Judge fail among human fail, on the labeled test split")
    clipped: bool = Field(description="True when the raw estimate fell outside [0, 1]")
    n_unlabeled: int = Field(description="Unlabeled runs judged without error")
    n_labeled: int = Field(description="Test-split (human, judge) pairs used for TPR and TNR")
    n_boot: int
    skipped_resamples: int
    unlabeled_errors: int = Field(description="Unlabeled runs whose judge call failed (left out)")
    requests: int = Field(
        default=0,
        description="HTTP requests to the judge for the unlabeled runs (retries and re-asks included)",
    )
    reasks: int = Field(default=0, description="Requests that asked again after an unusable reply")
    already_labeled: int = Field(description="Given runs that have a human label and were left out")
    test_alignment_run: int = Field(description="The test-split alignment run TPR and TNR come from")
    test_evaluations: int = Field(description="How many times the test split has been judged so far")
    notes: list[str] = Field(default_factory=list)


# ---- optimizer ----------------------------------------------------------------------------------------------


class FailureMode(Model):
    """A named group of misaligned dev examples that fail for the same reason."""

    name: str = Field(description="Short name of the failure mode")
    description: str = Field(description="One line: what the judge gets wrong in these examples")
    direction: str = Field(
        description="false_pass (judge passed, human failed), false_fail, over/under/mismatch for other score "
        "types, or mixed"
    )
    run_ids: list[str] = Field(description="The misaligned dev examples in this mode")


class FailureAnalysis(Model):
    """Failure modes of one alignment run's misaligned dev examples (test examples are never included)."""

    id: int
    evaluator: str
    alignment_run: int = Field(description="The alignment run the misaligned examples come from")
    prompt_ref: str = Field(description="The prompt that run judged: 'draft' or 'v<N>'")
    method: Literal["llm", "keywords"] = Field(
        description="llm: grouped by the judge model; keywords: grouped by direction and recurring terms in "
        "the human comments (no model needed)"
    )
    judged: int = Field(description="Dev examples judged without error in that run")
    misaligned: int = Field(description="Misaligned dev examples analyzed")
    modes: list[FailureMode]
    model_calls: int = Field(description="Calls made to the judge model for this analysis")
    created_at: datetime
    notes: list[str] = Field(default_factory=list)


class ModeOutcome(Model):
    """How a proposal fares on the examples of one failure mode (dev split)."""

    name: str
    description: str
    direction: str
    cases: int = Field(description="Misaligned dev examples in this mode under the current draft")
    fixed: int = Field(description="Of those, how many the proposal judges like the human")
    run_ids: list[str]


class SplitComparison(Model):
    """The current draft vs the proposal on one split: metrics with 95% intervals and the McNemar flip test,
    both measured on the same examples (those both prompts judged)."""

    split: Literal["dev", "test"]
    n: int = Field(description="Labeled examples in the split")
    before: Metrics = Field(description="The draft the optimizer started from")
    after: Metrics = Field(description="The proposal")
    flips: FlipReport
    excluded: int = Field(
        default=0,
        description="Examples left out of both sides because the draft or the proposal could not judge them",
    )


class OptimizerBudget(Model):
    """Model requests the optimizer made against the caller's budget: every HTTP request counts, retries and
    re-asks included; cache hits are free and not counted."""

    budget: int = Field(description="The most model requests the optimizer was allowed to make")
    used: int = Field(
        description="Model requests made in all: judge + reflection + analysis; never above budget"
    )
    judge_calls: int = Field(
        description="Requests to the judge (retries and re-asks included): the draft and candidate prompts on "
        "dev and test examples"
    )
    reflection_calls: int = Field(description="Requests that proposed a rewritten prompt")
    analysis_calls: int = Field(description="Requests that grouped the failures into failure modes")
    examples_judged: int = Field(default=0, description="Examples judged by a request (not from the cache)")
    reasks: int = Field(default=0, description="Judge requests that asked again after an unusable reply")
    cache_hits: int = Field(description="Judgements reused from the judge cache (no request made)")
    stopped_by_budget: bool = Field(
        description="True when the search stopped because the budget ran low, or when the budget left some "
        "examples unjudged"
    )


class Proposal(Model):
    """An optimizer proposal: a revised prompt checked on dev and on the held-out test split. Never applied or
    saved implicitly: apply_proposal copies it into the draft, and only save_prompt makes it a version."""

    id: int
    evaluator: str
    mode: Literal["gepa", "reflect", "fewshot"]
    status: Literal["proposed", "applied"]
    changed: bool = Field(
        description="False when no candidate beat the draft; the proposal is then the draft"
    )
    prompt: str = Field(description="The revised prompt template (same {{variables}} as the draft)")
    base_prompt: str = Field(description="The draft the optimizer started from")
    diff: str = Field(description="Unified diff of the proposal against that draft")
    addresses: list[ModeOutcome] = Field(description="The dev failure modes and how many of each it fixes")
    dev: SplitComparison
    test: SplitComparison = Field(description="Examples the optimizer never saw: the honest estimate")
    verdict: str = Field(description="One paragraph: is the proposal better, and what to do next")
    budget: OptimizerBudget
    candidates: int = Field(description="Distinct prompts judged on the whole dev split")
    seen_examples: int = Field(description="Dev examples the optimizer read (test examples: none)")
    alignment_run: int = Field(description="The dev alignment run of the draft the proposal started from")
    analysis_id: int | None = None
    wall_seconds: float
    created_at: datetime
    applied_at: datetime | None = None
    warnings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    few_shot: str | None = Field(
        default=None,
        description="mode fewshot: the few-shot settings applying it sets, e.g. k=3,strategy=recent",
    )


class ProposalSummary(Model):
    """One line per proposal: what it scored before and after, and whether it was applied."""

    id: int
    evaluator: str
    mode: Literal["gepa", "reflect", "fewshot"]
    status: Literal["proposed", "applied"]
    changed: bool
    dev_before: float | None = Field(description="Dev agreement of the draft it started from")
    dev_after: float | None = Field(description="Dev agreement of the proposal")
    test_before: float | None
    test_after: float | None
    dev_before_ci: Interval | None = Field(default=None, description="Wilson 95% interval of dev_before")
    dev_after_ci: Interval | None = None
    test_before_ci: Interval | None = None
    test_after_ci: Interval | None = None
    calls_used: int
    created_at: datetime
    applied_at: datetime | None = None
