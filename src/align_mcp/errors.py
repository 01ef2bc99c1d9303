"""The one error hierarchy, and the structured next step an error (or a result's note) carries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

Action = Literal[
    "import_runs",
    "create_evaluator",
    "show_evaluator",
    "show_draft",
    "update_draft",
    "save_prompt",
    "list_versions",
    "add_to_queue",
    "label",
    "show_run",
    "run_alignment",
    "resume_alignment",
    "list_alignment_runs",
    "show_misaligned",
    "triage",
    "request_review",
    "list_reviews",
    "adjudicate_label",
    "check_consistency",
    "suggest_labels",
    "analyze_failures",
    "propose_prompt",
    "list_proposals",
    "apply_proposal",
]
"""What a user can be told to do next. Surfaces render every action (tests check both do)."""

ACTIONS: tuple[Action, ...] = get_args(Action)

StepArg = str | int | bool | list[str]
"""An argument value of a next step: a name, an id, a number, a flag or a list of run ids."""

ACTION_ARGS: dict[Action, tuple[str, ...]] = {
    "import_runs": ("source",),
    "create_evaluator": (),
    "show_evaluator": ("evaluator",),
    "show_draft": ("evaluator",),
    "update_draft": ("evaluator",),
    "save_prompt": ("evaluator",),
    "list_versions": ("evaluator", "include_prompts", "offset"),
    "add_to_queue": ("evaluator", "stale"),
    "label": ("evaluator", "run_id"),
    "show_run": ("run_id", "max_chars"),
    "run_alignment": ("evaluator", "split"),
    "resume_alignment": ("alignment_run", "retry_errors"),
    "list_alignment_runs": ("evaluator",),
    "show_misaligned": ("evaluator", "alignment_run", "offset"),
    "triage": ("evaluator", "alignment_run", "run_ids", "limit"),
    "request_review": ("evaluator", "run_ids"),
    "list_reviews": ("evaluator",),
    "adjudicate_label": ("evaluator", "run_id"),
    "check_consistency": ("evaluator",),
    "suggest_labels": ("evaluator", "repeats", "budget"),
    "analyze_failures": ("evaluator", "alignment_run"),
    "propose_prompt": ("evaluator", "mode", "budget"),
    "list_proposals": ("evaluator",),
    "apply_proposal": ("evaluator", "proposal_id", "force"),
}
"""The arguments each action may carry, in the order a surface shows them; each surface maps every one to
its own parameter or option."""


@dataclass(frozen=True)
class NextStep:
    """One thing the user can do next: an action and the values it needs (e.g. which evaluator).

    A message says what happened and names the bad value; what to do about it is a NextStep, never a tool or
    command name. Each surface words the step itself: the MCP server as a tool call (`create_evaluator`), the
    command line as a command (`align-mcp evaluator create NAME`).
    """

    action: Action
    args: Mapping[str, StepArg] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTION_ARGS:
            raise ValueError(f"Unknown next-step action {self.action!r}; known: {', '.join(ACTIONS)}.")
        unknown = sorted(set(self.args) - set(ACTION_ARGS[self.action]))
        if unknown:
            raise ValueError(f"Next step {self.action!r} takes no argument(s) {', '.join(unknown)}.")


class AlignError(Exception):
    """Base class for every error align-mcp reports to a user.

    `message` says what happened and names the bad value; `next_steps` say what to do about it, for each
    surface to word in its own terms. `str(error)` is the message alone.
    """

    def __init__(self, message: str, *next_steps: NextStep) -> None:
        super().__init__(message)
        self.message = message
        self.next_steps: tuple[NextStep, ...] = next_steps


class NotFound(AlignError):
    """A named object (evaluator, run, version, source, alignment run) does not exist."""


class InvalidInput(AlignError):
    """An argument is malformed or out of range."""


class InvalidScore(InvalidInput):
    """A score does not fit the evaluator's score type."""


class ImportFormatError(InvalidInput):
    """A JSONL or CSV file could not be read; the message carries the line number."""


class JudgeConfigError(AlignError):
    """The judge endpoint, key or model is missing or rejected."""


class JudgeUnreachable(AlignError):
    """The judge endpoint could not be reached; finished results are kept."""


class JudgeFailed(AlignError):
    """Every example of a run ended in an error, so nothing was judged; the errors are kept."""


class EmptyReferenceSet(AlignError):
    """An evaluator has no labeled runs to align against."""


class NothingToSave(AlignError):
    """The draft is identical to the last saved version."""


class Conflict(AlignError):
    """The request conflicts with the current state (a name already taken, a reservation held)."""


class OptimizerUnavailable(AlignError):
    """The optimizer extra is not installed or the optimizer is not available."""


class StoreError(AlignError):
    """The database file cannot be opened or is not an align-mcp store."""
