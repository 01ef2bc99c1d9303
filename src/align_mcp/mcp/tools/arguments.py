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
    """One human label."""

    run_id: str
    score: ScoreValue = Field(description="1/0 or pass/fail (binary), a label, or an integer in the range")
    comment: str | None = Field(default=None, description="The human's reason, in their words")


class JudgeUpdate(Model):
    """Unset fields keep their value."""

    model: str | None = Field(default=None, description="Default: ALIGN_MCP_JUDGE_MODEL")
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="Env var name (never the key)")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    reasoning: bool | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    timeout: float | None = Field(default=None, gt=0, le=3600, description="Seconds per call")
    max_retries: int | None = Field(default=None, ge=0, le=20)
