"""Commands for queues and labels: queue runs, list the queues, take the next runs, label one or many."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from align_mcp.cli.main import PositiveInt, command, store_of
from align_mcp.cli.render import emit, json_line, notes, table
from align_mcp.errors import ImportFormatError, InvalidInput


@click.group("queue")
def queue_group() -> None:
    """Annotation queues: add runs, list queues, get items to label."""


@command("add", queue_group)
@click.argument("evaluator")
@click.option("--source", help="Queue runs of this source.")
@click.option("--ids", help="Comma-separated run ids.")
@click.option("--where", multiple=True, metavar="KEY=VALUE", help="Metadata filter (repeatable).")
@click.option("--sample", type=PositiveInt("the sample size"), help="Draw N runs at random (N at least 1).")
@click.option(
    "--stratify-by", metavar="KEY", help="With --sample: keep the proportions of this metadata key."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--stale",
    is_flag=True,
    help="Queue the runs whose label predates a change of instructions (blind relabel).",
)
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
    stale: bool,
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
    r = add_to_queue(
        store_of(ctx), evaluator, source, run_ids, metadata or None, sample, stratify_by, seed, stale=stale
    )
    emit(
        r,
        as_json,
        lambda: click.echo(
            f"Queued {r.added} run(s) for {evaluator!r} ({r.already_queued} already queued); {r.pending} pending."
        ),
    )


@command("list", queue_group)
@click.pass_context
def queue_list(ctx: click.Context, as_json: bool) -> None:
    """Queues with pending / labeled counts and label balance."""
    from align_mcp.engine.overview import queue_list as queues

    listing = queues(store_of(ctx))

    def show() -> None:
        table(
            ["evaluator", "pending", "reserved", "labeled", "stale", "balance"],
            [
                [
                    q.evaluator,
                    q.pending,
                    q.reserved,
                    q.labeled,
                    q.stale,
                    " ".join(f"{k}:{v}" for k, v in q.balance.counts.items()),
                ]
                for q in listing.queues
            ],
        )
        for q in listing.queues:
            for w in q.balance.warnings:
                click.echo(f"warning ({q.evaluator}): {w}")
        notes(listing.notes)

    emit(listing.queues, as_json, show)


@command("next", queue_group)
@click.argument("evaluator")
@click.option("--labeler", default="cli", show_default=True)
@click.option("--limit", type=int, default=5, show_default=True)
@click.pass_context
def queue_next(ctx: click.Context, evaluator: str, labeler: str, limit: int, as_json: bool) -> None:
    """Show (and reserve) the next runs to label."""
    from align_mcp.engine.labeling import next_page

    page = next_page(store_of(ctx), evaluator, labeler, limit)

    def show() -> None:
        for item in page.items:
            click.echo(f"--- {item.run_id}")
            click.echo("inputs:  " + json_line(item.inputs))
            click.echo(("outputs: " if item.outputs_b is None else "output A: ") + json_line(item.outputs))
            if item.outputs_b is not None:
                click.echo("output B: " + json_line(item.outputs_b))
            if item.reference_outputs:
                click.echo("reference: " + json_line(item.reference_outputs))
        if page.items:
            click.echo("")
        notes(page.notes)

    emit(page.items, as_json, show)


@command("label")
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

    r = submit_label(store_of(ctx), evaluator, run_id, score, comment, labeler)
    verb = "Relabeled" if r.relabeled else "Labeled"
    disputed = " (disputed: out of the reference set until settled)" if r.disputed else ""

    def show() -> None:
        click.echo(f"{verb} {run_id} = {r.score}{disputed}; {r.labeled} labeled, {r.pending} pending.")
        notes(r.notes)

    emit(r, as_json, show)


@command("labels")
@click.argument("evaluator")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--labeler", default="cli", show_default=True)
@click.pass_context
def labels_cmd(ctx: click.Context, evaluator: str, path: Path, labeler: str, as_json: bool) -> None:
    """Submit many labels from a JSONL file of {"run_id", "score", "comment"?} (all or nothing)."""
    from align_mcp.engine.queues import submit_labels

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
    receipts = submit_labels(store_of(ctx), evaluator, items, labeler)

    def show() -> None:
        click.echo(f"Stored {len(receipts)} label(s) for {evaluator!r}.")
        notes([note for r in receipts for note in r.notes])

    emit(receipts, as_json, show)
