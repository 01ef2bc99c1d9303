"""What every platform reader shares: where a record is, its errors, and how scores become labels or metadata."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from align_mcp.engine.formats import FeedbackItem, ParsedRun, value_problem
from align_mcp.errors import ImportFormatError


@dataclass(frozen=True)
class Place:
    """Where a record sits in the file: its line (JSON Lines) and its JSON path inside that line or document."""

    where: str
    line: int | None
    path: str
    ordinal: int
    """The record's 1-based position among the file's records; stands in for a line inside a document."""

    def child(self, part: str) -> Place:
        """The place of a value inside this one (`part` like "spans[3]" or "[2]")."""
        joined = self.path + part if part.startswith("[") or not self.path else f"{self.path}.{part}"
        return Place(self.where, self.line, joined, self.ordinal)

    def shown(self) -> str:
        """The place in words: "line 3", "line 3, resourceSpans[0].scopeSpans[0].spans[2]", or "data[4]"."""
        if self.line is None:
            return self.path or "the document"
        return f"line {self.line}, {self.path}" if self.path else f"line {self.line}"

    def error(self, problem: str) -> ImportFormatError:
        """An import error naming this place and what is wrong with the record there."""
        head = f"{self.where}:{self.line}" if self.line is not None else self.where
        tail = f" {self.path}:" if self.path else ""
        return ImportFormatError(
            f"{head}:{tail} {problem}. Fix that record and import again; nothing from this file was stored."
        )


def kind_of(value: object) -> str:
    """A JSON value's kind in words, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def as_object(value: Any, wrap_key: str) -> dict[str, Any]:
    """An object as is; any other value under `wrap_key`."""
    return value if isinstance(value, dict) else {wrap_key: value}


def decoded(value: Any) -> Any:
    """A string holding JSON (as tracing attributes often do) as the JSON value; anything else unchanged."""
    if not isinstance(value, str) or value.strip()[:1] not in ("{", "[", '"'):
        return value
    try:
        return json.loads(value, parse_constant=lambda name: None)
    except (ValueError, RecursionError):
        return value


def text_id(value: object, place: Place, field: str) -> str:
    """A record's id as a non-empty string, or an error naming the field."""
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        if value is None:
            shown = "missing"
        elif isinstance(value, str | int) and not isinstance(value, bool):
            shown = "empty"
        else:
            shown = f"{kind_of(value)}, not a string"
        raise place.error(f"{field} is {shown}; every record needs its id to be imported")
    return str(value)


def number(value: float | int) -> float | int:
    """A whole float as an int, so 1.0 fits binary and ordinal evaluators as 1 does."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class Scores:
    """A record's scores: human ones become feedback (labels); the others are kept in metadata["scores"]."""

    def __init__(self, place: Place) -> None:
        self.place = place
        self.human: dict[str, FeedbackItem] = {}
        self.other: dict[str, Any] = {}

    def add(
        self,
        name: object,
        score: object,
        *,
        human: bool,
        source: str,
        comment: object = None,
        labeler: object = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Record one score; a human score without a value (only a comment) gives no label."""
        if not isinstance(name, str) or not name.strip():
            raise self.place.error(f"a score name is {kind_of(name)}, not a non-empty string")
        if isinstance(score, dict | list):
            raise self.place.error(
                f"score {name!r} has {kind_of(score)} as its value; a score is a number, string or boolean"
            )
        if isinstance(score, float) and not math.isfinite(score):
            raise self.place.error(f"score {name!r} is {score}, not a finite number")
        if isinstance(score, float | int) and not isinstance(score, bool):
            score = number(score)
        if comment is not None and not isinstance(comment, str):
            comment = json.dumps(comment, ensure_ascii=False)
        if human:
            if score is None:
                return
            self.human[name] = FeedbackItem(name, score, comment, None if labeler is None else str(labeler))
            return
        entry: dict[str, Any] = {"value": score, "source": source}
        if comment is not None:
            entry["comment"] = comment
        entry.update({k: v for k, v in (extra or {}).items() if v is not None})
        earlier = self.other.get(name)
        if earlier is None:
            self.other[name] = entry
        elif isinstance(earlier, list):
            earlier.append(entry)
        else:
            self.other[name] = [earlier, entry]

    def feedback(self) -> tuple[FeedbackItem, ...]:
        """The human scores, one per name (the last given)."""
        return tuple(self.human.values())


def make_run(
    place: Place,
    run_id: str,
    inputs: dict[str, Any],
    outputs: dict[str, Any],
    reference: dict[str, Any] | None,
    metadata: dict[str, Any],
    scores: Scores | None = None,
) -> ParsedRun:
    """The normalized run, refused when what it would store cannot be stored (see value_problem)."""
    metadata = {k: v for k, v in metadata.items() if v is not None}
    if scores is not None and scores.other:
        metadata["scores"] = scores.other
    stored = {"inputs": inputs, "outputs": outputs, "reference_outputs": reference, "metadata": metadata}
    if (problem := value_problem(stored)) is not None:
        raise place.error(problem)
    return ParsedRun(
        line=place.line if place.line is not None else place.ordinal,
        id=run_id,
        inputs=inputs,
        outputs=outputs,
        reference_outputs=reference,
        metadata=metadata,
        feedback=scores.feedback() if scores is not None else (),
        at=place.shown(),
    )
