"""Juries: which combine rule fits which score type, each member's own settings, and one verdict from many.

The rules, exactly:
- `majority` (binary, categorical, pairwise): the most frequent verdict. A tie between the top verdicts goes to
  the first of them in the score type's order, so a binary tie is 0 (fail: a split jury does not pass an
  output); in pairwise, a tie between the top verdicts is `tie`.
- `mean` (ordinal): the mean of the verdicts rounded half up (3.5 -> 4, 2.49 -> 2).
- `median` (ordinal): the median; with an even number of verdicts the lower of the two middle ones (a verdict a
  member gave, never a half-point).
- `any_fail` (binary): 0 when any member says 0, else 1.
A member whose call failed is left out; the example is judged by the members that answered, and is an error only
when none did. Members share the evaluator's prompt (the draft, or the version's) unless they have their own, so
the optimizer rewrites the shared prompt and leaves a member's own prompt as it is. A member's own prompt that
shows {{few_shot_examples}} is shown the same examples as the shared prompt (engine/few_shot.py fills both).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence

from align_mcp.core.models import Combine, JudgeSettings, JuryMember, Score, ScoreType, api_key_env_problem

COMBINE_RULES: dict[str, tuple[str, ...]] = {
    "majority": ("binary", "categorical", "pairwise"),
    "mean": ("ordinal",),
    "median": ("ordinal",),
    "any_fail": ("binary",),
}
"""Each combine rule and the score kinds it fits."""
MIN_MEMBERS = 2


def jury_problem(settings: JudgeSettings, score_type: ScoreType) -> str | None:
    """Why these settings are not a valid jury for this score type, or None (also None for a single judge)."""
    if not settings.members and settings.combine is None:
        return None
    if len(settings.members) < MIN_MEMBERS:
        return (
            f"A jury needs at least {MIN_MEMBERS} members; got {len(settings.members)}. Add members, or clear "
            "combine for a single judge."
        )
    if settings.combine is None:
        fits = [rule for rule, kinds in COMBINE_RULES.items() if score_type.kind in kinds]
        return f"A jury needs a combine rule; for a {score_type.kind} evaluator use {' or '.join(fits)}."
    kinds = COMBINE_RULES[settings.combine]
    if score_type.kind not in kinds:
        fits = [rule for rule, k in COMBINE_RULES.items() if score_type.kind in k]
        return (
            f"combine={settings.combine!r} does not fit a {score_type.kind} evaluator (it is for "
            f"{' and '.join(kinds)} only); use {' or '.join(fits)}."
        )
    if score_type.kind == "pairwise" and score_type.swap:
        return (
            "A jury does not judge in both orders yet: a position-swapped pairwise evaluator takes one judge. "
            "Create the evaluator with position swap off for a jury, or clear members and combine."
        )
    for member in settings.members:
        if member.api_key_env is not None and (problem := api_key_env_problem(member.api_key_env)):
            return f"Jury member {member.model!r}: {problem}"
    return None


def member_settings(settings: JudgeSettings, member: JuryMember) -> JudgeSettings:
    """The single-judge settings one member is called with: the evaluator's, overridden by the member's own."""
    update: dict[str, object] = {"model": member.model, "members": [], "combine": None}
    if member.base_url is not None:
        update["base_url"] = member.base_url
        # A member at another endpoint never inherits the evaluator's key variable unless it names one.
        update["api_key_env"] = member.api_key_env
    elif member.api_key_env is not None:
        update["api_key_env"] = member.api_key_env
    if member.temperature is not None:
        update["temperature"] = member.temperature
    return settings.model_copy(update=update)


def lead_settings(settings: JudgeSettings) -> JudgeSettings:
    """The one model that speaks for a jury where a single model is needed (the optimizer's reflection, failure
    analysis, triage): the evaluator's own model when it names one, else the first member. A single judge's
    settings are returned as they are."""
    if not settings.members:
        return settings
    if settings.model is not None:
        return settings.model_copy(update={"members": [], "combine": None})
    return member_settings(settings, settings.members[0])


def member_label(member: JuryMember, index: int) -> str:
    """How reports name a member: its model, with its position when two members share a model."""
    return f"{index + 1}:{member.model}"


def combine(rule: Combine, score_type: ScoreType, verdicts: Sequence[Score]) -> Score:
    """One verdict from the members' verdicts (at least one) by `rule`; see the module docstring."""
    if not verdicts:
        raise ValueError("combine needs at least one verdict")
    if rule == "any_fail":
        return 0 if any(v == 0 for v in verdicts) else 1
    if rule == "mean":
        numbers = [int(v) for v in verdicts]
        return math.floor(sum(numbers) / len(numbers) + 0.5)
    if rule == "median":
        return int(statistics.median_low([int(v) for v in verdicts]))
    counts = Counter(verdicts)
    top = max(counts.values())
    tied = [v for v, n in counts.items() if n == top]
    if len(tied) == 1:
        return tied[0]
    values = score_type.values()
    if score_type.kind not in ("binary", "categorical", "ordinal") and "tie" in values:
        return "tie"
    return min(tied, key=lambda v: values.index(v) if v in values else len(values))


def jury_verdict(
    rule: Combine, score_type: ScoreType, members: Sequence[tuple[str, Score | None, str | None, str | None]]
) -> tuple[Score | None, str | None, str | None]:
    """(score, reasoning, error) of one example from its members' (label, score, reasoning, error): the rule over
    the members that answered, one line per member as the reasoning; an error only when none answered."""
    answered = [score for _, score, _, error in members if error is None and score is not None]
    if not answered:
        return None, None, "every jury member failed: " + "; ".join(f"{n}: {e}" for n, _, _, e in members)
    lines = [
        f"[{n}] {score}: {reasoning or ''}".rstrip() if error is None else f"[{n}] error: {error}"
        for n, score, reasoning, error in members
    ]
    return combine(rule, score_type, answered), "\n".join(lines), None


def split(verdicts: Sequence[Score]) -> bool:
    """Whether the members that answered disagree."""
    return len(set(verdicts)) > 1
