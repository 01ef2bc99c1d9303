"""The judge card: what a saved judge is and how far to trust it, as data and as Markdown for a pull request or a
model registry."""

from datetime import datetime

from pydantic import Field

from align_mcp.core.few_shot import FrozenFewShot
from align_mcp.core.models import (
    AnnotatorAgreement,
    Balance,
    JudgeSettings,
    Metrics,
    Model,
    Rate,
    SplitInfo,
)


class CardFigures(Model):
    """The metrics of one completed alignment run of the card's version on one split."""

    alignment_run: int
    split: str
    model: str
    judged_at: datetime | None = None
    metrics: Metrics


class JudgeCard(Model):
    """A saved version of an evaluator with its held-out figures, its labels and its dates."""

    evaluator: str
    feedback_key: str
    description: str | None = None
    score_type: str
    version: int
    message: str | None = None
    prompt: str
    judge: JudgeSettings
    model: str | None = Field(
        description="The judge model: the test run's, else the settings' or the default"
    )
    test: CardFigures | None = Field(
        default=None, description="The latest completed test-split run of the version"
    )
    dev: CardFigures | None = Field(default=None, description="The latest completed dev (or all-labels) run")
    test_evaluations: int = Field(description="How many times the test split has been judged in all")
    holdout: SplitInfo | None = None
    few_shot: FrozenFewShot | None = Field(
        default=None, description="The corrected examples the version shows, frozen when it was saved"
    )
    balance: Balance
    labels_by_rubric: dict[str, int] = Field(
        description="Current labels per rubric version they were given under"
    )
    stale_labels: int
    annotator_agreement: AnnotatorAgreement | None = Field(
        default=None, description="κ between first labels and blind second reviews, where there are any"
    )
    evaluator_created_at: datetime
    saved_at: datetime
    first_label_at: datetime | None = None
    last_label_at: datetime | None = None
    generated_at: datetime
    notes: list[str] = Field(default_factory=list)


def _rate(r: Rate | None) -> str:
    if r is None or r.value is None:
        return "—"
    return f"{r.value:.1%} ({r.k}/{r.n})"


def _ci(r: Rate | None) -> str:
    if r is None or r.ci is None:
        return "—"
    return f"{r.ci.low:.1%} – {r.ci.high:.1%}"


def _date(when: datetime | None) -> str:
    return "—" if when is None else when.strftime("%Y-%m-%d %H:%M UTC")


def _figures(title: str, f: CardFigures) -> list[str]:
    m = f.metrics
    lines = [
        f"## {title}",
        "",
        f"Alignment run {f.alignment_run} ({f.split} split, judge model `{f.model}`), judged {_date(f.judged_at)}: "
        f"{m.n} example(s), {m.errors} error(s).",
        "",
        "| metric | value | 95% interval |",
        "|---|---|---|",
        f"| agreement | {_rate(m.agreement)} | {_ci(m.agreement)} |",
    ]
    if m.kappa is not None:
        ci = "—" if m.kappa_ci is None else f"{m.kappa_ci.low:.2f} – {m.kappa_ci.high:.2f}"
        lines.append(f"| Cohen's κ | {m.kappa:.2f} | {ci} |")
    for name, rate in (
        ("TPR (recall on pass)", m.tpr),
        ("TNR (recall on fail)", m.tnr),
        ("precision", m.precision),
        ("within one", m.within_one),
    ):
        if rate is not None:
            lines.append(f"| {name} | {_rate(rate)} | {_ci(rate)} |")
    p = m.pairwise
    if p is not None:
        mean = "—" if p.mean is None else f"{p.mean:.1%}"
        lines += [
            f"| agreement, A shown first | {_rate(p.original)} | {_ci(p.original)} |",
            f"| agreement, B shown first | {_rate(p.swapped)} | {_ci(p.swapped)} |",
            f"| mean of the two orders | {mean} | — |",
            f"| same winner in both orders | {_rate(p.consistency)} | {_ci(p.consistency)} |",
            "",
            "Agreement and κ above are of the combined verdict: the winner both orders named, else a tie.",
        ]
    return lines


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in the text."""
    ticks = 3
    while "`" * ticks in text:
        ticks += 1
    return "`" * ticks


def card_markdown(card: JudgeCard) -> str:
    """The card as Markdown: identity and judge settings, held-out figures with intervals, labels, the prompt."""
    j = card.judge
    lines = [
        f"# Judge card: {card.evaluator} v{card.version}",
        "",
        *([card.description, ""] if card.description else []),
        "| | |",
        "|---|---|",
        f"| evaluator | {card.evaluator} (feedback key `{card.feedback_key}`, {card.score_type}) |",
        f"| version | v{card.version}, saved {_date(card.saved_at)}"
        + (f": {card.message}" if card.message else "")
        + " |",
        f"| judge | model `{card.model or 'unset'}`, temperature {j.temperature:g}, reasoning "
        f"{'on' if j.reasoning else 'off'}" + (f", max tokens {j.max_tokens}" if j.max_tokens else "") + " |",
        f"| test split looked at | {card.test_evaluations} time(s) |",
        f"| generated | {_date(card.generated_at)} |",
        "",
    ]
    if card.test is not None:
        lines += [*_figures("Held-out test split", card.test), ""]
    if card.dev is not None:
        lines += [*_figures(f"{'Dev split' if card.dev.split == 'dev' else 'All labels'}", card.dev), ""]
    if card.few_shot is not None:
        shown = ", ".join(card.few_shot.run_ids) or "none (no correction to show when it was saved)"
        lines += [
            "## Few-shot examples",
            "",
            f"Frozen when v{card.version} was saved ({card.few_shot.settings.describe()}): {shown}. They fill "
            "{{few_shot_examples}} in the prompt below.",
            "",
        ]
    b = card.balance
    counts = ", ".join(f"{k}: {n}" for k, n in b.counts.items())
    lines += ["## Labels", "", f"- {b.total} labeled run(s) in the reference set ({counts})."]
    if card.holdout is not None:
        lines.append(f"- Holdout: {card.holdout.dev} dev, {card.holdout.test} test.")
    if card.labels_by_rubric:
        by = ", ".join(
            f"{n} under {'no saved version' if r == '0' else 'v' + r}"
            for r, n in card.labels_by_rubric.items()
        )
        lines.append(f"- By rubric: {by}; {card.stale_labels} possibly stale (instructions changed since).")
    a = card.annotator_agreement
    if a is not None:
        kappa = "—" if a.kappa is None else f"{a.kappa:.2f}"
        lines.append(
            f"- Inter-annotator agreement: κ = {kappa}, {_rate(a.agreement)} agree, over {a.n} doubly labeled run(s)."
        )
    else:
        lines.append("- Inter-annotator agreement: no blind second reviews yet.")
    lines.append(f"- Labels given from {_date(card.first_label_at)} to {_date(card.last_label_at)}.")
    lines += [f"- Warning: {w}" for w in b.warnings]
    if card.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in card.notes]]
    fence = _fence(card.prompt)
    lines += ["", "## Prompt", "", f"{fence}text", card.prompt, fence, ""]
    return "\n".join(lines)
