"""The one error hierarchy: every message names the bad value and the next step."""

from __future__ import annotations


class AlignError(Exception):
    """Base class for every error align-mcp reports to a user."""


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
