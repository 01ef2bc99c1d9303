"""Composed results the engine hands to the surfaces: lists and pages of the loop's objects, with their notes."""

from datetime import datetime
from typing import Literal

from pydantic import Field

from align_mcp.core.models import (
    Balance,
    Evaluator,
    LabelReceipt,
    Model,
    Note,
    ProposalSummary,
    QueueItem,
    QueueSummary,
    Rate,
    Run,
    VersionSummary,
)


class EvaluatorBrief(Model):
    name: str
    feedback_key: str
    score_type: str = Field(description="binary, categorical (labels) or ordinal (range)")
    description: str | None = None
    latest_version: int | None = None
    agreement: float | None = Field(
        default=None, description="Latest alignment agreement of the latest version"
    )
    kappa: float | None = None
    n: int | None = Field(default=None, description="Examples behind that agreement")
    draft_differs: bool = Field(description="The draft has unsaved changes")


class EvaluatorList(Model):
    evaluators: list[EvaluatorBrief]
    notes: list[Note] = Field(default_factory=list)


class AlignmentBrief(Model):
    id: int
    prompt_ref: str = Field(description="'draft' or 'v<N>'")
    split: str
    status: str
    judged: int
    total: int
    agreement: Rate | None = None
    kappa: float | None = None
    model: str
    started_at: datetime


class EvaluatorDetail(Evaluator):
    """An evaluator with its queue, its recent alignment runs and what to do next."""

    queue: QueueSummary
    recent_alignment_runs: list[AlignmentBrief] = Field(
        default_factory=list, description="The latest alignment runs, newest first"
    )
    notes: list[Note] = Field(default_factory=list)


class QueueList(Model):
    queues: list[QueueSummary]
    notes: list[Note] = Field(default_factory=list)


class NextItems(Model):
    evaluator: str
    score_type: str = Field(description="The scores a label may take")
    labeler: str
    items: list[QueueItem] = Field(description="Runs now reserved for this labeler")
    pending: int = Field(description="Unlabeled runs left in the queue (including these)")
    notes: list[Note] = Field(default_factory=list)


class LabelResult(Model):
    status: Literal["stored", "declined", "cancelled"] = Field(
        description="stored, or declined / cancelled when the human closed the form without a label"
    )
    receipt: LabelReceipt | None = None
    balance: Balance | None = Field(default=None, description="Label counts per score, with warnings")
    message: str


class LabelsResult(Model):
    evaluator: str
    stored: int
    relabeled: int = Field(description="Labels that replaced an earlier one (history is kept)")
    labeled: int = Field(description="Runs in the reference set now (labeled and not disputed)")
    pending: int
    balance: Balance
    disputed: list[str] = Field(
        default_factory=list,
        description="Runs this batch put in dispute: out of the reference set until settled",
    )
    notes: list[Note] = Field(default_factory=list)


class RunDetail(Run):
    notes: list[Note] = Field(default_factory=list)


class DraftUpdate(Model):
    evaluator: str
    base_version: int | None = Field(description="The saved version the diff compares with")
    draft_differs: bool = Field(description="The draft now differs from that version")
    diff: str = Field(description="Unified diff of the draft against the last saved version")
    saved: bool = Field(default=False, description="Always false: only save_prompt creates a version")
    notes: list[Note] = Field(default_factory=list)


class SavedVersion(Model):
    evaluator: str
    version: int
    message: str | None = None
    created_at: datetime
    notes: list[Note] = Field(default_factory=list)


class VersionEntry(VersionSummary):
    prompt: str | None = Field(default=None, description="The saved prompt text (when include_prompts)")


class VersionList(Model):
    evaluator: str
    total: int
    offset: int
    versions: list[VersionEntry]
    next_offset: int | None = None
    draft_differs: bool
    notes: list[Note] = Field(default_factory=list)


class ProposalList(Model):
    evaluator: str
    proposals: list[ProposalSummary]
    notes: list[Note] = Field(default_factory=list)
