"""The typed records the store reads and writes, with JSON columns decoded and timestamps parsed.

Rows are frozen, slotted dataclasses rather than pydantic models: their values were validated when they were
written (and SQLite's CHECK constraints hold the rest), a read can return many thousands of them, and a slotted
dataclass costs no more to build than the dict it replaces, where a pydantic model would validate every field again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from align_mcp.core.models import (
    FailureAnalysis,
    JsonDict,
    JudgeSettings,
    Metrics,
    PairOrders,
    Proposal,
    ReviewStatus,
    Score,
    ScoreType,
    SourceKind,
    TriageCategory,
)

HoldoutSplit = Literal["dev", "test"]


@dataclass(frozen=True, slots=True)
class SourceRow:
    """A named source of runs."""

    name: str
    kind: SourceKind
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SourceListing:
    """A source with the number of runs it holds."""

    name: str
    kind: SourceKind
    created_at: datetime
    runs: int


@dataclass(frozen=True, slots=True)
class RunRow:
    """A stored run with its JSON columns decoded (metadata is {} when none was stored)."""

    id: str
    source: str
    inputs: JsonDict
    outputs: JsonDict
    reference_outputs: JsonDict | None
    metadata: JsonDict
    outputs_b: JsonDict | None = None
    """A pairwise run's output B (`outputs` is output A); None for a run with one output."""

    def as_dict(self) -> dict[str, Any]:
        """The run as a plain mapping (what templates render and the judge's build_messages reads); a pairwise
        run also has `outputs_a` and `outputs_b`, in the order the run stores them."""
        out = {
            "id": self.id,
            "source": self.source,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "reference_outputs": self.reference_outputs,
            "metadata": self.metadata,
        }
        if self.outputs_b is not None:
            out.update(outputs_a=self.outputs, outputs_b=self.outputs_b)
        return out


class NewRun(Protocol):
    """What `Store.insert_runs` reads of a run (engine.formats.ParsedRun has these fields)."""

    @property
    def id(self) -> str: ...
    @property
    def inputs(self) -> JsonDict: ...
    @property
    def outputs(self) -> JsonDict: ...
    @property
    def reference_outputs(self) -> JsonDict | None: ...
    @property
    def metadata(self) -> JsonDict: ...
    @property
    def outputs_b(self) -> JsonDict | None: ...


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """A human score imported with a run under a feedback key; the score is the file's value, not yet validated."""

    run_id: str
    key: str
    score: object
    comment: str | None
    labeler: str | None
    details: dict[str, Any] | None = None
    """What an export carried besides the label: labeled_at, rubric_version, split, history (see engine.exports)."""


@dataclass(frozen=True, slots=True)
class EvaluatorRow:
    """An evaluator as stored: its definition and the mutable draft (saved versions are VersionRow)."""

    name: str
    feedback_key: str
    description: str | None
    score_type: ScoreType
    judge: JudgeSettings
    draft: str
    draft_updated_at: datetime
    created_at: datetime
    test_evaluations: int


@dataclass(frozen=True, slots=True)
class VersionRow:
    """An immutable saved prompt version."""

    evaluator: str
    version: int
    prompt: str
    judge: JudgeSettings
    message: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SplitRow:
    """A labeled run's permanent holdout assignment; the stratum is the human score it was assigned under."""

    run_id: str
    split: HoldoutSplit
    stratum: Score


@dataclass(frozen=True, slots=True)
class SampleRow:
    """One repeated judge verdict of a self-consistency check (judge_score is None when the call failed)."""

    check_id: int
    run_id: str
    sample: int
    judge_score: Score | None
    error: str | None
    requests: int = 0
    reasks: int = 0


@dataclass(frozen=True, slots=True)
class Reservation:
    """Who holds a queued run and until when (both None when nobody does)."""

    reserved_by: str | None
    reserved_until: datetime | None


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """An evaluator's queue: runs waiting for a label, those reserved right now, and the reference set's labels."""

    pending: int
    reserved: int
    labeled: int


@dataclass(frozen=True, slots=True)
class NewLabel:
    """A validated human label to store as the run's current one."""

    run_id: str
    score: Score
    comment: str | None
    labeler: str | None
    created_at: datetime | None = None
    """When it was given: now unless an import restores an earlier date."""
    rubric_version: int | None = None
    """The saved version it was given under: the latest one now unless an import restores it."""


@dataclass(frozen=True, slots=True)
class LabelRow:
    """A stored human label, its score decoded; `current` is False once a later label replaced it."""

    id: int
    run_id: str
    score: Score
    comment: str | None
    labeler: str | None
    created_at: datetime
    current: bool = True
    rubric_version: int = 0
    """The latest saved prompt version when the label was given (0: before any save)."""


@dataclass(frozen=True, slots=True)
class TriageRow:
    """One misaligned case's triage outcome: a category and reason, or the error that left it unclassified."""

    evaluator: str
    alignment_id: int
    run_id: str
    category: TriageCategory | None
    reason: str | None
    error: str | None
    model: str


@dataclass(frozen=True, slots=True)
class TriageVerdict:
    """The latest category triage gave a run, and why."""

    category: TriageCategory
    reason: str | None


@dataclass(frozen=True, slots=True)
class NewReview:
    """A blind second review to open: the run, the current label it pins as its first, and why."""

    run_id: str
    first_label_id: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class ReviewRow:
    """A blind review with the scores (decoded) and labelers of its first, second and final labels."""

    id: int
    run_id: str
    status: ReviewStatus
    reason: str | None
    requested_at: datetime
    resolved_at: datetime | None
    first_label_id: int
    second_label_id: int | None
    final_label_id: int | None
    first_score: Score
    first_labeler: str | None
    second_score: Score | None
    second_labeler: str | None
    final_score: Score | None
    final_labeler: str | None


class CachedVerdict(Protocol):
    """What the judge cache keeps of a verdict (the judge's Verdict has these fields)."""

    score: Any
    reasoning: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A judge-cache entry: a successful verdict's score (decoded), reasoning and token counts, by cache key."""

    key: str
    judge_score: Score
    reasoning: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None

    @classmethod
    def of(cls, key: str, verdict: CachedVerdict) -> CacheEntry:
        """The entry for a successful verdict (errors are never cached)."""
        return cls(
            key,
            verdict.score,
            verdict.reasoning,
            verdict.prompt_tokens,
            verdict.completion_tokens,
            verdict.cached_tokens,
        )


@dataclass(frozen=True, slots=True)
class NewResult:
    """A finished example of an alignment run to record: the judge's verdict (score None on error) and its cost."""

    run_id: str
    judge_score: Score | None
    reasoning: str | None
    error: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    latency_ms: float | None
    cached: bool
    requests: int = 0
    reasks: int = 0
    waited_s: float = 0.0
    orders: PairOrders | None = None
    """A position-swapped pairwise example: the verdict of each order (judge_score is their combination)."""


@dataclass(frozen=True, slots=True)
class ResultRow:
    """An alignment run's example: the human score it was run against and, once done, the judge's verdict."""

    alignment_id: int
    run_id: str
    human_score: Score
    done: bool
    judge_score: Score | None
    reasoning: str | None
    error: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    latency_ms: float | None
    cached: bool
    orders: PairOrders | None = None


@dataclass(frozen=True, slots=True)
class ConsistencyCheckRow:
    """A self-consistency check: the prompt and judge settings sampled k times per run, and how it ended."""

    id: int
    evaluator: str
    prompt_ref: str
    prompt: str
    judge: JudgeSettings
    model: str
    temperature: float
    k: int
    status: str
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewSample:
    """One repeated judge verdict to store under a consistency check (judge_score None when the call failed)."""

    run_id: str
    sample: int
    judge_score: Score | None
    reasoning: str | None
    error: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    requests: int = 0
    reasks: int = 0


@dataclass(frozen=True, slots=True)
class FailureAnalysisRow:
    """A stored failure analysis of an alignment run, its result decoded (with the row's id)."""

    id: int
    evaluator: str
    alignment_id: int
    method: str
    result: FailureAnalysis
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewProposal:
    """An optimizer proposal to store: the prompts, the dev run ids it read, and its result."""

    evaluator: str
    mode: str
    alignment_id: int | None
    analysis_id: int | None
    base_prompt: str
    prompt: str
    seen_run_ids: Sequence[str]
    result: Proposal


@dataclass(frozen=True, slots=True)
class ProposalRow:
    """A stored proposal; its result is decoded with the row's id, status and applied time filled in."""

    id: int
    evaluator: str
    mode: str
    alignment_id: int | None
    analysis_id: int | None
    base_prompt: str
    prompt: str
    seen_run_ids: list[str]
    result: Proposal
    created_at: datetime
    applied_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlignmentRunRow:
    """An alignment run as stored: which prompt, settings and model judged which split, and its metrics."""

    id: int
    evaluator: str
    prompt_ref: str
    version: int | None
    prompt: str
    judge: JudgeSettings
    model: str
    prompt_hash: str
    split: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    total: int
    metrics: Metrics | None
    baseline_id: int | None


@dataclass(frozen=True, slots=True)
class AlignmentRunTotals:
    """An alignment run with the totals of its stored results."""

    run: AlignmentRunRow
    judged: int
    judge_calls: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    errors: int = 0
    requests: int = 0
    reasks: int = 0
    waited_s: float = 0.0


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """Who is judging an alignment run right now: the holder's token, process id and host, and until when (seconds
    since the epoch, on the store's clock) the lease holds unless it is renewed."""

    alignment_id: int
    token: str
    pid: int
    host: str
    renewed_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class MemberVerdict:
    """One jury member's verdict on one example of an alignment run (score None on error)."""

    run_id: str
    member: int
    model: str
    judge_score: Score | None
    reasoning: str | None
    error: str | None
    cached: bool
