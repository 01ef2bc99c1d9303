"""Tools for queues and labels: queue runs, hand them to a labeler, and record the human's labels."""

import json
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field, create_model

from align_mcp.core.models import AddToQueueReport, Evaluator, Model, ScoreType
from align_mcp.core.views import LabelResult, LabelsResult, NextItems, QueueList
from align_mcp.errors import AlignError
from align_mcp.mcp import render
from align_mcp.mcp.state import store_of, tools_of
from align_mcp.mcp.tools.arguments import DEFAULT_ITEM_CHARS, EvaluatorName, Labeler, LabelInput, ScoreValue
from align_mcp.mcp.tools.registry import tool

FORM_FIELD_CHARS = 1_200


@tool("Add runs to a queue")
def add_to_queue(
    evaluator: EvaluatorName,
    source: Annotated[str | None, Field(description="Runs of this source")] = None,
    run_ids: Annotated[list[str] | None, Field(description="Exactly these runs")] = None,
    metadata: Annotated[
        dict[str, Any] | None,
        Field(description='Runs whose metadata has these values, e.g. {"topic": "billing"}'),
    ] = None,
    sample: Annotated[
        int | None, Field(description="Draw this many (at least 1) at random instead of all")
    ] = None,
    stratify_by: Annotated[
        str | None, Field(description="With sample: keep the proportions of this metadata key")
    ] = None,
    seed: Annotated[int, Field(description="Random seed for sample")] = 0,
    stale: Annotated[bool, Field(description="Relabel stale labels, blind")] = False,
    *,
    ctx: Context,
) -> AddToQueueReport:
    """Queue runs for a human to label (next_items, submit_label): by ids, or by source and/or metadata;
    `sample` draws a subset, `stratify_by` keeps every group. A run is queued once."""
    from align_mcp.engine.queues import add_to_queue as enqueue

    return enqueue(store_of(ctx), evaluator, source, run_ids, metadata, sample, stratify_by, seed, stale)


@tool("List annotation queues", read_only=True)
def list_queues(*, ctx: Context) -> QueueList:
    """Every evaluator's queue: pending, reserved and labeled counts and the label balance (a warning below 20
    labels or a class under 20%)."""
    from align_mcp.engine.overview import queue_list

    return queue_list(store_of(ctx))


@tool("Next runs to label", view="label")
def next_items(
    evaluator: EvaluatorName,
    labeler: Annotated[str, Field(description="Reserved for this name for 30 min")] = "chat",
    limit: Annotated[int, Field(ge=1, le=20, description="How many runs")] = 5,
    max_chars: Annotated[
        int, Field(ge=200, le=20_000, description="Longer strings are cut")
    ] = DEFAULT_ITEM_CHARS,
    *,
    ctx: Context,
) -> NextItems:
    """The next unlabeled runs in the queue, reserved so no two labelers get the same one. Show each to the
    human and record their verdict with submit_label; never label from your own judgement."""
    from align_mcp.engine.labeling import next_page

    return next_page(store_of(ctx), evaluator, labeler, limit, max_chars)


class GivenLabel(Model):
    """The score came with the call: nothing to ask."""

    score: ScoreValue
    comment: str | None = None


def label_form(score_type: ScoreType) -> type[BaseModel]:
    """A flat form for one label, typed by the evaluator's score type."""
    score: Any
    if score_type.kind == "binary":
        score = (Literal["pass", "fail"], Field(description="pass (1) or fail (0)"))
    elif score_type.kind == "categorical":
        labels = tuple(score_type.labels or ())
        score = (Literal[labels], Field(description="One of: " + ", ".join(labels)))  # type: ignore[valid-type]
    elif score_type.kind == "pairwise":
        options = tuple(str(v) for v in score_type.values())
        score = (Literal[options], Field(description="The better output: " + " / ".join(options)))  # type: ignore[valid-type]
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
    from align_mcp.core.text import clip

    text = ev.description or ev.draft.split("{{", 1)[0]
    for tag in ("<inputs>", "<outputs>", "<output_a>", "<reference_outputs>"):
        text = text.split(tag, 1)[0]
    shown, _ = clip(text.strip(), FORM_FIELD_CHARS)
    return str(shown)


async def ask_label(
    evaluator: str, run_id: str, score: ScoreValue | None, comment: str | None, ctx: Context
) -> Elicit[BaseModel] | GivenLabel:
    """Ask the human for a label with a form, unless the call already carries the score."""
    if score is not None:
        return GivenLabel(score=score, comment=comment)
    from align_mcp.engine import evaluators
    from align_mcp.engine.ingest import get_run as fetch_run

    try:
        store = store_of(ctx)
        ev = evaluators.get(store, evaluator)
        run = fetch_run(store, run_id)
    except AlignError as e:
        raise ToolError(render.error_text(e, tools_of(ctx))) from e
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
        f"Output:\n{_show_json(run.outputs)}"
        if run.outputs_b is None
        else f"Output A:\n{_show_json(run.outputs)}\n\nOutput B:\n{_show_json(run.outputs_b)}",
    ]
    if run.reference_outputs:
        parts.append(f"Reference output:\n{_show_json(run.reference_outputs)}")
    return Elicit("\n\n".join(parts), label_form(ev.score_type))


@tool("Submit a label")
def submit_label(
    evaluator: EvaluatorName,
    run_id: str,
    answer: Annotated[ElicitationResult[BaseModel], Resolve(ask_label)],
    score: Annotated[
        ScoreValue | None,
        Field(description="1/0, a label, an integer or A/B/tie; omit: ask the human in a form"),
    ] = None,
    comment: Annotated[str | None, Field(description="The human's reason, in their words")] = None,
    labeler: Labeler = None,
    *,
    ctx: Context,
) -> LabelResult:
    """Record one human label (score + comment) for a run; relabeling keeps the history. Give `score` when the
    human told you their verdict; omit it to open a form."""
    from align_mcp.engine.labeling import store_label

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
    return store_label(store_of(ctx), evaluator, run_id, given, note, labeler)


@tool("Submit many labels")
def submit_labels(
    evaluator: EvaluatorName,
    labels: Annotated[
        list[LabelInput],
        Field(min_length=1, max_length=10_000, description="The human's labels"),
    ],
    labeler: Labeler = None,
    *,
    ctx: Context,
) -> LabelsResult:
    """Record many human labels at once, all or nothing: every label is checked before any is stored."""
    from align_mcp.engine.labeling import store_labels

    return store_labels(store_of(ctx), evaluator, [item.model_dump() for item in labels], labeler)
