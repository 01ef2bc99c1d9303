"""Judge prompt templates: the shipped prompt files, mustache-style variables, validation and rendering."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from align_mcp.core.models import ScoreType
from align_mcp.errors import InvalidInput

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
ROOTS = ("inputs", "outputs", "reference_outputs", "metadata", "outputs_a", "outputs_b")
FEW_SHOT = "few_shot_examples"
"""The variable that shows the human-corrected examples (one block, the same for every example of a run)."""
MAX_PROMPT_CHARS = 200_000


def prompt_file(name: str) -> str:
    """The text of a file shipped under prompts/ (inside the wheel, or at the root of a source checkout)."""
    packaged = resources.files("align_mcp").joinpath("prompts", name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    # Running from a source checkout: prompts/ sits at the repository root.
    return (Path(__file__).resolve().parents[3] / "prompts" / name).read_text(encoding="utf-8")


def default_prompt(score_type: ScoreType, feedback_key: str) -> str:
    """The shipped default template for a score type, with evaluator-level variables filled in."""
    text = prompt_file(f"{score_type.kind}.md")
    replacements = {
        "feedback_key": feedback_key,
        "labels": ", ".join(score_type.labels or []),
        "min": str(score_type.min),
        "max": str(score_type.max),
        "ties": "Score tie only when neither output is better in any way that matters."
        if score_type.ties
        else "There are no ties: when the two are close, pick the one that is better in what matters most.",
    }
    for key, value in replacements.items():
        text = re.sub(r"\{\{\s*" + key + r"\s*\}\}", value.replace("\\", "\\\\"), text)
    return text


def template_variables(template: str) -> list[str]:
    return [m.group(1) for m in VARIABLE.finditer(template)]


def validate_template(template: str, score_type: ScoreType | None = None) -> None:
    """Reject templates that reference unknown roots or never show the output being judged (for a pairwise
    score type: both outputs, {{outputs_a}} and {{outputs_b}})."""
    if not template.strip():
        raise InvalidInput("The prompt is empty. Write grading instructions that include {{outputs}}.")
    if len(template) > MAX_PROMPT_CHARS:
        raise InvalidInput(
            f"The prompt is {len(template):,} characters; a judge prompt may have at most {MAX_PROMPT_CHARS:,}. "
            "Keep the grading instructions and let {{inputs}} / {{outputs}} bring in each example."
        )
    _refuse_mustache_tags(template)
    variables = template_variables(template)
    _check_few_shot(template, variables)
    unknown = sorted({v for v in variables if v.split(".")[0] not in ROOTS and v != FEW_SHOT})
    if unknown:
        raise InvalidInput(
            f"Unknown template variable(s): {', '.join('{{' + v + '}}' for v in unknown)}. "
            "Use {{inputs}}, {{outputs}}, {{reference_outputs}}, {{metadata}} or dotted paths such as "
            "{{inputs.question}}."
        )
    roots = {v.split(".")[0] for v in variables}
    if (
        score_type is not None
        and score_type.kind == "pairwise"
        and not ("outputs_b" in roots and roots & {"outputs_a", "outputs"})
    ):
        raise InvalidInput(
            "A pairwise prompt shows both outputs: add {{outputs_a}} and {{outputs_b}} (or paths such as "
            "{{outputs_a.answer}}) to the template."
        )
    if not roots & {"outputs", "outputs_a", "outputs_b"}:
        raise InvalidInput(
            "The prompt never shows the output being judged: add {{outputs}} (or a path such as "
            "{{outputs.answer}}) to the template."
        )


def _check_few_shot(template: str, variables: list[str]) -> None:
    """{{few_shot_examples}} at most once, and before the example, so every request shares the prefix up to it."""
    count = variables.count(FEW_SHOT)
    if count == 0:
        return
    if count > 1:
        raise InvalidInput(
            f"The prompt shows {{{{{FEW_SHOT}}}}} {count} times; show the corrected examples once, before the example."
        )
    first = VARIABLE.search(template)
    if first is not None and first.group(1) != FEW_SHOT:
        raise InvalidInput(
            f"{{{{{FEW_SHOT}}}}} comes after {{{{{first.group(1)}}}}}: put it before every variable of the example, "
            "so all the judge's requests share the prompt up to the example (and providers can cache it)."
        )


def uses_few_shot(template: str) -> bool:
    return FEW_SHOT in template_variables(template)


def fill_few_shot(template: str, block: str) -> str:
    """The template with {{few_shot_examples}} replaced by `block`, which is kept literal: a {{variable}} quoted
    in an example's text gets a space between its braces, so rendering never fills it with the judged example."""
    literal = VARIABLE.sub(lambda m: "{ {" + m.group(0)[2:], block)
    pattern = re.compile(r"\{\{\s*" + FEW_SHOT + r"\s*\}\}")
    return pattern.sub(lambda _: literal, template)


_TAG = re.compile(r"\{\{\s*([{>#^/&!=])\s*([^}]{0,60})")
_TAG_KINDS = {
    "{": "triple braces",
    ">": "a partial",
    "#": "a section",
    "^": "an inverted section",
    "/": "a section end",
    "&": "an unescaped variable",
    "!": "a comment",
    "=": "a delimiter change",
}


def _refuse_mustache_tags(template: str) -> None:
    """Refuse the mustache tags this renderer does not implement, rather than send them to the judge verbatim."""
    found = _TAG.search(template)
    if found is None:
        return
    sigil, rest = found.group(1), found.group(2).strip().rstrip("}").strip()
    shown = found.group(0) + ("}}}" if sigil == "{" else "}}")
    hint = (
        f"write {{{{{rest}}}}}: values are always inserted as they are (never HTML-escaped)"
        if sigil in "{&" and rest
        else "only plain variables such as {{inputs}} or {{outputs.answer}} are filled in"
    )
    raise InvalidInput(
        f"The prompt uses {_TAG_KINDS[sigil]} ({shown.replace(chr(10), ' ')}), which align-mcp does not support; "
        f"{hint}."
    )


def lookup(run: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """(found, value) of a dotted path in a run dict, as render reads it (digits index lists)."""
    parts = path.split(".")
    value: Any = run.get(parts[0])
    for part in parts[1:]:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def render(template: str, run: Mapping[str, Any]) -> str:
    """Fill {{inputs}}, {{outputs.answer}}, ... from a run dict; missing paths render as '(missing)'."""

    def fill(match: re.Match[str]) -> str:
        found, value = lookup(run, match.group(1))
        return _show(value) if found else "(missing)"

    return VARIABLE.sub(fill, template)
