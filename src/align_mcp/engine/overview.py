"""What exists and what to do next: the evaluators, one evaluator in full, and the annotation queues."""

from __future__ import annotations

from align_mcp.core.models import AlignmentSummary, Evaluator, Note
from align_mcp.core.text import clip
from align_mcp.core.views import AlignmentBrief, EvaluatorBrief, EvaluatorDetail, EvaluatorList, QueueList
from align_mcp.engine import alignment, evaluators, queues
from align_mcp.errors import NextStep
from align_mcp.store import Store

MAX_RECENT_RUNS = 10


def _brief(ev: Evaluator) -> EvaluatorBrief:
    last = ev.versions[-1] if ev.versions else None
    return EvaluatorBrief(
        name=ev.name,
        feedback_key=ev.feedback_key,
        score_type=ev.score_type.describe(),
        description=ev.description,
        latest_version=last.version if last else None,
        agreement=last.agreement if last else None,
        kappa=last.kappa if last else None,
        n=last.n if last else None,
        draft_differs=ev.draft_differs,
    )


def _no_evaluators() -> list[Note]:
    return [Note(text="No evaluators yet.", next_steps=[NextStep("create_evaluator")])]


def evaluator_list(store: Store) -> EvaluatorList:
    """Every evaluator with its latest saved version and that version's agreement."""
    items = [_brief(ev) for ev in evaluators.list_all(store)]
    return EvaluatorList(evaluators=items, notes=[] if items else _no_evaluators())


def _alignment_brief(s: AlignmentSummary) -> AlignmentBrief:
    return AlignmentBrief(
        id=s.id,
        prompt_ref=s.prompt_ref,
        split=s.split,
        status=s.status,
        judged=s.judged,
        total=s.total,
        agreement=s.metrics.agreement if s.metrics else None,
        kappa=s.metrics.kappa if s.metrics else None,
        model=s.model,
        started_at=s.started_at,
    )


def evaluator_detail(store: Store, name: str, max_chars: int | None = None) -> EvaluatorDetail:
    """An evaluator in full with its queue and recent alignment runs; the draft is cut at `max_chars` if given."""
    ev = evaluators.get(store, name)
    queue = queues.summary(store, name)
    runs = sorted(alignment.list_runs(store, name), key=lambda s: s.id, reverse=True)[:MAX_RECENT_RUNS]
    draft = ev.draft
    notes = []
    if max_chars is not None:
        clipped, was_cut = clip(ev.draft, max_chars)
        draft = str(clipped)
        if was_cut:
            notes.append(
                Note(
                    text=f"The draft was cut at {max_chars} characters ({len(ev.draft) - max_chars} more).",
                    next_steps=[NextStep("show_draft", {"evaluator": name})],
                )
            )
    notes.extend(Note(text=warning) for warning in queue.balance.warnings)
    for run in runs:
        if run.status == "interrupted":
            notes.append(
                Note(
                    text=f"Alignment run {run.id} was interrupted: {run.done} of {run.total} examples done.",
                    next_steps=[NextStep("resume_alignment", {"alignment_run": run.id})],
                )
            )
        elif run.status == "failed":
            notes.append(
                Note(
                    text=f"Alignment run {run.id} failed: 0 judged, {run.errors} errors.",
                    next_steps=[
                        NextStep("resume_alignment", {"alignment_run": run.id, "retry_errors": True})
                    ],
                )
            )
    if ev.draft_differs:
        notes.append(
            Note(
                text="The draft has unsaved changes.",
                next_steps=[
                    NextStep("run_alignment", {"evaluator": name}),
                    NextStep("save_prompt", {"evaluator": name}),
                ],
            )
        )
    return EvaluatorDetail(
        **{**ev.model_dump(exclude={"notes"}), "draft": draft},
        queue=queue,
        recent_alignment_runs=[_alignment_brief(r) for r in runs],
        notes=notes,
    )


def queue_list(store: Store) -> QueueList:
    """Every evaluator's queue: pending, reserved and labeled counts, and the label balance with warnings."""
    found = queues.list_queues(store)
    return QueueList(queues=found, notes=[] if found else _no_evaluators())
