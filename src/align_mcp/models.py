"""Shared pydantic types: the shapes the Python API, the CLI and the MCP server exchange."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from .errors import InvalidInput, InvalidScore

ScoreKind = Literal["binary", "categorical", "ordinal"]
SourceKind = Literal["experiment", "project"]
Score = int | str
JsonDict = dict[str, Any]

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


class ScoreType(BaseModel):
    """What a score may be: binary 0/1, one of fixed labels, or an integer in a range."""

    kind: ScoreKind = Field(
        description="binary (0 = fail, 1 = pass), categorical (labels) or ordinal (min..max)"
    )
    labels: list[str] | None = Field(default=None, description="categorical only: the allowed labels")
    min: int | None = Field(default=None, description="ordinal only: lowest score")
    max: int | None = Field(default=None, description="ordinal only: highest score")

    @model_validator(mode="after")
    def _check(self) -> ScoreType:
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

    def values(self) -> list[Score]:
        """Allowed values, in order."""
        if self.kind == "binary":
            return [0, 1]
        if self.kind == "categorical":
            return list(self.labels or [])
        assert self.min is not None and self.max is not None
        return list(range(self.min, self.max + 1))

    def describe(self) -> str:
        if self.kind == "binary":
            return "binary (0 = fail, 1 = pass)"
        if self.kind == "categorical":
            return "categorical (" + ", ".join(self.labels or []) + ")"
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
        return value == (self.labels or [""])[0]


class JudgeSettings(BaseModel):
    """How the judge model is called. Secrets are never stored: only the name of the env var holding the key."""

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


class VersionSummary(BaseModel):
    version: int
    message: str | None = None
    created_at: datetime
    agreement: float | None = Field(
        default=None,
        description="Agreement of the latest dev (or all-labels) alignment run of exactly this prompt",
    )
    kappa: float | None = None
    n: int | None = Field(default=None, description="Examples in that alignment run")


class PromptVersion(BaseModel):
    """An immutable saved prompt."""

    evaluator: str
    version: int
    prompt: str
    judge: JudgeSettings
    message: str | None = None
    created_at: datetime


class Evaluator(BaseModel):
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

    @property
    def latest_version(self) -> int | None:
        return self.versions[-1].version if self.versions else None


class Source(BaseModel):
    name: str
    kind: SourceKind
    runs: int = 0
    created_at: datetime


class Run(BaseModel):
    """One output of the user's app."""

    id: str
    source: str
    inputs: JsonDict = Field(default_factory=dict)
    outputs: JsonDict = Field(default_factory=dict)
    reference_outputs: JsonDict | None = None
    metadata: JsonDict = Field(default_factory=dict)


class ImportedFeedback(BaseModel):
    """Human labels carried by an import (`feedback` in JSONL)."""

    key: str
    count: int
    evaluators: list[str] = Field(description="Evaluators with this feedback key that received the labels")


class ImportReport(BaseModel):
    source: str
    kind: SourceKind
    inserted: int = Field(description="New runs stored")
    skipped: int = Field(description="Runs whose id was already stored (imports are idempotent by run id)")
    labels: int = Field(default=0, description="Human labels imported from `feedback`")
    feedback: list[ImportedFeedback] = Field(default_factory=list)
    unmatched_feedback_keys: list[str] = Field(
        default_factory=list,
        description="Feedback keys with no evaluator yet: create one with that feedback key and re-import",
    )


class Label(BaseModel):
    evaluator: str
    run_id: str
    score: Score
    comment: str | None = None
    labeler: str | None = None
    created_at: datetime
    current: bool = True


class QueueItem(BaseModel):
    """A run waiting for (or having) a human label, shown to a labeler."""

    run_id: str
    source: str
    inputs: JsonDict
    outputs: JsonDict
    reference_outputs: JsonDict | None = None
    metadata: JsonDict = Field(default_factory=dict)
    reserved_until: datetime | None = None


class Balance(BaseModel):
    """Label counts per score value, with guidance."""

    counts: dict[str, int]
    total: int
    warnings: list[str] = Field(default_factory=list)


class QueueSummary(BaseModel):
    evaluator: str
    feedback_key: str
    score_type: str
    pending: int = Field(description="Queued runs without a label")
    reserved: int = Field(description="Pending runs currently reserved by a labeler")
    labeled: int = Field(description="Runs with a current human label (the reference set)")
    balance: Balance


class AddToQueueReport(BaseModel):
    evaluator: str
    added: int
    already_queued: int
    pending: int


class LabelReceipt(BaseModel):
    evaluator: str
    run_id: str
    score: Score
    relabeled: bool = Field(description="True when this replaced an earlier label (history is kept)")
    labeled: int = Field(description="Labeled runs for this evaluator now")
    pending: int


class Interval(BaseModel):
    low: float
    high: float


class Rate(BaseModel):
    """A proportion k/n with its Wilson 95% interval."""

    value: float | None
    k: int
    n: int
    ci: Interval | None = None


class Metrics(BaseModel):
    """Agreement statistics for one set of (human, judge) pairs. Errors are counted, never scored."""

    kind: ScoreKind
    n: int = Field(description="Examples with both a human and a judge score")
    errors: int = Field(description="Examples whose judge call failed; excluded from every rate")
    agreement: Rate
    kappa: float | None = Field(default=None, description="Cohen's kappa (quadratic-weighted for ordinal)")
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


class FlipReport(BaseModel):
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


class ExampleResult(BaseModel):
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


AlignmentStatus = Literal["running", "completed", "interrupted"]


class AlignmentSummary(BaseModel):
    """An alignment run: which prompt, over which examples, with what result."""

    id: int
    evaluator: str
    prompt_ref: str = Field(description="'draft' or 'v<N>'")
    version: int | None = None
    split: str = Field(description="Which labeled examples: all, dev or test")
    status: AlignmentStatus
    model: str
    started_at: datetime
    finished_at: datetime | None = None
    total: int = Field(description="Examples in the reference set when the run started")
    judged: int = Field(description="Examples with a stored result (judged or error)")
    judge_calls: int = Field(description="Judge calls made (cache hits excluded)")
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    metrics: Metrics | None = None


class SplitInfo(BaseModel):
    """The enforced holdout: dev (seen by misaligned views and the optimizer) vs test (held out)."""

    dev: int
    test: int
    test_share: float = 0.3
    by_class: dict[str, dict[str, int]] = Field(description="by_class[score] = {'dev': n, 'test': n}")
    test_evaluations: int = Field(description="How many times the test split has been judged so far")


class AlignmentReport(BaseModel):
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
    warnings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class MisalignedCase(BaseModel):
    run_id: str
    direction: str = Field(description="false_pass, false_fail, or over/under/mismatch for other score types")
    inputs: JsonDict
    outputs: JsonDict
    reference_outputs: JsonDict | None = None
    human_score: Score
    human_comment: str | None = None
    labeler: str | None = None
    judge_score: Score | None
    judge_reasoning: str | None = None


class MisalignedPage(BaseModel):
    alignment_run: int
    evaluator: str
    prompt_ref: str
    total: int = Field(description="Misaligned examples matching the filter")
    offset: int
    cases: list[MisalignedCase]
    next_offset: int | None = Field(default=None, description="Pass as offset to get the next page")
    notes: list[str] = Field(default_factory=list)


class DraftDiff(BaseModel):
    evaluator: str
    base_version: int | None
    changed: bool
    diff: str = Field(description="Unified diff of the draft against the last saved version")
