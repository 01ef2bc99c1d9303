"""The public Python API: `align_mcp.__all__` is pinned, every name resolves, and importing it stays cheap."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import align_mcp
from align_mcp.core.models import AlignmentReport, ScoreType
from align_mcp.engine import alignment, evaluators, queues
from align_mcp.errors import NotFound

PINNED = [
    "AddToQueueReport", "AlignError", "AlignmentReport", "AlignmentSummary", "Balance", "Conflict",
    "ConsistencyReport", "DraftDiff", "EmptyReferenceSet", "Evaluator", "ExportReport", "FailureAnalysis",
    "FailureMode", "FlipReport", "ImportFormatError", "ImportReport", "Interval", "InvalidInput", "InvalidScore",
    "JudgeCard", "JudgeConfigError", "JudgeFailed", "JudgeModel", "JudgeSettings", "JudgeUnreachable", "JuryMember",
    "JuryReport", "LabelReceipt", "Metrics", "MisalignedCase", "MisalignedPage", "ModelComparison", "ModelPrice",
    "ModelResult", "NextStep", "NotFound", "Note", "NothingToSave", "OptimizerUnavailable", "PairReport",
    "PassRateReport", "PromptVersion", "Proposal", "ProposalSummary", "QueueItem", "QueueSummary", "Rate",
    "ReviewReport", "ReviewRequestReport", "Run", "ScoreType", "SplitInfo", "Store", "StoreError",
    "SuggestionReport", "TriageReport", "VersionSummary", "__version__", "add_to_queue", "adjudicate_label",
    "alignment_report", "analyze_failures", "apply_proposal", "check_consistency", "compare_models",
    "corrected_pass_rate", "create_evaluator", "diff_draft", "export_reference_set", "get_evaluator",
    "get_misaligned", "get_proposal", "get_run", "get_version", "import_runs", "judge_card", "list_alignment_runs",
    "list_evaluators", "list_proposals", "list_queues", "list_reviews", "list_versions", "next_items", "open_store",
    "pair_sources", "propose_prompt", "request_review", "restore_version", "resume_alignment", "run_alignment",
    "save_prompt", "submit_label", "submit_labels", "suggest_labels", "triage_disagreements", "update_draft",
]  # fmt: skip


def test_all_is_pinned() -> None:
    assert sorted(align_mcp.__all__) == PINNED


@pytest.mark.parametrize("name", PINNED)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(align_mcp, name) is not None
    assert name in dir(align_mcp)


def test_public_names_are_the_engine_functions_and_shared_types() -> None:
    assert align_mcp.create_evaluator is evaluators.create
    assert align_mcp.submit_label is queues.submit_label
    assert align_mcp.run_alignment is alignment.run_alignment
    assert align_mcp.resume_alignment is alignment.resume
    assert align_mcp.AlignmentReport is AlignmentReport
    assert align_mcp.ScoreType is ScoreType
    assert align_mcp.NotFound is NotFound


def test_the_names_type_checkers_see_are_the_names_loaded_at_run_time() -> None:
    tree = ast.parse(Path(align_mcp.__file__).read_text(encoding="utf-8"))
    (block,) = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    seen = {
        alias.asname or alias.name: (node.module, alias.name)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == align_mcp._LAZY


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'align_mcp' has no attribute 'align_everything'"):
        _ = align_mcp.align_everything


def test_the_loop_runs_through_the_public_api(tmp_path: Path) -> None:
    with align_mcp.open_store(tmp_path / "api.db") as store:
        align_mcp.import_runs(
            store, "demo", runs=[{"id": "r1", "inputs": {"q": "2+2"}, "outputs": {"a": "4"}}]
        )
        align_mcp.create_evaluator(store, "correctness", align_mcp.ScoreType(kind="binary"))
        align_mcp.add_to_queue(store, "correctness", source="demo")
        receipt = align_mcp.submit_label(store, "correctness", "r1", 1, comment="right")
        assert (receipt.run_id, receipt.score, receipt.labeled) == ("r1", 1, 1)
        with pytest.raises(align_mcp.NotFound):
            align_mcp.get_evaluator(store, "tone")


def test_importing_the_package_loads_no_engine_and_no_client() -> None:
    code = (
        "import sys, align_mcp\n"
        "print(sorted(m for m in sys.modules if m.startswith(('align_mcp.', 'openai', 'dspy', 'sqlite_utils'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "['align_mcp.errors']", out.stderr


def test_the_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from align_mcp.testing.fakejudge import FakeJudgeServer, simulated_responder

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The loop from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    # The sample runs without their labels, so the example's own labeling loop makes the reference set.
    examples = Path(__file__).resolve().parent.parent / "examples" / "support_runs.jsonl"
    runs = tmp_path / "runs.jsonl"
    runs.write_text(
        "".join(
            json.dumps({k: v for k, v in json.loads(line).items() if k != "feedback"}) + "\n"
            for line in examples.read_text(encoding="utf-8").splitlines()
            if line
        ),
        encoding="utf-8",
    )
    code = code.replace('"runs.jsonl"', repr(str(runs))).replace(
        '"align.db"', repr(str(tmp_path / "readme.db"))
    )
    with FakeJudgeServer(responder=simulated_responder) as judge:
        monkeypatch.setenv("OPENAI_BASE_URL", judge.base_url)
        monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", "simulated")
        exec(compile(code, "README.md", "exec"), {})
        assert judge.calls == 20  # one verdict per labeled run
    with align_mcp.open_store(tmp_path / "readme.db") as store:
        evaluator = align_mcp.get_evaluator(store, "correctness")
        assert [v.version for v in evaluator.versions] == [1, 2]
        assert "- Prices must match exactly." in align_mcp.get_version(store, "correctness", 2).prompt
