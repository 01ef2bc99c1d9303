"""Read a user's JSONL or CSV file as a stream of normalized runs, one record at a time."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from align_mcp.errors import ImportFormatError

Format = Literal["jsonl", "csv"]

MAX_LINE_BYTES = 64 * 1024 * 1024
"""The longest line (JSONL) or CSV line/field accepted; read at call time so tests can lower it."""

_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json", ".jsonlines"}
_CSV_SUFFIXES = {".csv", ".tsv"}
_SUPPORTED = "JSON Lines (.jsonl, .ndjson: one JSON object per line) or CSV (.csv, .tsv: a header row, then one run per row)"

_INPUT_ALIASES = ("question", "query", "prompt")
_OUTPUT_ALIASES = ("answer", "response", "completion")
_REFERENCE_KEYS = (
    "reference_outputs",
    "reference_output",
    "reference",
    "expected",
    "expected_output",
    "expected_outputs",
    "ground_truth",
)
# Fields only LangSmith exports carry; a record with any of them is read as a LangSmith run, whose many
# bookkeeping fields (events, serialized, dotted_order...) are dropped instead of landing in metadata.
_LANGSMITH_MARKERS = {
    "extra",
    "run_type",
    "trace_id",
    "dotted_order",
    "session_id",
    "feedback_stats",
    "reference_example_id",
    "parent_run_id",
    "child_run_ids",
    "dataset_id",
}
_LANGSMITH_KEPT = (
    "name",
    "run_type",
    "reference_example_id",
    "session_id",
    "trace_id",
    "start_time",
    "tags",
    "dataset_id",
    "error",
)
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][+-]?\d+)?")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class PastLabel:
    """An earlier label of a run, as an export carries it in `history` (oldest first)."""

    score: object
    comment: str | None
    labeler: str | None
    labeled_at: datetime | None
    rubric_version: int | None


@dataclass(frozen=True)
class FeedbackItem:
    """One human label carried in the file: a feedback key and its score, with optional comment and labeler.

    An export also carries when it was given (`labeled_at`), the rubric version it was given under, the run's
    holdout split and the run's earlier labels (`history`); plain imports leave them out.
    """

    key: str
    score: object
    comment: str | None
    labeler: str | None
    labeled_at: datetime | None = None
    rubric_version: int | None = None
    split: Literal["dev", "test"] | None = None
    history: tuple[PastLabel, ...] = ()


@dataclass(frozen=True)
class ParsedRun:
    """One normalized run and the line it starts on."""

    line: int
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    reference_outputs: dict[str, Any] | None
    metadata: dict[str, Any]
    feedback: tuple[FeedbackItem, ...]
    derived_id: bool = False
    """True when the record had no id and got one derived from its content."""
    outputs_b: dict[str, Any] | None = None
    """A pairwise record's output B (`outputs` holds output A)."""
    fingerprint: bytes | None = field(default=None, compare=False)
    """A digest of the line the record was read from (JSONL), to spot a line repeated exactly at little cost."""
    at: str | None = field(default=None, compare=False)
    """Where the record is when a line number alone does not say it (a JSON path inside a platform export)."""


def _error(where: str, line: int, problem: str) -> ImportFormatError:
    return ImportFormatError(
        f"{where}:{line}: {problem}. Fix that line and import again; nothing from this file was stored."
    )


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _check_file(path: Path) -> None:
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError as e:  # e.g. a name longer than the OS allows: is_dir() raises instead of answering
        raise ImportFormatError(
            f"Cannot use the path {str(path)[:200]!r}{'…' if len(str(path)) > 200 else ''}: "
            f"{e.strerror or e}. Check the path; it is read by the machine running align-mcp."
        ) from e
    if is_dir:
        raise ImportFormatError(
            f"{path} is a directory, not a file. Pass the path of a .jsonl or .csv file inside it."
        )
    if not exists:
        raise ImportFormatError(
            f"No file at {path}. Check the path; it is read by the machine running align-mcp."
        )
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise ImportFormatError(
            f"Cannot read {path}: {e.strerror or e}. Check the file's permissions; "
            "it is read by the machine running align-mcp."
        ) from e
    if not stat.S_ISREG(mode):
        # Reading a named pipe or a device blocks until a writer shows up, or forever: never open one.
        raise ImportFormatError(
            f"{path} is {_special_kind(mode)}, not a regular file; runs are imported from regular files only. "
            "Save the runs to a .jsonl or .csv file and import that."
        )


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _open(path: Path) -> IO[bytes]:
    _check_file(path)
    try:
        return path.open("rb")
    except OSError as e:
        raise ImportFormatError(
            f"Cannot read {path}: {e.strerror or e}. Check the file's permissions; "
            "it is read by the machine running align-mcp."
        ) from e


def detect_format(path: Path) -> Format:
    """The file's format from its extension, else from its first non-blank byte ('{' means JSONL)."""
    path = path.expanduser()
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix in _CSV_SUFFIXES:
        return "csv"
    with _open(path) as f:
        head = f.read(64 * 1024)
        while head:
            stripped = head.removeprefix(_BOM).lstrip()
            if stripped:
                if stripped.startswith(b"{"):
                    return "jsonl"
                break
            head = f.read(64 * 1024)
    raise ImportFormatError(
        f"Cannot tell the format of {path}. Supported: {_SUPPORTED}. "
        "Rename the file with one of those extensions."
    )


def read_runs(path: Path, fmt: Format | None = None) -> Iterator[ParsedRun]:
    """Stream the runs of a JSONL or CSV file, one at a time, in file order.

    The path is checked and the format detected now; the file is read lazily as the iterator is consumed, and
    the first bad record raises ImportFormatError naming its line.
    """
    path = path.expanduser()
    _check_file(path)
    fmt = fmt or detect_format(path)
    return _read_jsonl(path) if fmt == "jsonl" else _read_csv(path)


def _lines(f: IO[bytes], where: str) -> Iterator[tuple[int, str]]:
    """Each line decoded as UTF-8 (BOM dropped), with its 1-based number; line endings are kept."""
    limit = MAX_LINE_BYTES
    number = 0
    while True:
        raw = f.readline(limit + 2)  # room for "\r\n" after a line of exactly `limit` bytes
        if not raw:
            return
        number += 1
        if len(raw.rstrip(b"\r\n")) > limit:
            raise _error(
                where, number, f"the line is longer than {_size(limit)}, the most one record may hold"
            )
        if number == 1:
            raw = raw.removeprefix(_BOM)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            column = len(raw[: e.start].decode("utf-8")) + 1
            raise _error(
                where,
                number,
                f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {column}); save the file as UTF-8",
            ) from e
        yield number, text


def _size(n: int) -> str:
    mib = 1024 * 1024
    return f"{n // mib} MiB" if n % mib == 0 else f"{n} bytes"


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON; write null or a number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(
            f"the number {text[:40]} is too large to store (it would become Infinity, which is not JSON); "
            "write it as a string, or a smaller number"
        )
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
"""One decoder for every line (json.loads with hooks would build a new one per call)."""


def _decode_line(where: str, number: int, text: str) -> object:
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise _error(where, number, f"invalid JSON ({e.msg} at column {e.colno})") from e
    except (ValueError, RecursionError) as e:
        raise _error(where, number, f"invalid JSON ({e})") from e


def json_lines(path: Path) -> Iterator[tuple[int, object]]:
    """Each non-blank line of a JSON Lines file as a JSON value, with its 1-based number.

    The path must be a regular file; a line that is too long, not UTF-8 or not JSON raises ImportFormatError
    naming it. The values are not checked with value_problem: the caller checks each record it takes.
    """
    where = str(path)
    with _open(path) as f:
        for number, text in _lines(f, where):
            if text.strip():
                yield number, _decode_line(where, number, text)


def first_line(path: Path) -> str | None:
    """The file's first non-blank line (BOM dropped), or None for a blank file; raises like json_lines."""
    where = str(path)
    with _open(path) as f:
        for _number, text in _lines(f, where):
            if text.strip():
                return text
    return None


MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
"""The largest file read whole as one JSON document (an export that is not one record per line)."""


def read_json_document(path: Path) -> object:
    """The whole file as one JSON value (a JSON array or object, possibly spread over many lines).

    Raises ImportFormatError naming the line and column of invalid UTF-8 or JSON, or a file over
    MAX_DOCUMENT_BYTES. The values are not checked with value_problem: the caller checks each record it takes.
    """
    where = str(path)
    limit = MAX_DOCUMENT_BYTES
    with _open(path) as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise ImportFormatError(
            f"{where}: the file is larger than {_size(limit)}, the most read as one JSON document. Export it as "
            "JSON Lines (one record per line), which has no size limit, and import that."
        )
    raw = raw.removeprefix(_BOM)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        line_start = raw.rfind(b"\n", 0, e.start) + 1
        column = len(raw[line_start : e.start].decode("utf-8", errors="replace")) + 1
        raise _error(
            where,
            line,
            f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {column}); save the file as UTF-8",
        ) from e
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise _error(where, e.lineno, f"invalid JSON ({e.msg} at column {e.colno})") from e
    except (ValueError, RecursionError) as e:
        raise _error(where, 1, f"invalid JSON ({e})") from e


def _read_jsonl(path: Path) -> Iterator[ParsedRun]:
    where = str(path)
    with _open(path) as f:
        for number, text in _lines(f, where):
            if not text.strip():
                continue
            obj = _decode_line(where, number, text)
            if isinstance(obj, list) and number == 1:
                raise _error(
                    where,
                    number,
                    "not a JSON object (got an array); this looks like a JSON array file, but each line must "
                    "be one JSON object (convert with: jq -c '.[]' file.json > file.jsonl)",
                )
            if isinstance(obj, dict) and (problem := _jsonl_value_problem(obj, text)) is not None:
                raise _error(where, number, problem)
            fingerprint = hashlib.blake2b(text.strip().encode("utf-8"), digest_size=16).digest()
            yield parse_record(obj, number, where, checked=True, fingerprint=fingerprint)


def parse_record(
    obj: object, line: int, where: str, *, checked: bool = False, fingerprint: bytes | None = None
) -> ParsedRun:
    """Normalize one JSON object (native, plain, or a LangSmith run / experiment row) into a ParsedRun.

    Values the store cannot hold (see value_problem) are refused, unless the caller `checked` them already.

    Raises ImportFormatError as "{where}:{line}: {problem}. Fix that line ...".
    """
    if not isinstance(obj, dict):
        raise _error(where, line, f"not a JSON object (got {_kind(obj)})")
    problem = None if checked else value_problem(obj)
    if problem is not None:
        raise _error(where, line, problem)
    run = obj.get("run")
    if isinstance(run, dict) and "outputs" not in obj and "output" not in obj:
        return replace(_parse_experiment_row(obj, run, line, where), fingerprint=fingerprint)
    return _parse_run(
        obj, line, where, langsmith=bool(_LANGSMITH_MARKERS & obj.keys()), fingerprint=fingerprint
    )


MAX_DEPTH = 64
"""How many objects and arrays a record may nest, itself included: deeper ones cannot be shown to a judge."""
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def value_problem(value: object) -> str | None:
    """Why a JSON value cannot be stored and shown to a judge, or None: nesting deeper than MAX_DEPTH, a string
    or key with a lone surrogate (not Unicode, so not UTF-8), or a number that is not finite."""
    return _locate_problem(value)


def _jsonl_value_problem(value: object, text: str) -> str | None:
    """value_problem for a value just parsed from the JSONL line `text`, at a fraction of its cost.

    The parser already refused non-finite numbers, and a lone surrogate can only come from a \\uD800-\\uDFFF
    escape in the line (UTF-8 cannot carry one), so the common case is a walk over the containers alone.
    """
    # Fewer brackets in the line than the limit (counting those inside strings too) cannot nest past it.
    shallow = text.count("{") + text.count("[") <= MAX_DEPTH or _within_depth(value)
    if shallow and _SURROGATE_ESCAPE.search(text) is None:
        return None
    return _locate_problem(value)


def _within_depth(value: object) -> bool:
    stack: list[tuple[dict[Any, Any] | list[Any] | tuple[Any, ...], int]] = []
    if isinstance(value, dict | list | tuple):
        stack.append((value, 1))
    while stack:
        item, depth = stack.pop()
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list | tuple):
                if depth >= MAX_DEPTH:
                    return False
                stack.append((child, depth + 1))
    return True


def _locate_problem(value: object) -> str | None:
    stack: list[tuple[object, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict | list | tuple) and len(path) >= MAX_DEPTH:
            return (
                f"the record nests objects and arrays more than {MAX_DEPTH} levels deep (at {_path(path)}); "
                f"at most {MAX_DEPTH} levels are accepted, so flatten the record or store the deep part as a string"
            )
        if isinstance(item, str):
            if (found := _SURROGATE.search(item)) is not None:
                return _surrogate_problem(f"the string at {_path(path)}", found.group())
        elif isinstance(item, float):
            if not math.isfinite(item):
                return (
                    f"the number at {_path(path)} is {item}, which is not JSON; write a finite number or null"
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and (found := _SURROGATE.search(key)) is not None:
                    return _surrogate_problem(f"a key at {_path(path)}", found.group())
                stack.append((child, (*path, str(key))))
        elif isinstance(item, list | tuple):
            stack.extend((child, (*path, str(i))) for i, child in enumerate(item))
    return None


def _surrogate_problem(what: str, char: str) -> str:
    return (
        f"{what} holds a lone surrogate (\\u{ord(char):04x}), which is not a Unicode character and cannot be "
        "stored as UTF-8; write the character itself (or both halves of its surrogate pair), or drop it"
    )


def _path(parts: tuple[str, ...]) -> str:
    if not parts:
        return "the top level"
    shown = ".".join(parts[:6]) + (f"… ({len(parts)} levels)" if len(parts) > 6 else "")
    return shown[:200]


def _parse_experiment_row(row: dict[str, Any], run: dict[str, Any], line: int, where: str) -> ParsedRun:
    # A LangSmith experiment result row: {"run": ..., "example": ..., "evaluation_results": ...}. The example's
    # outputs are the reference. evaluation_results are automated evaluator scores, not human labels, so they
    # are not read as feedback.
    example = row.get("example")
    example = example if isinstance(example, dict) else {}
    merged = dict(run)
    if merged.get("inputs") is None and example.get("inputs") is not None:
        merged["inputs"] = example["inputs"]
    if example.get("outputs") is not None:
        merged["reference_outputs"] = example["outputs"]
    base: dict[str, Any] = {}
    if isinstance(example.get("metadata"), dict):
        base.update(example["metadata"])
    if example.get("id") is not None:
        base["example_id"] = str(example["id"])
    parsed = _parse_run(merged, line, where, langsmith=True, base_metadata=base)
    if row.get("feedback") is not None:
        parsed = replace(parsed, feedback=parsed.feedback + _parse_feedback(row["feedback"], line, where))
    return parsed


def _as_dict(value: Any, wrap_key: str) -> dict[str, Any]:
    return value if isinstance(value, dict) else {wrap_key: value}


def _parse_run(
    obj: dict[str, Any],
    line: int,
    where: str,
    *,
    langsmith: bool,
    base_metadata: dict[str, Any] | None = None,
    fingerprint: bytes | None = None,
) -> ParsedRun:
    used = {"id", "metadata", "feedback"}

    if obj.get("inputs") is not None:
        inputs = _as_dict(obj["inputs"], "input")
        used.add("inputs")
    elif obj.get("input") is not None:
        inputs = {"input": obj["input"]}
        used.add("input")
    elif aliases := [k for k in _INPUT_ALIASES if obj.get(k) is not None]:
        inputs = {k: obj[k] for k in aliases}
        used.update(aliases)
    else:
        raise _error(where, line, 'missing inputs (add an "inputs" object or an "input" field)')

    outputs_b: dict[str, Any] | None = None
    if "outputs_a" in obj or "outputs_b" in obj:
        outputs, outputs_b = _pair(obj, line, where)
        used.update(("outputs_a", "outputs_b"))
    elif obj.get("outputs") is not None:
        outputs = _as_dict(obj["outputs"], "output")
        used.add("outputs")
    elif obj.get("output") is not None:
        outputs = {"output": obj["output"]}
        used.add("output")
    elif aliases := [k for k in _OUTPUT_ALIASES if obj.get(k) is not None]:
        outputs = {k: obj[k] for k in aliases}
        used.update(aliases)
    elif langsmith and "outputs" in obj and obj.get("error") is not None:
        # A LangSmith run that raised has null outputs; keep it (its error goes to metadata) rather than
        # failing the whole export.
        outputs = {}
    elif "dataset_id" in obj:
        raise _error(
            where,
            line,
            'missing outputs (add an "outputs" object or an "output" field); this looks like a LangSmith '
            "dataset example, which holds no app outputs: export the experiment's runs instead",
        )
    else:
        raise _error(where, line, 'missing outputs (add an "outputs" object or an "output" field)')

    reference: dict[str, Any] | None = None
    for key in _REFERENCE_KEYS:
        if obj.get(key) is not None:
            reference = _as_dict(obj[key], "output")
            used.add(key)
            break

    metadata: dict[str, Any] = dict(base_metadata or {})
    if langsmith:
        extra = obj.get("extra")
        if isinstance(extra, dict) and isinstance(extra.get("metadata"), dict):
            metadata.update(extra["metadata"])
        metadata.update({k: obj[k] for k in _LANGSMITH_KEPT if obj.get(k) is not None})
    else:
        # Plain records keep their other fields, as CSV keeps its other columns.
        metadata.update({k: v for k, v in obj.items() if k not in used and v is not None})
    explicit = obj.get("metadata")
    if explicit is not None and not isinstance(explicit, dict):
        raise _error(where, line, f"metadata must be an object (got {_kind(explicit)})")
    metadata.update(explicit or {})

    feedback = _parse_feedback(obj.get("feedback"), line, where)
    given = _parse_id(obj.get("id"), line, where)
    shown = outputs if outputs_b is None else {"outputs_a": outputs, "outputs_b": outputs_b}
    run_id = given or _content_id(inputs, shown, reference, line, where)
    return ParsedRun(
        line,
        run_id,
        inputs,
        outputs,
        reference,
        metadata,
        feedback,
        derived_id=given is None,
        fingerprint=fingerprint,
        outputs_b=outputs_b,
    )


def _pair(obj: dict[str, Any], line: int, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A pairwise record's two outputs (A, B); both must be there, and no plain `outputs` beside them."""
    a, b = obj.get("outputs_a"), obj.get("outputs_b")
    if a is None or b is None:
        given, missing = ("outputs_a", "outputs_b") if b is None else ("outputs_b", "outputs_a")
        raise _error(
            where,
            line,
            f'a pairwise record needs two outputs, but it has "{given}" and no "{missing}" (add "{missing}", '
            'or give a single output as "outputs")',
        )
    if obj.get("outputs") is not None or obj.get("output") is not None:
        raise _error(
            where,
            line,
            'a pairwise record has "outputs_a" and "outputs_b"; drop its "outputs" (it would be ambiguous)',
        )
    return _as_dict(a, "output"), _as_dict(b, "output")


def _parse_id(value: object, line: int, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _error(where, line, f"id must be a string or a number (got {_kind(value)})")
    text = str(value)
    if not text.strip():
        raise _error(
            where,
            line,
            'id is empty (give the run a non-empty id, or drop the "id" field to get one derived from its content)',
        )
    return text


def _content_id(
    inputs: dict[str, Any], outputs: dict[str, Any], reference: dict[str, Any] | None, line: int, where: str
) -> str:
    """A stable id for a run without one: identical content always gets the same id."""
    try:
        canonical = json.dumps(
            [inputs, outputs, reference], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
    except (TypeError, ValueError) as e:
        raise _error(where, line, f"the run holds a value that is not JSON ({e})") from e
    return "r-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _parse_feedback(value: object, line: int, where: str) -> tuple[FeedbackItem, ...]:
    if value is None:
        return ()
    items: list[FeedbackItem] = []
    if isinstance(value, dict):
        for key, entry in value.items():
            item = _feedback_item(key, entry if isinstance(entry, dict) else {"score": entry}, line, where)
            if item is not None:
                items.append(item)
    elif isinstance(value, list):
        for entry in value:
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                raise _error(
                    where,
                    line,
                    f'each feedback list item must be an object with a "key" (got {_kind(entry)})',
                )
            source = entry.get("feedback_source")
            source = source if isinstance(source, dict) else {}
            # Feedback written by an automated evaluator is a judge's verdict, not a human label.
            if source.get("type") == "model":
                continue
            item = _feedback_item(entry["key"], entry, line, where, source)
            if item is not None:
                items.append(item)
    else:
        raise _error(
            where,
            line,
            'feedback must be an object like {"correctness": {"score": 1}} or a list of {"key", "score"} '
            f"items (got {_kind(value)})",
        )
    return tuple(items)


def _feedback_item(
    key: str, entry: dict[str, Any], line: int, where: str, source: dict[str, Any] | None = None
) -> FeedbackItem | None:
    """One feedback entry, or None when it carries no score (no label was given)."""
    if not key.strip():
        raise _error(where, line, "a feedback key is empty")
    score = entry.get("score")
    if score is None:
        score = entry.get("value")
    if score is None:
        return None
    if isinstance(score, dict | list):
        raise _error(
            where, line, f"feedback {key!r} score must be a number, string or boolean (got {_kind(score)})"
        )
    comment = entry.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise _error(where, line, f"feedback {key!r} comment must be a string (got {_kind(comment)})")
    labeler = entry.get("labeler") or entry.get("created_by")
    if labeler is None and source:
        labeler = source.get("user_name") or source.get("user_id")
    split = entry.get("split")
    if split is not None and split not in ("dev", "test"):
        raise _error(where, line, f'feedback {key!r} split must be "dev" or "test" (got {split!r})')
    history = entry.get("history")
    if history is not None and not isinstance(history, list):
        raise _error(
            where, line, f"feedback {key!r} history must be an array of earlier labels (got {_kind(history)})"
        )
    return FeedbackItem(
        key,
        score,
        comment,
        None if labeler is None else str(labeler),
        _labeled_at(entry.get("labeled_at"), key, line, where),
        _rubric_version(entry.get("rubric_version"), key, line, where),
        split,
        tuple(_past_label(item, key, line, where) for item in history or ()),
    )


def _past_label(entry: object, key: str, line: int, where: str) -> PastLabel:
    if not isinstance(entry, dict) or entry.get("score") is None or isinstance(entry["score"], dict | list):
        raise _error(
            where,
            line,
            f'feedback {key!r} history items must be objects like {{"score": 1, "comment"?, "labeler"?, '
            f'"labeled_at"?}} (got {_kind(entry) if not isinstance(entry, dict) else "one without a score"})',
        )
    comment = entry.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise _error(where, line, f"feedback {key!r} history comment must be a string (got {_kind(comment)})")
    labeler = entry.get("labeler")
    return PastLabel(
        entry["score"],
        comment,
        None if labeler is None else str(labeler),
        _labeled_at(entry.get("labeled_at"), key, line, where),
        _rubric_version(entry.get("rubric_version"), key, line, where),
    )


def _labeled_at(value: object, key: str, line: int, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise _error(
            where,
            line,
            f'feedback {key!r} labeled_at must be an ISO 8601 time like "2026-05-01T12:00:00+00:00" (got {value!r})',
        )
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _rubric_version(value: object, key: str, line: int, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _error(
            where,
            line,
            f"feedback {key!r} rubric_version must be a version number, 0 or more (got {value!r})",
        )
    return value


# --- CSV ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    index: int
    target: str  # id | inputs | outputs | outputs_a | outputs_b | reference | metadata | feedback | ignore
    name: str  # key inside the target (for feedback: the feedback key)
    part: str = ""  # for feedback: score | comment | labeler; "json" for a whole-object cell


_FEEDBACK_PARTS = ("score", "comment", "labeler", "labeled_at", "rubric_version", "split", "history")


def _classify(header: list[str], line: int, where: str) -> list[_Column]:
    names = [h.strip() for h in header]
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise _error(where, line, f"the header names column {name!r} twice; give each column one name")
        seen.add(name)
    lowered = [n.lower() for n in names]
    has_inputs = any(n in ("input", "inputs") or n.startswith("inputs.") for n in lowered)
    has_outputs = any(
        n in ("output", "outputs", "outputs_a", "outputs_b")
        or n.startswith(("outputs.", "outputs_a.", "outputs_b."))
        for n in lowered
    )
    reference_alias_used = False
    columns: list[_Column] = []
    for i, (name, low) in enumerate(zip(names, lowered, strict=True)):
        prefix, _, rest = name.partition(".")
        prefix = prefix.lower()
        if not name:
            columns.append(_Column(i, "ignore", ""))
        elif low == "id":
            columns.append(_Column(i, "id", "id"))
        elif (
            prefix in ("inputs", "outputs", "outputs_a", "outputs_b", "reference_outputs", "metadata")
            and rest
        ):
            target = "reference" if prefix == "reference_outputs" else prefix
            columns.append(_Column(i, target, rest))
        elif prefix == "feedback" and rest:
            key, _, part = rest.rpartition(".")
            if key and part.lower() in _FEEDBACK_PARTS:
                columns.append(_Column(i, "feedback", key, part.lower()))
            else:
                columns.append(_Column(i, "feedback", rest, "score"))
        elif low in ("inputs", "outputs"):
            columns.append(_Column(i, low, low[:-1], "json"))
        elif low in ("outputs_a", "outputs_b"):
            # A pairwise run's two outputs, as a pairwise export writes them.
            columns.append(_Column(i, low, "output", "json"))
        elif low == "input":
            columns.append(_Column(i, "inputs", "input"))
        elif low == "output":
            columns.append(_Column(i, "outputs", "output"))
        elif low in _INPUT_ALIASES and not has_inputs:
            columns.append(_Column(i, "inputs", name))
        elif low in _OUTPUT_ALIASES and not has_outputs:
            columns.append(_Column(i, "outputs", name))
        elif low in _REFERENCE_KEYS and not reference_alias_used:
            reference_alias_used = True
            part = "json" if low in ("reference_outputs", "expected_outputs") else ""
            columns.append(_Column(i, "reference", "output", part))
        else:
            columns.append(_Column(i, "metadata", name))
    targets = {c.target for c in columns}
    if {"outputs_a", "outputs_b"} & targets:
        targets.add("outputs")
    missing = [t for t in ("inputs", "outputs") if t not in targets]
    if missing:
        found = ", ".join(repr(n) for n in names if n) or "none"
        raise _error(
            where,
            line,
            f"the header has no {' or '.join(missing)} column (found: {found}; expected "
            '"input" or "inputs.<name>" columns, and "output" or "outputs.<name>" columns)',
        )
    return columns


def _cell_object(text: str, wrap_key: str) -> dict[str, Any]:
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    return {wrap_key: text}


def _csv_score(text: str) -> object:
    text = text.strip()
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _row_record(columns: list[_Column], row: list[str], line: int, where: str) -> dict[str, Any]:
    record: dict[str, Any] = {"inputs": {}, "metadata": {}}
    reference: dict[str, Any] = {}
    feedback: dict[str, dict[str, Any]] = {}
    for column, cell in zip(columns, row, strict=True):
        if cell == "":
            continue
        if column.target == "ignore":
            raise _error(
                where, line, f"column {column.index + 1} holds a value but has no name in the header"
            )
        if column.target == "id":
            record["id"] = cell
        elif column.target == "feedback":
            value: object = _csv_score(cell) if column.part == "score" else cell
            if column.part == "history":
                value = _history_cell(cell, column.name, line, where)
            feedback.setdefault(column.name, {})[column.part] = value
        else:
            bucket = reference if column.target == "reference" else record.setdefault(column.target, {})
            if column.part == "json":
                bucket.update(_cell_object(cell, column.name))
            else:
                bucket[column.name] = cell
    if "outputs_a" not in record and "outputs_b" not in record:
        record.setdefault("outputs", {})
    if reference:
        record["reference_outputs"] = reference
    if feedback:
        record["feedback"] = feedback
    return record


def _history_cell(text: str, key: str, line: int, where: str) -> object:
    """A CSV `feedback.<key>.history` cell: the JSON array of earlier labels an export writes."""
    try:
        return json.loads(text)
    except ValueError as e:
        raise _error(
            where, line, f"feedback {key!r} history must be a JSON array of earlier labels ({e})"
        ) from e


def _read_csv(path: Path) -> Iterator[ParsedRun]:
    # Lines are decoded one at a time (not through io.TextIOWrapper, which decodes 8 KiB chunks ahead of the
    # csv reader) so invalid UTF-8 is reported on its own line and column.
    where = str(path)
    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with _open(path) as f:
        reader = csv.reader((text for _, text in _lines(f, where)), delimiter=delimiter, strict=True)
        columns: list[_Column] | None = None
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                problem = f"invalid CSV ({e})"
                if "unexpected end of data" in str(e):
                    problem = f"a quoted field starting on this line is never closed (invalid CSV: {e})"
                raise _error(where, start, problem) from e
            if not any(row):
                continue
            if columns is None:
                columns = _classify(row, start, where)
                continue
            if len(row) != len(columns):
                raise _error(
                    where,
                    start,
                    f"the row has {len(row)} fields but the header has {len(columns)}; "
                    "quote fields that contain the delimiter",
                )
            yield parse_record(_row_record(columns, row, start, where), start, where)
        if columns is None:
            raise _error(where, 1, "no header row (a CSV file starts with a header such as: id,input,output)")
