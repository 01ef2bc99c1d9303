"""The `align-mcp` command line: a thin skin over the Python API (tables for people, --json for scripts)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import click
from pydantic import BaseModel

from align_mcp import __version__, config
from align_mcp.errors import AlignError, InvalidInput

if (
    TYPE_CHECKING
):  # the store, sqlite-utils and the models load on first use: `align-mcp serve` starts without
    from align_mcp.core.models import AlignmentReport, AlignmentSummary, Metrics
    from align_mcp.store import Store

F = TypeVar("F", bound=Callable[..., Any])


def _store(ctx: click.Context) -> Store:
    obj = ctx.ensure_object(dict)
    if "store" not in obj:
        from align_mcp.store import open_store

        obj["store"] = open_store(obj.get("db"))
        ctx.call_on_close(obj["store"].close)
    store: Store = obj["store"]
    return store


def command(group: click.Group, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """A subcommand with --json, whose AlignErrors print as one line and exit 1."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except AlignError as e:
                raise click.ClickException(str(e)) from e

        wrapper = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(wrapper)
        group.command(name, **kwargs)(wrapper)
        return fn

    return decorate


def emit(value: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(_plain(value), indent=2, ensure_ascii=False, default=str))
    else:
        human()


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def simulated(model: str) -> str:
    return " [simulated judge]" if "simulated" in model.lower() else ""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="align-mcp")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=config.ENV_DB,
    help=f"SQLite store (default: ${config.ENV_DB} or the user data directory).",
)
@click.pass_context
def main(ctx: click.Context, db: Path | None) -> None:
    """Align an LLM-as-judge evaluator with human labels.

    The loop: import runs -> create an evaluator -> queue runs -> label them -> align -> look at the
    misaligned cases -> edit the draft -> align again -> save. `align-mcp serve` runs the same loop as an MCP
    server for Claude or VS Code.
    """
    ctx.ensure_object(dict)["db"] = db


# ---- runs in ------------------------------------------------------------------------------------------------


@command(main, "import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--source", "-s", required=True, help="Name of the source to import into (created if new).")
@click.option("--kind", type=click.Choice(["experiment", "project"]), default="experiment", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), help="Override detection by extension.")
@click.pass_context
def import_cmd(
    ctx: click.Context, path: Path, source: str, kind: str, fmt: str | None, as_json: bool
) -> None:
    """Import runs from a JSONL or CSV file (idempotent by run id; all or nothing)."""
    from align_mcp.engine.ingest import import_runs

    def progress(n: int) -> None:
        if not as_json and sys.stderr.isatty():
            click.echo(f"\r{n:,} runs read", nl=False, err=True)

    report = import_runs(_store(ctx), source, path=path, kind=kind, fmt=fmt, on_progress=progress)  # type: ignore[arg-type]
    if not as_json and sys.stderr.isatty():
        click.echo("", err=True)

    def show() -> None:
        click.echo(
            f"Imported {report.inserted} new run(s) into {report.source!r} ({report.kind}); {report.skipped} already stored."
        )
        for fb in report.feedback:
            target = (
                ", ".join(fb.evaluators) if fb.evaluators else "no evaluator yet (kept for one created later)"
            )
            click.echo(f"  feedback {fb.key!r}: {fb.count} label(s) -> {target}")
        if report.labels:
            click.echo(f"  {report.labels} label(s) stored.")

    emit(report, as_json, show)


@command(main, "sources")
@click.pass_context
def sources_cmd(ctx: click.Context, as_json: bool) -> None:
    """List sources and their run counts."""
    rows = _store(ctx).list_sources()
    emit(
        rows,
        as_json,
        lambda: table(["source", "kind", "runs"], [[r["name"], r["kind"], r["runs"]] for r in rows]),
    )


@command(main, "show-run")
@click.argument("run_id")
@click.pass_context
def show_run_cmd(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Show one run in full."""
    from align_mcp.errors import NotFound

    run = _store(ctx).get_runs([run_id]).get(run_id)
    if run is None:
        raise NotFound(f"No run with id {run_id!r}. Import it with `align-mcp import`.")
    click.echo(json.dumps(run, indent=2, ensure_ascii=False))


# ---- evaluators ---------------------------------------------------------------------------------------------


@main.group("evaluator")
def evaluator_group() -> None:
    """Create and inspect evaluators (judges)."""


def _parse_range(text: str) -> tuple[int, int]:
    try:
        lo, hi = text.replace("..", "-").split("-")
        return int(lo), int(hi)
    except ValueError:
        raise InvalidInput(f"--range {text!r} is not like 1-5.") from None


@command(evaluator_group, "create")
@click.argument("name")
@click.option(
    "--score-type",
    "kind",
    type=click.Choice(["binary", "categorical", "ordinal"]),
    default="binary",
    show_default=True,
)
@click.option("--labels", help="Categorical labels, comma-separated (e.g. good,ok,bad).")
@click.option("--range", "score_range", help="Ordinal range, e.g. 1-5.")
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
@click.option("--description")
@click.pass_context
def evaluator_create(
    ctx: click.Context,
    name: str,
    kind: str,
    labels: str | None,
    score_range: str | None,
    feedback_key: str | None,
    prompt_file: Path | None,
    model: str | None,
    base_url: str | None,
    api_key_env: str | None,
    temperature: float,
    no_reasoning: bool,
    description: str | None,
    as_json: bool,
) -> None:
    """Create an evaluator; its prompt is saved as v1 (the default prompt for the score type if none given)."""
    from align_mcp.core.models import JudgeSettings, ScoreType
    from align_mcp.engine import evaluators

    lo, hi = _parse_range(score_range) if score_range else (None, None)
    score_type = ScoreType(
        kind=kind,  # type: ignore[arg-type]
        labels=[x.strip() for x in labels.split(",") if x.strip()] if labels else None,
        min=lo,
        max=hi,
    )
    judge = JudgeSettings(
        model=model,
        base_url=base_url,
        api_key_env=api_key_env,
        temperature=temperature,
        reasoning=not no_reasoning,
    )
    prompt = prompt_file.read_text(encoding="utf-8") if prompt_file else None
    ev = evaluators.create(_store(ctx), name, score_type, feedback_key, prompt, judge, description)
    emit(
        ev,
        as_json,
        lambda: click.echo(
            f"Created evaluator {ev.name!r} ({ev.score_type.describe()}); prompt saved as v1."
        ),
    )


@command(evaluator_group, "list")
@click.pass_context
def evaluator_list(ctx: click.Context, as_json: bool) -> None:
    """List evaluators with their versions and latest scores."""
    from align_mcp.engine import evaluators

    evs = evaluators.list_all(_store(ctx))

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


@command(evaluator_group, "show")
@click.argument("name")
@click.pass_context
def evaluator_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show an evaluator: settings, versions with scores, and the draft."""
    from align_mcp.engine import evaluators

    ev = evaluators.get(_store(ctx), name)

    def show() -> None:
        click.echo(f"{ev.name}: feedback key {ev.feedback_key!r}, {ev.score_type.describe()}")
        click.echo(
            f"judge: model={ev.judge.model or '$' + config.ENV_JUDGE_MODEL} temperature={ev.judge.temperature}"
        )
        table(
            ["version", "saved", "message", "agreement", "kappa", "n"],
            [
                [
                    f"v{v.version}",
                    v.created_at.strftime("%Y-%m-%d %H:%M"),
                    v.message or "",
                    pct(v.agreement),
                    "n/a" if v.kappa is None else f"{v.kappa:.2f}",
                    v.n or "",
                ]
                for v in ev.versions
            ],
        )
        click.echo(f"\ndraft ({'differs from' if ev.draft_differs else 'same as'} the last saved version):\n")
        click.echo(ev.draft)

    emit(ev, as_json, show)


# ---- drafts and versions ------------------------------------------------------------------------------------


@main.group("draft")
def draft_group() -> None:
    """Edit the prompt draft (edits are not saved until `align-mcp save`)."""


@command(draft_group, "show")
@click.argument("name")
@click.pass_context
def draft_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Print the draft prompt."""
    from align_mcp.engine import evaluators

    ev = evaluators.get(_store(ctx), name)
    emit(
        {"evaluator": name, "draft": ev.draft, "judge": ev.judge.model_dump()},
        as_json,
        lambda: click.echo(ev.draft),
    )


@command(draft_group, "edit")
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
@click.pass_context
def draft_edit(
    ctx: click.Context,
    name: str,
    prompt_file: Path | None,
    replace: tuple[str, str] | None,
    settings: tuple[str, ...],
    as_json: bool,
) -> None:
    """Edit the draft: a new prompt file, a find/replace, and/or judge settings."""
    from align_mcp.engine import evaluators

    judge: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"--set {item!r} is not KEY=VALUE.")
        try:
            judge[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            judge[key.strip()] = value
    if prompt_file is None and not replace and not judge:
        raise InvalidInput("Nothing to change: give --file, --replace OLD NEW or --set KEY=VALUE.")
    prompt = prompt_file.read_text(encoding="utf-8") if prompt_file else None
    store = _store(ctx)
    evaluators.update_draft(
        store, name, prompt=prompt, replace=(replace[0], replace[1]) if replace else None, judge=judge or None
    )  # type: ignore[arg-type]
    d = evaluators.diff(store, name)
    emit(d, as_json, lambda: click.echo(d.diff or "The draft now equals the last saved version."))


@command(draft_group, "diff")
@click.argument("name")
@click.option("--against", "version", type=int, help="Version to compare with (default: the last saved).")
@click.pass_context
def draft_diff(ctx: click.Context, name: str, version: int | None, as_json: bool) -> None:
    """Diff the draft against a saved version."""
    from align_mcp.engine import evaluators

    d = evaluators.diff(_store(ctx), name, version)
    emit(d, as_json, lambda: click.echo(d.diff or "No differences."))


@command(main, "save")
@click.argument("name")
@click.option("--message", "-m", help="What changed and why.")
@click.pass_context
def save_cmd(ctx: click.Context, name: str, message: str | None, as_json: bool) -> None:
    """Save the draft as a new immutable version."""
    from align_mcp.engine import evaluators

    v = evaluators.save(_store(ctx), name, message)
    emit(
        v,
        as_json,
        lambda: click.echo(f"Saved {name!r} v{v.version}" + (f": {v.message}" if v.message else ".")),
    )


@command(main, "versions")
@click.argument("name")
@click.pass_context
def versions_cmd(ctx: click.Context, name: str, as_json: bool) -> None:
    """List saved versions with their alignment scores."""
    from align_mcp.engine import evaluators

    ev = evaluators.get(_store(ctx), name)
    emit(
        ev.versions,
        as_json,
        lambda: table(
            ["version", "saved", "message", "agreement", "kappa"],
            [
                [
                    f"v{v.version}",
                    v.created_at.strftime("%Y-%m-%d %H:%M"),
                    v.message or "",
                    pct(v.agreement),
                    "n/a" if v.kappa is None else f"{v.kappa:.2f}",
                ]
                for v in ev.versions
            ],
        ),
    )


@command(main, "restore")
@click.argument("name")
@click.argument("version", type=int)
@click.pass_context
def restore_cmd(ctx: click.Context, name: str, version: int, as_json: bool) -> None:
    """Copy a saved version into the draft."""
    from align_mcp.engine import evaluators

    ev = evaluators.restore(_store(ctx), name, version)
    emit(
        ev,
        as_json,
        lambda: click.echo(f"The draft of {name!r} is now v{version}'s prompt (not saved as a new version)."),
    )


# ---- queues and labels --------------------------------------------------------------------------------------


@main.group("queue")
def queue_group() -> None:
    """Annotation queues: add runs, list queues, get items to label."""


@command(queue_group, "add")
@click.argument("evaluator")
@click.option("--source", help="Queue runs of this source.")
@click.option("--ids", help="Comma-separated run ids.")
@click.option("--where", multiple=True, metavar="KEY=VALUE", help="Metadata filter (repeatable).")
@click.option("--sample", type=int, help="Draw N runs at random.")
@click.option(
    "--stratify-by", metavar="KEY", help="With --sample: keep the proportions of this metadata key."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def queue_add(
    ctx: click.Context,
    evaluator: str,
    source: str | None,
    ids: str | None,
    where: tuple[str, ...],
    sample: int | None,
    stratify_by: str | None,
    seed: int,
    as_json: bool,
) -> None:
    """Put runs into an evaluator's annotation queue."""
    from align_mcp.engine.queues import add_to_queue

    metadata: dict[str, Any] = {}
    for item in where:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"--where {item!r} is not KEY=VALUE.")
        try:
            metadata[key] = json.loads(value)  # numbers and true/false compare as such; other text as text
        except json.JSONDecodeError:
            metadata[key] = value
    run_ids = [x.strip() for x in ids.split(",") if x.strip()] if ids else None
    r = add_to_queue(_store(ctx), evaluator, source, run_ids, metadata or None, sample, stratify_by, seed)
    emit(
        r,
        as_json,
        lambda: click.echo(
            f"Queued {r.added} run(s) for {evaluator!r} ({r.already_queued} already queued); {r.pending} pending."
        ),
    )


@command(queue_group, "list")
@click.pass_context
def queue_list(ctx: click.Context, as_json: bool) -> None:
    """Queues with pending / labeled counts and label balance."""
    from align_mcp.engine.queues import list_queues

    qs = list_queues(_store(ctx))

    def show() -> None:
        table(
            ["evaluator", "pending", "reserved", "labeled", "balance"],
            [
                [
                    q.evaluator,
                    q.pending,
                    q.reserved,
                    q.labeled,
                    " ".join(f"{k}:{v}" for k, v in q.balance.counts.items()),
                ]
                for q in qs
            ],
        )
        for q in qs:
            for w in q.balance.warnings:
                click.echo(f"warning ({q.evaluator}): {w}")

    emit(qs, as_json, show)


@command(queue_group, "next")
@click.argument("evaluator")
@click.option("--labeler", default="cli", show_default=True)
@click.option("--limit", type=int, default=5, show_default=True)
@click.pass_context
def queue_next(ctx: click.Context, evaluator: str, labeler: str, limit: int, as_json: bool) -> None:
    """Show (and reserve) the next runs to label."""
    from align_mcp.engine.queues import next_items

    items = next_items(_store(ctx), evaluator, labeler, limit)

    def show() -> None:
        if not items:
            click.echo("Nothing left to label in this queue.")
        for item in items:
            click.echo(f"--- {item.run_id}")
            click.echo("inputs:  " + json.dumps(item.inputs, ensure_ascii=False))
            click.echo("outputs: " + json.dumps(item.outputs, ensure_ascii=False))
            if item.reference_outputs:
                click.echo("reference: " + json.dumps(item.reference_outputs, ensure_ascii=False))
        if items:
            click.echo(f"\nLabel with: align-mcp label {evaluator} RUN_ID SCORE --comment '...'")

    emit(items, as_json, show)


@command(main, "label")
@click.argument("evaluator")
@click.argument("run_id")
@click.argument("score")
@click.option("--comment", "-c", help="Why: the judge's rubric learns from these.")
@click.option("--labeler", default="cli", show_default=True)
@click.pass_context
def label_cmd(
    ctx: click.Context,
    evaluator: str,
    run_id: str,
    score: str,
    comment: str | None,
    labeler: str,
    as_json: bool,
) -> None:
    """Give one run a human score (relabeling keeps history)."""
    from align_mcp.engine.queues import submit_label

    r = submit_label(_store(ctx), evaluator, run_id, score, comment, labeler)
    verb = "Relabeled" if r.relabeled else "Labeled"
    emit(
        r,
        as_json,
        lambda: click.echo(f"{verb} {run_id} = {r.score}; {r.labeled} labeled, {r.pending} pending."),
    )


@command(main, "labels")
@click.argument("evaluator")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--labeler", default="cli", show_default=True)
@click.pass_context
def labels_cmd(ctx: click.Context, evaluator: str, path: Path, labeler: str, as_json: bool) -> None:
    """Submit many labels from a JSONL file of {"run_id", "score", "comment"?} (all or nothing)."""
    from align_mcp.engine.queues import submit_labels
    from align_mcp.errors import ImportFormatError

    items = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ImportFormatError(
                        f"{path}:{n}: invalid JSON ({e.msg}); no label was stored."
                    ) from None
    receipts = submit_labels(_store(ctx), evaluator, items, labeler)
    emit(receipts, as_json, lambda: click.echo(f"Stored {len(receipts)} label(s) for {evaluator!r}."))


# ---- alignment ----------------------------------------------------------------------------------------------


def _run_with_progress(as_json: bool, job: Callable[[Any], Any]) -> Any:
    show = not as_json and sys.stderr.isatty()
    state: dict[str, Any] = {}

    async def on_progress(done: int, total: int, message: str) -> None:
        if not show:
            return
        width = 30
        filled = int(width * done / total) if total else width
        click.echo(f"\r[{'#' * filled}{'.' * (width - filled)}] {message}   ", nl=False, err=True)
        state["shown"] = True

    try:
        return anyio.run(job, on_progress)
    finally:
        if state.get("shown"):
            click.echo("", err=True)


def print_metrics(m: Metrics, model: str) -> None:
    sim = simulated(model)
    ci = m.agreement.ci
    interval = f" (95% CI {ci.low:.1%}–{ci.high:.1%})" if ci else ""
    click.echo(f"  agreement {pct(m.agreement.value)}{interval}, n = {m.n}, errors = {m.errors}{sim}")
    kappa = "n/a" if m.kappa is None else f"{m.kappa:.3f}"
    label = "quadratic-weighted kappa" if m.kind == "ordinal" else "Cohen's kappa"
    click.echo(f"  {label} {kappa}{sim}")
    if m.kind == "binary" and m.tpr and m.tnr:
        click.echo(
            f"  TPR (pass recall) {pct(m.tpr.value)}  TNR (fail recall) {pct(m.tnr.value)}  "
            f"false passes {m.false_pass}  false fails {m.false_fail}{sim}"
        )
    if m.within_one is not None:
        click.echo(f"  within one {pct(m.within_one.value)}{sim}")


def print_summary(title: str, s: AlignmentSummary) -> None:
    click.echo(
        f"{title}: run {s.id}, {s.evaluator} {s.prompt_ref}, model {s.model}{simulated(s.model)} — {s.status}, "
        f"{s.judged}/{s.total} judged, {s.judge_calls} judge call(s), {s.cache_hits} from cache"
    )
    if s.metrics:
        print_metrics(s.metrics, s.model)


def print_report(r: AlignmentReport) -> None:
    print_summary(f"Alignment ({r.run.split} split)", r.run)
    if r.holdout is not None:
        h = r.holdout
        click.echo(
            f"  holdout: {h.dev} dev / {h.test} test examples; test evaluated {h.test_evaluations} time(s)"
        )
    if r.baseline is not None:
        print_summary("Compared with the last saved version", r.baseline)
    if r.flips is not None:
        f = r.flips
        click.echo(f"Flips vs {f.baseline}: {f.verdict}{simulated(r.run.model)}")
        if f.fixed:
            click.echo("  fixed:  " + ", ".join(f.fixed))
        if f.broken:
            click.echo("  broken: " + ", ".join(f.broken))
    for e in r.error_examples:
        click.echo(f"  error {e.run_id}: {e.error}")
    for w in r.warnings:
        click.echo(f"warning: {w}")
    for n in r.notes:
        click.echo(f"note: {n}")


@command(main, "align")
@click.argument("evaluator")
@click.option("--prompt", default="draft", show_default=True, help="draft, latest, or a version such as v2.")
@click.option(
    "--split",
    type=click.Choice(["auto", "dev", "test", "all"]),
    default="auto",
    show_default=True,
    help="auto = dev once a holdout exists; test is held out, and every look is counted.",
)
@click.option("--no-compare", is_flag=True, help="Do not compare with the last saved version.")
@click.option(
    "--concurrency", type=int, help=f"Parallel judge calls (default ${config.ENV_CONCURRENCY} or 8)."
)
@click.pass_context
def align_cmd(
    ctx: click.Context,
    evaluator: str,
    prompt: str,
    split: str,
    no_compare: bool,
    concurrency: int | None,
    as_json: bool,
) -> None:
    """Judge the reference set with a prompt; report agreement, kappa, TPR/TNR and flips vs the last version."""
    from align_mcp.engine.alignment import run_alignment

    store = _store(ctx)
    report = _run_with_progress(
        as_json,
        lambda progress: run_alignment(
            store,
            evaluator,
            prompt,
            split=split,
            compare=not no_compare,
            concurrency=concurrency,
            on_progress=progress,
        ),
    )
    emit(report, as_json, lambda: print_report(report))


@command(main, "resume")
@click.argument("alignment_id", type=int)
@click.option("--retry-errors", is_flag=True, help="Judge examples that errored again too.")
@click.option("--concurrency", type=int)
@click.pass_context
def resume_cmd(
    ctx: click.Context, alignment_id: int, retry_errors: bool, concurrency: int | None, as_json: bool
) -> None:
    """Finish an interrupted alignment run (only missing examples are judged)."""
    from align_mcp.engine.alignment import resume

    store = _store(ctx)
    report = _run_with_progress(
        as_json,
        lambda progress: resume(
            store, alignment_id, retry_errors=retry_errors, concurrency=concurrency, on_progress=progress
        ),
    )
    emit(report, as_json, lambda: print_report(report))


@command(main, "runs")
@click.argument("evaluator")
@click.pass_context
def runs_cmd(ctx: click.Context, evaluator: str, as_json: bool) -> None:
    """List an evaluator's alignment runs."""
    from align_mcp.engine.alignment import list_runs

    runs = list_runs(_store(ctx), evaluator)
    emit(
        runs,
        as_json,
        lambda: table(
            ["run", "prompt", "status", "judged", "agreement", "kappa", "model"],
            [
                [
                    s.id,
                    s.prompt_ref,
                    s.status,
                    f"{s.judged}/{s.total}",
                    pct(s.metrics.agreement.value) if s.metrics else "n/a",
                    "n/a" if not s.metrics or s.metrics.kappa is None else f"{s.metrics.kappa:.2f}",
                    s.model + simulated(s.model),
                ]
                for s in runs
            ],
        ),
    )


@command(main, "report")
@click.argument("alignment_id", type=int)
@click.pass_context
def report_cmd(ctx: click.Context, alignment_id: int, as_json: bool) -> None:
    """Show one alignment run's report."""
    from align_mcp.engine.alignment import report

    r = report(_store(ctx), alignment_id)
    emit(r, as_json, lambda: print_report(r))


@command(main, "misaligned")
@click.argument("evaluator")
@click.option("--run", "alignment_run", type=int, help="Alignment run id (default: the latest).")
@click.option("--direction", type=click.Choice(["false_pass", "false_fail", "over", "under", "mismatch"]))
@click.option("--limit", type=int, default=10, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True)
@click.pass_context
def misaligned_cmd(
    ctx: click.Context,
    evaluator: str,
    alignment_run: int | None,
    direction: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """Misaligned examples: inputs, outputs, human score + comment, judge score + reasoning."""
    from align_mcp.engine.alignment import get_misaligned, summary

    store = _store(ctx)
    page = get_misaligned(store, evaluator, alignment_run, direction, offset, limit)  # type: ignore[arg-type]
    model = summary(store, page.alignment_run).model

    def show() -> None:
        click.echo(
            f"{page.total} misaligned in run {page.alignment_run} ({page.prompt_ref}){simulated(model)}"
        )
        for c in page.cases:
            click.echo(f"\n--- {c.run_id}  [{c.direction}]  human {c.human_score} vs judge {c.judge_score}")
            click.echo("inputs:    " + json.dumps(c.inputs, ensure_ascii=False))
            click.echo("outputs:   " + json.dumps(c.outputs, ensure_ascii=False))
            if c.reference_outputs:
                click.echo("reference: " + json.dumps(c.reference_outputs, ensure_ascii=False))
            click.echo(f"human:     {c.human_score}" + (f" — {c.human_comment}" if c.human_comment else ""))
            reasoning = c.judge_reasoning or ""
            tag = "" if reasoning.startswith("[simulated judge]") else simulated(model)
            click.echo(f"judge:     {c.judge_score} — {reasoning}{tag}")
        for n in page.notes:
            click.echo(f"note: {n}")

    emit(page, as_json, show)


# ---- diagnose: triage, reviews, consistency, suggestions, corrected pass rate -------------------------------


@command(main, "triage")
@click.argument("evaluator")
@click.option("--run", "alignment_run", type=int, help="Alignment run id (default: the latest dev run).")
@click.option("--limit", type=int, default=50, show_default=True, help="Misaligned dev cases to classify.")
@click.pass_context
def triage_cmd(
    ctx: click.Context, evaluator: str, alignment_run: int | None, limit: int, as_json: bool
) -> None:
    """Classify misaligned dev cases as judge error, possible label error or rubric gap."""
    from align_mcp.diagnose.triage import triage

    store = _store(ctx)
    r = _run_with_progress(
        as_json,
        lambda progress: triage(
            store, evaluator, alignment_run=alignment_run, limit=limit, on_progress=progress
        ),
    )

    def show() -> None:
        sim = simulated(r.model)
        click.echo(
            f"Triage of run {r.alignment_run} ({r.prompt_ref}): "
            + ", ".join(f"{k} {v}" for k, v in r.counts.items())
            + sim
        )
        for c in r.cases:
            click.echo(
                f"  {c.run_id} [{c.direction}] {c.category or 'unclassified'}: {c.reason or c.error or ''}{sim}"
            )
        for n in r.notes:
            click.echo(f"note: {n}")

    emit(r, as_json, show)


@command(main, "review")
@click.argument("evaluator")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--reason", help="Why the label is doubted (shown to the coordinator, not the second labeler).")
@click.pass_context
def review_cmd(
    ctx: click.Context, evaluator: str, run_ids: tuple[str, ...], reason: str | None, as_json: bool
) -> None:
    """Send labels back to the queue for a blind second review by another labeler."""
    from align_mcp.engine.reviews import request_review

    r = request_review(_store(ctx), evaluator, list(run_ids), reason)

    def show() -> None:
        click.echo(
            f"{len(r.requested)} run(s) queued for a blind second review; {r.pending_reviews} open review(s)."
        )
        for n in r.notes:
            click.echo(f"note: {n}")

    emit(r, as_json, show)


@command(main, "reviews")
@click.argument("evaluator")
@click.pass_context
def reviews_cmd(ctx: click.Context, evaluator: str, as_json: bool) -> None:
    """Second reviews and their status, with inter-annotator agreement (kappa)."""
    from align_mcp.engine.reviews import list_reviews

    r = list_reviews(_store(ctx), evaluator)

    def show() -> None:
        table(
            ["run", "status", "first", "second", "final", "in reference set"],
            [
                [
                    i.run_id,
                    i.status,
                    f"{i.first_score} ({i.first_labeler})",
                    "" if i.second_score is None else f"{i.second_score} ({i.second_labeler})",
                    "" if i.final_score is None else f"{i.final_score} ({i.final_labeler})",
                    "yes" if i.in_reference_set else "no",
                ]
                for i in r.reviews
            ],
        )
        if r.agreement is not None:
            a = r.agreement
            kappa = "n/a" if a.kappa is None else f"{a.kappa:.3f}"
            click.echo(
                f"inter-annotator agreement {pct(a.agreement.value)} over {a.n} pair(s), kappa {kappa}"
            )

    emit(r, as_json, show)


@command(main, "adjudicate")
@click.argument("evaluator")
@click.argument("run_id")
@click.argument("score")
@click.option("--labeler", required=True, help="Who decides.")
@click.option("--comment", "-c")
@click.pass_context
def adjudicate_cmd(
    ctx: click.Context,
    evaluator: str,
    run_id: str,
    score: str,
    labeler: str,
    comment: str | None,
    as_json: bool,
) -> None:
    """Settle a disputed (or pending) review with a final label."""
    from align_mcp.engine.reviews import adjudicate

    r = adjudicate(_store(ctx), evaluator, run_id, score, labeler, comment)
    emit(r, as_json, lambda: click.echo(f"{run_id}: {r.status}; the reference set uses {r.reference_score}."))


@command(main, "consistency")
@click.argument("evaluator")
@click.option("-k", "k", type=int, default=5, show_default=True, help="Verdicts per run.")
@click.option("--sample", type=int, default=20, show_default=True, help="Labeled runs to re-judge.")
@click.option("--prompt", default="draft", show_default=True)
@click.option("--temperature", type=float, help="Default: the evaluator's.")
@click.pass_context
def consistency_cmd(
    ctx: click.Context,
    evaluator: str,
    k: int,
    sample: int,
    prompt: str,
    temperature: float | None,
    as_json: bool,
) -> None:
    """Judge self-consistency: re-judge a sample K times and report how often verdicts flip."""
    from align_mcp.diagnose.consistency import self_consistency

    store = _store(ctx)
    r = _run_with_progress(
        as_json,
        lambda progress: self_consistency(
            store, evaluator, k=k, sample=sample, prompt=prompt, temperature=temperature, on_progress=progress
        ),
    )

    def show() -> None:
        sim = simulated(r.model)
        click.echo(
            f"{r.n} run(s) x {r.k} verdicts at temperature {r.temperature:g}: verdict flips on "
            f"{pct(r.flip_rate.value)} of runs, errors {r.errors}{sim}"
        )
        for e in r.examples:
            if e.flipped:
                click.echo(f"  {e.run_id}: {e.scores} (instability {e.flip_share:.0%}){sim}")
        for n in r.notes:
            click.echo(f"note: {n}")

    emit(r, as_json, show)


@command(main, "suggest")
@click.argument("evaluator")
@click.option("-n", "n", type=int, default=10, show_default=True, help="How many runs to suggest.")
@click.option("--budget", type=int, default=50, show_default=True, help="Judge calls allowed.")
@click.option(
    "--repeats", type=int, default=0, show_default=True, help="Extra samples per run for instability."
)
@click.pass_context
def suggest_cmd(ctx: click.Context, evaluator: str, n: int, budget: int, repeats: int, as_json: bool) -> None:
    """Rank unlabeled queued runs by how much a human label would teach."""
    from align_mcp.diagnose.suggestions import suggest_labels

    store = _store(ctx)
    r = _run_with_progress(
        as_json,
        lambda progress: suggest_labels(
            store, evaluator, n=n, budget=budget, repeats=repeats, on_progress=progress
        ),
    )

    def show() -> None:
        table(["run", "value", "reason"], [[x.run_id, f"{x.value:.2f}", x.reason] for x in r.suggestions])
        click.echo(f"{r.judge_calls} judge call(s), {r.cache_hits} from cache, budget {r.budget}")
        for note in r.notes:
            click.echo(f"note: {note}")

    emit(r, as_json, show)


@command(main, "pass-rate")
@click.argument("evaluator")
@click.option("--source", help="Estimate over this source's unlabeled runs.")
@click.option("--ids", help="Comma-separated run ids instead of a source.")
@click.option("--prompt", default="latest", show_default=True)
@click.pass_context
def pass_rate_cmd(
    ctx: click.Context, evaluator: str, source: str | None, ids: str | None, prompt: str, as_json: bool
) -> None:
    """Bias-corrected pass rate of unlabeled runs, from the judge's TPR/TNR on the test split."""
    from align_mcp.diagnose.pass_rate import corrected_pass_rate

    store = _store(ctx)
    run_ids = [x.strip() for x in ids.split(",") if x.strip()] if ids else None
    r = _run_with_progress(
        as_json,
        lambda progress: corrected_pass_rate(
            store, evaluator, run_ids=run_ids, source=source, prompt=prompt, on_progress=progress
        ),
    )

    def show() -> None:
        sim = simulated(r.model)
        click.echo(
            f"judge pass rate {pct(r.observed)} -> corrected {pct(r.corrected)} "
            f"(95% CI {pct(r.ci.low)}–{pct(r.ci.high)}) over {r.n_unlabeled} run(s){sim}"
        )
        click.echo(f"TPR {pct(r.tpr.value)}  TNR {pct(r.tnr.value)} on {r.n_labeled} test example(s){sim}")
        for n in r.notes:
            click.echo(f"note: {n}")

    emit(r, as_json, show)


# ---- optimizer ----------------------------------------------------------------------------------------------


@command(main, "failures")
@click.argument("evaluator")
@click.option("--run", "alignment_run", type=int, help="Alignment run id (default: the latest dev run).")
@click.option("--no-llm", is_flag=True, help="Group by direction and comment terms, without the judge model.")
@click.pass_context
def failures_cmd(
    ctx: click.Context, evaluator: str, alignment_run: int | None, no_llm: bool, as_json: bool
) -> None:
    """Group the misaligned dev cases into named failure modes."""
    from align_mcp.optimize.failure_modes import analyze_failures

    store = _store(ctx)
    r = anyio.run(lambda: analyze_failures(store, evaluator, alignment_run, use_llm=not no_llm))

    def show() -> None:
        click.echo(
            f"{r.misaligned} misaligned of {r.judged} dev example(s) in run {r.alignment_run} ({r.prompt_ref}), "
            f"grouped by {r.method}:"
        )
        for m in r.modes:
            click.echo(f"  {m.name} [{m.direction}] ({len(m.run_ids)}): {m.description}")
            click.echo(f"    {', '.join(m.run_ids)}")
        for n in r.notes:
            click.echo(f"note: {n}")

    emit(r, as_json, show)


def _print_proposal(p: Any) -> None:
    click.echo(f"Proposal {p.id} ({p.mode}) for {p.evaluator!r}: {p.status}")
    for comp in (p.dev, p.test):
        b, a = comp.before.agreement, comp.after.agreement
        click.echo(
            f"  {comp.split} (n = {comp.n}): agreement {pct(b.value)} -> {pct(a.value)}; "
            f"kappa {'n/a' if comp.before.kappa is None else f'{comp.before.kappa:.2f}'} -> "
            f"{'n/a' if comp.after.kappa is None else f'{comp.after.kappa:.2f}'}; {comp.flips.verdict}"
        )
    for m in p.addresses:
        click.echo(f"  fixes {m.fixed}/{m.cases} of '{m.name}' ({m.direction})")
    b = p.budget
    click.echo(f"  model calls {b.used}/{b.budget} (judge {b.judge_calls}, reflection {b.reflection_calls})")
    click.echo(p.verdict)
    if p.diff:
        click.echo("\n" + p.diff)


@command(main, "propose")
@click.argument("evaluator")
@click.option("--mode", type=click.Choice(["gepa", "reflect"]), default="gepa", show_default=True)
@click.option("--budget", type=int, default=300, show_default=True, help="Most model calls to make.")
@click.pass_context
def propose_cmd(ctx: click.Context, evaluator: str, mode: str, budget: int, as_json: bool) -> None:
    """Propose a revised prompt (DSPy GEPA or one reflective rewrite), validated on the held-out test split.

    The proposal is stored, never applied: `align-mcp apply` puts it in the draft, `align-mcp save` saves it.
    """
    from align_mcp.optimize.proposals import propose_prompt

    store = _store(ctx)
    p = _run_with_progress(
        as_json,
        lambda progress: propose_prompt(store, evaluator, mode, budget, progress),  # type: ignore[arg-type]
    )
    emit(p, as_json, lambda: _print_proposal(p))


@command(main, "proposals")
@click.argument("evaluator")
@click.pass_context
def proposals_cmd(ctx: click.Context, evaluator: str, as_json: bool) -> None:
    """List the optimizer's proposals for an evaluator."""
    from align_mcp.optimize.proposals import list_proposals

    ps = list_proposals(_store(ctx), evaluator)
    emit(
        ps,
        as_json,
        lambda: table(
            ["id", "mode", "status", "dev before", "dev after", "test before", "test after", "calls"],
            [
                [
                    p.id,
                    p.mode,
                    p.status,
                    pct(p.dev_before),
                    pct(p.dev_after),
                    pct(p.test_before),
                    pct(p.test_after),
                    p.calls_used,
                ]
                for p in ps
            ],
        ),
    )


@command(main, "proposal")
@click.argument("proposal_id", type=int)
@click.pass_context
def proposal_cmd(ctx: click.Context, proposal_id: int, as_json: bool) -> None:
    """Show one proposal: scores before and after, the failure modes it fixes, and the diff."""
    from align_mcp.optimize.proposals import get_proposal

    p = get_proposal(_store(ctx), proposal_id)
    emit(p, as_json, lambda: _print_proposal(p))


@command(main, "apply")
@click.argument("evaluator")
@click.argument("proposal_id", type=int)
@click.option("--force", is_flag=True, help="Replace a draft edited since the proposal was made.")
@click.pass_context
def apply_cmd(ctx: click.Context, evaluator: str, proposal_id: int, force: bool, as_json: bool) -> None:
    """Put a proposal into the draft (not saved: `align-mcp save` makes it a version)."""
    from align_mcp.optimize.proposals import apply_proposal

    ev = apply_proposal(_store(ctx), evaluator, proposal_id, force)
    emit(
        ev,
        as_json,
        lambda: click.echo(
            f"Proposal {proposal_id} is now the draft of {evaluator!r}; save it with `align-mcp save {evaluator}`."
        ),
    )


# ---- server -------------------------------------------------------------------------------------------------


@main.command("serve")
@click.option("--http", "use_http", is_flag=True, help="Streamable HTTP instead of stdio.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help=f"HTTP bind address (other than loopback needs ${config.ENV_TOKEN}).",
)
@click.option("--port", type=int, default=8765, show_default=True)
@click.pass_context
def serve_cmd(ctx: click.Context, use_http: bool, host: str, port: int) -> None:
    """Run the MCP server (stdio by default)."""
    try:
        from align_mcp.mcp.transport import serve
    except ImportError as e:  # pragma: no cover - the server module ships with the package
        raise click.ClickException(f"The MCP server is not available: {e}") from e
    db = ctx.ensure_object(dict).get("db")
    try:
        serve(db=db, http=use_http, host=host, port=port)
    except AlignError as e:
        raise click.ClickException(str(e)) from e


if __name__ == "__main__":  # pragma: no cover
    main()
