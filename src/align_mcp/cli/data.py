"""Commands for data out: export a reference set, print a judge card."""

from __future__ import annotations

from pathlib import Path

import click

from align_mcp.cli.main import PositiveInt, command, store_of
from align_mcp.cli.render import emit, print_json
from align_mcp.core.exports import EXPORT_FORMATS


@command("export")
@click.argument("evaluator")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    default="jsonl",
    show_default=True,
    help="jsonl and csv import again (align-mcp import); langsmith is a LangSmith dataset file.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (replaced if it exists); default: standard output.",
)
@click.pass_context
def export_cmd(ctx: click.Context, evaluator: str, fmt: str, output: Path | None, as_json: bool) -> None:
    """Export an evaluator's reference set: runs, current labels, label history, labelers, comments, dev/test split."""
    from align_mcp.engine.exports import export_reference_set

    report = export_reference_set(store_of(ctx), evaluator, fmt, output, overwrite=True)  # type: ignore[arg-type]
    if output is None and not as_json:
        click.echo(report.content or "", nl=False)
        return

    def show() -> None:
        left = f"; {report.left_out} disputed run(s) left out" if report.left_out else ""
        click.echo(
            f"Wrote {report.records} labeled run(s) ({report.labels} labels, {report.dev} dev / {report.test} test) "
            f"of {evaluator!r} to {report.path} as {report.format}{left}.",
            err=output is None,
        )

    emit(report, as_json, show)


@command("card")
@click.argument("evaluator")
@click.option(
    "--version", "version", type=PositiveInt("the version number"), help="Default: the latest saved."
)
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md", show_default=True)
@click.pass_context
def card_cmd(ctx: click.Context, evaluator: str, version: int | None, fmt: str, as_json: bool) -> None:
    """Print the judge card of a saved version: prompt, judge, test-split figures, labels, agreement, dates."""
    from align_mcp.core.cards import card_markdown
    from align_mcp.engine.card import judge_card

    card = judge_card(store_of(ctx), evaluator, version)
    if as_json or fmt == "json":
        print_json(card)
    else:
        click.echo(card_markdown(card), nl=False)
