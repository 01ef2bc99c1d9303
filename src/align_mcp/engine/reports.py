"""Alignment reports as markdown: the run next to the last saved version, flips, errors and notes."""

from __future__ import annotations

from collections.abc import Callable

from align_mcp.core.models import AlignmentReport, AlignmentSummary, Metrics, Rate


def _pct(rate: Rate | None) -> str:
    if rate is None or rate.value is None:
        return "n/a"
    ci = f", 95% CI {rate.ci.low:.1%}–{rate.ci.high:.1%}" if rate.ci else ""
    return f"{rate.value:.1%} ({rate.k}/{rate.n}{ci})"


def _metric_rows(metrics: list[Metrics | None]) -> list[str]:
    """Table rows, one column per run; a row appears when any run has that metric."""
    rows: list[tuple[str, Callable[[Metrics], str | None]]] = [
        ("agreement", lambda m: _pct(m.agreement)),
        (
            "quadratic-weighted κ" if any(m and m.kind == "ordinal" for m in metrics) else "Cohen's κ",
            lambda m: None if m.kappa is None else f"{m.kappa:.3f}",
        ),
        ("TPR (recall on human pass)", lambda m: _pct(m.tpr) if m.tpr else None),
        ("TNR (recall on human fail)", lambda m: _pct(m.tnr) if m.tnr else None),
        ("precision", lambda m: _pct(m.precision) if m.precision else None),
        (
            "false passes / false fails",
            lambda m: None if m.false_pass is None else f"{m.false_pass} / {m.false_fail}",
        ),
        ("within one", lambda m: _pct(m.within_one) if m.within_one else None),
        ("examples / errors", lambda m: f"{m.n} / {m.errors}"),
    ]
    lines = []
    for label, cell in rows:
        cells = [cell(m) if m is not None else None for m in metrics]
        if any(c is not None for c in cells):
            lines.append(f"| {label} | " + " | ".join(c or "n/a" for c in cells) + " |")
    return lines


def _confusion(m: Metrics) -> list[str]:
    values = sorted({j for row in m.confusion.values() for j in row} | set(m.confusion))
    lines = ["| human \\ judge | " + " | ".join(values) + " |", "|---" * (len(values) + 1) + "|"]
    for h in values:
        row = m.confusion.get(h, {})
        lines.append(f"| {h} | " + " | ".join(str(row.get(j, 0)) for j in values) + " |")
    return lines


def _run_line(s: AlignmentSummary) -> str:
    return (
        f"- {s.prompt_ref} (run {s.id}): {s.status}, judged {s.judged} of {s.total} ({s.split}), model "
        f"{s.model}; {s.judge_calls} judge call(s), {s.cache_hits} from cache, "
        f"{s.prompt_tokens + s.completion_tokens} tokens"
    )


def report_markdown(r: AlignmentReport) -> str:
    """An alignment report as markdown: the run next to the last saved version, flips, errors and notes."""
    s, b = r.run, r.baseline
    runs = [s] if b is None else [s, b]
    title = f"# Alignment run {s.id}: {s.evaluator} {s.prompt_ref}" + (f" vs {b.prompt_ref}" if b else "")
    lines = [title, "", *[_run_line(x) for x in runs], ""]
    if s.metrics is None:
        lines.append("No results yet.")
    else:
        header = " | ".join(f"{x.prompt_ref} (run {x.id})" for x in runs)
        lines += [f"| metric | {header} |", "|---" * (len(runs) + 1) + "|"]
        lines += _metric_rows([x.metrics for x in runs])
        if s.metrics.confusion:
            lines += ["", f"Confusion of {s.prompt_ref} (rows: human, columns: judge):", ""]
            lines += _confusion(s.metrics)
    if r.flips is not None:
        f = r.flips
        p = "n/a" if f.p_value is None else f"{f.p_value:.3g}"
        lines += [
            "",
            f"## Flips: {f.candidate} vs {f.baseline}",
            "",
            f.verdict,
            "",
            f"- fixed ({len(f.fixed)}): {', '.join(f.fixed) or '—'}",
            f"- broken ({len(f.broken)}): {', '.join(f.broken) or '—'}",
            f"- both right {f.both_right}, both wrong {f.both_wrong}; McNemar exact p = {p}",
        ]
    for heading, items in (
        ("Errors", [f"{e.run_id}: {e.error}" for e in r.error_examples]),
        ("Warnings", r.warnings),
        ("Notes", r.notes),
    ):
        if items:
            lines += ["", f"## {heading}", "", *[f"- {item}" for item in items]]
    return "\n".join(lines) + "\n"
