"""Commands for the runs: import a file, list the sources, show one run."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from align_mcp.cli.main import command, store_of
from align_mcp.cli.render import emit, print_json, table


@command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--source", "-s", required=True, help="Name of the source to import into (created if new).")
@click.option("--kind", type=click.Choice(["experiment", "project"]), default="experiment", show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "langfuse", "phoenix", "opik", "mlflow", "otel"]),
    help="Override detection (by extension, then content).",
)
@click.pass_context
def import_cmd(
    ctx: click.Context, path: Path, source: str, kind: str, fmt: str | None, as_json: bool
) -> None:
    """Import runs from a JSONL or CSV file, or a Langfuse, Phoenix, Opik, MLflow or OTLP JSON export
    (idempotent by run id; all or nothing)."""
    from align_mcp.engine.ingest import import_runs

    counting = not as_json and sys.stderr.isatty()

    def progress(n: int) -> None:
        if counting:
            click.echo(f"\r{n:,} runs read", nl=False, err=True)

    report = import_runs(store_of(ctx), source, path=path, kind=kind, fmt=fmt, on_progress=progress)  # type: ignore[arg-type]
    if counting:
        click.echo("", err=True)

    def show() -> None:
        click.echo(
            f"Imported {report.inserted} new run(s) into {report.source!r} ({report.kind}); "
            f"{report.skipped} already stored."
        )
        if report.duplicates:
            click.echo(
                f"  {report.duplicates} record(s) repeated an earlier record of this file (same id and content) "
                "and were stored once."
            )
        for fb in report.feedback:
            target = (
                ", ".join(fb.evaluators) if fb.evaluators else "no evaluator yet (kept for one created later)"
            )
            click.echo(f"  feedback {fb.key!r}: {fb.count} label(s) -> {target}")
        if report.labels:
            click.echo(f"  {report.labels} label(s) stored.")

    emit(report, as_json, show)


@command("sources")
@click.pass_context
def sources_cmd(ctx: click.Context, as_json: bool) -> None:
    """List sources and their run counts."""
    from align_mcp.engine.ingest import list_sources

    sources = list_sources(store_of(ctx))
    emit(
        sources,
        as_json,
        lambda: table(["source", "kind", "runs"], [[s.name, s.kind, s.runs] for s in sources]),
    )


@command("show-run")
@click.argument("run_id")
@click.pass_context
def show_run_cmd(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Show one run in full (as JSON, with or without --json)."""
    from align_mcp.engine.ingest import get_run

    print_json(get_run(store_of(ctx), run_id))


@command("pair")
@click.argument("source_a")
@click.argument("source_b")
@click.option(
    "--into", required=True, help="Name of the source to store the pairwise runs in (created if new)."
)
@click.option(
    "--key",
    default="metadata.reference_example_id",
    show_default=True,
    help="The path both runs of a pair share (id, or under inputs, metadata or reference_outputs).",
)
@click.option("--skip-unmatched", is_flag=True, help="Leave out runs whose key the other source lacks.")
@click.pass_context
def pair_cmd(
    ctx: click.Context,
    source_a: str,
    source_b: str,
    into: str,
    key: str,
    skip_unmatched: bool,
    as_json: bool,
) -> None:
    """Pair two experiments over one dataset into pairwise runs: SOURCE_A gives output A, SOURCE_B output B."""
    from align_mcp.cli.render import notes
    from align_mcp.engine.pairing import pair_sources

    report = pair_sources(store_of(ctx), source_a, source_b, into, key, skip_unmatched=skip_unmatched)

    def show() -> None:
        click.echo(
            f"Paired {report.pairs} example(s) of {source_a!r} (A) and {source_b!r} (B) by {key} into "
            f"{report.source!r}: {report.inserted} new pairwise run(s)."
        )
        for name, ids in ((source_a, report.unmatched_a), (source_b, report.unmatched_b)):
            if ids:
                click.echo(f"  {len(ids)} run(s) of {name!r} had no partner and were left out.")
        notes(report.notes)

    emit(report, as_json, show)
