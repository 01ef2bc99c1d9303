"""`align-mcp chart`: an evaluator's alignment charts as PNG or SVG files (the pages draw the same specs)."""

from __future__ import annotations

from pathlib import Path

import click

from align_mcp.cli.main import command, store_of

KINDS = ("agreement", "confusion")


@command("chart")
@click.argument("evaluator")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="A .png or .svg file."
)
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="agreement",
    show_default=True,
    help="agreement: agreement and kappa per saved version; confusion: one run's confusion matrix.",
)
@click.option("--run", "alignment_run", type=int, help="The alignment run (confusion; default: the latest).")
@click.pass_context
def chart_cmd(
    ctx: click.Context, evaluator: str, out: Path, kind: str, alignment_run: int | None, as_json: bool
) -> None:
    """Draw a chart of EVALUATOR's alignment runs to a PNG or SVG file (needs the charts extra:
    pip install 'align-mcp[charts]')."""
    from align_mcp.web import charts

    suffix = out.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise click.BadParameter(f"{out.name} is neither .png nor .svg.", param_hint="--out")
    spec = charts.chart_spec(store_of(ctx), evaluator, kind, alignment_run)  # type: ignore[arg-type]
    if suffix == ".png":
        out.write_bytes(charts.png(spec))
    else:
        out.write_text(charts.svg(spec), encoding="utf-8")
    if as_json:
        import json

        click.echo(json.dumps({"evaluator": evaluator, "kind": kind, "path": str(out)}))
    else:
        click.echo(f"Wrote the {kind} chart of {evaluator} to {out}.")
