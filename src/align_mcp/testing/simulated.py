"""The simulated judge: a deterministic, rule-based stand-in for the judge model, for the offline demo.

As a judge it is naive: it fails refusals and hand-offs as "does not answer", and otherwise passes outputs that
share enough words with the reference output. Two instructions in the prompt switch on stricter rules: checking
numbers against the reference, and accepting a hand-off when the reference also declines. It also answers the
other structured requests align-mcp makes of a judge model (failure modes, their merge, a reflective rewrite of
the prompt, and triage), with the same rules. Every text it writes carries the ``[simulated judge]`` label.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from align_mcp.testing.completions import (
    JsonDict,
    Reply,
    prompt_text,
    schema_name,
    schema_properties,
    section,
    section_span,
)

__all__ = [
    "HANDOFF_RULE",
    "NUMBERS_RULE",
    "RULES_HEADING",
    "SIMULATED_PREFIX",
    "numbers",
    "overlap",
    "simulated_responder",
    "structured_reply",
]

SIMULATED_PREFIX = "[simulated judge] "

_HANDOFF = re.compile(
    r"\bi\s*(?:can'?t|cannot|can not|am not able|'?m not able|am unable|'?m unable)\b"
    r"|\b(?:not able|unable) to (?:help|give|advise|assist|answer|provide|offer|check|see)\b"
    r"|\bconnect you with\b|\bcontact our (?:team|staff|station)\b|\bplease contact\b"
    r"|\boutside (?:of )?what i can\b|\bnot something i can\b",
    re.IGNORECASE,
)
_NUMBER_RULE_WORDS = re.compile(
    r"\b(?:numbers?|numeric(?:al)?|prices?|amounts?|figures?|durations?|quantit(?:y|ies)|fees?)\b",
    re.IGNORECASE,
)
_NUMBER_RULE_ANCHORS = re.compile(
    r"\b(?:reference|match(?:es|ed|ing)?|exact(?:ly)?|identical|agree\w*|contradict\w*|consistent|differ\w*"
    r"|wrong|incorrect|(?:in)?accura\w+|check\w*|verif\w+|compar\w+)\b",
    re.IGNORECASE,
)
_HANDOFF_RULE = re.compile(
    r"refus|declin|hand.?off|hand(?:s|ing|ed)?[ -](?:it |them |the (?:customer|user) )?(?:off|over)"
    r"|escalat|out[ -]of[ -]scope",
    re.IGNORECASE,
)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?;])\s+|\n\s*\n|\n\s*(?:[-*+]|\d+[.)])\s+")
_NUMBER = re.compile(r"(?<![\w.])([$€£]\s?)?(\d+(?:[.,:]\d+)*)(?:[\s-]*(%|[a-z]+))?", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers him his how i if in into is it its itself just let me more most my no nor not now of off on once only or
    other our ours out over own per please same she should so some such than that the their theirs them then there
    these they this those through to too under until up very was we were what when where which while who whom why
    will with would yes you your yours hi hello thanks thank best regards dear team pedalpoint""".split()  # noqa: SIM905
)
# Fail an answer below this share of the reference output's key words as not answering what was asked.
OVERLAP_THRESHOLD = 0.3


@dataclass(frozen=True)
class _Rules:
    numbers: bool
    handoffs: bool


def _instruction_text(text: str) -> str:
    for tag in ("inputs", "outputs", "reference_outputs"):
        span = section_span(text, tag)
        if span is not None:
            text = text[: span[0]] + text[span[3] :]
    return text


def _rules(text: str) -> _Rules:
    instructions = _instruction_text(text)
    sentences = [" ".join(s.split()) for s in _SENTENCE_BREAK.split(instructions)]
    numbers = any(_NUMBER_RULE_WORDS.search(s) and _NUMBER_RULE_ANCHORS.search(s) for s in sentences)
    return _Rules(numbers=numbers, handoffs=_HANDOFF_RULE.search(instructions) is not None)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if value is None or isinstance(value, bool):
        return []
    return [str(value)]


def _section_value(text: str, tag: str) -> str | None:
    raw = section(text, tag)
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw.replace("’", "'")
    return "\n".join(_strings(parsed)).replace("’", "'")


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _key_words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 1}


def overlap(output: str, reference: str) -> float:
    """Share of the reference output's key words (stemmed, stopwords dropped) that the output also uses."""
    ref = _key_words(reference)
    return len(ref & _key_words(output)) / len(ref) if ref else 1.0


def _normalize_number(raw: str) -> str:
    if ":" in raw:
        hours, _, minutes = raw.partition(":")
        return str(int(hours)) if minutes.strip("0") == "" else f"{int(hours)}:{minutes}"
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", raw):
        raw = raw.replace(",", "")
    raw = raw.replace(",", ".")
    try:
        value = float(raw)
    except ValueError:
        return raw
    return str(int(value)) if value.is_integer() else str(value)


_UNITS = frozenset(
    """minute minutes min mins hour hours hrs h day days week weeks month months year years km kilometres kilometers
    euro euros eur percent am pm bikes bike people riders business""".split()  # noqa: SIM905
)
_SINGULAR_UNITS = frozenset(["minute", "hour", "day", "week", "month", "year", "euro"])


def numbers(text: str) -> dict[str, str]:
    """The numbers a text states, normalized (``€25.00`` -> ``25``, ``9:00`` -> ``9``), mapped to how they read."""
    found: dict[str, str] = {}
    for match in _NUMBER.finditer(text):
        currency, digits, unit = match.group(1) or "", match.group(2), match.group(3) or ""
        display = currency.strip() + digits
        if unit == "%":
            display += "%"
        elif unit.lower() in _UNITS:
            # "a 45-minute grace period" reads as "45 minutes" in a verdict.
            plural = unit.lower() in _SINGULAR_UNITS and _normalize_number(digits) != "1"
            display += " " + unit + ("s" if plural else "")
        found.setdefault(_normalize_number(digits), display)
    return found


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _score_values(body: JsonDict) -> tuple[object, object]:
    """The (pass, fail) scores the request's schema allows: 1/0 for binary, ends of an enum or integer range."""
    props = schema_properties(body)
    score = props.get("score") if props is not None else None
    if isinstance(score, dict):
        enum = score.get("enum")
        if isinstance(enum, list) and enum:
            if all(isinstance(v, int) for v in enum):
                return max(enum), min(enum)
            return enum[0], enum[-1]
        low, high = score.get("minimum"), score.get("maximum")
        if isinstance(low, int) and isinstance(high, int):
            return high, low
    return 1, 0


def _judge(text: str) -> tuple[bool, str]:
    rules = _rules(text)
    output = _section_value(text, "outputs")
    if output is None:
        return True, "The prompt has no <outputs> section to judge, so the output passes by default."
    reference = _section_value(text, "reference_outputs")
    if reference is not None and reference.strip() in ("", "null", "{}"):
        reference = None
    output_hands_off = _HANDOFF.search(output) is not None
    reference_hands_off = reference is not None and _HANDOFF.search(reference) is not None

    if output_hands_off:
        if rules.handoffs and reference_hands_off:
            return True, (
                "The request is out of scope and the output declines it and points the customer elsewhere, as "
                "the reference output also does; declining is the correct answer here."
            )
        if rules.handoffs and reference is not None:
            return False, (
                "The output hands the customer off, but this request is in scope: the reference output answers "
                f'it ("{_quote(reference)}").'
            )
        return False, (
            f'The output does not answer the question; it declines or hands the customer off ("{_quote(output)}").'
        )
    if reference is None:
        return True, "The output answers the question; there is no reference output to compare it with."
    if rules.handoffs and reference_hands_off:
        return False, (
            "The reference output declines this request as out of scope, but the output answers it anyway "
            f'("{_quote(output)}").'
        )
    if rules.numbers:
        stated, expected = numbers(output), numbers(reference)
        wrong = [v for k, v in stated.items() if k not in expected]
        missing = [v for k, v in expected.items() if k not in stated]
        if wrong:
            says = f"the reference says {', '.join(missing)}" if missing else "the reference does not say so"
            return (
                False,
                f"The output states {', '.join(wrong)} but {says}; a wrong number makes it incorrect.",
            )
        if missing:
            return False, f"The output leaves out {', '.join(missing)}, which the reference output gives."
    share = overlap(output, reference)
    if share < OVERLAP_THRESHOLD:
        return False, (
            f"The output shares little with the reference output ({share:.0%} of its key words); it does not "
            "address what was asked."
        )
    checked = " and its numbers match the reference" if rules.numbers and numbers(output) else ""
    return True, (
        f"The output covers the reference output's key points ({share:.0%} of its key words){checked}, answers "
        "the question, and contradicts nothing in the reference."
    )


def simulated_responder(body: JsonDict) -> Reply:
    """A deterministic rule-based judge for offline demos; every reasoning starts with ``[simulated judge] ``.

    Base behaviour: fail refusals and hand-offs as not answering the question; otherwise pass an output that
    shares at least 30% of the reference output's key words, and fail one that does not. Two instructions in the
    prompt (anywhere outside the example, matched case-insensitively) make it stricter:

    - a sentence naming numbers / prices / amounts / figures / durations / fees / quantities together with a
      word such as "reference", "match", "exact", "wrong" or "check": every number in the output must appear in
      the reference output and vice versa;
    - a mention of refusing, declining, hand-offs, escalation or out-of-scope requests: a hand-off passes when
      the reference output also declines, and an answer fails when the reference output declines.

    Requests for failure modes, their merge, a prompt revision or triage (told apart by the name of their JSON
    schema) get the structured reply those ask for, built from the same rules: see ``structured_reply``.
    """
    structured = structured_reply(body)
    if structured is not None:
        return Reply(content=json.dumps(structured, ensure_ascii=False))
    passed, reasoning = _judge(prompt_text(body))
    pass_score, fail_score = _score_values(body)
    return Reply(score=pass_score if passed else fail_score, reasoning=SIMULATED_PREFIX + reasoning)


# ---- the other structured requests: failure modes, their merge, a reflective rewrite, triage ----------------
#
# align-mcp asks the judge model for more than verdicts: it groups misaligned examples into failure modes, merges
# modes found in separate batches, rewrites the judge's instructions, and triages disagreements. The simulated
# judge tells these requests apart by the name of the JSON schema they ask for, and answers them with the rules
# above: an example's "cause" is what those rules see in it (a wrong figure, a correct hand-off, ...).


@dataclass(frozen=True)
class _Cause:
    name: str
    description: str
    rule: str | None  # the instruction that fixes it, in words the simulated judge's rules react to


NUMBERS_RULE = (
    "Compare every number in the output (prices, fees, durations, times, quantities) with the reference output: "
    "they must match exactly, and a wrong number makes the output incorrect."
)
HANDOFF_RULE = (
    "When a request is out of scope (legal, medical or financial advice, or unrelated to the service), politely "
    "declining and pointing the customer elsewhere is the correct answer: pass it when the reference output also "
    "declines, and fail an answer to a request the reference output declines."
)
RULES_HEADING = "Rules added by the [simulated judge] from the failure modes:"

_CAUSES = {
    "wrong_figures": _Cause(
        "Misses wrong figures",
        "The judge passes outputs whose prices, durations or times differ from the reference output; the experts "
        "fail any wrong figure.",
        NUMBERS_RULE,
    ),
    "declines_correctly": _Cause(
        "Penalises correct hand-offs",
        "The judge fails polite refusals of out-of-scope requests; the experts accept a hand-off when the "
        "reference output also declines.",
        HANDOFF_RULE,
    ),
    "answers_out_of_scope": _Cause(
        "Accepts answers to out-of-scope requests",
        "The judge passes outputs that answer requests the reference output declines; the experts fail them.",
        HANDOFF_RULE,
    ),
    "needless_hand_off": _Cause(
        "Accepts needless hand-offs",
        "The judge passes outputs that hand an in-scope question off; the experts expect the answer the reference "
        "output gives.",
        HANDOFF_RULE,
    ),
    "wording": _Cause(
        "Too literal about wording",
        "The judge fails correct answers worded differently from the reference output; the experts judge the "
        "meaning.",
        None,
    ),
    "other_pass": _Cause(
        "Passes what the experts fault",
        "The judge passes outputs the experts fail for reasons the rubric does not name, such as tone or an "
        "unhelpful answer.",
        None,
    ),
    "other_fail": _Cause(
        "Fails what the experts accept",
        "The judge fails outputs the experts pass.",
        None,
    ),
}


def _plain(value: object) -> str:
    return "\n".join(_strings(value)).replace("’", "'")


def _figures_differ(output: str, reference: str) -> tuple[list[str], list[str]]:
    """(figures the output states that the reference does not, figures of the reference the output lacks)."""
    stated, expected = numbers(output), numbers(reference)
    return [v for k, v in stated.items() if k not in expected], [
        v for k, v in expected.items() if k not in stated
    ]


def _cause(output: str, reference: str | None, human_passed: bool | None, judge_passed: bool | None) -> str:
    """Which failure mode a misaligned example shows, as the simulated judge's rules see it."""
    output_hands_off = _HANDOFF.search(output) is not None
    reference_hands_off = reference is not None and _HANDOFF.search(reference) is not None
    if output_hands_off and reference_hands_off and human_passed is not False and judge_passed is not True:
        return "declines_correctly"
    if reference_hands_off and not output_hands_off and judge_passed is not False:
        return "answers_out_of_scope"
    if output_hands_off and reference is not None and judge_passed is True:
        return "needless_hand_off"
    if reference is not None and human_passed is not True and judge_passed is not False:
        wrong, missing = _figures_differ(output, reference)
        if wrong or (missing and numbers(output)):
            return "wrong_figures"
    if judge_passed is False and reference is not None and overlap(output, reference) < OVERLAP_THRESHOLD:
        return "wording"
    return "other_fail" if judge_passed is False else "other_pass"


def _verdict_of(shown: str) -> bool | None:
    """True / False for a score shown as ``1 (pass)`` / ``0 (fail)``; None for other score types."""
    if shown.endswith("(pass)"):
        return True
    if shown.endswith("(fail)"):
        return False
    return None


_EXAMPLE = re.compile(r'<example id="(?P<id>[^"]+)">\n(?P<body>.*?)\n</example>', re.S)


@dataclass(frozen=True)
class _Example:
    run_id: str
    output: str
    reference: str | None
    human_passed: bool | None
    judge_passed: bool | None

    @property
    def cause(self) -> str:
        return _cause(self.output, self.reference, self.human_passed, self.judge_passed)


def _field(body: str, label: str) -> str | None:
    for line in body.splitlines():
        if line.startswith(label + ": "):
            return line[len(label) + 2 :].strip()
    return None


def _json_text(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return _plain(json.loads(raw))
    except ValueError:
        return raw.replace("’", "'")


def _examples(text: str) -> list[_Example]:
    """The ``<example id=...>`` blocks of an analysis or reflection request."""
    found = []
    for match in _EXAMPLE.finditer(text):
        body = match["body"]
        found.append(
            _Example(
                run_id=match["id"],
                output=_json_text(_field(body, "Output")) or "",
                reference=_json_text(_field(body, "Reference output")),
                human_passed=_verdict_of(_field(body, "Human expert's score") or ""),
                judge_passed=_verdict_of(_field(body, "Judge's score") or ""),
            )
        )
    return found


def _failure_modes(text: str) -> JsonDict:
    by_cause: dict[str, list[str]] = {}
    for example in _examples(text):
        by_cause.setdefault(example.cause, []).append(example.run_id)
    ordered = sorted(by_cause, key=lambda c: (c.startswith("other"), -len(by_cause[c]), c))
    return {
        "modes": [
            {
                "name": _CAUSES[c].name,
                "description": SIMULATED_PREFIX + _CAUSES[c].description,
                "run_ids": by_cause[c],
            }
            for c in ordered
        ]
    }


_LISTED_MODE = re.compile(r"^- (?P<key>\w+): (?P<name>.+?) \(\d+ example\(s\)\): (?P<description>.*)$", re.M)


def _merged_modes(text: str) -> JsonDict:
    groups: dict[str, list[str]] = {}
    descriptions: dict[str, str] = {}
    for match in _LISTED_MODE.finditer(text):
        groups.setdefault(match["name"], []).append(match["key"])
        descriptions.setdefault(match["name"], match["description"])
    return {
        "modes": [
            {"name": name, "description": _labelled(descriptions[name]), "members": keys}
            for name, keys in groups.items()
        ]
    }


def _labelled(text: str) -> str:
    return text if text.startswith(SIMULATED_PREFIX) else SIMULATED_PREFIX + text


def _with_rules(instructions: str, rules: Sequence[str]) -> str:
    """The instructions with a paragraph of rules after the last bullet list before the example (if any)."""
    paragraphs = instructions.split("\n\n")

    def shows_example(paragraph: str) -> bool:
        return any(f"<{tag}>" in paragraph or "{{" + tag in paragraph for tag in ("inputs", "outputs"))

    example = next((i for i, p in enumerate(paragraphs) if shows_example(p)), len(paragraphs))
    lists = [i for i, p in enumerate(paragraphs[:example]) if re.search(r"^\s*[-*] ", p, re.M)]
    at = lists[-1] + 1 if lists else example
    block = "\n".join([RULES_HEADING, *(f"- {rule}" for rule in rules)])
    return "\n\n".join([*paragraphs[:at], block, *paragraphs[at:]])


def _revision(text: str) -> JsonDict:
    instructions = section(text, "instructions") or ""
    listed = {m.group(1) for m in re.finditer(r"^- (.+?) \((?:[^()]*), \d+ example\(s\)\):", text, re.M)}
    causes = {e.cause for e in _examples(text)} | {k for k, c in _CAUSES.items() if c.name in listed}
    present = _rules(instructions)
    wanted = {_CAUSES[c].rule for c in causes if _CAUSES[c].rule is not None}
    missing = [
        rule
        for rule in (NUMBERS_RULE, HANDOFF_RULE)
        if rule in wanted and not (present.numbers if rule == NUMBERS_RULE else present.handoffs)
    ]
    named = ", ".join(sorted(_CAUSES[c].name for c in causes)) or "none"
    if not missing:
        return {
            "analysis": SIMULATED_PREFIX
            + f"The failure modes ({named}) call for no rule the instructions lack "
            "and the simulated judge knows; the instructions are unchanged.",
            "instructions": instructions,
        }
    added = " ".join(missing)
    return {
        "analysis": SIMULATED_PREFIX
        + f"The failure modes ({named}) call for {len(missing)} new rule(s), added to "
        f"the instructions: {added}",
        "instructions": _with_rules(instructions, missing),
    }


def _case_passed(score: object) -> bool | None:
    if score in (1, "pass", True):
        return True
    if score in (0, "fail", False):
        return False
    return None


_CONTRADICTS_PASS = re.compile(r"^\s*(?:wrong|incorrect|not correct|inaccurate)\b", re.I)
_CONTRADICTS_FAIL = re.compile(
    r"^\s*(?:correct|right|exactly right|accurate|all (?:the )?facts are right)\b", re.I
)


def _triage_case(case: JsonDict, rules: _Rules) -> tuple[str, str]:
    output = _plain(case.get("outputs"))
    reference = _plain(case.get("reference_outputs")) if case.get("reference_outputs") else None
    human, judge = _case_passed(case.get("human_score")), _case_passed(case.get("judge_score"))
    comment = str(case.get("human_comment") or "")
    if (human is True and _CONTRADICTS_PASS.search(comment)) or (
        human is False and _CONTRADICTS_FAIL.search(comment)
    ):
        return "label_error", (
            f'The human\'s own comment ("{_quote(comment, 60)}") contradicts the score they gave; a second '
            "labeler should look at it."
        )
    if human is True and reference is not None and rules.numbers:
        wrong, missing = _figures_differ(output, reference)
        if wrong:
            return "label_error", (
                f"The output states {', '.join(wrong)} but the reference says {', '.join(missing) or 'otherwise'}, "
                "and the rubric fails a wrong figure; the human passed it anyway."
            )
    cause = _cause(output, reference, human, judge)
    if cause == "wrong_figures":
        wrong, missing = _figures_differ(output, reference or "")
        fact = f"the output states {', '.join(wrong) or 'figures'} where the reference says {', '.join(missing) or 'otherwise'}"
        if rules.numbers:
            return (
                "judge_error",
                f"The rubric asks for figures to match the reference, and {fact}: the judge missed it.",
            )
        return "rubric_gap", (
            f"The human failed a wrong figure ({fact}), but the rubric does not say that figures must match the "
            "reference."
        )
    if cause in ("declines_correctly", "answers_out_of_scope", "needless_hand_off"):
        what = _CAUSES[cause].description.split(";")[0].removeprefix("The judge ").rstrip(".")
        if rules.handoffs:
            return (
                "judge_error",
                f"The rubric says when declining is the correct answer, yet the judge {what}.",
            )
        return (
            "rubric_gap",
            f"The judge {what}: the rubric does not say when declining is the correct answer.",
        )
    if cause == "wording":
        share = overlap(output, reference or "")
        return "judge_error", (
            f"The output gives the reference's answer in other words ({share:.0%} of its key words); the judge read "
            "the wording, not the meaning."
        )
    if cause == "other_pass" and comment:
        return (
            "rubric_gap",
            f'The human failed it for a reason the rubric does not name ("{_quote(comment, 60)}").',
        )
    return "judge_error", f'The rubric decides this case as the human did ("{_quote(comment, 60)}").'


def _triage(text: str) -> JsonDict:
    try:
        cases = json.loads(section(text, "cases") or "[]")
    except ValueError:
        cases = []
    rules = _rules(section(text, "rubric") or "")
    answers = []
    for case in cases if isinstance(cases, list) else []:
        if isinstance(case, dict) and isinstance(case.get("run_id"), str):
            category, reason = _triage_case(case, rules)
            answers.append(
                {"run_id": case["run_id"], "category": category, "reason": SIMULATED_PREFIX + reason}
            )
    return {"cases": answers}


_STRUCTURED: dict[str, Callable[[str], JsonDict]] = {
    "failure_modes": _failure_modes,
    "failure_mode_merge": _merged_modes,
    "prompt_revision": _revision,
    "triage": _triage,
}
"""The structured requests other than a verdict, by the name of the JSON schema they ask for."""


def structured_reply(body: JsonDict) -> JsonDict | None:
    """The simulated answer to a failure-mode, merge, revision or triage request; None for other requests."""
    answer = _STRUCTURED.get(schema_name(body) or "")
    return None if answer is None else answer(prompt_text(body))
