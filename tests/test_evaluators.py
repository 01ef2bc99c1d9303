"""Evaluators: creation, the mutable draft, immutable saved versions, restore, diff and judge settings."""

from __future__ import annotations

import pytest

from align_mcp.core.models import JudgeSettings, ScoreType
from align_mcp.engine import evaluators
from align_mcp.errors import Conflict, InvalidInput, NextStep, NotFound, NothingToSave
from align_mcp.store import Store
from conftest import ROOT

PROMPTS = ROOT / "prompts"
BINARY = ScoreType(kind="binary")
SMALL_PROMPT = "Grade the answer.\nBe strict.\n{{outputs}}\n"


@pytest.fixture
def small(store: Store) -> Store:
    """A store with evaluator 'small', whose v1 is SMALL_PROMPT."""
    evaluators.create(store, "small", BINARY, prompt=SMALL_PROMPT)
    return store


@pytest.mark.parametrize(
    ("score_type", "filled"),
    [
        (BINARY, {}),
        (ScoreType(kind="categorical", labels=["good", "ok", "bad"]), {"labels": "good, ok, bad"}),
        (ScoreType(kind="ordinal", min=1, max=5), {"min": "1", "max": "5"}),
    ],
    ids=["binary", "categorical", "ordinal"],
)
def test_a_new_evaluator_starts_from_the_default_prompt_saved_as_v1(
    store: Store, score_type: ScoreType, filled: dict[str, str]
) -> None:
    expected = (PROMPTS / f"{score_type.kind}.md").read_text(encoding="utf-8")
    for key, value in {"feedback_key": "helpfulness", **filled}.items():
        assert "{{" + key + "}}" in expected
        expected = expected.replace("{{" + key + "}}", value)

    ev = evaluators.create(store, "helper", score_type, feedback_key="helpfulness")

    assert (ev.name, ev.feedback_key, ev.score_type) == ("helper", "helpfulness", score_type)
    assert ev.draft == expected
    assert "{{outputs}}" in ev.draft
    assert ev.draft_differs is False
    assert [(v.version, v.message) for v in ev.versions] == [(1, "initial prompt")]
    v1 = evaluators.get_version(store, "helper", 1)
    assert (v1.prompt, v1.judge, v1.message) == (expected, JudgeSettings(), "initial prompt")


def test_the_feedback_key_defaults_to_the_name_and_a_given_prompt_and_judge_are_kept(store: Store) -> None:
    judge = JudgeSettings(model="judge-model", temperature=0.5, reasoning=False)

    ev = evaluators.create(
        store, "tone", BINARY, prompt=SMALL_PROMPT, judge=judge, description="Tone of voice"
    )

    assert (ev.feedback_key, ev.draft, ev.judge, ev.description) == (
        "tone",
        SMALL_PROMPT,
        judge,
        "Tone of voice",
    )
    assert evaluators.get_version(store, "tone", 1).judge == judge


def test_an_unknown_evaluator_error_names_the_known_ones(store: Store) -> None:
    with pytest.raises(NotFound) as raised:
        evaluators.get(store, "tone")
    assert str(raised.value) == ("No evaluator named 'tone'. There are no evaluators yet.")
    assert raised.value.next_steps == (NextStep("create_evaluator"),)

    evaluators.create(store, "correctness", BINARY)
    evaluators.create(store, "helpfulness", BINARY)
    with pytest.raises(NotFound) as raised:
        evaluators.get(store, "tone")
    assert str(raised.value) == ("No evaluator named 'tone'. Known: correctness, helpfulness.")
    assert raised.value.next_steps == (NextStep("create_evaluator"),)


def test_a_taken_name_is_refused(small: Store) -> None:
    with pytest.raises(Conflict) as raised:
        evaluators.create(small, "small", ScoreType(kind="ordinal", min=1, max=3))

    assert str(raised.value) == ("An evaluator named 'small' already exists; pick another name.")
    assert raised.value.next_steps == (NextStep("show_evaluator", {"evaluator": "small"}),)
    assert evaluators.get(small, "small").score_type == BINARY


@pytest.mark.parametrize(
    "name", ["", "has space", "-leading-dash", "a" * 65, "slash/name", "ünïcode", "neweval\n", "a\n"]
)
def test_an_invalid_name_is_refused(store: Store, name: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        evaluators.create(store, name, BINARY)

    assert str(raised.value) == (
        f"Evaluator name {name!r} is not allowed: use 1–64 letters, digits, '_', '-' or '.', starting with a "
        "letter or digit."
    )
    assert store.evaluator_names() == []


def test_names_with_digits_dots_dashes_and_underscores_are_allowed(store: Store) -> None:
    evaluators.create(store, "v2.correctness_strict-en", BINARY)
    evaluators.create(store, "a" * 64, BINARY)

    assert store.evaluator_names() == ["a" * 64, "v2.correctness_strict-en"]


def test_a_feedback_key_longer_than_128_characters_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInput) as raised:
        evaluators.create(store, "long", BINARY, feedback_key="k" * 129)

    assert str(raised.value) == f"Feedback key {'k' * 129!r} must be 1–128 characters."


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"kind": "categorical", "labels": ["only"]},
            "A categorical score type needs at least two labels, e.g. labels=good,ok,bad.",
        ),
        (
            {"kind": "categorical"},
            "A categorical score type needs at least two labels, e.g. labels=good,ok,bad.",
        ),
        (
            {"kind": "categorical", "labels": ["good", "bad", "good"]},
            "Categorical labels must be distinct; got ['good', 'bad', 'good'].",
        ),
        (
            {"kind": "ordinal", "min": 5, "max": 5},
            "An ordinal score type needs min < max (got min=5, max=5), e.g. 1..5.",
        ),
        (
            {"kind": "ordinal", "min": 5, "max": 1},
            "An ordinal score type needs min < max (got min=5, max=1), e.g. 1..5.",
        ),
        ({"kind": "ordinal"}, "An ordinal score type needs min < max (got min=None, max=None), e.g. 1..5."),
    ],
)
def test_an_impossible_score_type_is_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        ScoreType.model_validate(fields)

    assert str(raised.value) == message


def test_editing_the_draft_leaves_the_saved_versions_alone(small: Store) -> None:
    ev = evaluators.update_draft(small, "small", prompt="Grade kindly.\n{{outputs}}\n")

    assert ev.draft == "Grade kindly.\n{{outputs}}\n"
    assert ev.draft_differs is True
    assert [v.version for v in ev.versions] == [1]
    assert evaluators.get_version(small, "small", 1).prompt == SMALL_PROMPT


def test_find_and_replace_changes_the_one_matching_passage(small: Store) -> None:
    ev = evaluators.update_draft(small, "small", replace=("Be strict.", "Be strict about numbers."))

    assert ev.draft == "Grade the answer.\nBe strict about numbers.\n{{outputs}}\n"


def test_find_and_replace_text_that_does_not_occur_is_refused(small: Store) -> None:
    with pytest.raises(InvalidInput) as raised:
        evaluators.update_draft(small, "small", replace=("Be lenient.", "Be kind."))

    assert str(raised.value) == (
        "The text to replace does not occur in the draft of 'small': 'Be lenient.'. Quote a passage that occurs "
        "exactly once, or replace the whole prompt."
    )
    assert raised.value.next_steps == (NextStep("show_draft", {"evaluator": "small"}),)
    assert evaluators.get(small, "small").draft == SMALL_PROMPT


def test_find_and_replace_text_that_occurs_more_than_once_is_refused(small: Store) -> None:
    with pytest.raises(InvalidInput) as raised:
        evaluators.update_draft(small, "small", replace=("e ", "E "))

    assert str(raised.value) == (
        "The text to replace occurs 3 times in the draft of 'small': 'e '. Quote a passage that occurs exactly "
        "once, or replace the whole prompt."
    )
    assert evaluators.get(small, "small").draft == SMALL_PROMPT


def test_a_full_prompt_and_a_replacement_together_are_refused(small: Store) -> None:
    with pytest.raises(InvalidInput) as raised:
        evaluators.update_draft(small, "small", prompt="x {{outputs}}", replace=("Grade", "Judge"))

    assert str(raised.value) == "Give either a full prompt or a find/replace edit, not both."


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (
            "Grade {{outputs}} against {{expected}} and {{input.question}}.",
            "Unknown template variable(s): {{expected}}, {{input.question}}. Use {{inputs}}, {{outputs}}, "
            "{{reference_outputs}}, {{metadata}} or dotted paths such as {{inputs.question}}.",
        ),
        (
            "Grade the answer to {{inputs.question}}.",
            "The prompt never shows the output being judged: add {{outputs}} (or a path such as "
            "{{outputs.answer}}) to the template.",
        ),
        ("  \n", "The prompt is empty. Write grading instructions that include {{outputs}}."),
        (
            "Grade {{{outputs}}}.",
            "The prompt uses triple braces ({{{outputs}}}), which align-mcp does not support; write {{outputs}}: "
            "values are always inserted as they are (never HTML-escaped).",
        ),
        (
            "{{> rubric}}\nGrade {{outputs}}.",
            "The prompt uses a partial ({{> rubric}}), which align-mcp does not support; only plain variables "
            "such as {{inputs}} or {{outputs.answer}} are filled in.",
        ),
        (
            "{{#inputs.context}}Context: {{inputs.context}}{{/inputs.context}}\nGrade {{outputs}}.",
            "The prompt uses a section ({{#inputs.context}}), which align-mcp does not support; only plain "
            "variables such as {{inputs}} or {{outputs.answer}} are filled in.",
        ),
    ],
    ids=["unknown-variable", "no-outputs", "empty", "triple-braces", "partial", "section"],
)
def test_an_invalid_template_is_refused_and_the_draft_kept(small: Store, prompt: str, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        evaluators.update_draft(small, "small", prompt=prompt)

    assert str(raised.value) == message
    assert evaluators.get(small, "small").draft == SMALL_PROMPT


def test_a_replacement_that_removes_the_outputs_is_refused(small: Store) -> None:
    with pytest.raises(InvalidInput, match="never shows the output being judged"):
        evaluators.update_draft(small, "small", replace=("{{outputs}}", "the answer"))

    assert evaluators.get(small, "small").draft == SMALL_PROMPT


def test_a_new_evaluator_with_an_invalid_prompt_is_not_created(store: Store) -> None:
    with pytest.raises(InvalidInput, match="never shows the output being judged"):
        evaluators.create(store, "broken", BINARY, prompt="Grade {{inputs}}.")

    assert store.evaluator_names() == []


def test_dotted_paths_into_known_roots_are_accepted(small: Store) -> None:
    prompt = "Q: {{inputs.question}}\nA: {{ outputs.answer }}\nRef: {{reference_outputs.answer}} {{metadata.topic}}"

    assert evaluators.update_draft(small, "small", prompt=prompt).draft == prompt


def test_saving_creates_the_next_version_with_its_message(small: Store) -> None:
    evaluators.update_draft(small, "small", replace=("Be strict.", "Be very strict."))

    v2 = evaluators.save(small, "small", "stricter wording")

    assert (v2.version, v2.message, v2.prompt) == (
        2,
        "stricter wording",
        "Grade the answer.\nBe very strict.\n{{outputs}}\n",
    )
    ev = evaluators.get(small, "small")
    assert ev.draft_differs is False
    assert [(v.version, v.message) for v in ev.versions] == [(1, "initial prompt"), (2, "stricter wording")]
    assert evaluators.get_version(small, "small", 1).prompt == SMALL_PROMPT


def test_saving_an_unchanged_draft_is_refused(small: Store) -> None:
    with pytest.raises(NothingToSave) as raised:
        evaluators.save(small, "small", "again")
    assert str(raised.value) == "The draft of 'small' is identical to v1; nothing to save."
    assert raised.value.next_steps == (NextStep("update_draft", {"evaluator": "small"}),)

    evaluators.update_draft(small, "small", prompt="New.\n{{outputs}}")
    evaluators.save(small, "small")
    with pytest.raises(NothingToSave) as raised:
        evaluators.save(small, "small")
    assert str(raised.value) == "The draft of 'small' is identical to v2; nothing to save."
    assert [v.version for v in evaluators.list_versions(small, "small")] == [1, 2]


def test_editing_the_draft_back_to_the_saved_text_leaves_nothing_to_save(small: Store) -> None:
    evaluators.update_draft(small, "small", prompt="Other.\n{{outputs}}")
    ev = evaluators.update_draft(small, "small", prompt=SMALL_PROMPT)

    assert ev.draft_differs is False
    with pytest.raises(NothingToSave):
        evaluators.save(small, "small")


def test_changed_judge_settings_alone_can_be_saved(small: Store) -> None:
    ev = evaluators.update_draft(small, "small", judge={"temperature": 0.3, "model": "judge-2"})

    assert ev.draft == SMALL_PROMPT
    assert ev.draft_differs is True
    v2 = evaluators.save(small, "small", "warmer")
    assert (v2.judge.temperature, v2.judge.model) == (0.3, "judge-2")
    assert evaluators.get_version(small, "small", 1).judge == JudgeSettings()


def test_an_unknown_judge_setting_is_refused(small: Store) -> None:
    with pytest.raises(InvalidInput) as raised:
        evaluators.update_draft(small, "small", judge={"temprature": 0.3, "top_p": 1})

    assert str(raised.value) == (
        "Unknown judge setting(s): temprature, top_p. Known: model, base_url, api_key_env, temperature, "
        "reasoning, max_tokens, timeout, max_retries, members, combine."
    )
    assert evaluators.get(small, "small").judge == JudgeSettings()


def test_an_out_of_range_judge_setting_is_refused(small: Store) -> None:
    with pytest.raises(InvalidInput) as raised:
        evaluators.update_draft(small, "small", judge={"temperature": 5})

    assert str(raised.value).startswith("Invalid judge settings {'temperature': 5}: ")
    assert "less than or equal to 2" in str(raised.value)
    assert evaluators.get(small, "small").judge == JudgeSettings()


def test_restoring_a_version_copies_it_into_the_draft_only(small: Store) -> None:
    evaluators.update_draft(small, "small", prompt="Second.\n{{outputs}}", judge={"temperature": 0.7})
    evaluators.save(small, "small", "second")
    evaluators.update_draft(small, "small", prompt="Third, unsaved.\n{{outputs}}")

    ev = evaluators.restore(small, "small", 1)

    assert (ev.draft, ev.judge) == (SMALL_PROMPT, JudgeSettings())
    assert ev.draft_differs is True  # it differs from v2, the last saved version
    assert [(v.version, v.prompt) for v in evaluators.list_versions(small, "small")] == [
        (1, SMALL_PROMPT),
        (2, "Second.\n{{outputs}}"),
    ]
    assert evaluators.save(small, "small", "back to v1").version == 3


def test_restoring_an_unknown_version_names_the_known_ones(small: Store) -> None:
    with pytest.raises(NotFound) as raised:
        evaluators.restore(small, "small", 4)

    assert str(raised.value) == "Evaluator 'small' has no version 4. Known: v1."


def test_getting_an_unknown_version_names_the_known_ones(small: Store) -> None:
    evaluators.update_draft(small, "small", prompt="Second.\n{{outputs}}")
    evaluators.save(small, "small")

    with pytest.raises(NotFound) as raised:
        evaluators.get_version(small, "small", 9)

    assert str(raised.value) == "Evaluator 'small' has no version 9. Known: v1, v2."


def test_the_diff_shows_the_draft_against_the_last_saved_version(small: Store) -> None:
    assert evaluators.diff(small, "small").model_dump() == {
        "evaluator": "small",
        "base_version": 1,
        "changed": False,
        "diff": "",
    }

    evaluators.update_draft(small, "small", replace=("Grade", "Judge"), judge={"temperature": 0.3})
    d = evaluators.diff(small, "small")

    assert (d.base_version, d.changed) == (1, True)
    assert d.diff == (
        "--- v1\n"
        "+++ draft\n"
        "@@ -1,3 +1,3 @@\n"
        "-Grade the answer.\n"
        "+Judge the answer.\n"
        " Be strict.\n"
        " {{outputs}}\n"
        'judge settings: {"temperature": "0.0 -> 0.3"}\n'
    )


def test_the_diff_can_compare_with_an_older_version(small: Store) -> None:
    evaluators.update_draft(small, "small", replace=("Be strict.\n", ""))
    evaluators.save(small, "small")

    assert evaluators.diff(small, "small").changed is False
    d = evaluators.diff(small, "small", version=1)
    assert (d.base_version, d.changed) == (1, True)
    assert "\n-Be strict.\n" in d.diff


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("draft", ("draft", "Draft.\n{{outputs}}", None)),
        ("latest", ("v2", "V2.\n{{outputs}}", 2)),
        ("v1", ("v1", SMALL_PROMPT, 1)),
        (2, ("v2", "V2.\n{{outputs}}", 2)),
    ],
)
def test_a_prompt_is_found_by_draft_latest_or_version(
    small: Store, ref: str | int, expected: tuple[str, str, int | None]
) -> None:
    evaluators.update_draft(small, "small", prompt="V2.\n{{outputs}}")
    evaluators.save(small, "small")
    evaluators.update_draft(small, "small", prompt="Draft.\n{{outputs}}")

    prompt_ref, text, _, version = evaluators.prompt_for(small, "small", ref)

    assert (prompt_ref, text, version) == expected


def test_a_malformed_prompt_reference_is_refused(small: Store) -> None:
    with pytest.raises(InvalidInput) as raised:
        evaluators.prompt_for(small, "small", "newest")

    assert str(raised.value) == "Prompt 'newest' is not 'draft', 'latest' or a version such as 'v2'."


def test_evaluators_are_listed_by_name(store: Store) -> None:
    evaluators.create(store, "tone", BINARY)
    evaluators.create(store, "correctness", BINARY)

    assert [ev.name for ev in evaluators.list_all(store)] == ["correctness", "tone"]


def test_a_source_name_with_a_trailing_newline_is_refused(store: Store) -> None:
    from align_mcp.engine import ingest

    with pytest.raises(InvalidInput) as raised:
        ingest.import_runs(store, "support\n", runs=[{"inputs": {"q": "1"}, "outputs": {"a": "2"}}])

    assert str(raised.value).startswith("Source name 'support\\n' is not allowed")
    assert store.list_sources() == []


def test_categorical_labels_that_differ_only_in_case_are_refused(store: Store) -> None:
    with pytest.raises(InvalidInput) as raised:
        evaluators.create(store, "tone", ScoreType(kind="categorical", labels=["Good", "good", "bad"]))

    assert str(raised.value) == (
        "Categorical labels 'Good' and 'good' differ only in case or spaces, and scores are matched ignoring both, "
        "so a score such as 'GOOD' could mean either. Give every label a distinct name."
    )
    assert store.evaluator_names() == []


@pytest.mark.parametrize("variable", ["AWS_SECRET_ACCESS_KEY", "HOME", "OPENAI_API_KEY\n"])
def test_an_api_key_env_a_run_would_refuse_is_refused_on_create_and_on_edit(
    small: Store, variable: str
) -> None:
    message = (
        f"api_key_env={variable!r} is not allowed: name a variable ending in _API_KEY (e.g. AZURE_OPENAI_API_KEY), "
        "so no other secret can be sent to a judge endpoint."
    )
    with pytest.raises(InvalidInput) as raised:
        evaluators.create(small, "other", BINARY, judge=JudgeSettings(api_key_env=variable))
    assert str(raised.value) == message
    assert small.evaluator_names() == ["small"]

    with pytest.raises(InvalidInput) as raised:
        evaluators.update_draft(small, "small", judge={"api_key_env": variable})
    assert str(raised.value) == message
    assert evaluators.get(small, "small").judge == JudgeSettings()


def test_a_variable_ending_in_api_key_is_accepted_on_edit(small: Store) -> None:
    ev = evaluators.update_draft(small, "small", judge={"api_key_env": "AZURE_OPENAI_API_KEY"})

    assert ev.judge.api_key_env == "AZURE_OPENAI_API_KEY"


def test_a_template_path_no_stored_run_has_gets_a_note_naming_the_paths_they_have(small: Store) -> None:
    from align_mcp.engine import ingest, queues

    ingest.import_runs(
        small,
        "s",
        runs=[
            {"id": "a", "inputs": {"question": "q"}, "outputs": {"answer": "x", "score": 1}},
            {"id": "b", "inputs": {"question": "q"}, "outputs": {"answer": "y"}},
        ],
    )
    queues.add_to_queue(small, "small", source="s")

    update = evaluators.edit_draft(small, "small", prompt="Q: {{inputs.question}}\nA: {{outputs.answr}}")

    assert update.notes[0].text == (
        "None of the 2 run(s) in the queue of 'small' has {{outputs.answr}}, so the judge would see '(missing)' "
        "there. Their paths: outputs.answer, outputs.score."
    )
    assert update.notes[0].next_steps == [NextStep("show_draft", {"evaluator": "small"})]
    fixed = evaluators.edit_draft(small, "small", prompt="Q: {{inputs.question}}\nA: {{outputs.answer}}")
    assert not any("(missing)" in n.text for n in fixed.notes)


def test_a_new_evaluator_is_told_of_a_path_no_stored_run_has(store: Store) -> None:
    from align_mcp.engine import ingest

    ingest.import_runs(store, "s", runs=[{"id": "a", "inputs": {"q": "1"}, "outputs": {"answer": "2"}}])

    ev = evaluators.create(store, "strict", BINARY, prompt="{{inputs.q}} {{outputs.text}}")

    assert [n.text for n in ev.notes] == [
        "None of the 1 stored run(s) has {{outputs.text}}, so the judge would see '(missing)' there. Their "
        "paths: outputs.answer."
    ]
