"""Argument types the tools share; their descriptions are what the model reads."""

from typing import Annotated, Literal

from pydantic import Field

from align_mcp.core.models import Model

DEFAULT_DRAFT_CHARS = 20_000
DEFAULT_ITEM_CHARS = 1_500
DEFAULT_RUN_CHARS = 20_000

EvaluatorName = Annotated[str, Field(description="The evaluator's name")]
ScoreValue = int | float | str
Labeler = Annotated[
    str | None,
    Field(description="The human's name or handle, recorded with the label"),
]
PromptRef = Annotated[
    str, Field(description="'draft' (unsaved), 'latest' (last saved) or a version, e.g. 'v2'")
]
Split = Annotated[
    Literal["dev", "test", "all"] | None,
    Field(description="Labeled runs to judge; 'test' is held out: only to confirm a finished prompt"),
]
AlignmentRunId = Annotated[int | None, Field(description="Alignment run id; default: the latest dev run")]
RunIds = Annotated[list[str], Field(min_length=1, max_length=1000, description="Run ids, e.g. ['pp-009']")]


class LabelInput(Model):
    run_id: str
    score: ScoreValue = Field(description="1/0, a label, an integer or A/B/tie")
    comment: str | None = Field(default=None, description="The human's reason, in their words")


# Juror and JudgeUpdate carry no docstring and no bounds: every character here is listed twice (create_evaluator
# and update_draft), and the engine checks the values against JudgeSettings, naming the bad one.
class Juror(Model):
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None
    prompt: str | None = None


class JudgeUpdate(Model):
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="Env var with the key")
    temperature: float | None = None
    reasoning: bool | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    max_retries: int | None = None
    members: list[Juror] | None = Field(default=None, description="A jury (2+)")
    combine: Literal["majority", "mean", "median", "any_fail"] | None = None
