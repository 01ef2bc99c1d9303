"""Commands for evaluators: create, list and show them; show, edit and diff the draft; save and restore versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from align_mcp import config
from align_mcp.cli.main import command, store_of
from align_mcp.cli.render import emit, kappa, notes, pct, table
from align_mcp.errors import InvalidInput


@click.group("evaluator")
def evaluator_group() -> None:
    """Create and inspect evaluators (judges)."""


COMBINE_CHOICES = ["majority", "mean", "median", "any_fail"]
MEMBER_HELP = "A jury member: model[@base_url] (repeat, at least 2; per-member keys: --set members=JSON)."
COMBINE_HELP = (
    "How a jury's verdicts combine: majority (binary, categorical), mean or median (ordinal), any_fail."
)


def parse_members(members: tuple[str, ...]) -> list[dict[str, str]]:
    """--member values as jury members: 'model' or 'model@https://host/v1' (the @ before http(s):// splits)."""
    out = []
    for text in members:
        at = max(text.rfind("@http://"), text.rfind("@https://"))
        model, base_url = (text[:at], text[at + 1 :]) if at > 0 else (text, None)
        if not model.strip():
            raise InvalidInput(f"--member {text!r} names no model; use model or model@base_url.")
        out.append({"model": model.strip()} | ({"base_url": base_url} if base_url else {}))
    return out


def parse_range(text: str) -> tuple[int, int]:
    try:
        lo, hi = text.replace("..", "-").split("-")
        return int(lo), int(hi)
    except ValueError:
        raise InvalidInput(f"--range {text!r} is not like 1-5.") from None


@command("create", evaluator_group)
@click.argument("name")
@click.option(
    "--score-type",
    "kind",
    type=click.Choice(["binary", "categorical", "ordinal", "pairwise"]),
    default="binary",
    show_default=True,
)
@click.option("--labels", help="Categorical labels, comma-separated (e.g. good,ok,bad).")
@click.option("--range", "score_range", help="Ordinal range, e.g. 1-5.")
@click.option("--ties", is_flag=True, help="Pairwise: allow 'tie' as a score (A, B or tie).")
@click.option(
    "--no-swap",
    is_flag=True,
    help="Pairwise: judge each comparison once, A shown first (default: in both orders, answers mapped back).",
)
@click.option("--feedback-key", help="Feedback key of the human labels (default: the evaluator name).")
@click.option(
    "--prompt-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Judge prompt template.",
)
@click.option("--model", help=f"Judge model (default: ${config.ENV_JUDGE_MODEL}).")
@click.option(
    "--base-url", help="OpenAI-compatible base URL (default: $ALIGN_MCP_JUDGE_BASE_URL / $OPENAI_BASE_URL)."
)
@click.option("--api-key-env", help="Name of the env var holding this judge's API key.")
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--no-reasoning", is_flag=True, help="Ask for the score only.")
@click.option("--member", "members", multiple=True, metavar="MODEL[@BASE_URL]", help=MEMBER_HELP)
@click.option("--combine", type=click.Choice(COMBINE_CHOICES), help=COMBINE_HELP)
@click.option("--description")
@click.pass_context
def evaluator_create(
    ctx: click.Context,
    name: str,
    kind: str,
    labels: str | None,
    score_range: str | None,
    ties: bool,
    no_swap: bool,
    feedback_key: str | None,
    prompt_file: Path | None,
    model: str | None,
    base_url: str | None,
    api_key_env: str | None,
    temperature: float,
    no_reasoning: bool,
    members: tuple[str, ...],
    combine: str | None,
    description: str | None,
    as_json: bool,
) -> None:
    """Create an evaluator; its prompt is saved as v1 (the default prompt for the score type if none given)."""
    from align_mcp.core.models import JudgeSettings, ScoreType
    from align_mcp.engine import evaluators

    lo, hi = parse_range(score_range) if score_range else (None, None)
    score_type = ScoreType(
        kind=kind,  # type: ignore[arg-type]
        labels=[x.strip() for x in labels.split(",") if x.strip()] if labels else None,
        min=lo,
        max=hi,
        ties=ties,
        swap=not no_swap,
    )
    judge = JudgeSettings.model_validate(
        {
            "model": model,
            "base_url": base_url,
            "api_key_env": api_key_env,
            "temperature": temperature,
            "reasoning": not no_reasoning,
            "members": parse_members(members),
            "combine": combine,
        }
    )
    prompt = prompt_file.read_text(encoding="utf-8") if prompt_file else None
    ev = evaluators.create(store_of(ctx), name, score_type, feedback_key, prompt, judge, description)

    def show() -> None:
        click.echo(f"Created evaluator {ev.name!r} ({ev.score_type.describe()}); prompt saved as v1.")
        notes(ev.notes)

    emit(ev, as_json, show)


@command("list", evaluator_group)
@click.pass_context
def evaluator_list(ctx: click.Context, as_json: bool) -> None:
    """List evaluators with their versions and latest scores."""
    from align_mcp.engine import evaluators

    evs = evaluators.list_all(store_of(ctx))

    def show() -> None:
        rows = []
        for ev in evs:
            last = ev.versions[-1] if ev.versions else None
            rows.append(
                [
                    ev.name,
                    ev.feedback_key,
                    ev.score_type.describe(),
                    f"v{last.version}" if last else "-",
                    pct(last.agreement) if last else "n/a",
                    "yes" if ev.draft_differs else "no",
                ]
            )
        table(["evaluator", "feedback key", "score type", "latest", "agreement", "unsaved draft"], rows)

    emit(evs, as_json, show)


@command("show", evaluator_group)
@click.argument("name")
@click.pass_context
def evaluator_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show an evaluator: settings, versions with scores, and the draft."""
    from align_mcp.engine import evaluators

    ev = evaluators.get(store_of(ctx), name)

    def show() -> None:
        click.echo(f"{ev.name}: feedback key {ev.feedback_key!r}, {ev.score_type.describe()}")
        click.echo(
            f"judge: model={ev.judge.model or '$' + config.ENV_JUDGE_MODEL} temperature={ev.judge.temperature}"
        )
        if ev.judge.members:
            seated = ", ".join(m.model + (f"@{m.base_url}" if m.base_url else "") for m in ev.judge.members)
            click.echo(f"jury ({ev.judge.combine}): {seated}")
        table(
            ["version", "saved", "message", "agreement", "kappa", "n"],
            [
                [
                    f"v{v.version}",
                    v.created_at.strftime("%Y-%m-%d %H:%M"),
                    v.message or "",
                    pct(v.agreement),
                    kappa(v.kappa),
                    v.n or "",
                ]
                for v in ev.versions
            ],
        )
        click.echo(f"\ndraft ({'differs from' if ev.draft_differs else 'same as'} the last saved version):\n")
        click.echo(ev.draft)

    emit(ev, as_json, show)


@click.group("draft")
def draft_group() -> None:
    """Edit the prompt draft (edits are not saved until `align-mcp save`)."""


@command("show", draft_group)
@click.argument("name")
@click.pass_context
def draft_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Print the draft prompt."""
    from align_mcp.engine import evaluators

    ev = evaluators.get(store_of(ctx), name)
    emit(
        {"evaluator": name, "draft": ev.draft, "judge": ev.judge.model_dump(), "few_shot": ev.few_shot},
        as_json,
        lambda: click.echo(ev.draft),
    )


@command("edit", draft_group)
@click.argument("name")
@click.option(
    "--file",
    "prompt_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="New prompt text.",
)
@click.option("--replace", nargs=2, metavar="OLD NEW", help="Replace one exact passage of the draft.")
@click.option(
    "--set", "settings", multiple=True, metavar="KEY=VALUE", help="Judge setting, e.g. temperature=0.2."
)
@click.option(
    "--few-shot",
    "few_shot",
    metavar="SETTINGS",
    help="How {{few_shot_examples}} picks corrected dev examples, e.g. k=5,strategy=random,seed=1 "
    "(strategy: recent, random or cover).",
)
@click.option("--member", "members", multiple=True, metavar="MODEL[@BASE_URL]", help=MEMBER_HELP)
@click.option("--combine", type=click.Choice(COMBINE_CHOICES), help=COMBINE_HELP)
@click.pass_context
def draft_edit(
    ctx: click.Context,
    name: str,
    prompt_file: Path | None,
    replace: tuple[str, str] | None,
    settings: tuple[str, ...],
    few_shot: str | None,
    members: tuple[str, ...],
    combine: str | None,
    as_json: bool,
) -> None:
    """Edit the draft: a new prompt file, a find/replace, judge settings, and/or few-shot settings."""
    from align_mcp.engine.evaluators import edit_draft

    judge: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"--set {item!r} is not KEY=VALUE.")
        try:
            judge[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            judge[key.strip()] = value
    if members:
        judge["members"] = parse_members(members)
    if combine is not None:
        judge["combine"] = combine
    if prompt_file is None and not replace and not judge and few_shot is None:
        raise InvalidInput(
            "Nothing to change: give --file, --replace OLD NEW, --set KEY=VALUE, --member, --combine or "
            "--few-shot SETTINGS."
        )
    prompt = prompt_file.read_text(encoding="utf-8") if prompt_file else None
    update = edit_draft(
        store_of(ctx),
        name,
        prompt=prompt,
        replace=(replace[0], replace[1]) if replace else None,
        judge=judge or None,
        max_chars=None,
        few_shot_settings=few_shot,
    )

    def show() -> None:
        if update.diff:
            click.echo(update.diff)
        notes(update.notes)

    emit(update, as_json, show)


@command("diff", draft_group)
@click.argument("name")
@click.option("--against", "version", type=int, help="Version to compare with (default: the last saved).")
@click.pass_context
def draft_diff(ctx: click.Context, name: str, version: int | None, as_json: bool) -> None:
    """Diff the draft against a saved version."""
    from align_mcp.engine import evaluators

    d = evaluators.diff(store_of(ctx), name, version)
    emit(d, as_json, lambda: click.echo(d.diff or "No differences."))


@command("save")
@click.argument("name")
@click.option("--message", "-m", help="What changed and why.")
@click.pass_context
def save_cmd(ctx: click.Context, name: str, message: str | None, as_json: bool) -> None:
    """Save the draft as a new immutable version."""
    from align_mcp.engine import evaluators

    v = evaluators.save(store_of(ctx), name, message)
    emit(
        v,
        as_json,
        lambda: click.echo(f"Saved {name!r} v{v.version}" + (f": {v.message}" if v.message else ".")),
    )


@command("versions")
@click.argument("name")
@click.pass_context
def versions_cmd(ctx: click.Context, name: str, as_json: bool) -> None:
    """List saved versions with their alignment scores."""
    from align_mcp.engine import evaluators

    versions = evaluators.get(store_of(ctx), name).versions
    emit(
        versions,
        as_json,
        lambda: table(
            ["version", "saved", "message", "agreement", "kappa"],
            [
                [
                    f"v{v.version}",
                    v.created_at.strftime("%Y-%m-%d %H:%M"),
                    v.message or "",
                    pct(v.agreement),
                    kappa(v.kappa),
                ]
                for v in versions
            ],
        ),
    )


@command("restore")
@click.argument("name")
@click.argument("version", type=int)
@click.pass_context
def restore_cmd(ctx: click.Context, name: str, version: int, as_json: bool) -> None:
    """Copy a saved version into the draft."""
    from align_mcp.engine import evaluators

    ev = evaluators.restore(store_of(ctx), name, version)
    emit(
        ev,
        as_json,
        lambda: click.echo(f"The draft of {name!r} is now v{version}'s prompt (not saved as a new version)."),
    )
