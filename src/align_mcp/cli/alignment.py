"""Commands for alignment: judge the reference set, resume a run, list runs, show a report and the misaligned."""

from __future__ import annotations

import click

from align_mcp import config
from align_mcp.cli.main import PositiveInt, command, split_option, store_of
from align_mcp.cli.render import (
    emit,
    json_line,
    kappa,
    notes,
    pct,
    print_report,
    simulated,
    table,
    with_progress,
)


@command("align")
@click.argument("evaluator")
@click.option("--prompt", default="draft", show_default=True, help="draft, latest, or a version such as v2.")
@split_option
@click.option("--no-compare", is_flag=True, help="Do not compare with the last saved version.")
@click.option(
    "--batch",
    is_flag=True,
    help="Send the judge requests through the provider's Batch API (cheaper, slower; `resume` picks it up).",
)
@click.option(
    "--concurrency",
    type=PositiveInt("the number of parallel judge calls"),
    help=f"Parallel judge calls, at least 1 (default ${config.ENV_CONCURRENCY} or 8).",
)
@click.pass_context
def align_cmd(
    ctx: click.Context,
    evaluator: str,
    prompt: str,
    split: str,
    no_compare: bool,
    batch: bool,
    concurrency: int | None,
    as_json: bool,
) -> None:
    """Judge the reference set with a prompt; report agreement, kappa, TPR/TNR and flips vs the last version."""
    from align_mcp.engine.alignment import run_alignment

    store = store_of(ctx)
    report = with_progress(
        as_json,
        lambda progress: run_alignment(
            store,
            evaluator,
            prompt,
            split=split,
            compare=not no_compare,
            concurrency=concurrency,
            on_progress=progress,
            batch=batch,
        ),
    )
    emit(report, as_json, lambda: print_report(report))


@command("resume")
@click.argument("alignment_id", type=int)
@click.option("--retry-errors", is_flag=True, help="Judge examples that errored again too.")
@click.option("--batch", is_flag=True, help="Judge what is left through the provider's Batch API.")
@click.option(
    "--concurrency",
    type=PositiveInt("the number of parallel judge calls"),
    help="Parallel judge calls, at least 1.",
)
@click.pass_context
def resume_cmd(
    ctx: click.Context,
    alignment_id: int,
    retry_errors: bool,
    batch: bool,
    concurrency: int | None,
    as_json: bool,
) -> None:
    """Finish an interrupted alignment run (only missing examples are judged; a stored batch is polled)."""
    from align_mcp.engine.alignment import resume

    store = store_of(ctx)
    report = with_progress(
        as_json,
        lambda progress: resume(
            store,
            alignment_id,
            retry_errors=retry_errors,
            concurrency=concurrency,
            on_progress=progress,
            batch=batch,
        ),
    )
    emit(report, as_json, lambda: print_report(report))


@command("runs")
@click.argument("evaluator")
@click.pass_context
def runs_cmd(ctx: click.Context, evaluator: str, as_json: bool) -> None:
    """List an evaluator's alignment runs."""
    from align_mcp.engine.alignment import list_runs

    runs = list_runs(store_of(ctx), evaluator)
    emit(
        runs,
        as_json,
        lambda: table(
            ["run", "prompt", "status", "done", "errors", "agreement", "kappa", "model"],
            [
                [
                    s.id,
                    s.prompt_ref,
                    s.status,
                    f"{s.done}/{s.total}",
                    s.errors,
                    pct(s.metrics.agreement.value) if s.metrics else "n/a",
                    kappa(s.metrics.kappa if s.metrics else None),
                    s.model + simulated(s.model),
                ]
                for s in runs
            ],
        ),
    )


@command("report")
@click.argument("alignment_id", type=int)
@click.pass_context
def report_cmd(ctx: click.Context, alignment_id: int, as_json: bool) -> None:
    """Show one alignment run's report."""
    from align_mcp.engine.alignment import report

    r = report(store_of(ctx), alignment_id)
    emit(r, as_json, lambda: print_report(r))


@command("misaligned")
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

    store = store_of(ctx)
    page = get_misaligned(store, evaluator, alignment_run, direction, offset, limit)  # type: ignore[arg-type]
    model = summary(store, page.alignment_run).model

    def show() -> None:
        click.echo(
            f"{page.total} misaligned in run {page.alignment_run} ({page.prompt_ref}){simulated(model)}"
        )
        for c in page.cases:
            click.echo(f"\n--- {c.run_id}  [{c.direction}]  human {c.human_score} vs judge {c.judge_score}")
            click.echo("inputs:    " + json_line(c.inputs))
            click.echo(("outputs:   " if c.outputs_b is None else "output A:  ") + json_line(c.outputs))
            if c.outputs_b is not None:
                click.echo("output B:  " + json_line(c.outputs_b))
            if c.reference_outputs:
                click.echo("reference: " + json_line(c.reference_outputs))
            click.echo(f"human:     {c.human_score}" + (f" — {c.human_comment}" if c.human_comment else ""))
            reasoning = c.judge_reasoning or ""
            tag = simulated(model, reasoning)
            click.echo(f"judge:     {c.judge_score} — {reasoning}{tag}")
            if c.orders is not None:
                click.echo(f"orders:    A shown first {c.orders.original}, B shown first {c.orders.swapped}")
        notes(page.notes)

    emit(page, as_json, show)
