"""Tools for evaluators: define a judge, list and show them, edit the draft, save it as a version."""

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from align_mcp.core.models import Evaluator, ScoreType
from align_mcp.core.views import DraftUpdate, EvaluatorDetail, EvaluatorList, SavedVersion, VersionList
from align_mcp.errors import InvalidInput
from align_mcp.mcp.state import store_of
from align_mcp.mcp.tools.arguments import DEFAULT_DRAFT_CHARS, EvaluatorName, JudgeUpdate
from align_mcp.mcp.tools.registry import tool


@tool("Create an evaluator")
def create_evaluator(
    name: Annotated[str, Field(description="e.g. 'correctness'")],
    score_type: Annotated[
        Literal["binary", "categorical", "ordinal", "pairwise"],
        Field(description="binary 1/0 (pass/fail), categorical labels, ordinal min..max, pairwise A/B"),
    ] = "binary",
    labels: Annotated[
        list[str] | None,
        Field(description="categorical: e.g. ['good', 'ok', 'bad']"),
    ] = None,
    min: Annotated[int | None, Field(description="ordinal: lowest score")] = None,
    max: Annotated[int | None, Field(description="ordinal: highest score")] = None,
    ties: Annotated[bool, Field(description="pairwise: allow tie")] = False,
    feedback_key: Annotated[
        str | None,
        Field(description="Key of imported human labels; default: the name"),
    ] = None,
    prompt: Annotated[
        str | None,
        Field(description="Mustache template, e.g. {{inputs.question}}, {{outputs}}; default: built in"),
    ] = None,
    judge: Annotated[JudgeUpdate | None, Field(description="Judge settings")] = None,
    description: Annotated[str | None, Field(description="One sentence")] = None,
    *,
    ctx: Context,
) -> Evaluator:
    """Define a judge (evaluator): its prompt becomes version 1 and the editable draft. Labels imported
    under its feedback key apply at once."""
    from align_mcp.engine import evaluators

    kind_type = ScoreType(kind=score_type, labels=labels, min=min, max=max, ties=ties)
    settings = None if judge is None else evaluators.judge_settings(judge.model_dump(exclude_none=True))
    return evaluators.create(store_of(ctx), name, kind_type, feedback_key, prompt, settings, description)


@tool("List evaluators", read_only=True)
def list_evaluators(*, ctx: Context) -> EvaluatorList:
    """All evaluators: latest saved version, its alignment score, whether the draft has unsaved edits."""
    from align_mcp.engine.overview import evaluator_list

    return evaluator_list(store_of(ctx))


@tool("Get an evaluator", read_only=True)
def get_evaluator(name: EvaluatorName, *, ctx: Context) -> EvaluatorDetail:
    """An evaluator in full: score type, judge settings, draft, versions with scores, queue (labels, balance)
    and recent alignment runs (ids for get_misaligned and run_alignment's resume)."""
    from align_mcp.engine.overview import evaluator_detail

    return evaluator_detail(store_of(ctx), name, DEFAULT_DRAFT_CHARS)


@tool("Edit the draft prompt", destructive=True, idempotent=True)
def update_draft(
    evaluator: EvaluatorName,
    prompt: Annotated[str | None, Field(description="A full new prompt (replaces the draft)")] = None,
    find: Annotated[str | None, Field(description="A passage occurring once in the draft")] = None,
    replace_with: Annotated[str | None, Field(description="What replaces `find` (may be empty)")] = None,
    judge: Annotated[JudgeUpdate | None, Field(description="Judge settings to change")] = None,
    few_shot: Annotated[str | None, Field(description="e.g. k=5,strategy=recent|random|cover,seed=1")] = None,
    *,
    ctx: Context,
) -> DraftUpdate:
    """Edit the draft: a new prompt or one exact find/replace, and/or judge settings. Returns the diff against
    the last saved version. Nothing is saved: test with run_alignment; save_prompt makes a version."""
    from align_mcp.engine.evaluators import edit_draft

    if (find is None) != (replace_with is None):
        raise InvalidInput("A find/replace edit needs both `find` and `replace_with`.")
    settings = judge.model_dump(exclude_unset=True) if judge is not None else {}
    if prompt is None and find is None and not settings and few_shot is None:
        raise InvalidInput(
            "Nothing to change: give `prompt`, `find` + `replace_with`, `judge` or `few_shot`."
        )
    replace = (find, replace_with) if find is not None and replace_with is not None else None
    return edit_draft(
        store_of(ctx),
        evaluator,
        prompt=prompt,
        replace=replace,
        judge=settings or None,
        few_shot_settings=few_shot,
    )


@tool("Save the draft as a version")
def save_prompt(
    evaluator: EvaluatorName,
    message: Annotated[str | None, Field(description="What changed and why")] = None,
    *,
    ctx: Context,
) -> SavedVersion:
    """Save the draft as a new immutable version (v1, v2, …), only when the user asked to. Refused when the
    draft equals the last saved version."""
    from align_mcp.engine.evaluators import save_version

    return save_version(store_of(ctx), evaluator, message)


@tool("List prompt versions", read_only=True)
def list_versions(
    evaluator: EvaluatorName,
    include_prompts: Annotated[bool, Field(description="Include each prompt's text")] = False,
    offset: Annotated[int, Field(ge=0)] = 0,
    limit: Annotated[int, Field(ge=1, le=50)] = 20,
    *,
    ctx: Context,
) -> VersionList:
    """Saved prompt versions, oldest first, with agreement and kappa of each one's latest alignment run."""
    from align_mcp.engine.evaluators import version_page

    return version_page(store_of(ctx), evaluator, include_prompts, offset, limit)
