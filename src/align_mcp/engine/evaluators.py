"""Evaluators: the judge definition, its mutable prompt draft, and immutable saved versions."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from pydantic import ValidationError

from align_mcp.core.jury import jury_problem
from align_mcp.core.models import (
    DraftDiff,
    Evaluator,
    JudgeSettings,
    Note,
    PromptVersion,
    ScoreType,
    VersionSummary,
    api_key_env_problem,
)
from align_mcp.core.templates import default_prompt, lookup, template_variables, validate_template
from align_mcp.core.text import clip
from align_mcp.core.views import DraftUpdate, SavedVersion, VersionEntry, VersionList
from align_mcp.engine import few_shot
from align_mcp.engine.feedback import apply_stored_feedback
from align_mcp.errors import Conflict, InvalidInput, NextStep, NotFound, NothingToSave
from align_mcp.store import EvaluatorRow, Store, VersionRow

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""An evaluator or source name, matched whole (fullmatch: `$` would let a trailing newline through)."""
DEFAULT_DIFF_CHARS = 20_000


def check_name(name: str, what: str = "evaluator") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidInput(
            f"{what.capitalize()} name {name!r} is not allowed: use 1–64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit."
        )
    return name


def _check_judge(settings: JudgeSettings, score_type: ScoreType) -> None:
    """Refuse judge settings a run would refuse, when they are written rather than at the first run."""
    if settings.api_key_env is not None and (problem := api_key_env_problem(settings.api_key_env)):
        raise InvalidInput(problem)
    if (problem := jury_problem(settings, score_type)) is not None:
        raise InvalidInput(problem)
    for member in settings.members:
        if member.prompt is not None:
            try:
                validate_template(member.prompt, score_type)
            except InvalidInput as e:
                raise InvalidInput(f"The own prompt of jury member {member.model!r}: {e}") from e


def _row(store: Store, name: str) -> EvaluatorRow:
    row = store.get_evaluator(name)
    if row is None:
        known = store.evaluator_names()
        hint = f"Known: {', '.join(known)}." if known else "There are no evaluators yet."
        raise NotFound(f"No evaluator named {name!r}. {hint}", NextStep("create_evaluator"))
    return row


def score_type_of(store: Store, name: str) -> ScoreType:
    return _row(store, name).score_type


def create(
    store: Store,
    name: str,
    score_type: ScoreType,
    feedback_key: str | None = None,
    prompt: str | None = None,
    judge: JudgeSettings | None = None,
    description: str | None = None,
) -> Evaluator:
    """Create an evaluator and save its first prompt as version 1 (the default prompt for the score type if none)."""
    check_name(name)
    key = feedback_key or name
    if not key.strip() or len(key) > 128:
        raise InvalidInput(f"Feedback key {key!r} must be 1–128 characters.")
    if store.get_evaluator(name) is not None:
        raise Conflict(
            f"An evaluator named {name!r} already exists; pick another name.",
            NextStep("show_evaluator", {"evaluator": name}),
        )
    ambiguous = score_type.ambiguous_labels()
    if ambiguous:
        first, second = ambiguous[0]
        raise InvalidInput(
            f"Categorical labels {first!r} and {second!r} differ only in case or spaces, and scores are matched "
            "ignoring both, so a score such as "
            f"{first.strip().upper()!r} could mean either. Give every label a distinct name."
        )
    text = prompt if prompt is not None else default_prompt(score_type, key)
    validate_template(text, score_type)
    settings = judge or JudgeSettings()
    _check_judge(settings, score_type)
    with store.transaction():
        store.insert_evaluator(name, key, description, score_type, settings, text)
        store.insert_version(name, text, settings, "initial prompt")
        apply_stored_feedback(store, name, score_type, key)
    return get(store, name).model_copy(update={"notes": path_notes(store, name, text)})


PATH_SAMPLE = 1000
"""How many recent runs a template's paths are checked against."""


def path_notes(store: Store, name: str, template: str) -> list[Note]:
    """A note per dotted template path that none of the runs the evaluator will judge has (checked on up to
    PATH_SAMPLE recent ones), naming the keys those runs do have there. Such a path renders as '(missing)'."""
    paths = sorted({v for v in template_variables(template) if "." in v})
    if not paths:
        return []
    scope, runs = store.run_samples(name, PATH_SAMPLE)
    if not runs:
        return []
    where = (
        f"the {len(runs)} run(s) in the queue of {name!r}"
        if scope == "queue"
        else f"the {len(runs)} stored run(s)"
    )
    if len(runs) == PATH_SAMPLE:
        where = f"the latest {where.removeprefix('the ')}"
    notes = []
    for path in paths:
        if any(lookup(run, path)[0] for run in runs):
            continue
        parent = path.rsplit(".", 1)[0]
        keys: dict[str, None] = {}
        for run in runs:
            found, value = lookup(run, parent)
            if found and isinstance(value, dict):
                keys.update(dict.fromkeys(f"{parent}.{k}" for k in value))
            if len(keys) > 20:
                break
        have = ", ".join(list(keys)[:20]) if keys else f"nothing under {parent}"
        notes.append(
            Note(
                text=f"None of {where} has {{{{{path}}}}}, so the judge would see '(missing)' there. Their "
                f"paths: {have}.",
                next_steps=[NextStep("show_draft", {"evaluator": name})],
            )
        )
    return notes


def get(store: Store, name: str) -> Evaluator:
    row = _row(store, name)
    versions = store.versions(name)
    summaries = [_version_summary(store, name, v) for v in versions]
    latest = versions[-1] if versions else None
    differs = (
        latest is None
        or latest.prompt != row.draft
        or latest.judge != row.judge
        or few_shot.settings_differ(store, name, row.draft, row.judge, latest)
    )
    return Evaluator(
        name=row.name,
        feedback_key=row.feedback_key,
        description=row.description,
        score_type=row.score_type,
        judge=row.judge,
        draft=row.draft,
        draft_updated_at=row.draft_updated_at,
        draft_differs=differs,
        versions=summaries,
        created_at=row.created_at,
        few_shot=settings.describe() if (settings := store.draft_few_shot(name)) is not None else None,
    )


def _version_summary(store: Store, name: str, v: VersionRow) -> VersionSummary:
    # A draft run of the same prompt and settings counts: saving does not change what was measured.
    aid = store.latest_run_of_prompt(name, *few_shot.version_prompt(store, name, v))
    agreement = kappa = None
    n = None
    if aid is not None:
        run = store.alignment_run_row(aid)
        metrics = run.metrics if run else None
        if metrics:
            agreement = metrics.agreement.value
            kappa = metrics.kappa
            n = metrics.n
    return VersionSummary(
        version=v.version,
        message=v.message,
        created_at=v.created_at,
        agreement=agreement,
        kappa=kappa,
        n=n,
    )


def list_all(store: Store) -> list[Evaluator]:
    return [get(store, name) for name in store.evaluator_names()]


def judge_settings(judge: dict[str, Any], base: JudgeSettings | None = None) -> JudgeSettings:
    """`base` (default: the defaults) with the settings in `judge` changed; InvalidInput names an unknown setting
    or a bad value."""
    unknown = sorted(set(judge) - set(JudgeSettings.model_fields))
    if unknown:
        raise InvalidInput(
            f"Unknown judge setting(s): {', '.join(unknown)}. Known: {', '.join(JudgeSettings.model_fields)}."
        )
    try:
        return JudgeSettings.model_validate({**(base or JudgeSettings()).model_dump(), **judge})
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise InvalidInput(f"Invalid judge settings {judge}: {problems}.") from e


def update_draft(
    store: Store,
    name: str,
    prompt: str | None = None,
    replace: tuple[str, str] | None = None,
    judge: dict[str, Any] | None = None,
    few_shot_settings: str | None = None,
) -> Evaluator:
    """Edit the draft only: a full new prompt, or one exact find/replace, judge settings, and/or few-shot settings
    ('k=5,strategy=random,seed=1', any subset)."""
    row = _row(store, name)
    text = row.draft
    if prompt is not None and replace is not None:
        raise InvalidInput("Give either a full prompt or a find/replace edit, not both.")
    if prompt is not None:
        text = prompt
    elif replace is not None:
        old, new = replace
        count = text.count(old) if old else 0
        if count != 1:
            where = "does not occur" if count == 0 else f"occurs {count} times"
            raise InvalidInput(
                f"The text to replace {where} in the draft of {name!r}: {old[:80]!r}. Quote a passage that occurs "
                "exactly once, or replace the whole prompt.",
                NextStep("show_draft", {"evaluator": name}),
            )
        text = text.replace(old, new)
    validate_template(text, row.score_type)
    settings = row.judge
    if judge:
        settings = judge_settings(judge, settings)
        if {"api_key_env", "members", "combine"} & set(judge):
            _check_judge(settings, row.score_type)
    if few_shot_settings is not None:
        few_shot.update_settings(store, name, few_shot_settings)
    store.update_draft(name, text, settings)
    return get(store, name)


def save(store: Store, name: str, message: str | None = None) -> PromptVersion:
    """Save the draft as the next immutable version; refuse when it equals the last saved version."""
    row = _row(store, name)
    versions = store.versions(name)
    if versions:
        last = versions[-1]
        same = last.prompt == row.draft and last.judge == row.judge
        if same and not few_shot.settings_differ(store, name, row.draft, row.judge, last):
            raise NothingToSave(
                f"The draft of {name!r} is identical to v{last.version}; nothing to save.",
                NextStep("update_draft", {"evaluator": name}),
            )
    frozen = few_shot.freeze(store, name, row.draft, row.judge)
    number = store.insert_version(name, row.draft, row.judge, message, frozen)
    return get_version(store, name, number)


def get_version(store: Store, name: str, version: int) -> PromptVersion:
    _row(store, name)
    v = store.get_version(name, version)
    if v is None:
        known = [f"v{x.version}" for x in store.versions(name)]
        raise NotFound(f"Evaluator {name!r} has no version {version}. Known: {', '.join(known) or 'none'}.")
    return PromptVersion(
        evaluator=name,
        version=v.version,
        prompt=v.prompt,
        judge=v.judge,
        message=v.message,
        created_at=v.created_at,
    )


def list_versions(store: Store, name: str) -> list[PromptVersion]:
    _row(store, name)
    return [get_version(store, name, v.version) for v in store.versions(name)]


def restore(store: Store, name: str, version: int) -> Evaluator:
    """Copy a saved version into the draft (the versions themselves never change)."""
    v = get_version(store, name, version)
    frozen = store.version_few_shot(name, version)
    with store.transaction():
        store.update_draft(name, v.prompt, v.judge)
        if frozen is not None:
            store.set_draft_few_shot(name, frozen.settings)
    return get(store, name)


def diff(store: Store, name: str, version: int | None = None) -> DraftDiff:
    """Unified diff of the draft against a version (default: the last saved one)."""
    row = _row(store, name)
    versions = store.versions(name)
    base = get_version(store, name, version) if version is not None else None
    if base is None and versions:
        base = get_version(store, name, versions[-1].version)
    old = base.prompt if base else ""
    settings = row.judge
    lines = list(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            row.draft.splitlines(keepends=True),
            fromfile=f"v{base.version}" if base else "empty",
            tofile="draft",
        )
    )
    if base is not None and base.judge != settings:
        before, after = base.judge.model_dump(), settings.model_dump()
        changed = {k: (before[k], after[k]) for k in after if before[k] != after[k]}
        lines.append(
            "judge settings: " + json.dumps({k: f"{a} -> {b}" for k, (a, b) in changed.items()}) + "\n"
        )
    if base is not None:
        stored = store.get_version(name, base.version)
        if stored is not None and few_shot.settings_differ(store, name, row.draft, row.judge, stored):
            frozen = store.version_few_shot(name, base.version)
            was = frozen.settings.describe() if frozen is not None else "none"
            lines.append(f"few-shot settings: {was} -> {few_shot.settings_of(store, name).describe()}\n")
    return DraftDiff(
        evaluator=name,
        base_version=base.version if base else None,
        changed=bool(lines),
        diff="".join(lines),
    )


def prompt_for(store: Store, name: str, prompt: str | int) -> tuple[str, str, JudgeSettings, int | None]:
    """(prompt_ref, text, settings, version) for 'draft', 'v3', 3 or 'latest'."""
    row = _row(store, name)
    if prompt == "draft":
        text, judge = few_shot.draft_prompt(store, name, row.draft, row.judge)
        return "draft", text, judge, None
    if prompt == "latest":
        versions = store.versions(name)
        if not versions:
            raise NotFound(
                f"Evaluator {name!r} has no saved version yet.", NextStep("save_prompt", {"evaluator": name})
            )
        number = versions[-1].version
    elif isinstance(prompt, int):
        number = prompt
    else:
        match = re.fullmatch(r"v?(\d+)", prompt.strip())
        if not match:
            raise InvalidInput(f"Prompt {prompt!r} is not 'draft', 'latest' or a version such as 'v2'.")
        number = int(match.group(1))
    v = get_version(store, name, number)
    stored = store.get_version(name, number)
    assert stored is not None  # get_version found it
    text, judge = few_shot.version_prompt(store, name, stored)
    return f"v{v.version}", text, judge, v.version


def draft_update(store: Store, name: str, max_chars: int | None = DEFAULT_DIFF_CHARS) -> DraftUpdate:
    """The draft against the last saved version: the diff (cut at `max_chars`, if given) and what to do next."""
    d = diff(store, name)
    text, was_cut = clip(d.diff, max_chars) if max_chars is not None else (d.diff, False)
    notes = []
    if was_cut and max_chars is not None:
        notes.append(
            Note(
                text=f"The diff was cut at {max_chars} characters ({len(d.diff) - max_chars} more).",
                next_steps=[NextStep("show_draft", {"evaluator": name})],
            )
        )
    if d.changed:
        notes.append(
            Note(
                text="The draft is not saved.",
                next_steps=[
                    NextStep("run_alignment", {"evaluator": name}),
                    NextStep("save_prompt", {"evaluator": name}),
                ],
            )
        )
    else:
        notes.append(Note(text="The draft now equals the last saved version."))
    return DraftUpdate(
        evaluator=name, base_version=d.base_version, draft_differs=d.changed, diff=str(text), notes=notes
    )


def edit_draft(
    store: Store,
    name: str,
    prompt: str | None = None,
    replace: tuple[str, str] | None = None,
    judge: dict[str, Any] | None = None,
    max_chars: int | None = DEFAULT_DIFF_CHARS,
    few_shot_settings: str | None = None,
) -> DraftUpdate:
    """Edit the draft (as update_draft) and return its diff against the last saved version."""
    ev = update_draft(
        store, name, prompt=prompt, replace=replace, judge=judge, few_shot_settings=few_shot_settings
    )
    update = draft_update(store, name, max_chars)
    notes = []
    if prompt is not None or replace is not None:
        notes += path_notes(store, name, ev.draft)
    if prompt is not None or replace is not None or few_shot_settings is not None:
        notes += few_shot.draft_notes(store, name, ev.draft, ev.judge)
    if not notes:
        return update
    return update.model_copy(update={"notes": [*notes, *update.notes]})


def save_version(store: Store, name: str, message: str | None = None) -> SavedVersion:
    """Save the draft as the next version (as save) and say what that changes."""
    v = save(store, name, message)
    notes = [Note(text=f"Saved as v{v.version}. Later drafts are compared with it.")]
    frozen = store.version_few_shot(name, v.version)
    if frozen is not None:
        shown = (
            f"{len(frozen.run_ids)} example(s) ({', '.join(frozen.run_ids)})" if frozen.run_ids else "none"
        )
        notes.append(
            Note(
                text=f"Its few-shot examples are frozen ({frozen.settings.describe()}): {shown}. v{v.version} "
                "always shows these, whatever is labeled later."
            )
        )
    return SavedVersion(
        evaluator=name,
        version=v.version,
        message=v.message,
        created_at=v.created_at,
        notes=notes,
    )


def version_page(
    store: Store, name: str, include_prompts: bool = False, offset: int = 0, limit: int = 20
) -> VersionList:
    """One page of the saved versions, oldest first, with each version's latest agreement and kappa."""
    if offset < 0 or limit < 1:
        raise InvalidInput(f"offset={offset}, limit={limit}: offset must be ≥ 0 and limit at least 1.")
    ev = get(store, name)
    page = ev.versions[offset : offset + limit]
    texts = {v.version: v.prompt for v in list_versions(store, name)} if include_prompts else {}
    versions = [VersionEntry(**v.model_dump(), prompt=texts.get(v.version)) for v in page]
    next_offset = offset + limit if offset + limit < len(ev.versions) else None
    notes = []
    if not include_prompts:
        notes.append(
            Note(
                text="The prompt texts are left out.",
                next_steps=[NextStep("list_versions", {"evaluator": name, "include_prompts": True})],
            )
        )
    if next_offset is not None:
        args: dict[str, str | int | bool] = {"evaluator": name, "offset": next_offset}
        if include_prompts:
            args["include_prompts"] = True
        notes.append(
            Note(
                text=f"{len(ev.versions) - next_offset} more version(s).",
                next_steps=[NextStep("list_versions", args)],
            )
        )
    return VersionList(
        evaluator=name,
        total=len(ev.versions),
        offset=offset,
        versions=versions,
        next_offset=next_offset,
        draft_differs=ev.draft_differs,
        notes=notes,
    )
