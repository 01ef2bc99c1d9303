"""The MCP tools: typed arguments written for the model, pydantic results, and the function behind each tool."""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, cast

from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, create_model

from align_mcp import config
from align_mcp.core.models import (
    AddToQueueReport,
    AlignmentReport,
    AlignmentSummary,
    Balance,
    ConsistencyReport,
    Evaluator,
    FailureAnalysis,
    ImportReport,
    JudgeSettings,
    LabelReceipt,
    MisalignedPage,
    Model,
    PassRateReport,
    Proposal,
    ProposalSummary,
    QueueItem,
    QueueSummary,
    Rate,
    ReviewItem,
    ReviewReport,
    ReviewRequestReport,
    Run,
    ScoreType,
    SourceKind,
    SuggestionReport,
    TriageReport,
    VersionSummary,
)
from align_mcp.engine.reports import report_markdown
from align_mcp.errors import AlignError, InvalidInput
from align_mcp.mcp.state import store_of as _store

if TYPE_CHECKING:
    from align_mcp.store import Store

# Domain modules (and through them sqlite-utils, the openai client and DSPy) are imported inside the tools that
# use them.

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DRAFT_CHARS = 20_000
DEFAULT_ITEM_CHARS = 1_500
DEFAULT_RUN_CHARS = 20_000
FORM_FIELD_CHARS = 1_200
MAX_RECENT_RUNS = 10

# ---- registration helpers ----------------------------------------------------------------------------------

_TOOLS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}


def _as_tool_errors(fn: F) -> F:
    """Report domain errors to the model as tool errors carrying their message (which names the next step)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except AlignError as e:
                raise ToolError(str(e)) from e

        return cast(F, run_async)

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AlignError as e:
            raise ToolError(str(e)) from e

    return cast(F, run)


def _tool(
    title: str,
    *,
    read_only: bool = False,
    destructive: bool = False,
    idempotent: bool = False,
    open_world: bool = False,
) -> Callable[[F], F]:
    """Register a module-level function as a tool of every server `create_server` builds."""

    def register(fn: F) -> F:
        annotations = ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=False if read_only else destructive,
            idempotent_hint=True if read_only else idempotent,
            open_world_hint=open_world,
        )
        options = {
            "title": title,
            "description": inspect.cleandoc(fn.__doc__ or ""),
            "annotations": annotations,
        }
        _TOOLS[fn.__name__] = (_as_tool_errors(fn), options)
        return fn

    return register


def registered_tools() -> list[tuple[Callable[..., Any], dict[str, Any]]]:
    """Every tool as (function, options for `Tool.from_function`), in registration order."""
    return list(_TOOLS.values())


def tool_definition(name: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """One tool's function and its options for `Tool.from_function`."""
    return _TOOLS[name]


def _clip_text(text: str, max_chars: int, how_to_get_rest: str) -> tuple[str, str | None]:
    """Shorten a long text; the note says how much was cut and how to get the rest."""
    if len(text) <= max_chars:
        return text, None
    cut = len(text) - max_chars
    return (
        text[:max_chars] + f"… [{cut} more characters]",
        f"Cut at {max_chars} characters ({cut} more); {how_to_get_rest}",
    )


# ---- argument types (their descriptions are what the model reads) ------------------------------------------

EvaluatorName = Annotated[
    str, Field(description="Evaluator name, e.g. 'correctness'. list_evaluators shows the existing ones.")
]
ScoreValue = int | float | str
Labeler = Annotated[
    str | None,
    Field(description="Who gave the label (the human's name or handle), recorded with it. Optional."),
]


class LabelInput(Model):
    """One human label."""

    run_id: str = Field(description="The run's id, as shown by next_items")
    score: ScoreValue = Field(
        description="The human's score: 1/0 (or pass/fail) for binary, one of the labels for categorical, "
        "an integer in the range for ordinal"
    )
    comment: str | None = Field(default=None, description="The human's reason, in their words (recommended)")


class JudgeUpdate(Model):
    """Judge settings to change; fields left out keep their value."""

    model: str | None = Field(
        default=None, description="Judge model name; null falls back to ALIGN_MCP_JUDGE_MODEL"
    )
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL; null uses the default"
    )
    api_key_env: str | None = Field(
        default=None, description="Name of the env var holding the key (not the key)"
    )
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    reasoning: bool | None = Field(
        default=None, description="Ask the judge for its reasoning before the score"
    )
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    timeout: float | None = Field(default=None, gt=0, le=3600, description="Seconds per judge call")
    max_retries: int | None = Field(default=None, ge=0, le=20)


# ---- result types -------------------------------------------------------------------------------------------


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
    notes: list[str] = Field(default_factory=list)


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
    notes: list[str] = Field(default_factory=list)


class QueueList(Model):
    queues: list[QueueSummary]
    notes: list[str] = Field(default_factory=list)


class NextItems(Model):
    evaluator: str
    score_type: str = Field(description="The scores a label may take")
    labeler: str
    items: list[QueueItem] = Field(description="Runs now reserved for this labeler")
    pending: int = Field(description="Unlabeled runs left in the queue (including these)")
    notes: list[str] = Field(default_factory=list)


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
    labeled: int = Field(description="Labeled runs for this evaluator now")
    pending: int
    balance: Balance


class RunDetail(Run):
    notes: list[str] = Field(default_factory=list)


class DraftUpdate(Model):
    evaluator: str
    base_version: int | None = Field(description="The saved version the diff compares with")
    draft_differs: bool = Field(description="The draft now differs from that version")
    diff: str = Field(description="Unified diff of the draft against the last saved version")
    saved: bool = Field(default=False, description="Always false: only save_prompt creates a version")
    notes: list[str] = Field(default_factory=list)


class SavedVersion(Model):
    evaluator: str
    version: int
    message: str | None = None
    created_at: datetime
    notes: list[str] = Field(default_factory=list)


class VersionEntry(VersionSummary):
    prompt: str | None = Field(default=None, description="The saved prompt text (when include_prompts)")


class VersionList(Model):
    evaluator: str
    total: int
    offset: int
    versions: list[VersionEntry]
    next_offset: int | None = None
    draft_differs: bool
    notes: list[str] = Field(default_factory=list)


class ProposalList(Model):
    evaluator: str
    proposals: list[ProposalSummary]
    notes: list[str] = Field(default_factory=list)


# ---- tools: runs in -----------------------------------------------------------------------------------------


@_tool("Import runs", idempotent=True)
def import_runs(
    source: Annotated[
        str,
        Field(description="Name of the source to add the runs to (created on first use), e.g. 'support-v2'"),
    ],
    path: Annotated[
        str | None,
        Field(
            description="Path of a JSONL or CSV file on the machine running the server. Give path or runs."
        ),
    ] = None,
    runs: Annotated[
        list[dict[str, Any]] | None,
        Field(
            description='Inline runs: [{"id"?, "inputs": {...}, "outputs": {...}, "reference_outputs"?, '
            '"metadata"?, "feedback"?: {"<key>": {"score": ..., "comment"?}}}]. Give path or runs.'
        ),
    ] = None,
    kind: Annotated[
        SourceKind,
        Field(description="'experiment' (offline run over a dataset) or 'project' (online tracing)"),
    ] = "experiment",
    format: Annotated[
        Literal["jsonl", "csv"] | None,
        Field(description="File format; detected from the extension if omitted"),
    ] = None,
    *,
    ctx: Context,
) -> ImportReport:
    """Import the outputs of the user's LLM app (runs) so they can be queued for labeling and judged.

    All or nothing: a bad record fails the import with its line number and stores nothing. Re-importing is safe
    (runs whose id is already stored are skipped). Human labels carried in `feedback` become labels of every
    evaluator with that feedback key.
    """
    from align_mcp.engine.ingest import import_runs as run_import

    if path is not None:
        check_import_path(path)
    return run_import(_store(ctx), source, path=path, runs=runs, kind=kind, fmt=format)


def check_import_path(path: str) -> None:
    """With ALIGN_MCP_IMPORT_ROOT set, file imports must resolve inside it (a shared server reads no other file)."""
    root = os.environ.get(config.ENV_IMPORT_ROOT)
    if not root:
        return
    base = Path(root).expanduser().resolve()
    target = Path(path).expanduser().resolve()
    if not target.is_relative_to(base):
        raise InvalidInput(
            f"Import path {path!r} is outside {config.ENV_IMPORT_ROOT} ({base}). Put the file under that "
            "directory, or pass the runs inline."
        )


@_tool("Get a run", read_only=True)
def get_run(
    run_id: Annotated[str, Field(description="The run's id, as shown by next_items or get_misaligned")],
    max_chars: Annotated[
        int, Field(ge=200, le=200_000, description="Longer strings inside the run are cut to this length")
    ] = DEFAULT_RUN_CHARS,
    *,
    ctx: Context,
) -> RunDetail:
    """One run in full: inputs, outputs, reference outputs and metadata (for texts cut short elsewhere)."""
    from align_mcp.core.text import clip
    from align_mcp.engine.ingest import get_run as fetch_run

    run = fetch_run(_store(ctx), run_id)
    cut = False
    fields: dict[str, Any] = {}
    for name in ("inputs", "outputs", "reference_outputs", "metadata"):
        fields[name], was_cut = clip(getattr(run, name), max_chars)
        cut = cut or was_cut
    notes = (
        [f"Strings were cut at {max_chars} characters; call again with a larger max_chars."] if cut else []
    )
    return RunDetail(id=run.id, source=run.source, **fields, notes=notes)


# ---- tools: evaluators --------------------------------------------------------------------------------------


@_tool("Create an evaluator")
def create_evaluator(
    name: Annotated[
        str, Field(description="Evaluator name: letters, digits, '_', '-', '.', e.g. 'correctness'")
    ],
    score_type: Annotated[
        Literal["binary", "categorical", "ordinal"],
        Field(
            description="binary (1 = pass, 0 = fail), categorical (fixed labels) or ordinal (integer range)"
        ),
    ] = "binary",
    labels: Annotated[
        list[str] | None,
        Field(description="categorical only: the allowed labels, e.g. ['good', 'ok', 'bad']"),
    ] = None,
    min: Annotated[int | None, Field(description="ordinal only: the lowest score, e.g. 1")] = None,
    max: Annotated[int | None, Field(description="ordinal only: the highest score, e.g. 5")] = None,
    feedback_key: Annotated[
        str | None,
        Field(description="Key of the human labels in imported feedback; defaults to the evaluator name"),
    ] = None,
    prompt: Annotated[
        str | None,
        Field(
            description="Judge prompt template using {{inputs}}, {{outputs}}, {{reference_outputs}} or dotted "
            "paths such as {{inputs.question}}. Omit to start from the default prompt for the score type."
        ),
    ] = None,
    judge: Annotated[
        JudgeSettings | None,
        Field(description="Judge model settings; omit to use ALIGN_MCP_JUDGE_MODEL and the default endpoint"),
    ] = None,
    description: Annotated[
        str | None, Field(description="What the evaluator checks, in one sentence")
    ] = None,
    *,
    ctx: Context,
) -> Evaluator:
    """Define a judge (evaluator). Its prompt is saved as version 1 and copied into the editable draft.

    Labels already imported under the same feedback key are applied to it immediately.
    """
    from align_mcp.engine import evaluators

    kind_type = ScoreType(kind=score_type, labels=labels, min=min, max=max)
    return evaluators.create(_store(ctx), name, kind_type, feedback_key, prompt, judge, description)


def _brief(ev: Evaluator) -> EvaluatorBrief:
    last = ev.versions[-1] if ev.versions else None
    return EvaluatorBrief(
        name=ev.name,
        feedback_key=ev.feedback_key,
        score_type=ev.score_type.describe(),
        description=ev.description,
        latest_version=last.version if last else None,
        agreement=last.agreement if last else None,
        kappa=last.kappa if last else None,
        n=last.n if last else None,
        draft_differs=ev.draft_differs,
    )


def evaluator_list(store: Store) -> EvaluatorList:
    from align_mcp.engine import evaluators

    items = [_brief(ev) for ev in evaluators.list_all(store)]
    notes = [] if items else ["No evaluators yet: create one with create_evaluator."]
    return EvaluatorList(evaluators=items, notes=notes)


@_tool("List evaluators", read_only=True)
def list_evaluators(*, ctx: Context) -> EvaluatorList:
    """All evaluators with their latest saved version, its alignment score and whether the draft is unsaved."""
    return evaluator_list(_store(ctx))


def _alignment_brief(s: AlignmentSummary) -> AlignmentBrief:
    return AlignmentBrief(
        id=s.id,
        prompt_ref=s.prompt_ref,
        split=s.split,
        status=s.status,
        judged=s.judged,
        total=s.total,
        agreement=s.metrics.agreement if s.metrics else None,
        kappa=s.metrics.kappa if s.metrics else None,
        model=s.model,
        started_at=s.started_at,
    )


def evaluator_detail(store: Store, name: str, max_chars: int = DEFAULT_DRAFT_CHARS) -> EvaluatorDetail:
    from align_mcp.engine import alignment, evaluators, queues

    ev = evaluators.get(store, name)
    queue = queues.summary(store, name)
    runs = sorted(alignment.list_runs(store, name), key=lambda s: s.id, reverse=True)[:MAX_RECENT_RUNS]
    draft, note = _clip_text(ev.draft, max_chars, f"read the resource align://evaluators/{name}/draft.")
    notes = [note] if note else []
    notes.extend(queue.balance.warnings)
    interrupted = [r.id for r in runs if r.status == "interrupted"]
    if interrupted:
        notes.append(f"Interrupted alignment run(s) {interrupted}: finish them with resume_alignment.")
    if ev.draft_differs:
        notes.append("The draft has unsaved changes: run_alignment tests them; save_prompt saves them.")
    return EvaluatorDetail(
        **{**ev.model_dump(), "draft": draft},
        queue=queue,
        recent_alignment_runs=[_alignment_brief(r) for r in runs],
        notes=notes,
    )


@_tool("Get an evaluator", read_only=True)
def get_evaluator(name: EvaluatorName, *, ctx: Context) -> EvaluatorDetail:
    """An evaluator in full: score type, judge settings, the draft prompt, saved versions with their scores,
    its queue (labels and balance) and its recent alignment runs (ids for get_misaligned / resume_alignment)."""
    return evaluator_detail(_store(ctx), name)


# ---- tools: queues and labels -------------------------------------------------------------------------------


@_tool("Add runs to a queue")
def add_to_queue(
    evaluator: EvaluatorName,
    source: Annotated[str | None, Field(description="Queue runs of this source")] = None,
    run_ids: Annotated[list[str] | None, Field(description="Queue exactly these runs")] = None,
    metadata: Annotated[
        dict[str, Any] | None,
        Field(description='Only runs whose metadata has these values, e.g. {"topic": "billing"}'),
    ] = None,
    sample: Annotated[
        int | None,
        Field(ge=1, description="Draw this many runs at random (not already queued) instead of all"),
    ] = None,
    stratify_by: Annotated[
        str | None, Field(description="With sample: keep the proportions of this metadata key (e.g. 'topic')")
    ] = None,
    seed: Annotated[int, Field(description="Random seed for sample")] = 0,
    *,
    ctx: Context,
) -> AddToQueueReport:
    """Put runs into an evaluator's annotation queue, where a human labels them (next_items, submit_label).

    Select by run ids, or by source and/or metadata filter; `sample` draws a random subset, `stratify_by` keeps
    every group represented. Runs already queued are not added twice.
    """
    from align_mcp.engine.queues import add_to_queue as enqueue

    return enqueue(_store(ctx), evaluator, source, run_ids, metadata, sample, stratify_by, seed)


@_tool("List annotation queues", read_only=True)
def list_queues(*, ctx: Context) -> QueueList:
    """Every evaluator's queue: pending, reserved and labeled counts, and the label balance with warnings
    (fewer than 20 labels, or a class under 20%, means the alignment score cannot be trusted yet)."""
    from align_mcp.engine.queues import list_queues as all_queues

    queues = all_queues(_store(ctx))
    notes = [] if queues else ["No evaluators yet: create one with create_evaluator."]
    return QueueList(queues=queues, notes=notes)


@_tool("Next runs to label")
def next_items(
    evaluator: EvaluatorName,
    labeler: Annotated[
        str, Field(description="Who will label them; the items are reserved for this name for 30 minutes")
    ] = "chat",
    limit: Annotated[int, Field(ge=1, le=20, description="How many runs")] = 5,
    max_chars: Annotated[
        int, Field(ge=200, le=20_000, description="Longer strings are cut; get_run returns a run in full")
    ] = DEFAULT_ITEM_CHARS,
    *,
    ctx: Context,
) -> NextItems:
    """The next unlabeled runs of an evaluator's queue, reserved so two labelers never get the same one.

    Show each run's inputs and outputs to the human and record their verdict with submit_label (omit `score`
    to let them answer in a form). Never label from your own judgement.
    """
    from align_mcp.core.text import clip
    from align_mcp.engine import evaluators, queues

    store = _store(ctx)
    items = queues.next_items(store, evaluator, labeler, limit)
    cut = False
    shown = []
    for item in items:
        fields: dict[str, Any] = {}
        for name in ("inputs", "outputs", "reference_outputs"):
            fields[name], was_cut = clip(getattr(item, name), max_chars)
            cut = cut or was_cut
        shown.append(item.model_copy(update=fields))
    score_type = evaluators.get(store, evaluator).score_type
    pending = queues.summary(store, evaluator).pending
    notes = []
    if not items:
        notes.append("Nothing left to label in this queue. Add runs with add_to_queue.")
    else:
        notes.append(
            f"Record each verdict with submit_label(evaluator={evaluator!r}, run_id=..., score=..., comment=...); "
            f"scores: {score_type.describe()}."
        )
    if cut:
        notes.append(
            f"Long strings were cut at {max_chars} characters; get_run(run_id) returns a run in full."
        )
    return NextItems(
        evaluator=evaluator,
        score_type=score_type.describe(),
        labeler=labeler,
        items=shown,
        pending=pending,
        notes=notes,
    )


class _GivenLabel(Model):
    """The score came with the call: nothing to ask."""

    score: ScoreValue
    comment: str | None = None


def _label_form(score_type: ScoreType) -> type[BaseModel]:
    """A flat form for one label, typed by the evaluator's score type."""
    score: Any
    if score_type.kind == "binary":
        score = (Literal["pass", "fail"], Field(description="pass (1) or fail (0)"))
    elif score_type.kind == "categorical":
        labels = tuple(score_type.labels or ())
        score = (Literal[labels], Field(description="One of: " + ", ".join(labels)))  # type: ignore[valid-type]
    else:
        score = (int, Field(ge=score_type.min, le=score_type.max, description=score_type.describe()))
    comment = (str, Field(default="", description="Why? One sentence in your words (optional, recommended)"))
    return create_model("LabelForm", score=score, comment=comment)


def _show_json(value: Any) -> str:
    from align_mcp.core.text import clip

    shown, _ = clip(value, FORM_FIELD_CHARS)
    return json.dumps(shown, indent=2, ensure_ascii=False)


def _rubric(ev: Evaluator) -> str:
    """What the judge is told to check: the evaluator's description, else the prompt's static instructions."""
    text = ev.description or ev.draft.split("{{", 1)[0]
    for tag in ("<inputs>", "<outputs>", "<reference_outputs>"):
        text = text.split(tag, 1)[0]
    shown, _ = _clip_text(text.strip(), FORM_FIELD_CHARS, "")
    return shown


async def _ask_label(
    evaluator: str, run_id: str, score: ScoreValue | None, comment: str | None, ctx: Context
) -> Elicit[BaseModel] | _GivenLabel:
    """Ask the human for a label with a form, unless the call already carries the score."""
    if score is not None:
        return _GivenLabel(score=score, comment=comment)
    from align_mcp.engine import evaluators
    from align_mcp.engine.ingest import get_run as fetch_run

    try:
        store = _store(ctx)
        ev = evaluators.get(store, evaluator)
        run = fetch_run(store, run_id)
    except AlignError as e:
        raise ToolError(str(e)) from e
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.elicitation is None:
        raise ToolError(
            f"This client cannot show a form, so submit_label needs the score: ask the human in the chat, then "
            f"call submit_label again with score ({ev.score_type.describe()}) and their comment."
        )
    parts = [
        f"Label run {run_id} for evaluator {ev.name!r} ({ev.score_type.describe()}).",
        f"What the judge checks:\n{_rubric(ev)}",
        f"Inputs:\n{_show_json(run.inputs)}",
        f"Output:\n{_show_json(run.outputs)}",
    ]
    if run.reference_outputs:
        parts.append(f"Reference output:\n{_show_json(run.reference_outputs)}")
    return Elicit("\n\n".join(parts), _label_form(ev.score_type))


@_tool("Submit a label")
def submit_label(
    evaluator: EvaluatorName,
    run_id: Annotated[str, Field(description="The run's id, as shown by next_items")],
    answer: Annotated[ElicitationResult[BaseModel], Resolve(_ask_label)],
    score: Annotated[
        ScoreValue | None,
        Field(
            description="The human's score: 1/0 or pass/fail (binary), a label (categorical), an integer in the "
            "range (ordinal). Omit it to ask the human in a form that shows the run and the rubric."
        ),
    ] = None,
    comment: Annotated[
        str | None, Field(description="The human's reason in their words; the prompt learns from these")
    ] = None,
    labeler: Labeler = None,
    *,
    ctx: Context,
) -> LabelResult:
    """Record one human label (score + optional comment) for a run. Relabeling a run keeps the earlier label in
    its history. Give `score` when the human told you their verdict in the chat; omit it to open a form."""
    from align_mcp.engine.queues import balance
    from align_mcp.engine.queues import submit_label as store_label

    if not isinstance(answer, AcceptedElicitation):
        verb = "declined to label" if answer.action == "decline" else "closed the form for"
        return LabelResult(
            status="declined" if answer.action == "decline" else "cancelled",
            message=f"The human {verb} run {run_id}; nothing was stored. Move on with next_items, or ask them "
            "in the chat and pass the score.",
        )
    data = answer.data
    given = getattr(data, "score")  # noqa: B009 - the form model is built at run time
    note = getattr(data, "comment", None) or comment
    store = _store(ctx)
    receipt = store_label(store, evaluator, run_id, given, note, labeler)
    counts = balance(store, evaluator)
    verb = "Relabeled" if receipt.relabeled else "Labeled"
    return LabelResult(
        status="stored",
        receipt=receipt,
        balance=counts,
        message=f"{verb} {run_id} = {receipt.score}; {receipt.labeled} labeled, {receipt.pending} pending.",
    )


@_tool("Submit many labels")
def submit_labels(
    evaluator: EvaluatorName,
    labels: Annotated[
        list[LabelInput],
        Field(min_length=1, max_length=10_000, description="The human's labels, one per run"),
    ],
    labeler: Labeler = None,
    *,
    ctx: Context,
) -> LabelsResult:
    """Record many human labels at once, all or nothing: every label is checked before any is stored."""
    from align_mcp.engine.queues import balance
    from align_mcp.engine.queues import submit_labels as store_labels

    store = _store(ctx)
    receipts = store_labels(store, evaluator, [item.model_dump() for item in labels], labeler)
    last = receipts[-1]
    return LabelsResult(
        evaluator=evaluator,
        stored=len(receipts),
        relabeled=sum(1 for r in receipts if r.relabeled),
        labeled=last.labeled,
        pending=last.pending,
        balance=balance(store, evaluator),
    )


# ---- tools: alignment ---------------------------------------------------------------------------------------


class _Progress:
    """Turn the API's per-phase (done, total, message) into one increasing MCP progress value."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.phase: str | None = None
        self.base = 0
        self.phase_total = 0
        self.last: float = -1

    async def __call__(self, done: int, total: int, message: str) -> None:
        phase = message.split(":", 1)[0]
        if self.phase is not None and phase != self.phase:
            self.base += self.phase_total
        self.phase, self.phase_total = phase, total
        value = self.base + done
        if value <= self.last:
            return
        self.last = value
        await self.ctx.report_progress(value, self.base + total, message)


def _report_result(report: AlignmentReport) -> CallToolResult:
    """The report as markdown for the conversation, and in full as structured content."""
    return CallToolResult(
        content=[TextContent(type="text", text=report_markdown(report))],
        structured_content=report.model_dump(mode="json"),
    )


PromptRef = Annotated[
    str,
    Field(
        description="Which prompt: 'draft' (the unsaved working copy), 'latest' (last saved) or a version like 'v2'"
    ),
]
Split = Annotated[
    Literal["dev", "test", "all"] | None,
    Field(
        description="Which labeled runs: 'dev', 'test' (the held-out part: only to confirm a finished prompt) "
        "or 'all'. Omit for the default."
    ),
]


@_tool("Run alignment", open_world=True)
async def run_alignment(
    evaluator: EvaluatorName,
    prompt: PromptRef = "draft",
    split: Split = None,
    compare: Annotated[
        bool,
        Field(description="Also report the last saved version on the same runs, with fixed/broken flips"),
    ] = True,
    *,
    ctx: Context,
) -> Annotated[CallToolResult, AlignmentReport]:
    """Judge every labeled run with a prompt and measure agreement with the human labels: agreement, Cohen's
    kappa, TPR/TNR with 95% intervals, and (for the draft) the comparison with the last saved version, with
    McNemar's test on the runs it fixed and broke.

    Calls the judge model once per labeled run (unchanged prompts come from the cache) and reports progress.
    If cancelled or interrupted, finished results are kept: finish with resume_alignment.
    """
    from align_mcp.engine.alignment import run_alignment as align_runs

    options: dict[str, Any] = {} if split is None else {"split": split}
    report = await align_runs(
        _store(ctx), evaluator, prompt, compare=compare, on_progress=_Progress(ctx), **options
    )
    return _report_result(report)


@_tool("Resume an alignment run", idempotent=True, open_world=True)
async def resume_alignment(
    alignment_run: Annotated[
        int, Field(description="The alignment run's id (get_evaluator lists recent runs)")
    ],
    retry_errors: Annotated[
        bool, Field(description="Also judge again the runs whose judge call failed")
    ] = False,
    *,
    ctx: Context,
) -> Annotated[CallToolResult, AlignmentReport]:
    """Finish an interrupted or cancelled alignment run: only runs without a stored result are judged."""
    from align_mcp.engine.alignment import resume

    report = await resume(_store(ctx), alignment_run, retry_errors=retry_errors, on_progress=_Progress(ctx))
    return _report_result(report)


@_tool("Misaligned examples", read_only=True)
def get_misaligned(
    evaluator: EvaluatorName,
    alignment_run: Annotated[
        int | None, Field(description="Alignment run id; omit for the evaluator's latest draft run")
    ] = None,
    direction: Annotated[
        Literal["false_pass", "false_fail", "over", "under", "mismatch"] | None,
        Field(
            description="Only one kind: false_pass / false_fail (binary), over / under (ordinal), "
            "mismatch (categorical)"
        ),
    ] = None,
    offset: Annotated[
        int, Field(ge=0, description="Skip this many (use next_offset from the last page)")
    ] = 0,
    limit: Annotated[int, Field(ge=1, le=20, description="Examples per page")] = 5,
    max_chars: Annotated[
        int, Field(ge=200, le=20_000, description="Longer strings are cut; get_run returns a run in full")
    ] = 1200,
    *,
    ctx: Context,
) -> MisalignedPage:
    """Examples where the judge disagreed with the human, side by side: inputs, outputs, the human's score and
    comment, the judge's score and reasoning. Read the human comments: they say what the rubric is missing."""
    from align_mcp.engine.alignment import get_misaligned as misaligned

    return misaligned(_store(ctx), evaluator, alignment_run, direction, offset, limit, max_chars)


# ---- tools: drafts and versions -----------------------------------------------------------------------------


@_tool("Edit the draft prompt", destructive=True, idempotent=True)
def update_draft(
    evaluator: EvaluatorName,
    prompt: Annotated[str | None, Field(description="The full new prompt text (replaces the draft)")] = None,
    find: Annotated[
        str | None, Field(description="A passage that occurs exactly once in the draft, to replace")
    ] = None,
    replace_with: Annotated[str | None, Field(description="What replaces `find` (may be empty)")] = None,
    judge: Annotated[JudgeUpdate | None, Field(description="Judge settings to change")] = None,
    *,
    ctx: Context,
) -> DraftUpdate:
    """Edit the evaluator's draft prompt: a full new prompt, or one exact find/replace, and/or judge settings.

    The draft is NOT saved: test it with run_alignment, and only save_prompt makes it a version. Returns the
    diff against the last saved version.
    """
    from align_mcp.engine import evaluators

    if (find is None) != (replace_with is None):
        raise InvalidInput("A find/replace edit needs both `find` and `replace_with`.")
    settings = judge.model_dump(exclude_unset=True) if judge is not None else {}
    if prompt is None and find is None and not settings:
        raise InvalidInput("Nothing to change: give `prompt`, `find` + `replace_with`, or `judge` settings.")
    store = _store(ctx)
    replace = (find, replace_with) if find is not None and replace_with is not None else None
    evaluators.update_draft(store, evaluator, prompt=prompt, replace=replace, judge=settings or None)
    return _draft_update(store, evaluator)


def _draft_update(store: Store, evaluator: str) -> DraftUpdate:
    from align_mcp.engine import evaluators

    d = evaluators.diff(store, evaluator)
    diff, note = _clip_text(d.diff, DEFAULT_DRAFT_CHARS, "get_evaluator shows the whole draft.")
    notes = [note] if note else []
    if d.changed:
        notes.append("Not saved. Test it with run_alignment; save_prompt makes it a new version.")
    else:
        notes.append("The draft now equals the last saved version.")
    return DraftUpdate(
        evaluator=evaluator, base_version=d.base_version, draft_differs=d.changed, diff=diff, notes=notes
    )


@_tool("Save the draft as a version")
def save_prompt(
    evaluator: EvaluatorName,
    message: Annotated[
        str | None, Field(description="What changed and why, e.g. 'fail wrong prices'")
    ] = None,
    *,
    ctx: Context,
) -> SavedVersion:
    """Save the draft prompt as a new immutable version (v1, v2, …). Only call this when the user asked to save.

    Refused when the draft is identical to the last saved version.
    """
    from align_mcp.engine import evaluators

    v = evaluators.save(_store(ctx), evaluator, message)
    return SavedVersion(
        evaluator=evaluator,
        version=v.version,
        message=v.message,
        created_at=v.created_at,
        notes=[f"Saved as v{v.version}. Later drafts are compared with it."],
    )


@_tool("List prompt versions", read_only=True)
def list_versions(
    evaluator: EvaluatorName,
    include_prompts: Annotated[bool, Field(description="Include each version's prompt text")] = False,
    offset: Annotated[int, Field(ge=0)] = 0,
    limit: Annotated[int, Field(ge=1, le=50)] = 20,
    *,
    ctx: Context,
) -> VersionList:
    """The saved versions of an evaluator's prompt, oldest first, with the agreement and kappa of each version's
    latest alignment run."""
    from align_mcp.engine import evaluators

    store = _store(ctx)
    ev = evaluators.get(store, evaluator)
    page = ev.versions[offset : offset + limit]
    texts = (
        {v.version: v.prompt for v in evaluators.list_versions(store, evaluator)} if include_prompts else {}
    )
    versions = [VersionEntry(**v.model_dump(), prompt=texts.get(v.version)) for v in page]
    next_offset = offset + limit if offset + limit < len(ev.versions) else None
    notes = (
        [] if include_prompts else [f"Read a version's text at align://evaluators/{evaluator}/versions/<N>."]
    )
    if next_offset is not None:
        notes.append(f"{len(ev.versions) - next_offset} more: call again with offset={next_offset}.")
    return VersionList(
        evaluator=evaluator,
        total=len(ev.versions),
        offset=offset,
        versions=versions,
        next_offset=next_offset,
        draft_differs=ev.draft_differs,
        notes=notes,
    )


# ---- tools: optimizer ---------------------------------------------------------------------------------------


@_tool("Analyze failure modes", open_world=True)
async def analyze_failures(
    evaluator: EvaluatorName,
    alignment_run: Annotated[
        int | None, Field(description="Alignment run id; omit for the latest dev run (as get_misaligned)")
    ] = None,
    use_llm: Annotated[
        bool,
        Field(
            description="Let the judge model group the cases (one call); false groups them by direction and "
            "recurring words in the human comments, with no model call"
        ),
    ] = True,
    *,
    ctx: Context,
) -> FailureAnalysis:
    """Group the misaligned dev examples of an alignment run into a few named failure modes (what the judge gets
    wrong, with example ids). Held-out test examples are never included. Use it before editing the draft."""
    from align_mcp.optimize.failure_modes import analyze_failures as analyze

    return await analyze(_store(ctx), evaluator, alignment_run, use_llm)


@_tool("Propose a revised prompt", open_world=True)
async def propose_prompt(
    evaluator: EvaluatorName,
    mode: Annotated[
        Literal["gepa", "reflect"],
        Field(
            description="gepa: a search with DSPy's GEPA optimizer (needs the optimize extra); reflect: one "
            "rewrite from the failure modes, for small budgets"
        ),
    ] = "gepa",
    budget: Annotated[
        int, Field(ge=1, le=100_000, description="The most model calls it may make (cache hits are free)")
    ] = 300,
    *,
    ctx: Context,
) -> Proposal:
    """Let the optimizer propose a revised judge prompt from the draft's dev failures, checked on the held-out
    test split it never saw. Reports progress. The proposal is NOT applied: show it to the user; apply_proposal
    copies it into the draft only when they agree, and only save_prompt makes it a version."""
    from align_mcp.optimize.proposals import propose_prompt as propose

    return await propose(_store(ctx), evaluator, mode, budget, on_progress=_Progress(ctx))


@_tool("List proposals", read_only=True)
def list_proposals(evaluator: EvaluatorName, *, ctx: Context) -> ProposalList:
    """An evaluator's optimizer proposals, oldest first, with dev and test agreement before and after each."""
    from align_mcp.optimize.proposals import list_proposals as proposals

    items = proposals(_store(ctx), evaluator)
    notes = [] if items else ["No proposals yet: propose_prompt makes one."]
    return ProposalList(evaluator=evaluator, proposals=items, notes=notes)


@_tool("Apply a proposal to the draft", destructive=True, idempotent=True)
def apply_proposal(
    evaluator: EvaluatorName,
    proposal_id: Annotated[
        int, Field(description="The proposal's id, from propose_prompt or list_proposals")
    ],
    force: Annotated[
        bool, Field(description="Overwrite draft edits made after the proposal (they are lost)")
    ] = False,
    *,
    ctx: Context,
) -> DraftUpdate:
    """Copy an optimizer proposal into the evaluator's draft, when the user asked for it. Nothing is saved: test
    it with run_alignment, and save_prompt makes it a version."""
    from align_mcp.optimize.proposals import apply_proposal as apply

    store = _store(ctx)
    apply(store, evaluator, proposal_id, force)
    return _draft_update(store, evaluator)


# ---- tools: diagnostics -------------------------------------------------------------------------------------

RunIds = Annotated[list[str], Field(min_length=1, max_length=1000, description="Run ids, e.g. ['pp-009']")]


@_tool("Triage disagreements", open_world=True)
async def triage_disagreements(
    evaluator: EvaluatorName,
    alignment_run: Annotated[
        int | None, Field(description="Alignment run id; omit for the latest dev run (as get_misaligned)")
    ] = None,
    run_ids: Annotated[
        list[str] | None, Field(description="Only these misaligned dev cases (e.g. ones left unclassified)")
    ] = None,
    limit: Annotated[int, Field(ge=1, le=200, description="Most cases to classify in this call")] = 50,
    *,
    ctx: Context,
) -> TriageReport:
    """Classify each misaligned dev case as judge_error (the judge misapplied the rubric), label_error (the human
    label looks wrong: consider request_review) or rubric_gap (the rubric does not decide it: add an instruction),
    each with a short reason. Uses the judge model, one call per 10 cases. Test examples are never included."""
    from align_mcp.diagnose.triage import triage

    return await triage(
        _store(ctx),
        evaluator,
        alignment_run=alignment_run,
        run_ids=run_ids,
        limit=limit,
        on_progress=_Progress(ctx),
    )


@_tool("Request a blind second review")
def request_review(
    evaluator: EvaluatorName,
    run_ids: RunIds,
    reason: Annotated[str | None, Field(max_length=2000, description="Why the label is doubted")] = None,
    *,
    ctx: Context,
) -> ReviewRequestReport:
    """Send doubted labels back to the queue for a blind second review by a different labeler (next_items never
    shows the first label). Agreeing reviews keep the label; disagreeing ones leave the reference set until
    adjudicate_label settles them. Every label stays in the history."""
    from align_mcp.engine.reviews import request_review as request

    return request(_store(ctx), evaluator, run_ids, reason)


@_tool("Adjudicate a label", destructive=True, idempotent=True)
def adjudicate_label(
    evaluator: EvaluatorName,
    run_id: Annotated[str, Field(description="The run under review")],
    score: Annotated[
        ScoreValue, Field(description="The final human score (the human's decision, never yours)")
    ],
    labeler: Annotated[str, Field(min_length=1, description="Who decides")],
    comment: Annotated[str | None, Field(max_length=20_000)] = None,
    *,
    ctx: Context,
) -> ReviewItem:
    """Settle a disputed (or pending) second review with the human's final label; the reference set uses it."""
    from align_mcp.engine.reviews import adjudicate

    return adjudicate(_store(ctx), evaluator, run_id, score, labeler, comment)


@_tool("List second reviews", read_only=True)
def list_reviews(evaluator: EvaluatorName, *, ctx: Context) -> ReviewReport:
    """Second reviews and their status, with inter-annotator agreement (Cohen's kappa) over the blind pairs. This
    view shows both labels: never show it to the second labeler before they label."""
    from align_mcp.engine.reviews import list_reviews as reviews

    return reviews(_store(ctx), evaluator)


@_tool("Check judge self-consistency", open_world=True)
async def check_consistency(
    evaluator: EvaluatorName,
    k: Annotated[int, Field(ge=2, le=20, description="Verdicts per run")] = 5,
    sample: Annotated[int, Field(ge=1, le=500, description="Labeled runs to re-judge")] = 20,
    prompt: Annotated[str, Field(description="'draft', 'latest' or a version such as 'v2'")] = "draft",
    temperature: Annotated[
        float | None, Field(ge=0, le=2, description="Sampling temperature; omit for the evaluator's")
    ] = None,
    *,
    ctx: Context,
) -> ConsistencyReport:
    """Re-judge a sample of labeled runs k times (bypassing the cache) and report how often the verdict flips and
    which runs are unstable; get_misaligned then flags them (flip_share). Costs k x sample judge calls."""
    from align_mcp.diagnose.consistency import self_consistency

    return await self_consistency(
        _store(ctx),
        evaluator,
        k=k,
        sample=sample,
        prompt=prompt,
        temperature=temperature,
        on_progress=_Progress(ctx),
    )


@_tool("Suggest runs to label", open_world=True)
async def suggest_labels(
    evaluator: EvaluatorName,
    n: Annotated[int, Field(ge=1, le=100, description="How many runs to suggest")] = 10,
    budget: Annotated[
        int, Field(ge=0, le=10_000, description="Most judge calls to make (cache hits are free)")
    ] = 50,
    repeats: Annotated[
        int, Field(ge=0, le=10, description="Extra samples per run to measure instability")
    ] = 0,
    *,
    ctx: Context,
) -> SuggestionReport:
    """Rank the unlabeled runs in the queue by how much a human label would teach: where the draft and the last
    saved version disagree, where repeated samples disagree, and where a class is under-represented."""
    from align_mcp.diagnose.suggestions import suggest_labels as suggest

    return await suggest(
        _store(ctx), evaluator, n=n, budget=budget, repeats=repeats, on_progress=_Progress(ctx)
    )


@_tool("Estimate the corrected pass rate", open_world=True)
async def corrected_pass_rate(
    evaluator: EvaluatorName,
    source: Annotated[str | None, Field(description="Estimate over this source's unlabeled runs")] = None,
    run_ids: Annotated[list[str] | None, Field(max_length=100_000, description="Or these run ids")] = None,
    prompt: Annotated[str, Field(description="'latest', 'draft' or a version such as 'v2'")] = "latest",
    *,
    ctx: Context,
) -> PassRateReport:
    """Estimate the true pass rate of unlabeled runs from the judge's verdicts, corrected for its measured error
    rates on the labeled test split: (p_obs + TNR - 1) / (TPR + TNR - 1) with a bootstrap 95% interval. Refuses
    when the judge is no better than chance or a class is missing. Judging test counts as a look at test."""
    from align_mcp.diagnose.pass_rate import corrected_pass_rate as estimate

    return await estimate(
        _store(ctx), evaluator, run_ids=run_ids, source=source, prompt=prompt, on_progress=_Progress(ctx)
    )


def dump_json(model: BaseModel | list[Any]) -> str:
    """A resource's JSON text: one model, or a list of models."""
    if isinstance(model, BaseModel):
        return model.model_dump_json(indent=2)
    return json.dumps([m.model_dump(mode="json") for m in model], indent=2, ensure_ascii=False)
