"""`align-mcp demo`: the whole loop on the packaged sample data, in a fresh store, offline or with the configured
judge."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from align_mcp.cli import main
from align_mcp.testing.fakejudge import FakeJudgeServer
from align_mcp.testing.simulated import simulated_responder
from conftest import EXAMPLE_RUNS, ROOT

COMMANDS = [
    "import",
    "evaluator create",
    "queue list",
    "align correctness --prompt v1",
    "misaligned",
    "failures",
    "triage",
    "propose correctness --mode reflect",
    "apply correctness 1",
    "align correctness",
    "save correctness",
    "align correctness --prompt v2 --split test",
    "versions",
]


def demo(*args: str) -> str:
    result = CliRunner().invoke(main, ["demo", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_runs_the_whole_loop_offline_with_the_simulated_judge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --simulated wins over a configured endpoint, which must then get no request.
    with FakeJudgeServer() as configured:
        monkeypatch.setenv("OPENAI_BASE_URL", configured.base_url)
        out = demo("--dir", str(tmp_path / "demo"), "--simulated")
    assert configured.requests == []
    assert out.startswith("Judge: the SIMULATED judge (deterministic rules, offline) at http://127.0.0.1:")
    ran = [line.removeprefix("$ align-mcp ") for line in out.splitlines() if line.startswith("$ align-mcp ")]
    assert len(ran) == len(COMMANDS)
    for command, expected in zip(ran, COMMANDS, strict=True):
        assert command.startswith(expected), (command, expected)
    for text in (
        "Imported 46 new run(s) into 'pedalpoint-support'",
        "agreement 69.7% (95% CI 52.7%–82.6%), n = 33, errors = 0 [simulated judge]",
        "grouped by llm:",
        "Misses wrong figures [false_pass] (4): [simulated judge]",
        "Penalises correct hand-offs [false_fail] (4): [simulated judge]",
        "Triage of run 1 (v1): judge_error 1, label_error 0, rubric_gap 9, unclassified 0; 1 request(s) to the judge",
        "Proposal 1 (reflect) for 'correctness': proposed",
        "+Rules added by the [simulated judge] from the failure modes:",
        "Proposal 1 is now the draft of 'correctness'.",
        "Flips vs v1: draft fixed 8 and broke 0 of 33 shared examples",
        "Saved 'correctness' v2: Optimizer proposal #1",
        "Alignment (test split): run 3, correctness v2",
    ):
        assert text in out, text
    for line in out.splitlines():
        if line.startswith(("judge:", "  agreement", "Flips vs")):
            assert "[simulated judge]" in line, line
    # The README's excerpt of this output, line by line and in order.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    excerpt = readme.split("```text\n$ align-mcp demo\n", 1)[1].split("```", 1)[0].splitlines()
    lines = iter(out.splitlines())
    for expected in (line for line in excerpt if line != "..."):
        assert any(line == expected for line in lines), (
            f"README excerpt line not in the demo's output: {expected}"
        )
    db = tmp_path / "demo" / "align.db"
    assert out.rstrip().endswith(
        f"The store is at {db}; explore it with:  align-mcp --db {db} versions correctness"
    )
    # The demo's judge settings do not outlive it.
    assert "ALIGN_MCP_JUDGE_BASE_URL" not in os.environ and "ALIGN_MCP_JUDGE_API_KEY" not in os.environ


def test_demo_uses_the_configured_judge_and_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeJudgeServer(responder=simulated_responder) as endpoint:
        monkeypatch.setenv("OPENAI_BASE_URL", endpoint.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", "my-judge")
        out = demo("--dir", str(tmp_path / "demo"))
    assert out.startswith(f"Judge: my-judge at {endpoint.base_url}. Store: {tmp_path / 'demo' / 'align.db'}")
    assert "evaluator create correctness --score-type binary --model my-judge" in out
    models = {body["model"] for body in endpoint.chat_bodies}
    assert models == {"my-judge"} and len(endpoint.chat_bodies) > 46


def test_demo_refuses_a_directory_that_holds_a_store(tmp_path: Path) -> None:
    (tmp_path / "align.db").write_bytes(b"")
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {tmp_path / 'align.db'} already exists; the demo needs a fresh store. Pass another --dir.\n"
    )


def test_the_sample_data_ships_in_the_package_and_examples_points_at_it() -> None:
    packaged = ROOT / "src" / "align_mcp" / "testing" / "data" / "support_runs.jsonl"
    assert EXAMPLE_RUNS.resolve() == packaged
    assert len(packaged.read_text(encoding="utf-8").splitlines()) == 46


def test_make_demo_calls_the_command() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "demo: $(STAMP)\n\trm -rf demo-data\n\t$(BIN)/align-mcp demo --dir demo-data\n" in makefile
