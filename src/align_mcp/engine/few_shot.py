"""Few-shot examples for {{few_shot_examples}}: the human corrections of the dev split, chosen by the draft's
strategy, frozen into a version when it is saved.

A correction is a labeled dev run where the human's current label differs from the judge's score in the latest
completed (non-test) alignment run of the newest saved version that has one (a draft run counts while the draft
equalled that version). Taking them from a saved version, not from the draft, keeps the selection still while
the draft is edited and judged: a draft whose own examples fixed a case does not then lose that example. Only
runs of the dev split are ever chosen, whoever asks: the test split never reaches a prompt.

A pairwise evaluator's examples show both outputs and the human's A, B or tie (corrections are against the
combined verdict of both orders). A jury member's own prompt that shows the variable gets the same block as the
shared prompt; one that does not shows no examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from align_mcp.core.few_shot import (
    Correction,
    FewShotSettings,
    FrozenFewShot,
    example_view,
    parse_settings,
    render_block,
    select,
    view_for,
)
from align_mcp.core.models import JudgeSettings, Note
from align_mcp.core.templates import FEW_SHOT, fill_few_shot, uses_few_shot
from align_mcp.errors import InvalidInput, NextStep
from align_mcp.store import Store, VersionRow

VARIABLE = "{{" + FEW_SHOT + "}}"


@dataclass(frozen=True)
class Corrections:
    """The corrections on offer, where they come from, or why there are none."""

    items: list[Correction]
    version: int | None = None
    alignment_run: int | None = None
    missing: Note | None = None
    """Why nothing can be shown yet (no split, no aligned version, no disagreement)."""

    def origin(self) -> str:
        return f"dev runs where v{self.version}'s judge and the human disagree, alignment run {self.alignment_run}"


@dataclass(frozen=True)
class Selection:
    """The examples the draft shows now: their run ids, the rendered block, and remarks on the choice."""

    settings: FewShotSettings
    run_ids: list[str]
    block: str
    available: int
    notes: list[Note] = field(default_factory=list)

    def frozen(self) -> FrozenFewShot:
        return FrozenFewShot(settings=self.settings, run_ids=self.run_ids, block=self.block)


def settings_of(store: Store, evaluator: str) -> FewShotSettings:
    """The draft's few-shot settings (the defaults when none were set)."""
    return store.draft_few_shot(evaluator) or FewShotSettings()


def shows(template: str, judge: JudgeSettings) -> bool:
    """Whether the prompt, or the own prompt of one of a jury's members, shows {{few_shot_examples}}."""
    return uses_few_shot(template) or any(
        m.prompt is not None and uses_few_shot(m.prompt) for m in judge.members
    )


def fill(template: str, judge: JudgeSettings, block: str) -> tuple[str, JudgeSettings]:
    """The template, and the own prompt of every jury member that shows {{few_shot_examples}}, with `block` in
    place of the variable: each member is shown the same examples as the shared prompt."""
    text = fill_few_shot(template, block) if uses_few_shot(template) else template
    if not any(m.prompt is not None and uses_few_shot(m.prompt) for m in judge.members):
        return text, judge
    members = [
        m.model_copy(update={"prompt": fill_few_shot(m.prompt, block)})
        if m.prompt is not None and uses_few_shot(m.prompt)
        else m
        for m in judge.members
    ]
    return text, judge.model_copy(update={"members": members})


def version_prompt(store: Store, evaluator: str, version: VersionRow) -> tuple[str, JudgeSettings]:
    """What a saved version sends: its template and judge settings with the examples it froze (none if it shows
    none)."""
    if not shows(version.prompt, version.judge):
        return version.prompt, version.judge
    frozen = store.version_few_shot(evaluator, version.version)
    return fill(version.prompt, version.judge, frozen.block if frozen is not None else "")


def draft_prompt(
    store: Store, evaluator: str, template: str, judge: JudgeSettings
) -> tuple[str, JudgeSettings]:
    """What the draft sends now: its template and judge settings with the examples its settings choose."""
    if not shows(template, judge):
        return template, judge
    return fill(template, judge, choose(store, evaluator).block)


def corrections(store: Store, evaluator: str) -> Corrections:
    """The dev runs whose human label differs from the newest aligned saved version's judge score."""
    dev = {r.run_id for r in store.split_rows(evaluator) if r.split == "dev"}
    if not dev:
        return Corrections(
            [],
            missing=Note(
                text=f"{VARIABLE} shows no examples yet: they come from the dev split only, and {evaluator!r} has "
                "no dev/test split yet. Label more runs of both classes (the split is made at the next alignment "
                "run once there are enough).",
                next_steps=[NextStep("add_to_queue", {"evaluator": evaluator})],
            ),
        )
    source = _source_run(store, evaluator)
    if source is None:
        latest = store.versions(evaluator)[-1].version
        return Corrections(
            [],
            missing=Note(
                text=f"{VARIABLE} shows no examples yet: they are the dev runs where the judge of a saved version "
                f"and the human disagree, and no saved version of {evaluator!r} has a completed alignment run. "
                f"Judge the reference set with v{latest} first.",
                next_steps=[NextStep("run_alignment", {"evaluator": evaluator})],
            ),
        )
    version, aid = source
    wrong = {
        r.run_id: r.judge_score
        for r in store.alignment_results(aid)
        if r.run_id in dev
        and r.error is None
        and r.judge_score is not None
        and r.judge_score != r.human_score
    }
    labels = store.current_label_rows(evaluator, list(wrong))
    runs = store.get_runs(list(wrong))
    items = [
        Correction(rid, runs[rid].as_dict(), label.score, judge, label.comment, label.created_at)
        for rid, judge in wrong.items()
        if (label := labels.get(rid)) is not None and rid in runs and label.score != judge
    ]
    missing = None
    if not items:
        missing = Note(
            text=f"{VARIABLE} shows no examples: v{version}'s judge agrees with the human on every judged dev "
            f"example of alignment run {aid}, so there is no correction to show."
        )
    return Corrections(items, version, aid, missing)


def _source_run(store: Store, evaluator: str) -> tuple[int, int] | None:
    for v in reversed(store.versions(evaluator)):
        aid = store.latest_run_of_prompt(evaluator, *version_prompt(store, evaluator, v))
        if aid is not None:
            return v.version, aid
    return None


def choose(store: Store, evaluator: str, settings: FewShotSettings | None = None) -> Selection:
    """The corrections the draft's settings (or `settings`) choose, rendered; notes say what fell short."""
    settings = settings or settings_of(store, evaluator)
    found = corrections(store, evaluator)
    notes = [found.missing] if found.missing is not None else []
    modes: list[list[str]] = []
    if settings.strategy == "cover" and found.items and found.alignment_run is not None:
        analysis = store.latest_failure_analysis(found.alignment_run)
        if analysis is None:
            notes.append(
                Note(
                    text=f"strategy=cover takes one example per failure mode of alignment run "
                    f"{found.alignment_run}, and none are stored: the examples are the most recent instead.",
                    next_steps=[NextStep("analyze_failures", {"evaluator": evaluator})],
                )
            )
        else:
            modes = [m.run_ids for m in analysis.result.modes]
    chosen = select(found.items, settings, modes)
    if found.items and settings.k > len(found.items):
        notes.append(
            Note(
                text=f"Few-shot k={settings.k}, but only {len(found.items)} correction(s) exist ({found.origin()}): "
                f"{VARIABLE} shows {len(found.items)}."
            )
        )
    row = store.get_evaluator(evaluator)
    view = view_for(row.score_type) if row is not None else example_view
    return Selection(
        settings, [c.run_id for c in chosen], render_block(chosen, view), len(found.items), notes
    )


def update_settings(store: Store, evaluator: str, text: str) -> FewShotSettings:
    """Change the draft's few-shot settings from 'k=5,strategy=random,seed=1' (any subset).

    Refuses a k above the corrections that exist, naming how many, when there are some.
    """
    settings = parse_settings(text, settings_of(store, evaluator))
    found = corrections(store, evaluator)
    if found.items and settings.k > len(found.items):
        raise InvalidInput(
            f"Few-shot k={settings.k} is more than the {len(found.items)} correction(s) {evaluator!r} has "
            f"({found.origin()}). Use k={len(found.items)} or less, or label more runs the judge gets wrong.",
            NextStep("add_to_queue", {"evaluator": evaluator}),
        )
    store.set_draft_few_shot(evaluator, settings)
    return settings


def draft_notes(store: Store, evaluator: str, template: str, judge: JudgeSettings) -> list[Note]:
    """What a user should know about the draft's examples: none to show, fewer than k, settings without effect."""
    if shows(template, judge):
        return choose(store, evaluator).notes
    if store.draft_few_shot(evaluator) is not None:
        return [
            Note(
                text=f"The few-shot settings of {evaluator!r} have no effect until the draft shows {VARIABLE} "
                "(before the example's variables).",
                next_steps=[NextStep("update_draft", {"evaluator": evaluator})],
            )
        ]
    return []


def freeze(store: Store, evaluator: str, template: str, judge: JudgeSettings) -> FrozenFewShot | None:
    """The examples a version saved from this draft keeps for good (None when the draft shows none)."""
    return choose(store, evaluator).frozen() if shows(template, judge) else None


def settings_differ(
    store: Store, evaluator: str, template: str, judge: JudgeSettings, version: VersionRow
) -> bool:
    """Whether the draft's few-shot settings differ from those the version froze (only when the draft uses them)."""
    if not shows(template, judge):
        return False
    frozen = store.version_few_shot(evaluator, version.version)
    return frozen is None or frozen.settings != settings_of(store, evaluator)
