"""How results read on the command line: next steps as commands, notes, tables, reports, JSON and progress."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, assert_never

import anyio
import click
from pydantic import BaseModel

from align_mcp.errors import AlignError, NextStep, StepArg

if TYPE_CHECKING:  # the models load with the first command that needs them, not with `align-mcp serve`
    from align_mcp.core.models import AlignmentReport, AlignmentSummary, JuryReport, Metrics, Note, Rate

COMMENT = "'...'"


def _arg(value: StepArg | None, placeholder: str) -> str:
    if value is None:
        return placeholder
    if isinstance(value, list):
        return " ".join(shlex.quote(v) for v in value)
    return shlex.quote(str(value))


def cmd(*words: str) -> str:
    """An `align-mcp` command line as the user would type it, in backticks."""
    return "`" + " ".join(["align-mcp", *words]) + "`"


def step_words(step: NextStep) -> str:
    """One next step as a sentence naming the `align-mcp` command that takes it."""
    a = step.args
    evaluator = _arg(a.get("evaluator"), "EVALUATOR")
    match step.action:
        case "import_runs":
            return f"Import runs with {cmd('import', 'PATH', '--source', _arg(a.get('source'), 'SOURCE'))}."
        case "create_evaluator":
            return f"Create one with {cmd('evaluator', 'create', 'NAME')}."
        case "show_evaluator":
            return f"{cmd('evaluator', 'show', evaluator)} shows it."
        case "show_draft":
            return f"{cmd('draft', 'show', evaluator)} prints the draft."
        case "update_draft":
            return (
                f"Edit the draft with {cmd('draft', 'edit', evaluator, '--file', 'PROMPT_FILE')} "
                "(or --replace OLD NEW)."
            )
        case "save_prompt":
            return f"Save it as a new version with {cmd('save', evaluator)}."
        case "list_versions":
            return f"{cmd('versions', evaluator)} lists the saved versions."
        case "add_to_queue":
            if a.get("stale"):
                return f"Send them back for a blind relabel with {cmd('queue', 'add', evaluator, '--stale')}."
            return (
                f"Queue runs with {cmd('queue', 'add', evaluator, '--source', 'SOURCE')}, then label them "
                f"with {cmd('queue', 'next', evaluator)} and "
                f"{cmd('label', evaluator, 'RUN_ID', 'SCORE')}."
            )
        case "label":
            if "run_id" in a:
                return f"Label it with {cmd('label', evaluator, _arg(a['run_id'], 'RUN_ID'), 'SCORE')}."
            return f"Label each with {cmd('label', evaluator, 'RUN_ID', 'SCORE', '--comment', COMMENT)}."
        case "show_run":
            run_id = _arg(a.get("run_id"), "RUN_ID")
            return f"{cmd('show-run', run_id)} prints {'it' if 'run_id' in a else 'a run'} in full."
        case "run_alignment":
            if "split" in a:
                split = _arg(a["split"], "SPLIT")
                return f"Judge the {split} split with {cmd('align', evaluator, '--split', split)}."
            return f"Judge the reference set with {cmd('align', evaluator)}."
        case "resume_alignment":
            run = _arg(a.get("alignment_run"), "ALIGNMENT_ID")
            if a.get("retry_errors"):
                return f"Judge them again with {cmd('resume', run, '--retry-errors')}."
            return f"Finish it with {cmd('resume', run)}."
        case "list_alignment_runs":
            return f"{cmd('runs', evaluator)} lists the alignment runs."
        case "show_misaligned":
            words = ["misaligned", evaluator]
            if "alignment_run" in a:
                words += ["--run", _arg(a["alignment_run"], "ID")]
            if "offset" in a:
                return f"The next page: {cmd(*words, '--offset', _arg(a['offset'], 'N'))}."
            return f"See them with {cmd(*words)}."
        case "triage":
            words = ["triage", evaluator]
            if "alignment_run" in a:
                words += ["--run", _arg(a["alignment_run"], "ID")]
            if "run_ids" in a:
                ids = a["run_ids"]
                words += ["--ids", shlex.quote(",".join(ids) if isinstance(ids, list) else str(ids))]
                return f"Try them again with {cmd(*words)}."
            if "limit" in a:
                return f"Include them with {cmd(*words, '--limit', _arg(a['limit'], 'N'))}."
            return f"Classify the disagreements with {cmd(*words)}."
        case "request_review":
            ids = _arg(a.get("run_ids"), "RUN_ID...")
            return (
                f"Send them to a blind second review by another labeler with {cmd('review', evaluator, ids)}."
            )
        case "list_reviews":
            return f"{cmd('reviews', evaluator)} shows where the reviews stand."
        case "adjudicate_label":
            run_id = _arg(a.get("run_id"), "RUN_ID")
            settle = cmd("adjudicate", evaluator, run_id, "SCORE", "--labeler", "NAME")
            return f"Settle it with the human's final label: {settle}."
        case "check_consistency":
            return f"Measure how often the judge's verdicts flip with {cmd('consistency', evaluator)}."
        case "suggest_labels":
            words = ["suggest", evaluator]
            if "repeats" in a:
                words += ["--repeats", _arg(a["repeats"], "N")]
            if "budget" in a:
                words += ["--budget", _arg(a["budget"], "N")]
            return f"Rank the queue with {cmd(*words)}."
        case "analyze_failures":
            words = ["failures", evaluator]
            if "alignment_run" in a:
                words += ["--run", _arg(a["alignment_run"], "ID")]
            return f"Group the misaligned cases into failure modes with {cmd(*words)}."
        case "propose_prompt":
            words = ["propose", evaluator]
            if "mode" in a:
                words += ["--mode", _arg(a["mode"], "MODE")]
            if "budget" in a:
                words += ["--budget", _arg(a["budget"], "N")]
            if len(words) > 2:
                return f"Try {cmd(*words)}."
            return f"Let the optimizer propose a revised prompt with {cmd(*words)}."
        case "list_proposals":
            return f"{cmd('proposals', evaluator)} lists the proposals."
        case "apply_proposal":
            proposal = _arg(a.get("proposal_id"), "PROPOSAL_ID")
            if a.get("force"):
                apply = cmd("apply", evaluator, proposal, "--force")
                return f"Apply it anyway with {apply}; the later draft edits are lost."
            return f"Copy it into the draft with {cmd('apply', evaluator, proposal)}."
        case _ as unreachable:
            assert_never(unreachable)


def with_steps(text: str, steps: Sequence[NextStep]) -> str:
    """A message followed by its next steps, each worded as a command."""
    return " ".join([text, *(step_words(s) for s in steps)])


def note_line(note: Note | str) -> str:
    """A note as one line: its text, then its next steps as commands."""
    return note if isinstance(note, str) else with_steps(note.text, note.next_steps)


def error_text(error: AlignError) -> str:
    """An error as one line: what happened, the bad value, and the command to run next."""
    return with_steps(error.message, error.next_steps)


def plain(value: Any) -> Any:
    """A result as JSON data, with its notes as lines in the command line's words."""
    from align_mcp.core.models import NOTE_WORDS

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", context={NOTE_WORDS: note_line})
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(plain(value), indent=2, ensure_ascii=False, default=str))


def emit(value: Any, as_json: bool, human: Callable[[], None]) -> None:
    """Print a result: JSON for scripts, else the human view."""
    if as_json:
        print_json(value)
    else:
        human()


def notes(items: Sequence[Note | str], prefix: str = "note") -> None:
    for item in items:
        click.echo(f"{prefix}: {note_line(item)}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def with_ci(r: Rate) -> str:
    """A rate with its 95% interval: "72.7% (95% CI 51.8%–86.8%)", or just the rate when it has none."""
    return pct(r.value) if r.ci is None else f"{pct(r.value)} (95% CI {r.ci.low:.1%}–{r.ci.high:.1%})"


def kappa(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def simulated(model: str, text: str = "") -> str:
    """The tag a line from the simulated judge ends with, unless `text` (the judge's own words) already says so."""
    if text.startswith("[simulated judge]"):
        return ""
    return " [simulated judge]" if "simulated" in model.lower() else ""


def json_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def with_progress(as_json: bool, job: Callable[[Any], Any]) -> Any:
    """Run an async job, drawing its progress on stderr when a person is watching (not with --json)."""
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
    label = "quadratic-weighted kappa" if m.kind == "ordinal" else "Cohen's kappa"
    kci = f" (95% CI {m.kappa_ci.low:.3f}–{m.kappa_ci.high:.3f})" if m.kappa_ci else ""
    click.echo(f"  {label} {kappa(m.kappa, 3)}{kci}{sim}")
    if m.kind == "binary" and m.tpr and m.tnr:
        click.echo(
            f"  TPR (pass recall) {pct(m.tpr.value)}  TNR (fail recall) {pct(m.tnr.value)}  "
            f"false passes {m.false_pass}  false fails {m.false_fail}{sim}"
        )
    if m.within_one is not None:
        click.echo(f"  within one {pct(m.within_one.value)}{sim}")
    if m.pairwise is not None:
        p = m.pairwise
        click.echo(
            f"  position swap: agreement {pct(p.original.value)} with A shown first, {pct(p.swapped.value)} with "
            f"B shown first (mean {pct(p.mean)}); same winner in both orders {pct(p.consistency.value)} "
            f"({p.consistency.k}/{p.consistency.n}); the figures above are of the combined verdict{sim}"
        )


def counts_line(s: AlignmentSummary) -> str:
    """What a run did and cost: examples done, judged (from the cache) and in error; requests and re-asks."""
    waited = f", {s.waited_s:.0f}s waiting" if s.waited_s >= 1 else ""
    return (
        f"{s.done}/{s.total} done: {s.judged} judged ({s.cache_hits} from cache), {s.errors} error(s); "
        f"{s.requests} request(s) to the judge ({s.reasks} re-ask(s)){waited}"
    )


def print_summary(title: str, s: AlignmentSummary) -> None:
    click.echo(
        f"{title}: run {s.id}, {s.evaluator} {s.prompt_ref}, model {s.model}{simulated(s.model)} — {s.status}, "
        + counts_line(s)
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
    if r.jury is not None:
        print_jury(r.jury, r.run)
    if r.baseline is not None:
        print_summary("Compared with the last saved version", r.baseline)
    if r.flips is not None:
        f = r.flips
        click.echo(f"Flips vs {f.baseline}: {f.verdict}{simulated(r.run.model)}")
        if f.fixed:
            click.echo("  fixed:  " + ", ".join(f.fixed))
        if f.broken:
            click.echo("  broken: " + ", ".join(f.broken))
    if len(r.by_rubric) > 1 or r.stale_labels:
        click.echo("By rubric (the saved version each label was given under):")
        for g in r.by_rubric:
            stale = " (possibly stale)" if g.stale else ""
            click.echo(f"  v{g.rubric_version}: agreement {pct(g.agreement.value)} of {g.n}{stale}")
    for e in r.error_examples:
        click.echo(f"  error {e.run_id}: {e.error}")
    notes(r.warnings, "warning")
    notes(r.notes)


def print_jury(j: JuryReport, run: AlignmentSummary) -> None:
    """Each member's agreement beside the jury's, and how often the members split."""
    click.echo(
        f"Jury ({j.combine}): members split on {j.split.k}/{j.split.n} examples ({pct(j.split.value)})"
    )
    rows: list[list[Any]] = [
        [m.member, with_ci(m.agreement), kappa(m.kappa), m.n, m.errors] for m in j.members
    ]
    if run.metrics is not None:
        m = run.metrics
        rows.append(["jury", with_ci(m.agreement), kappa(m.kappa), m.n, m.errors])
    table(["member", "agreement", "kappa", "n", "errors"], rows)
    notes(j.notes)
