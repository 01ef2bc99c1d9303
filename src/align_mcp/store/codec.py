"""How values are encoded in the store's columns: compact JSON text, scores, and ISO-8601 UTC timestamps."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from align_mcp.core.models import JudgeSettings, Score


def now_iso() -> str:
    """The current time as the store writes it (ISO 8601, UTC)."""
    return datetime.now(UTC).isoformat()


def parse_time(text: str) -> datetime:
    """A stored timestamp (written by now_iso) as a datetime."""
    return datetime.fromisoformat(text)


def dumps(value: Any) -> str:
    """A value as the store's JSON text: compact, UTF-8 kept as is, key order kept."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | None) -> Any:
    """A JSON column's value; NULL is None."""
    return None if text is None else json.loads(text)


_SCORES: dict[str, Score] = {}
_SCORES_MAX = 4096


def load_score(text: str) -> Score:
    """A score column's value.

    Scores are a few distinct scalars repeated over thousands of rows, so decoded ints and strings are memoized:
    a hit costs a dict lookup instead of a JSON parse. Anything else (never a valid score) is parsed each time.
    """
    try:
        return _SCORES[text]
    except KeyError:
        value: Score = json.loads(text)
        if isinstance(value, int | str) and len(_SCORES) < _SCORES_MAX:
            _SCORES[text] = value
        return value


_JUDGES: dict[str, JudgeSettings] = {}
_JUDGES_MAX = 256


def judge_matches(text: str, judge: JudgeSettings) -> bool:
    """Whether a stored judge-settings column holds these settings, however its JSON is spelled.

    A store holds a few distinct settings texts, compared again on every evaluator read, so each is decoded
    once; the decoded settings are only compared here, never handed out, so nobody can change a shared one.
    """
    stored = _JUDGES.get(text)
    if stored is None:
        stored = JudgeSettings.model_validate_json(text)
        if len(_JUDGES) < _JUDGES_MAX:
            _JUDGES[text] = stored
    return stored == judge
