"""Read any supported import file: JSONL/CSV, or an export of Langfuse, Phoenix, Opik, MLflow or OTLP JSON,
recognised by content (or named by the caller) and streamed as the runs the ingest path stores.

A platform file is JSON Lines (one record, or one page of records, per line) or one JSON document (an array, a
paged API response such as {"data": [...]}, or a single record). Every record is checked with value_problem
as it is read (what a run would store is checked with value_problem), and a bad one raises ImportFormatError
naming its line or JSON path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from align_mcp.core.models import ImportFormat
from align_mcp.engine.formats import (
    ParsedRun,
    detect_format,
    first_line,
    json_lines,
    read_json_document,
    read_runs,
)
from align_mcp.engine.platforms import langfuse, mlflow, opik, otel, phoenix
from align_mcp.engine.platforms.common import Place, kind_of
from align_mcp.errors import ImportFormatError


@dataclass(frozen=True)
class Platform:
    """One platform's export reader."""

    what: str
    matches: Callable[[dict[str, Any]], bool]
    read: Callable[[dict[str, Any], Place], Iterator[ParsedRun]]
    nothing: str | None = None
    """Why a file of this platform's records gave no run, when that can happen without an error."""


PLATFORMS: dict[str, Platform] = {
    # Tried in this order: the first whose fields a record has wins.
    "otel": Platform(otel.WHAT, otel.matches, otel.read, otel.NOTHING),
    "mlflow": Platform(mlflow.WHAT, mlflow.matches, mlflow.read),
    "phoenix": Platform(phoenix.WHAT, phoenix.matches, phoenix.read),
    "opik": Platform(opik.WHAT, opik.matches, opik.read),
    "langfuse": Platform(langfuse.WHAT, langfuse.matches, langfuse.read),
}
IMPORT_FORMATS: tuple[str, ...] = get_args(ImportFormat)
_PAGES = ("data", "content", "traces")
"""Where paged API responses keep their records: Langfuse and Phoenix `data`, Opik `content`, MLflow `traces`."""


def platform_of(record: object) -> str | None:
    """The platform whose export `record` is (one record, a page of them, or an array), or None."""
    for item in _first_items(record):
        for name, platform in PLATFORMS.items():
            if platform.matches(item):
                return name
    return None


def _first_items(value: object) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        value = next((item for item in value if isinstance(item, dict)), None)
    if not isinstance(value, dict):
        return
    yield value
    for key in _PAGES:
        inner = value.get(key)
        if isinstance(inner, list) and inner and isinstance(inner[0], dict):
            yield inner[0]
    data = value.get("data")
    if isinstance(data, dict) and isinstance(data.get("examples"), list) and data["examples"]:
        first = data["examples"][0]
        if isinstance(first, dict):
            yield first


def read_file(path: Path, fmt: ImportFormat | None = None) -> Iterator[ParsedRun]:
    """Stream the runs of a file in the format given, else the one detected (extension, then content).

    The path is checked and the format decided now; records are read as the iterator is consumed, and the first
    bad one raises ImportFormatError naming where it is.
    """
    path = path.expanduser()
    if fmt is not None and fmt not in IMPORT_FORMATS:
        raise ImportFormatError(f"Unknown format {fmt!r}. Known: {', '.join(IMPORT_FORMATS)}.")
    if fmt == "jsonl" or fmt == "csv":
        return read_runs(path, fmt)
    if fmt is None and detect_format(path) == "csv":
        return read_runs(path, "csv")
    text = first_line(path)
    if text is None:  # a blank file: no runs, which the import reports
        return read_runs(path, "jsonl") if fmt is None else iter(())
    first = _decoded_or_none(text)
    document: object | None = None
    if not isinstance(first, dict):
        # Not one record per line: an array, or a document spread over lines (pretty-printed).
        try:
            document = read_json_document(path)
        except ImportFormatError:
            if fmt is None and text.strip() not in ("[", "{"):
                return read_runs(path, "jsonl")  # a JSON Lines file whose first line is bad: say so
            raise
    name: str | None = fmt
    if name is None:
        name = platform_of(document if document is not None else first)
        if name is None:
            return read_runs(path, "jsonl")
    return _read_platform(path, name, document)


def _decoded_or_none(text: str) -> object | None:
    try:
        value: object = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value


def _read_platform(path: Path, name: str, document: object | None) -> Iterator[ParsedRun]:
    platform = PLATFORMS[name]
    where = str(path)
    count = records = 0
    if document is not None:
        values: Iterator[tuple[object, Place]] = iter([(document, Place(where, None, "", 0))])
    else:
        values = ((value, Place(where, number, "", 0)) for number, value in json_lines(path))
    for value, place in values:
        for record, at in _records(value, place):
            records += 1
            at = Place(at.where, at.line, at.path, records)
            _check(record, at, name)
            assert isinstance(record, dict)
            for run in platform.read(record, at):
                count += 1
                yield run
    if records and not count and platform.nothing is not None:
        raise ImportFormatError(f"{where}: {platform.nothing}. Nothing was stored.")


def _records(value: object, place: Place) -> Iterator[tuple[object, Place]]:
    """The records in one JSON value: itself, the items of an array, or those of a paged API response."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield item, place.child(f"[{i}]")
        return
    if isinstance(value, dict) and not any(p.matches(value) for p in PLATFORMS.values()):
        for key in _PAGES:
            if isinstance(value.get(key), list):
                for i, item in enumerate(value[key]):
                    yield item, place.child(f"{key}[{i}]")
                return
        data = value.get("data")
        if isinstance(data, dict) and isinstance(data.get("examples"), list):
            for i, item in enumerate(data["examples"]):
                yield item, place.child(f"data.examples[{i}]")
            return
    yield value, place


def _check(record: object, place: Place, name: str) -> None:
    platform = PLATFORMS[name]
    if not isinstance(record, dict):
        raise place.error(f"not a JSON object (got {kind_of(record)}); expected {platform.what}")
    if not platform.matches(record):
        other = platform_of(record)
        hint = (
            f"; it looks like {PLATFORMS[other].what}: import it with format {other!r}, or with no format to "
            "detect it"
            if other is not None
            else ""
        )
        raise place.error(f"not {platform.what}{hint}")
