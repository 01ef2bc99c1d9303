"""align-mcp: align LLM-as-judge evaluators with human labels, from chat (MCP) or the command line.

The public Python API is every name in `__all__`, importable from here: the store, each step of the loop (the
same verbs as the MCP tools), the result types and the errors. Names load on first use, so `import align_mcp`
stays cheap and a label write never loads the judge.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from align_mcp.errors import (
    AlignError,
    Conflict,
    EmptyReferenceSet,
    ImportFormatError,
    InvalidInput,
    InvalidScore,
    JudgeConfigError,
    JudgeFailed,
    JudgeUnreachable,
    NextStep,
    NotFound,
    NothingToSave,
    OptimizerUnavailable,
    StoreError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from align_mcp.core.cards import JudgeCard
    from align_mcp.core.comparison import JudgeModel, ModelComparison, ModelPrice, ModelResult
    from align_mcp.core.exports import ExportReport
    from align_mcp.core.models import (
        AddToQueueReport,
        AlignmentReport,
        AlignmentSummary,
        Balance,
        ConsistencyReport,
        DraftDiff,
        Evaluator,
        FailureAnalysis,
        FailureMode,
        FlipReport,
        ImportReport,
        Interval,
        JudgeSettings,
        JuryMember,
        JuryReport,
        LabelReceipt,
        Metrics,
        MisalignedCase,
        MisalignedPage,
        Note,
        PassRateReport,
        PromptVersion,
        Proposal,
        ProposalSummary,
        QueueItem,
        QueueSummary,
        Rate,
        ReviewReport,
        ReviewRequestReport,
        Run,
        ScoreType,
        SplitInfo,
        SuggestionReport,
        TriageReport,
        VersionSummary,
    )
    from align_mcp.core.pairwise import PairReport
    from align_mcp.diagnose.consistency import self_consistency as check_consistency
    from align_mcp.diagnose.pass_rate import corrected_pass_rate
    from align_mcp.diagnose.suggestions import suggest_labels
    from align_mcp.diagnose.triage import triage as triage_disagreements
    from align_mcp.engine.alignment import get_misaligned, run_alignment
    from align_mcp.engine.alignment import list_runs as list_alignment_runs
    from align_mcp.engine.alignment import report as alignment_report
    from align_mcp.engine.alignment import resume as resume_alignment
    from align_mcp.engine.card import judge_card
    from align_mcp.engine.compare import compare_models
    from align_mcp.engine.evaluators import create as create_evaluator
    from align_mcp.engine.evaluators import diff as diff_draft
    from align_mcp.engine.evaluators import get as get_evaluator
    from align_mcp.engine.evaluators import get_version, list_versions, update_draft
    from align_mcp.engine.evaluators import list_all as list_evaluators
    from align_mcp.engine.evaluators import restore as restore_version
    from align_mcp.engine.evaluators import save as save_prompt
    from align_mcp.engine.exports import export_reference_set
    from align_mcp.engine.ingest import get_run, import_runs
    from align_mcp.engine.pairing import pair_sources
    from align_mcp.engine.queues import add_to_queue, list_queues, next_items, submit_label, submit_labels
    from align_mcp.engine.reviews import adjudicate as adjudicate_label
    from align_mcp.engine.reviews import list_reviews, request_review
    from align_mcp.optimize.failure_modes import analyze_failures
    from align_mcp.optimize.proposals import apply_proposal, get_proposal, list_proposals, propose_prompt
    from align_mcp.store import Store, open_store

# public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "open_store": ("align_mcp.store", "open_store"),
    "Store": ("align_mcp.store", "Store"),
    "import_runs": ("align_mcp.engine.ingest", "import_runs"),
    "get_run": ("align_mcp.engine.ingest", "get_run"),
    "create_evaluator": ("align_mcp.engine.evaluators", "create"),
    "get_evaluator": ("align_mcp.engine.evaluators", "get"),
    "list_evaluators": ("align_mcp.engine.evaluators", "list_all"),
    "update_draft": ("align_mcp.engine.evaluators", "update_draft"),
    "save_prompt": ("align_mcp.engine.evaluators", "save"),
    "list_versions": ("align_mcp.engine.evaluators", "list_versions"),
    "get_version": ("align_mcp.engine.evaluators", "get_version"),
    "restore_version": ("align_mcp.engine.evaluators", "restore"),
    "diff_draft": ("align_mcp.engine.evaluators", "diff"),
    "add_to_queue": ("align_mcp.engine.queues", "add_to_queue"),
    "list_queues": ("align_mcp.engine.queues", "list_queues"),
    "next_items": ("align_mcp.engine.queues", "next_items"),
    "submit_label": ("align_mcp.engine.queues", "submit_label"),
    "submit_labels": ("align_mcp.engine.queues", "submit_labels"),
    "run_alignment": ("align_mcp.engine.alignment", "run_alignment"),
    "resume_alignment": ("align_mcp.engine.alignment", "resume"),
    "alignment_report": ("align_mcp.engine.alignment", "report"),
    "list_alignment_runs": ("align_mcp.engine.alignment", "list_runs"),
    "get_misaligned": ("align_mcp.engine.alignment", "get_misaligned"),
    "request_review": ("align_mcp.engine.reviews", "request_review"),
    "adjudicate_label": ("align_mcp.engine.reviews", "adjudicate"),
    "list_reviews": ("align_mcp.engine.reviews", "list_reviews"),
    "analyze_failures": ("align_mcp.optimize.failure_modes", "analyze_failures"),
    "propose_prompt": ("align_mcp.optimize.proposals", "propose_prompt"),
    "list_proposals": ("align_mcp.optimize.proposals", "list_proposals"),
    "get_proposal": ("align_mcp.optimize.proposals", "get_proposal"),
    "apply_proposal": ("align_mcp.optimize.proposals", "apply_proposal"),
    "triage_disagreements": ("align_mcp.diagnose.triage", "triage"),
    "check_consistency": ("align_mcp.diagnose.consistency", "self_consistency"),
    "suggest_labels": ("align_mcp.diagnose.suggestions", "suggest_labels"),
    "corrected_pass_rate": ("align_mcp.diagnose.pass_rate", "corrected_pass_rate"),
    "ScoreType": ("align_mcp.core.models", "ScoreType"),
    "Note": ("align_mcp.core.models", "Note"),
    "JudgeSettings": ("align_mcp.core.models", "JudgeSettings"),
    "JuryMember": ("align_mcp.core.models", "JuryMember"),
    "JuryReport": ("align_mcp.core.models", "JuryReport"),
    "Evaluator": ("align_mcp.core.models", "Evaluator"),
    "PromptVersion": ("align_mcp.core.models", "PromptVersion"),
    "VersionSummary": ("align_mcp.core.models", "VersionSummary"),
    "DraftDiff": ("align_mcp.core.models", "DraftDiff"),
    "Run": ("align_mcp.core.models", "Run"),
    "ImportReport": ("align_mcp.core.models", "ImportReport"),
    "QueueItem": ("align_mcp.core.models", "QueueItem"),
    "QueueSummary": ("align_mcp.core.models", "QueueSummary"),
    "Balance": ("align_mcp.core.models", "Balance"),
    "AddToQueueReport": ("align_mcp.core.models", "AddToQueueReport"),
    "LabelReceipt": ("align_mcp.core.models", "LabelReceipt"),
    "Metrics": ("align_mcp.core.models", "Metrics"),
    "Rate": ("align_mcp.core.models", "Rate"),
    "Interval": ("align_mcp.core.models", "Interval"),
    "FlipReport": ("align_mcp.core.models", "FlipReport"),
    "AlignmentReport": ("align_mcp.core.models", "AlignmentReport"),
    "AlignmentSummary": ("align_mcp.core.models", "AlignmentSummary"),
    "MisalignedCase": ("align_mcp.core.models", "MisalignedCase"),
    "MisalignedPage": ("align_mcp.core.models", "MisalignedPage"),
    "SplitInfo": ("align_mcp.core.models", "SplitInfo"),
    "FailureAnalysis": ("align_mcp.core.models", "FailureAnalysis"),
    "FailureMode": ("align_mcp.core.models", "FailureMode"),
    "Proposal": ("align_mcp.core.models", "Proposal"),
    "ProposalSummary": ("align_mcp.core.models", "ProposalSummary"),
    "TriageReport": ("align_mcp.core.models", "TriageReport"),
    "ReviewReport": ("align_mcp.core.models", "ReviewReport"),
    "ReviewRequestReport": ("align_mcp.core.models", "ReviewRequestReport"),
    "ConsistencyReport": ("align_mcp.core.models", "ConsistencyReport"),
    "SuggestionReport": ("align_mcp.core.models", "SuggestionReport"),
    "PassRateReport": ("align_mcp.core.models", "PassRateReport"),
    "compare_models": ("align_mcp.engine.compare", "compare_models"),
    "pair_sources": ("align_mcp.engine.pairing", "pair_sources"),
    "PairReport": ("align_mcp.core.pairwise", "PairReport"),
    "JudgeModel": ("align_mcp.core.comparison", "JudgeModel"),
    "ModelPrice": ("align_mcp.core.comparison", "ModelPrice"),
    "ModelComparison": ("align_mcp.core.comparison", "ModelComparison"),
    "ModelResult": ("align_mcp.core.comparison", "ModelResult"),
    "export_reference_set": ("align_mcp.engine.exports", "export_reference_set"),
    "judge_card": ("align_mcp.engine.card", "judge_card"),
    "ExportReport": ("align_mcp.core.exports", "ExportReport"),
    "JudgeCard": ("align_mcp.core.cards", "JudgeCard"),
}

__all__ = [
    "AddToQueueReport",
    "AlignError",
    "AlignmentReport",
    "AlignmentSummary",
    "Balance",
    "Conflict",
    "ConsistencyReport",
    "DraftDiff",
    "EmptyReferenceSet",
    "Evaluator",
    "ExportReport",
    "FailureAnalysis",
    "FailureMode",
    "FlipReport",
    "ImportFormatError",
    "ImportReport",
    "Interval",
    "InvalidInput",
    "InvalidScore",
    "JudgeCard",
    "JudgeConfigError",
    "JudgeFailed",
    "JudgeModel",
    "JudgeSettings",
    "JudgeUnreachable",
    "JuryMember",
    "JuryReport",
    "LabelReceipt",
    "Metrics",
    "MisalignedCase",
    "MisalignedPage",
    "ModelComparison",
    "ModelPrice",
    "ModelResult",
    "NextStep",
    "NotFound",
    "Note",
    "NothingToSave",
    "OptimizerUnavailable",
    "PairReport",
    "PassRateReport",
    "PromptVersion",
    "Proposal",
    "ProposalSummary",
    "QueueItem",
    "QueueSummary",
    "Rate",
    "ReviewReport",
    "ReviewRequestReport",
    "Run",
    "ScoreType",
    "SplitInfo",
    "Store",
    "StoreError",
    "SuggestionReport",
    "TriageReport",
    "VersionSummary",
    "__version__",
    "add_to_queue",
    "adjudicate_label",
    "alignment_report",
    "analyze_failures",
    "apply_proposal",
    "check_consistency",
    "compare_models",
    "corrected_pass_rate",
    "create_evaluator",
    "diff_draft",
    "export_reference_set",
    "get_evaluator",
    "get_misaligned",
    "get_proposal",
    "get_run",
    "get_version",
    "import_runs",
    "judge_card",
    "list_alignment_runs",
    "list_evaluators",
    "list_proposals",
    "list_queues",
    "list_reviews",
    "list_versions",
    "next_items",
    "open_store",
    "pair_sources",
    "propose_prompt",
    "request_review",
    "restore_version",
    "resume_alignment",
    "run_alignment",
    "save_prompt",
    "submit_label",
    "submit_labels",
    "suggest_labels",
    "triage_disagreements",
    "update_draft",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'align_mcp' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
