"""Argument types the tools share; their descriptions are what the model reads."""

from typing import Annotated, Literal

from pydantic import Field

from align_mcp.core.models import Model

DEFAULT_DRAFT_CHARS = 20_000
DEFAULT_ITEM_CHARS = 1_500
DEFAULT_RUN_CHARS = 20_000

EvaluatorName = Annotated[
    str, Field(description="Evaluator name, e.g. 'correctness'. list_evaluators shows the existing ones.")
]
ScoreValue = int | float | str
Labeler = Annotated[
    str | None,
    Field(description="Who gave the label (the human's name or handle), recorded with it. Optional."),
]
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
AlignmentRunId = Annotated[
    int | None, Field(description="Alignment run id; omit for the latest dev run (as get_misaligned)")
]
RunIds = Annotated[list[str], Field(min_length=1, max_length=1000, description="Run ids, e.g. ['pp-009']")]


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
