"""The pages and fragments as HTML, built from the engine's typed results; every value goes through esc()."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from align_mcp.core.models import (
    AlignmentReport,
    AlignmentSummary,
    Evaluator,
    MisalignedPage,
    QueueSummary,
    Run,
    ScoreType,
)
from align_mcp.errors import Action, AlignError, NextStep
from align_mcp.web.markup import collapsible, esc, fields_html, instructions, markdown

STEP_WORDS: dict[Action, str] = {
    "import_runs": "import runs (align-mcp import)",
    "create_evaluator": "create an evaluator (align-mcp evaluator create)",
    "show_evaluator": "look at the evaluator (align-mcp evaluator show)",
    "show_draft": "read the draft (align-mcp draft show)",
    "update_draft": "edit the draft (align-mcp draft edit)",
    "save_prompt": "save the draft as a version (align-mcp save)",
    "list_versions": "list the saved versions (align-mcp versions)",
    "add_to_queue": "queue more runs (align-mcp queue add)",
    "label": "label it on the label page",
    "show_run": "open the whole run (align-mcp show-run)",
    "run_alignment": "run an alignment (align-mcp align)",
    "resume_alignment": "resume the alignment run (align-mcp resume)",
    "list_alignment_runs": "list the alignment runs (align-mcp runs)",
    "show_misaligned": "open the review page",
    "triage": "triage the disagreements (align-mcp triage)",
    "request_review": "send runs to a blind second review from the review page",
    "list_reviews": "list the second reviews (align-mcp reviews)",
    "adjudicate_label": "settle it with a final label (align-mcp adjudicate)",
    "check_consistency": "check the judge's self-consistency (align-mcp consistency)",
    "suggest_labels": "see which runs to label next (align-mcp suggest)",
    "analyze_failures": "cluster the failures (align-mcp failures)",
    "propose_prompt": "ask the optimizer for a prompt (align-mcp propose)",
    "list_proposals": "list the proposals (align-mcp proposals)",
    "apply_proposal": "apply a proposal to the draft (align-mcp apply)",
}
"""Every next step in the page's words: what the page offers, or the command that does it (a test checks that
every action has its words)."""

KEYS_HELP = (
    ("c", "comment (Enter keeps it for the label, Esc leaves the box)"),
    ("j / k", "next / previous run"),
    ("u", "undo: back to your last label, to replace it"),
    ("s", "skip this run"),
)


def step_text(step: NextStep) -> str:
    return STEP_WORDS[step.action]


def error_text(error: AlignError) -> str:
    """An engine error as the page shows it: the message, then what to do, in the page's words."""
    steps = "; ".join(step_text(s) for s in error.next_steps)
    return error.message + (f" Next: {steps}." if steps else "")


def score_keys(score_type: ScoreType) -> list[tuple[str, str, str]]:
    """(key, score value, name) for each score the page offers: binary 1/0, the digits of an ordinal range or of
    the categorical labels (the first ten get a key; the rest are buttons)."""
    if score_type.kind == "binary":
        return [("1", "1", "pass"), ("0", "0", "fail")]
    if score_type.kind == "pairwise":
        keys = [("a", "A", "A is better"), ("b", "B", "B is better")]
        return keys + ([("t", "tie", "tie")] if score_type.ties else [])
    if score_type.kind == "ordinal":
        assert score_type.min is not None and score_type.max is not None
        values = list(range(score_type.min, score_type.max + 1))
        single = all(0 <= v <= 9 for v in values)
        return [(str(v) if single else "", str(v), str(v)) for v in values]
    labels = score_type.labels or []
    return [(str(i + 1) if i < 9 else "", label, label) for i, label in enumerate(labels)]


def score_name(score_type: ScoreType, value: object) -> str:
    if score_type.kind == "binary":
        return {"1": "pass", "0": "fail"}.get(str(value), str(value))
    return str(value)


def document(title: str, body: str, base: str, view: str = "", data: dict[str, str] | None = None) -> str:
    """A whole page: the stylesheet and the one script (no inline script or style anywhere)."""
    attrs = "".join(
        f' data-{esc(k)}="{esc(v)}"' for k, v in {"base": base, "view": view, **(data or {})}.items()
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)} · align-mcp</title>"
        f"<link rel=stylesheet href='{esc(base)}/static/style.css'>"
        f"<script src='{esc(base)}/static/page.js' defer></script>"
        f"</head><body{attrs}>"
        f"<header class=top><a class=home href='{esc(base)}/'>align-mcp</a> <span>{esc(title)}</span></header>"
        f"<main>{body}</main></body></html>"
    )


def progress_html(summary: QueueSummary, score_type: ScoreType) -> str:
    """ "23 of 60 labeled, balance 9 fail / 14 pass", and the engine's warnings about the label balance."""
    total = summary.labeled + summary.pending
    counts = summary.balance.counts
    order = ["0", "1"] if score_type.kind == "binary" else list(counts)
    parts = " / ".join(f"{counts.get(v, 0)} {esc(score_name(score_type, v))}" for v in order)
    warnings = "".join(f"<li>{esc(w)}</li>" for w in summary.balance.warnings)
    return (
        f"<p class=counts><strong>{summary.labeled} of {total} labeled</strong>, balance {parts}"
        f"{f' · {summary.reserved} reserved' if summary.reserved else ''}</p>"
        + (f"<ul class=warnings>{warnings}</ul>" if warnings else "")
    )


def run_html(run: Run) -> str:
    """One run as the labeler sees it: never its labels (a run under blind review shows nothing of the first)."""
    meta = ""
    if run.metadata:
        meta = f"<details class=meta><summary>metadata</summary>{fields_html('metadata', run.metadata)}</details>"
    return (
        f"<p class=run-id>run <code>{esc(run.id)}</code> · source {esc(run.source)}</p>"
        + fields_html("inputs", run.inputs)
        + outputs_html(run.outputs, run.outputs_b)
        + fields_html("reference outputs", run.reference_outputs)
        + meta
    )


def outputs_html(outputs: dict[str, Any], outputs_b: dict[str, Any] | None) -> str:
    """A run's output; a pairwise run's outputs A and B side by side."""
    if outputs_b is None:
        return fields_html("outputs", outputs)
    return f"<div class='side-by-side pair'>{fields_html('output A', outputs)}{fields_html('output B', outputs_b)}</div>"


def done_html(skipped: int = 0) -> str:
    more = f" You skipped {skipped}; press k to go back to them." if skipped else ""
    return f"<p class=done>Nothing left to label in this queue.{esc(more)}</p>"


def label_page(ev: Evaluator, summary: QueueSummary, base: str) -> str:
    """The label view: the rubric, the keys, the progress, the run (filled in by the script) and the comment."""
    keys = score_keys(ev.score_type)
    buttons = "".join(
        f"<button type=button class=score data-score='{esc(value)}' data-key='{esc(key)}' "
        f"data-name='{esc(name)}'>"
        f"{f'<kbd>{esc(key)}</kbd> ' if key else ''}{esc(name)}</button>"
        for key, value, name in keys
    )
    help_rows = "".join(
        f"<li><kbd>{esc(key)}</kbd> {esc(name)}</li>" for key, _value, name in keys if key
    ) + "".join(f"<li><kbd>{esc(k)}</kbd> {esc(what)}</li>" for k, what in KEYS_HELP)
    rules = instructions(ev.draft)
    rubric = collapsible(f"<div class=md>{markdown(rules)}</div>", len(rules))
    body = (
        "<section class=labeler>"
        "<form id=name-form class=name-form hidden>"
        "<label for=labeler-name>Your name (kept in this browser, stored with each label):</label> "
        "<input id=labeler-name name=labeler autocomplete=name required maxlength=100> "
        "<button type=submit>Start labeling</button></form>"
        "<p id=whoami class=whoami hidden>Labeling as <strong id=labeler-shown></strong> "
        "<button type=button id=change-name class=link>change</button></p></section>"
        f"<section id=progress class=progress aria-live=polite>{progress_html(summary, ev.score_type)}</section>"
        "<div class=columns><div class=main-col>"
        "<p id=banner class=banner hidden></p>"
        "<p id=message class=message role=alert hidden></p>"
        "<article id=run class=run data-run-id='' aria-live=polite><p class=loading>Loading…</p></article>"
        f"<div class=scores>{buttons}</div>"
        "<label for=comment class=comment-label>Comment (<kbd>c</kbd>)</label>"
        "<textarea id=comment rows=3 maxlength=20000 "
        "placeholder='Why is this score right? Enter keeps it for the label; Shift+Enter adds a line.'></textarea>"
        "<p id=comment-state class=comment-state></p>"
        "</div><aside class=side-col>"
        f"<section class=keys><h2>Keys</h2><ul>{help_rows}</ul></section>"
        f"<section class=rubric><h2>Rubric</h2><p class=hint>The draft's instructions to the judge.</p>{rubric}</section>"
        f"<p><a href='{esc(base)}/review/{esc(ev.name)}'>Review the latest alignment run</a> · "
        f"<a href='{esc(base)}/charts/{esc(ev.name)}'>charts</a></p>"
        "</aside></div>"
    )
    return document(
        f"Label {ev.name}", body, base, "label", {"evaluator": ev.name, "score-type": ev.score_type.kind}
    )


def index_page(queues: Sequence[QueueSummary], base: str) -> str:
    if not queues:
        body = (
            "<p>No evaluators yet. Create one (align-mcp evaluator create), import runs (align-mcp import) "
            "and queue them (align-mcp queue add).</p>"
        )
    else:
        rows = "".join(
            f"<tr><td>{esc(q.evaluator)}</td><td>{esc(q.score_type)}</td><td>{q.labeled}</td><td>{q.pending}</td>"
            f"<td><a href='{esc(base)}/label/{esc(q.evaluator)}'>label</a> · "
            f"<a href='{esc(base)}/review/{esc(q.evaluator)}'>review</a></td></tr>"
            for q in queues
        )
        body = (
            "<table class=queues><thead><tr><th>evaluator</th><th>score</th><th>labeled</th><th>pending</th>"
            f"<th></th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return document("Queues", body, base, "index")


def login_page(base: str, target: str, error: str | None = None) -> str:
    problem = f"<p class=message role=alert>{esc(error)}</p>" if error else ""
    body = (
        f"{problem}<form method=post action='{esc(base)}/login' class=login>"
        "<label for=token>This server needs its token (ALIGN_MCP_TOKEN):</label> "
        "<input id=token name=token type=password autocomplete=current-password required> "
        f"<input type=hidden name=next value='{esc(target)}'>"
        "<button type=submit>Log in</button></form>"
    )
    return document("Log in", body, base, "login")


def error_page(base: str, message: str) -> str:
    return document("Error", f"<p class=message role=alert>{esc(message)}</p>", base, "error")


def _score_cell(score_type: ScoreType, value: object) -> str:
    return f"<span class='score-value s-{esc(value)}'>{esc(score_name(score_type, value))}</span>"


def review_page(
    ev: Evaluator,
    page: MisalignedPage,
    report: AlignmentReport,
    runs: Sequence[AlignmentSummary],
    direction: str | None,
    directions: Sequence[str],
    base: str,
    flash: str | None = None,
) -> str:
    """Misaligned cases of an alignment run side by side, the direction filter, the flip list against the last
    saved version, and a form that sends chosen runs to a blind second review."""
    st = ev.score_type
    here = f"{base}/review/{ev.name}"
    run_links = " ".join(
        f"<a href='{esc(here)}?run={r.id}'{' class=current' if r.id == page.alignment_run else ''}>"
        f"#{r.id} {esc(r.prompt_ref)} ({esc(r.split)})</a>"
        for r in runs[-10:]
    )
    filters = " ".join(
        f"<a href='{esc(here)}?run={page.alignment_run}" + (f"&amp;direction={esc(d)}" if d else "") + "'"
        f"{' class=current' if d == (direction or '') else ''}>{esc(d.replace('_', ' ') or 'all')}</a>"
        for d in ["", *directions]
    )
    m = report.run.metrics
    headline = ""
    if m is not None and m.agreement.value is not None:
        kappa = f", κ {m.kappa:.2f}" if m.kappa is not None else ""
        headline = f"agreement {m.agreement.value:.0%} on {m.n}{kappa}"
    flips = "<p>No saved version judged these examples yet, so there is no flip list.</p>"
    if report.flips is not None and report.baseline is not None:
        f = report.flips
        fixed = ", ".join(f"<code>{esc(r)}</code>" for r in f.fixed) or "none"
        broken = ", ".join(f"<code>{esc(r)}</code>" for r in f.broken) or "none"
        flips = (
            f"<p>Against {esc(f.baseline)} (run #{report.baseline.id}) on {f.n} examples: {esc(f.verdict)}</p>"
            f"<p class=fixed>Fixed ({len(f.fixed)}): {fixed}</p><p class=broken>Broken ({len(f.broken)}): {broken}</p>"
        )
    cases = []
    for c in page.cases:
        comment = (
            f"<div class=md>{markdown(c.human_comment)}</div>" if c.human_comment else "<p>(no comment)</p>"
        )
        reasoning = (
            f"<div class=md>{markdown(c.judge_reasoning)}</div>"
            if c.judge_reasoning
            else "<p>(no reasoning)</p>"
        )
        if c.orders is not None:
            reasoning = "".join(
                f"<h5>{esc(order)}: {_score_cell(st, score) if score is not None else 'error'}</h5>"
                f"<div class=md>{markdown(text or '(no reasoning)')}</div>"
                for order, score, text in (
                    ("A shown first", c.orders.original, c.orders.original_reasoning),
                    ("B shown first", c.orders.swapped, c.orders.swapped_reasoning),
                )
            )
        unstable = f" · flips {c.flip_share:.0%} of samples" if c.flip_share else ""
        cases.append(
            f"<article class=case id='case-{esc(c.run_id)}'>"
            f"<h2 class=case-head><label><input type=checkbox name=run_ids value='{esc(c.run_id)}' form=second-review> "
            f"<code>{esc(c.run_id)}</code></label> <span class=direction>{esc(c.direction.replace('_', ' '))}"
            f"{esc(unstable)}</span></h2>"
            + fields_html("inputs", c.inputs)
            + outputs_html(c.outputs, c.outputs_b)
            + fields_html("reference outputs", c.reference_outputs)
            + "<div class=side-by-side>"
            f"<section class=human><h4>Human: {_score_cell(st, c.human_score)}</h4>"
            f"<p class=who>{esc(c.labeler or 'unnamed')}</p>{comment}</section>"
            f"<section class=judge><h4>Judge: {_score_cell(st, c.judge_score)}</h4>{reasoning}</section>"
            "</div></article>"
        )
    more = ""
    if page.next_offset is not None:
        more = (
            f"<p><a href='{esc(here)}?run={page.alignment_run}&amp;offset={page.next_offset}"
            + (f"&amp;direction={esc(direction)}" if direction else "")
            + f"'>next {min(25, page.total - page.next_offset)} of {page.total - page.next_offset} more</a></p>"
        )
    notice = f"<p class=flash role=status>{esc(flash)}</p>" if flash else ""
    body = (
        notice
        + f"<p class=runs>Alignment runs: {run_links} · <a href='{esc(base)}/charts/{esc(ev.name)}?run="
        + f"{page.alignment_run}'>charts</a></p>"
        + f"<h2>Run #{page.alignment_run} ({esc(page.prompt_ref)}) — {esc(headline)}</h2>"
        + f"<section class=flips><h2>Flips</h2>{flips}</section>"
        + _jury_html(report)
        + f"<p class=filters>Show: {filters}</p>"
        + f"<p>{page.total} misaligned case(s){' in this direction' if direction else ''}.</p>"
        + f"<form id=second-review method=post action='{esc(here)}/second-review' class=second-review>"
        + f"<input type=hidden name=run value='{page.alignment_run}'>"
        + "<label for=reason>Reason (optional):</label> <input id=reason name=reason maxlength=2000> "
        + "<button type=submit>Send checked runs to a blind second review</button></form>"
        + "".join(cases)
        + more
    )
    return document(f"Review {ev.name}", body, base, "review", {"evaluator": ev.name})


def _jury_html(report: AlignmentReport) -> str:
    """A jury's members beside the jury (agreement, κ) and the split rate; nothing for a single judge."""
    j = report.jury
    if j is None:
        return ""
    rows = [(m.member, m.agreement.value, m.kappa, m.n, m.errors) for m in j.members]
    if (m := report.run.metrics) is not None:
        rows.append(("jury", m.agreement.value, m.kappa, m.n, m.errors))
    cells = "".join(
        f"<tr><td>{esc(name)}</td><td>{'n/a' if a is None else f'{a:.0%}'}</td>"
        f"<td>{'n/a' if k is None else f'{k:.2f}'}</td><td>{n}</td><td>{errors}</td></tr>"
        for name, a, k, n, errors in rows
    )
    split = "n/a" if j.split.value is None else f"{j.split.value:.0%}"
    return (
        f"<section class=jury><h2>Jury ({esc(j.combine)})</h2>"
        f"<p>Members split on {split} of {j.split.n} examples.</p>"
        "<table><tr><th>member</th><th>agreement</th><th>κ</th><th>judged</th><th>errors</th></tr>"
        f"{cells}</table></section>"
    )


def no_alignment_page(ev: Evaluator, message: str, base: str) -> str:
    body = (
        f"<p class=message role=alert>{esc(message)}</p>"
        f"<p><a href='{esc(base)}/label/{esc(ev.name)}'>Label runs</a> meanwhile.</p>"
    )
    return document(f"Review {ev.name}", body, base, "review", {"evaluator": ev.name})


def charts_page(ev: Evaluator, base: str, run: str | None) -> str:
    """The charts, as images drawn by the server (an image runs no script, whatever its text holds)."""
    here = f"{base}/charts/{ev.name}"
    query = f"?run={esc(run)}" if run else ""
    body = (
        "<section class=chart><h2>Agreement and κ per saved version</h2>"
        "<p class=hint>The latest alignment run of each saved version and of the draft on one split; the bars are "
        "Wilson 95% intervals on agreement and large-sample 95% intervals on κ.</p>"
        f"<img src='{esc(here)}/agreement.svg' alt='Agreement and kappa per saved version'></section>"
        "<section class=chart><h2>Confusion matrix</h2>"
        f"<p class=hint>{'Alignment run #' + esc(run) if run else 'The latest alignment run'}: human by judge.</p>"
        f"<img src='{esc(here)}/confusion.svg{query}' alt='Confusion matrix'></section>"
        f"<p><a href='{esc(base)}/review/{esc(ev.name)}'>Review the misaligned cases</a></p>"
    )
    return document(f"Charts {ev.name}", body, base, "charts", {"evaluator": ev.name})
