"""Tools for evaluators: define a judge, list and show them, edit the draft, save it as a version."""

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from align_mcp.core.models import Evaluator, JudgeSettings, ScoreType
from align_mcp.core.views import DraftUpdate, EvaluatorDetail, EvaluatorList, SavedVersion, VersionList
from align_mcp.errors import InvalidInput
from align_mcp.mcp.state import store_of
from align_mcp.mcp.tools.arguments import DEFAULT_DRAFT_CHARS, EvaluatorName, JudgeUpdate
from align_mcp.mcp.tools.registry import tool


@tool("Create an evaluator")
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
    return evaluators.create(store_of(ctx), name, kind_type, feedback_key, prompt, judge, description)


@tool("List evaluators", read_only=True)
def list_evaluators(*, ctx: Context) -> EvaluatorList:
    """All evaluators with their latest saved version, its alignment score and whether the draft is unsaved."""
    from align_mcp.engine.overview import evaluator_list

    return evaluator_list(store_of(ctx))


@tool("Get an evaluator", read_only=True)
def get_evaluator(name: EvaluatorName, *, ctx: Context) -> EvaluatorDetail:
    """An evaluator in full: score type, judge settings, the draft prompt, saved versions with their scores,
    its queue (labels and balance) and its recent alignment runs (ids for get_misaligned / resume_alignment)."""
    from align_mcp.engine.overview import evaluator_detail

    return evaluator_detail(store_of(ctx), name, DEFAULT_DRAFT_CHARS)


@tool("Edit the draft prompt", destructive=True, idempotent=True)
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
    from align_mcp.engine.evaluators import edit_draft

    if (find is None) != (replace_with is None):
        raise InvalidInput("A find/replace edit needs both `find` and `replace_with`.")
    settings = judge.model_dump(exclude_unset=True) if judge is not None else {}
    if prompt is None and find is None and not settings:
        raise InvalidInput("Nothing to change: give `prompt`, `find` + `replace_with`, or `judge` settings.")
    replace = (find, replace_with) if find is not None and replace_with is not None else None
    return edit_draft(store_of(ctx), evaluator, prompt=prompt, replace=replace, judge=settings or None)


@tool("Save the draft as a version")
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
    from align_mcp.engine.evaluators import save_version

    return save_version(store_of(ctx), evaluator, message)


@tool("List prompt versions", read_only=True)
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
    from align_mcp.engine.evaluators import version_page

    return version_page(store_of(ctx), evaluator, include_prompts, offset, limit)
