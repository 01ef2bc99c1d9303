"""The whole align-evaluator loop on the sample data, through the `align-mcp` CLI, in a fresh store.

Uses the judge at OPENAI_BASE_URL / OPENAI_API_KEY when either is set (model: ALIGN_MCP_JUDGE_MODEL, default
gpt-4.1-mini); otherwise starts the project's simulated judge on 127.0.0.1, and every judge result is labelled
"[simulated judge]".
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from align_mcp.cli import main
from align_mcp.testing.fakejudge import FakeJudgeServer, simulated_responder

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "demo-data"
INSTRUCTIONS = (
    "Compare every number, price and duration in the output with the reference output; they must match "
    "exactly, and a wrong figure makes the output fail.\n"
    "A polite refusal or hand-off to a human is correct when the request is out of scope (legal, medical, "
    "or unrelated to PedalPoint) and the reference also declines.\n\n"
    "Think step by step"
)


def step(title: str, *args: str) -> None:
    print(f"\n== {title}\n$ align-mcp {' '.join(shlex.quote(a) for a in args)}", flush=True)
    try:
        main([*args], standalone_mode=False)
    except SystemExit as e:  # click exits after --help etc.; a real failure should stop the demo
        if e.code:
            raise
    sys.stdout.flush()


def run(model: str) -> None:
    step(
        "Import the app's runs (46 support answers, already labeled by a domain expert)",
        "import",
        str(ROOT / "examples" / "support_runs.jsonl"),
        "--source",
        "pedalpoint-support",
    )
    step(
        "Create a binary correctness judge; its default prompt is saved as v1",
        "evaluator",
        "create",
        "correctness",
        "--score-type",
        "binary",
        "--model",
        model,
    )
    step("The annotation queue: labels and their balance", "queue", "list")
    step(
        "Align v1 with the human labels (dev split; the test split is held out)",
        "align",
        "correctness",
        "--prompt",
        "v1",
    )
    step("Where the judge disagrees with the humans", "misaligned", "correctness", "--limit", "3")
    step(
        "Edit the draft: add the two rules the misaligned cases point to (not saved yet)",
        "draft",
        "edit",
        "correctness",
        "--replace",
        "Think step by step",
        INSTRUCTIONS,
    )
    step("Align the draft; it is compared with v1 on the same examples", "align", "correctness")
    step(
        "Save the draft as v2",
        "save",
        "correctness",
        "-m",
        "Check figures against the reference; accept scoped hand-offs",
    )
    step(
        "Check v2 once on the held-out test split",
        "align",
        "correctness",
        "--prompt",
        "v2",
        "--split",
        "test",
    )
    step("Versions and their scores", "versions", "correctness")


def demo() -> None:
    if DATA.exists():
        shutil.rmtree(DATA)
    DATA.mkdir()
    os.environ["ALIGN_MCP_DB"] = str(DATA / "align.db")
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        model = os.environ.get("ALIGN_MCP_JUDGE_MODEL", "gpt-4.1-mini")
        print(f"Judge: {model} at {os.environ.get('OPENAI_BASE_URL', 'https://api.openai.com/v1')}")
        run(model)
        return
    with FakeJudgeServer(responder=simulated_responder) as server:
        os.environ["OPENAI_BASE_URL"] = server.base_url
        os.environ["OPENAI_API_KEY"] = "sk-simulated"
        print(
            "Judge: the SIMULATED judge (deterministic rules, offline) at "
            f"{server.base_url}. Set OPENAI_API_KEY (and OPENAI_BASE_URL for Ollama/vLLM) for a real one."
        )
        run("simulated-judge")
    print(
        f"\nThe store is at {DATA / 'align.db'}; explore it with ALIGN_MCP_DB={DATA / 'align.db'} align-mcp ..."
    )


if __name__ == "__main__":
    demo()
