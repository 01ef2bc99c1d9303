"""Commands for the optimizer: failure modes, a proposed prompt, the proposals, and applying one to the draft."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import click

from align_mcp.cli.main import command, store_of
from align_mcp.cli.render import emit, kappa, note_line, notes, pct, table, with_ci, with_progress

if TYPE_CHECKING:
    from align_mcp.core.models import Interval, Proposal


def print_proposal(p: Proposal) -> None:
    """A proposal as the CLI shows it: agreement before -> after on dev and test, each with its 95% interval."""
    click.echo(f"Proposal {p.id} ({p.mode}) for {p.evaluator!r}: {p.status}")
    for comp in (p.dev, p.test):
        b, a = comp.before.agreement, comp.after.agreement
        left_out = f", {comp.excluded} left out: not judged by both" if comp.excluded else ""
        click.echo(
            f"  {comp.split} (n = {comp.n}{left_out}): agreement {with_ci(b)} -> {with_ci(a)}; "
            f"kappa {kappa(comp.before.kappa)} -> {kappa(comp.after.kappa)}; {comp.flips.verdict}"
        )
    for m in p.addresses:
        click.echo(f"  fixes {m.fixed}/{m.cases} of '{m.name}' ({m.direction})")
    spent = p.budget
    click.echo(
        f"  model requests {spent.used}/{spent.budget} (judge {spent.judge_calls}, reflection "
        f"{spent.reflection_calls}, analysis {spent.analysis_calls}); {spent.examples_judged} example(s) judged, "
        f"{spent.reasks} re-ask(s), {spent.cache_hits} from cache"
    )
    click.echo(note_line(p.verdict))
    if p.diff:
        click.echo("\n" + p.diff)


def _cell(value: float | None, ci: Interval | None) -> str:
    """A table cell: the agreement and its 95% interval, "72.7% (51.8–86.8%)"."""
    if value is None or ci is None:
        return pct(value)
    return f"{pct(value)} ({ci.low * 100:.1f}–{ci.high:.1%})"


@command("failures")
@click.argument("evaluator")
@click.option("--run", "alignment_run", type=int, help="Alignment run id (default: the latest dev run).")
@click.option("--no-llm", is_flag=True, help="Group by direction and comment terms, without the judge model.")
@click.pass_context
def failures_cmd(
    ctx: click.Context, evaluator: str, alignment_run: int | None, no_llm: bool, as_json: bool
) -> None:
    """Group the misaligned dev cases into named failure modes."""
    from align_mcp.optimize.failure_modes import analyze_failures

    store = store_of(ctx)
    r = anyio.run(lambda: analyze_failures(store, evaluator, alignment_run, use_llm=not no_llm))

    def show() -> None:
        click.echo(
            f"{r.misaligned} misaligned of {r.judged} dev example(s) in run {r.alignment_run} ({r.prompt_ref}), "
            f"grouped by {r.method}:"
        )
        for m in r.modes:
            click.echo(f"  {m.name} [{m.direction}] ({len(m.run_ids)}): {m.description}")
            click.echo(f"    {', '.join(m.run_ids)}")
        notes(r.notes)

    emit(r, as_json, show)


@command("propose")
@click.argument("evaluator")
@click.option("--mode", type=click.Choice(["gepa", "reflect", "fewshot"]), default="gepa", show_default=True)
@click.option(
    "--budget",
    type=int,
    default=300,
    show_default=True,
    help="Most model requests to make: every request to the judge, reflection or analysis model counts, retries "
    "and re-asks included (cache hits are free). The optimizer stops at it.",
)
@click.pass_context
def propose_cmd(ctx: click.Context, evaluator: str, mode: str, budget: int, as_json: bool) -> None:
    """Propose a revised prompt (DSPy GEPA or one reflective rewrite), or which corrected dev examples
    {{few_shot_examples}} shows (--mode fewshot), validated on the held-out test split.

    The proposal is stored, never applied: `align-mcp apply` puts it in the draft, `align-mcp save` saves it.
    """
    from align_mcp.optimize.proposals import propose_prompt

    store = store_of(ctx)
    p = with_progress(
        as_json,
        lambda progress: propose_prompt(store, evaluator, mode, budget, progress),  # type: ignore[arg-type]
    )
    emit(p, as_json, lambda: print_proposal(p))


@command("proposals")
@click.argument("evaluator")
@click.pass_context
def proposals_cmd(ctx: click.Context, evaluator: str, as_json: bool) -> None:
    """List the optimizer's proposals for an evaluator."""
    from align_mcp.optimize.overview import proposal_list

    listing = proposal_list(store_of(ctx), evaluator)

    def show() -> None:
        table(
            ["id", "mode", "status", "dev before", "dev after", "test before", "test after", "calls"],
            [
                [
                    p.id,
                    p.mode,
                    p.status,
                    _cell(p.dev_before, p.dev_before_ci),
                    _cell(p.dev_after, p.dev_after_ci),
                    _cell(p.test_before, p.test_before_ci),
                    _cell(p.test_after, p.test_after_ci),
                    p.calls_used,
                ]
                for p in listing.proposals
            ],
        )
        if listing.proposals:
            click.echo("Agreement with its 95% confidence interval (Wilson) in parentheses.")
        notes(listing.notes)

    emit(listing.proposals, as_json, show)


@command("proposal")
@click.argument("proposal_id", type=int)
@click.pass_context
def proposal_cmd(ctx: click.Context, proposal_id: int, as_json: bool) -> None:
    """Show one proposal: scores before and after, the failure modes it fixes, and the diff."""
    from align_mcp.optimize.proposals import get_proposal

    p = get_proposal(store_of(ctx), proposal_id)
    emit(p, as_json, lambda: print_proposal(p))


@command("apply")
@click.argument("evaluator")
@click.argument("proposal_id", type=int)
@click.option("--force", is_flag=True, help="Replace a draft edited since the proposal was made.")
@click.pass_context
def apply_cmd(ctx: click.Context, evaluator: str, proposal_id: int, force: bool, as_json: bool) -> None:
    """Put a proposal into the draft (not saved: `align-mcp save` makes it a version)."""
    from align_mcp.optimize.overview import apply_to_draft

    update = apply_to_draft(store_of(ctx), evaluator, proposal_id, force)

    def show() -> None:
        click.echo(f"Proposal {proposal_id} is now the draft of {evaluator!r}.")
        notes(update.notes)

    emit(update, as_json, show)
