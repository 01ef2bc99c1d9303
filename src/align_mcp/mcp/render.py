"""How results read in MCP: next steps as tool calls, notes as text, reports as markdown, progress as one value."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, assert_never

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from align_mcp.config import ENV_TOOLS
from align_mcp.core.models import (
    NOTE_WORDS,
    AlignmentReport,
    AlignmentSummary,
    JuryReport,
    Metrics,
    Note,
    Rate,
)
from align_mcp.errors import ACTION_ARGS, ACTIONS, Action, AlignError, NextStep, StepArg

GET_RUN_MAX_CHARS = 200_000
"""The largest `max_chars` get_run accepts; a suggested call never asks for more."""


def _value(value: StepArg) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def call(tool: str, args: Mapping[str, StepArg | None], rename: Mapping[str, str] | None = None) -> str:
    """A tool call as the assistant would write it: `tool(name='x', limit=5)`, or the bare name without args.

    An argument given as None is shown as `...`: a value the assistant fills in.
    """
    names = rename or {}
    shown = [
        f"{names.get(key, key)}={'...' if value is None else _value(value)}" for key, value in args.items()
    ]
    return f"{tool}({', '.join(shown)})" if shown else tool


ENABLED: ContextVar[Collection[str] | None] = ContextVar("align_mcp_enabled_tools", default=None)
"""The tools the server handling the current request lists (None: every tool); set around each request."""


@contextmanager
def enabled_tools(tools: Collection[str] | None) -> Iterator[None]:
    """Word next steps for a server listing `tools` (None: every tool) while the block runs."""
    token = ENABLED.set(tools)
    try:
        yield
    finally:
        ENABLED.reset(token)


STEP_TOOLS: dict[Action, str] = {
    **{action: action for action in ACTIONS},
    "show_evaluator": "get_evaluator",
    "show_draft": "get_evaluator",
    "label": "submit_label",
    "show_run": "get_run",
    "resume_alignment": "run_alignment",
    "list_alignment_runs": "get_evaluator",
    "show_misaligned": "get_misaligned",
    "triage": "triage_disagreements",
}
"""The tool each next step is taken with."""


def step_words(step: NextStep, enabled: Collection[str] | None = None) -> str:
    """One next step as a sentence naming the tool (with its arguments) that takes it.

    With `enabled` (the tools this server lists; default: those of the request being served, see ENABLED), a
    step whose tool is not among them is worded with what the server does list, or says how the user makes
    the tool available.
    """
    tool = STEP_TOOLS[step.action]
    enabled = enabled if enabled is not None else ENABLED.get()
    if enabled is None or tool in enabled:
        return _step_words(step)
    a = {name: step.args[name] for name in ACTION_ARGS[step.action] if name in step.args}
    if step.action == "show_run" and "run_id" in a:
        return f"The resource align://runs/{a['run_id']} holds it in full."
    if step.action == "show_run":
        return "The resource align://runs/<run_id> holds a run in full."
    if step.action == "apply_proposal" and "update_draft" in enabled and "proposal_id" in a:
        edit = call("update_draft", {"evaluator": a.get("evaluator"), "prompt": None})
        return (
            f"To use it, copy the prompt of the resource align://proposals/{a['proposal_id']} into the draft with "
            f"{edit} when the user agrees."
        )
    return (
        f"({tool} would do it next, but this server does not list it: the user can add it to "
        f"{ENV_TOOLS}, e.g. {ENV_TOOLS}=core,{tool}.)"
    )


def _step_words(step: NextStep) -> str:
    a = {name: step.args[name] for name in ACTION_ARGS[step.action] if name in step.args}
    evaluator = a.get("evaluator")
    match step.action:
        case "import_runs":
            return f"Import runs with {call('import_runs', a)}."
        case "create_evaluator":
            return "Create one with create_evaluator."
        case "show_evaluator":
            return f"{call('get_evaluator', a, {'evaluator': 'name'})} shows it."
        case "show_draft":
            if evaluator is None:
                return "get_evaluator shows the draft."
            return (
                f"{call('get_evaluator', a, {'evaluator': 'name'})} shows the draft; the resource "
                f"align://evaluators/{evaluator}/draft holds it in full."
            )
        case "update_draft":
            return f"Edit the draft with {call('update_draft', a)}."
        case "save_prompt":
            return f"Save it as a new version with {call('save_prompt', a)} when the user asks."
        case "list_versions":
            if "offset" in a:
                return f"The next page: {call('list_versions', a)}."
            if a.get("include_prompts") and evaluator is not None:
                return (
                    f"{call('list_versions', a)} includes them; the resource "
                    f"align://evaluators/{evaluator}/versions/<N> holds one version's text."
                )
            return f"{call('list_versions', a)} lists the saved versions."
        case "add_to_queue":
            if a.get("stale"):
                return f"Send them back for a blind relabel with {call('add_to_queue', a)}."
            return (
                f"Queue runs with {call('add_to_queue', a)}; a human then labels them with next_items and "
                "submit_label."
            )
        case "label":
            label_call = call(
                "submit_label",
                {"evaluator": evaluator, "run_id": a.get("run_id"), "score": None, "comment": None},
            )
            if "run_id" in a:
                return f"Record the human's label with {label_call}."
            return f"Record each of the human's verdicts with {label_call}."
        case "show_run":
            run_args: dict[str, StepArg | None] = {"run_id": a.get("run_id")}
            max_chars = a.get("max_chars")
            if isinstance(max_chars, int):
                run_args["max_chars"] = min(max_chars, GET_RUN_MAX_CHARS)
            if "run_id" in a:
                return f"{call('get_run', run_args)} returns it in full."
            return f"{call('get_run', run_args)} returns a run in full."
        case "run_alignment":
            if "split" in a:
                return f"Judge the {a['split']} split with {call('run_alignment', a)}."
            return f"Judge the reference set with {call('run_alignment', a)}."
        case "resume_alignment":
            resume_args: dict[str, StepArg | None] = {"evaluator": None, "resume": a.get("alignment_run")}
            if "retry_errors" in a:
                resume_args["retry_errors"] = a["retry_errors"]
            if a.get("retry_errors"):
                return f"Judge them again with {call('run_alignment', resume_args)}."
            return f"Finish it with {call('run_alignment', resume_args)}."
        case "list_alignment_runs":
            if evaluator is None:
                return "get_evaluator lists an evaluator's recent alignment runs."
            return f"{call('get_evaluator', a, {'evaluator': 'name'})} lists its recent alignment runs."
        case "show_misaligned":
            if "offset" in a:
                return f"The next page: {call('get_misaligned', a)}."
            return f"See them with {call('get_misaligned', a)}."
        case "triage":
            if "run_ids" in a:
                return f"Try them again with {call('triage_disagreements', a)}."
            if "limit" in a:
                return f"Include them with {call('triage_disagreements', a)}."
            return f"Classify the disagreements with {call('triage_disagreements', a)}."
        case "request_review":
            return f"Send them to a blind second review by another labeler with {call('request_review', a)}."
        case "list_reviews":
            return f"{call('list_reviews', a)} shows where the reviews stand."
        case "adjudicate_label":
            settle = call(
                "adjudicate_label",
                {"evaluator": evaluator, "run_id": a.get("run_id"), "score": None, "labeler": None},
            )
            return f"Settle it with the human's final label: {settle}."
        case "check_consistency":
            return f"Measure how often the judge's verdicts flip with {call('check_consistency', a)}."
        case "suggest_labels":
            return f"Rank the queue with {call('suggest_labels', a)}."
        case "analyze_failures":
            return f"Group the misaligned cases into failure modes with {call('analyze_failures', a)}."
        case "propose_prompt":
            if "mode" in a or "budget" in a:
                return f"Try {call('propose_prompt', a)}."
            return f"Let the optimizer propose a revised prompt with {call('propose_prompt', a)}."
        case "list_proposals":
            return f"{call('list_proposals', a)} lists the proposals."
        case "apply_proposal":
            if a.get("force"):
                return f"Apply it anyway with {call('apply_proposal', a)}; the later draft edits are lost."
            return f"Copy it into the draft with {call('apply_proposal', a)} when the user agrees."
        case _ as unreachable:
            assert_never(unreachable)


def with_steps(text: str, steps: Sequence[NextStep], enabled: Collection[str] | None = None) -> str:
    """A message followed by its next steps, each worded as a tool call (of the `enabled` tools, if given)."""
    return " ".join([text, *(step_words(s, enabled) for s in steps)])


def note_line(note: Note | str, enabled: Collection[str] | None = None) -> str:
    """A note as one line: its text, then its next steps."""
    return note if isinstance(note, str) else with_steps(note.text, note.next_steps, enabled)


def error_text(error: AlignError, enabled: Collection[str] | None = None) -> str:
    """An error as the assistant reads it: what happened, the bad value, and the tool to call next."""
    return with_steps(error.message, error.next_steps, enabled)


WORDS: dict[str, Callable[[Note], str]] = {NOTE_WORDS: note_line}
"""The serialization context that turns notes into lines in MCP words."""


def as_data(value: BaseModel | Sequence[BaseModel]) -> Any:
    """A result (or a list of them) as JSON data, notes rendered as text."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", context=WORDS)
    return [item.model_dump(mode="json", context=WORDS) for item in value]


def compact(data: Any) -> str:
    """JSON text without spaces: what a tool's text content carries."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def dump_json(value: BaseModel | Sequence[BaseModel]) -> str:
    """A resource's JSON text: one result, or a list of them."""
    return json.dumps(as_data(value), indent=2, ensure_ascii=False)


def structured(result: BaseModel) -> CallToolResult:
    """A tool result: the structured content, and the same as compact JSON text for clients that read only text."""
    data = as_data(result)
    return CallToolResult(content=[TextContent(type="text", text=compact(data))], structured_content=data)


# ---- alignment reports --------------------------------------------------------------------------------------


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
            lambda m: (
                None
                if m.kappa is None
                else f"{m.kappa:.3f}"
                + (f" ({m.kappa_ci.low:.3f}–{m.kappa_ci.high:.3f})" if m.kappa_ci else "")
            ),
        ),
        ("TPR (recall on human pass)", lambda m: _pct(m.tpr) if m.tpr else None),
        ("TNR (recall on human fail)", lambda m: _pct(m.tnr) if m.tnr else None),
        ("precision", lambda m: _pct(m.precision) if m.precision else None),
        (
            "false passes / false fails",
            lambda m: None if m.false_pass is None else f"{m.false_pass} / {m.false_fail}",
        ),
        ("within one", lambda m: _pct(m.within_one) if m.within_one else None),
        ("agreement, A shown first", lambda m: _pct(m.pairwise.original) if m.pairwise else None),
        ("agreement, B shown first", lambda m: _pct(m.pairwise.swapped) if m.pairwise else None),
        (
            "mean of the two orders",
            lambda m: None if m.pairwise is None or m.pairwise.mean is None else f"{m.pairwise.mean:.1%}",
        ),
        ("same winner in both orders", lambda m: _pct(m.pairwise.consistency) if m.pairwise else None),
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
        f"- {s.prompt_ref} (run {s.id}): {s.status}, {s.done} of {s.total} done ({s.split}): {s.judged} judged "
        f"({s.cache_hits} from cache), {s.errors} error(s); model {s.model}; {s.requests} request(s) to the "
        f"judge ({s.reasks} re-ask(s)), {s.prompt_tokens + s.completion_tokens} tokens"
        + (f", {s.waited_s:.0f}s waiting" if s.waited_s >= 1 else "")
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
    if r.jury is not None:
        lines += ["", *jury_markdown(r.jury, s.metrics)]
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
    if len(r.by_rubric) > 1 or r.stale_labels:
        lines += [
            "",
            "## Agreement by rubric",
            "",
            "| labels given under | n | agreement | |",
            "|---|---|---|---|",
        ]
        for g in r.by_rubric:
            value = "—" if g.agreement.value is None else f"{g.agreement.value:.1%}"
            lines.append(f"| v{g.rubric_version} | {g.n} | {value} | {'possibly stale' if g.stale else ''} |")
    for heading, items in (
        ("Errors", [f"{e.run_id}: {e.error}" for e in r.error_examples]),
        ("Warnings", [note_line(w) for w in r.warnings]),
        ("Notes", [note_line(n) for n in r.notes]),
    ):
        if items:
            lines += ["", f"## {heading}", "", *[f"- {item}" for item in items]]
    return "\n".join(lines) + "\n"


def jury_markdown(j: JuryReport, combined: Metrics | None) -> list[str]:
    """A jury's members beside the jury: agreement and κ per member, and the split rate."""
    lines = [
        f"## Jury ({j.combine})",
        "",
        f"Members split on {_pct(j.split)} of the examples two or more of them judged.",
        "",
        "| member | agreement | κ | examples / errors |",
        "|---|---|---|---|",
    ]
    rows = [(m.member, m.agreement, m.kappa, m.n, m.errors) for m in j.members]
    if combined is not None:
        rows.append(("jury", combined.agreement, combined.kappa, combined.n, combined.errors))
    for name, agreement, kappa, n, errors in rows:
        k = "n/a" if kappa is None else f"{kappa:.3f}"
        lines.append(f"| {name} | {_pct(agreement)} | {k} | {n} / {errors} |")
    return lines + [f"- {note_line(n)}" for n in j.notes]


def report_result(report: AlignmentReport) -> CallToolResult:
    """An alignment report as markdown for the conversation, and in full as structured content."""
    return CallToolResult(
        content=[TextContent(type="text", text=report_markdown(report))],
        structured_content=as_data(report),
    )


# ---- progress -----------------------------------------------------------------------------------------------


class SteadyProgress:
    """One count toward a total that may grow (the optimizer's model calls): sends only a higher value."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.last: float = -1

    async def __call__(self, done: int, total: int, message: str) -> None:
        if done <= self.last:
            return
        self.last = done
        await self.ctx.report_progress(done, max(total, done), message)


class ProgressReporter:
    """Turn the engine's per-phase (done, total, message) into one increasing MCP progress value.

    A long request runs in phases (the draft, then the saved version it is compared with; the optimizer's
    judge calls). Within a phase `done` never falls, so a count below the last one, or a new total, starts the
    next phase, whose counts are added to those of the phases before it.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.base = 0
        self.phase_done = 0
        self.phase_total: int | None = None
        self.last: float = -1
        self.last_message = ""

    async def __call__(self, done: int, total: int, message: str) -> None:
        if self.phase_total is not None and (done < self.phase_done or total != self.phase_total):
            self.base += self.phase_total
        self.phase_done, self.phase_total = done, total
        value: float = self.base + done
        if value <= self.last:
            # A new message at the same count (a rate-limit wait) still goes out: progress must increase, so
            # it moves by a thousandth.
            if int(self.last) != value or message == self.last_message:
                return
            value = self.last + 0.001
        self.last, self.last_message = value, message
        await self.ctx.report_progress(value, self.base + total, message)
