"""The shapes of an export: which format, where it went, and what it holds."""

from typing import Literal

from pydantic import Field

from align_mcp.core.models import Model

ExportFormat = Literal["jsonl", "csv", "langsmith"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("jsonl", "csv", "langsmith")


class ExportReport(Model):
    """A reference set written out: to a file (`path`) or returned inline (`content`)."""

    evaluator: str
    feedback_key: str
    format: ExportFormat
    records: int = Field(description="Labeled runs written, one per line (or CSV row)")
    labels: int = Field(description="Labels written, earlier ones in each run's history included")
    dev: int = Field(description="Runs written with the dev split")
    test: int = Field(description="Runs written with the test split")
    left_out: int = Field(
        default=0, description="Runs left out: disputed by a blind second label, so not in the reference set"
    )
    path: str | None = Field(default=None, description="The file written")
    content: str | None = Field(default=None, description="The export itself, when no path was given")
