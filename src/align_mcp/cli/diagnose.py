"""Commands for diagnostics: triage, blind second reviews, self-consistency, label suggestions, pass rate."""

from __future__ import annotations

import click

from align_mcp.cli.main import command, store_of
from align_mcp.cli.render import emit, notes, pct, simulated, table, with_progress


def split_ids(ids: str | None) -> list[str] | None:
    return [x.strip() for x in ids.split(",") if x.strip()] if ids else None


@command("triage")
@click.argument("evaluator")
@click.option("--run", "alignment_run", type=int, help="Alignment run id (default: the latest dev run).")
@click.option("--ids", help="Only these misaligned dev cases, comma-separated (e.g. ones left unclassified).")
@click.option("--limit", type=int, default=50, show_default=True, help="Misaligned dev cases to classify.")
@click.pass_context
def triage_cmd(
    ctx: click.Context, evaluator: str, alignment_run: int | None, ids: str | None, limit: int, as_json: bool
) -> None:
    """Classify misaligned dev cases as judge error, possible label error or rubric gap."""
    from align_mcp.diagnose.triage import triage

    store = store_of(ctx)
    r = with_progress(
        as_json,
        lambda progress: triage(
            store,
            evaluator,
            alignment_run=alignment_run,
            run_ids=split_ids(ids),
            limit=limit,
            on_progress=progress,
        ),
    )

    def show() -> None:
        sim = simulated(r.model)
        click.echo(
            f"Triage of run {r.alignment_run} ({r.prompt_ref}): "
            + ", ".join(f"{k} {v}" for k, v in r.counts.items())
            + f"; {r.judge_calls} request(s) to the judge ({r.reasks} re-ask(s))"
            + sim
        )
        for c in r.cases:
            text = c.reason or c.error or ""
            tag = simulated(r.model, text)
            click.echo(f"  {c.run_id} [{c.direction}] {c.category or 'unclassified'}: {text}{tag}")
        notes(r.notes)

    emit(r, as_json, show)


@command("review")
@click.argument("evaluator")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--reason", help="Why the label is doubted (shown to the coordinator, not the second labeler).")
@click.pass_context
def review_cmd(
    ctx: click.Context, evaluator: str, run_ids: tuple[str, ...], reason: str | None, as_json: bool
) -> None:
    """Send labels back to the queue for a blind second review by another labeler."""
    from align_mcp.engine.reviews import request_review

    r = request_review(store_of(ctx), evaluator, list(run_ids), reason)

    def show() -> None:
        click.echo(
            f"{len(r.requested)} run(s) queued for a blind second review; {r.pending_reviews} open review(s)."
        )
        notes(r.notes)

    emit(r, as_json, show)


@command("reviews")
@click.argument("evaluator")
@click.pass_context
def reviews_cmd(ctx: click.Context, evaluator: str, as_json: bool) -> None:
    """Second reviews and their status, with inter-annotator agreement (kappa)."""
    from align_mcp.engine.reviews import list_reviews

    r = list_reviews(store_of(ctx), evaluator)

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


@command("adjudicate")
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

    r = adjudicate(store_of(ctx), evaluator, run_id, score, labeler, comment)
    emit(r, as_json, lambda: click.echo(f"{run_id}: {r.status}; the reference set uses {r.reference_score}."))


@command("consistency")
@click.argument("evaluator")
@click.option("-k", "k", type=int, default=5, show_default=True, help="Verdicts per run.")
@click.option("--sample", type=int, default=20, show_default=True, help="Labeled runs to re-judge.")
@click.option("--prompt", default="draft", show_default=True)
@click.option("--temperature", type=float, help="Default: the evaluator's.")
@click.option("--batch", is_flag=True, help="Judge through the provider's Batch API (cheaper, slower).")
@click.pass_context
def consistency_cmd(
    ctx: click.Context,
    evaluator: str,
    k: int,
    sample: int,
    prompt: str,
    temperature: float | None,
    batch: bool,
    as_json: bool,
) -> None:
    """Judge self-consistency: re-judge a sample K times and report how often verdicts flip."""
    from align_mcp.diagnose.consistency import self_consistency

    store = store_of(ctx)
    r = with_progress(
        as_json,
        lambda progress: self_consistency(
            store,
            evaluator,
            k=k,
            sample=sample,
            prompt=prompt,
            temperature=temperature,
            on_progress=progress,
            batch=batch,
        ),
    )

    def show() -> None:
        sim = simulated(r.model)
        click.echo(
            f"{r.n} run(s) x {r.k} verdicts at temperature {r.temperature:g}: verdict flips on "
            f"{pct(r.flip_rate.value)} of runs, errors {r.errors}; {r.judged} of {r.judge_calls} sample(s) judged, "
            f"{r.requests} request(s) to the judge ({r.reasks} re-ask(s)){sim}"
        )
        for e in r.examples:
            if e.flipped:
                click.echo(f"  {e.run_id}: {e.scores} (instability {e.flip_share:.0%}){sim}")
        notes(r.notes)

    emit(r, as_json, show)


@command("suggest")
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

    store = store_of(ctx)
    r = with_progress(
        as_json,
        lambda progress: suggest_labels(
            store, evaluator, n=n, budget=budget, repeats=repeats, on_progress=progress
        ),
    )

    def show() -> None:
        table(["run", "value", "reason"], [[x.run_id, f"{x.value:.2f}", x.reason] for x in r.suggestions])
        click.echo(
            f"{r.judge_calls} judgement(s), {r.cache_hits} from cache, budget {r.budget}; {r.requests} request(s) "
            f"to the judge ({r.reasks} re-ask(s))"
        )
        notes(r.notes)

    emit(r, as_json, show)


@command("pass-rate")
@click.argument("evaluator")
@click.option("--source", help="Estimate over this source's unlabeled runs.")
@click.option("--ids", help="Comma-separated run ids instead of a source.")
@click.option("--prompt", default="latest", show_default=True)
@click.option("--batch", is_flag=True, help="Judge through the provider's Batch API (cheaper, slower).")
@click.pass_context
def pass_rate_cmd(
    ctx: click.Context,
    evaluator: str,
    source: str | None,
    ids: str | None,
    prompt: str,
    batch: bool,
    as_json: bool,
) -> None:
    """Bias-corrected pass rate of unlabeled runs, from the judge's TPR/TNR on the test split."""
    from align_mcp.diagnose.pass_rate import corrected_pass_rate

    store = store_of(ctx)
    r = with_progress(
        as_json,
        lambda progress: corrected_pass_rate(
            store,
            evaluator,
            run_ids=split_ids(ids),
            source=source,
            prompt=prompt,
            on_progress=progress,
            batch=batch,
        ),
    )

    def show() -> None:
        sim = simulated(r.model)
        click.echo(
            f"judge pass rate {pct(r.observed)} -> corrected {pct(r.corrected)} "
            f"(95% CI {pct(r.ci.low)}–{pct(r.ci.high)}) over {r.n_unlabeled} run(s){sim}"
        )
        click.echo(f"TPR {pct(r.tpr.value)}  TNR {pct(r.tnr.value)} on {r.n_labeled} test example(s){sim}")
        click.echo(
            f"{r.n_unlabeled} unlabeled run(s) judged, {r.unlabeled_errors} error(s); {r.requests} request(s) to "
            f"the judge ({r.reasks} re-ask(s))"
        )
        notes(r.notes)

    emit(r, as_json, show)
