"""`align-mcp demo`: the whole loop on the packaged sample runs, in a fresh store, one real command at a time."""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import click

from align_mcp import config

SAMPLE = "data/support_runs.jsonl"
"""The sample runs inside the align_mcp.testing package: 46 support-bot answers labeled by a domain expert."""
EVALUATOR = "correctness"
SOURCE = "pedalpoint-support"
REAL_JUDGE_MODEL = "gpt-4.1-mini"
SIMULATED_MODEL = "simulated-judge"
REFLECT_BUDGET = 120
JUDGE_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", config.ENV_JUDGE_API_KEY, config.ENV_JUDGE_BASE_URL)


def _step(db: Path, title: str, *args: str) -> None:
    """Print a step and its command, then run the command in this process on the demo's store."""
    from align_mcp.cli.main import main

    click.echo(f"\n== {title}\n$ align-mcp {' '.join(shlex.quote(a) for a in args)}")
    try:
        main.main(["--db", str(db), *args], prog_name="align-mcp", standalone_mode=False)
    except SystemExit as e:  # a command that exits cleanly (code 0) lets the demo go on
        if e.code:
            raise


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the demo's commands, and restore them afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _latest_proposal(db: Path) -> int:
    from align_mcp import list_proposals, open_store

    with open_store(db) as store:
        return list_proposals(store, EVALUATOR)[-1].id


def _loop(db: Path, runs: Path, model: str) -> None:
    _step(
        db,
        "Import the app's runs (46 support answers, already labeled by a domain expert)",
        "import",
        str(runs),
        "--source",
        SOURCE,
    )
    _step(
        db,
        "Create a binary correctness judge; its default prompt is saved as v1",
        "evaluator",
        "create",
        EVALUATOR,
        "--score-type",
        "binary",
        "--model",
        model,
    )
    _step(db, "The annotation queue: labels and their balance", "queue", "list")
    _step(
        db,
        "Align v1 with the human labels (dev split; the test split is held out)",
        "align",
        EVALUATOR,
        "--prompt",
        "v1",
    )
    _step(db, "Where the judge disagrees with the humans", "misaligned", EVALUATOR, "--limit", "2")
    _step(db, "Group the misaligned dev cases into failure modes", "failures", EVALUATOR)
    _step(db, "Triage: judge error, possible label error, or rubric gap?", "triage", EVALUATOR)
    _step(
        db,
        "Propose a revised prompt: one reflective rewrite from the failure modes, checked on the test split",
        "propose",
        EVALUATOR,
        "--mode",
        "reflect",
        "--budget",
        str(REFLECT_BUDGET),
    )
    proposal = str(_latest_proposal(db))
    _step(db, "Apply the proposal to the draft (nothing is saved yet)", "apply", EVALUATOR, proposal)
    _step(db, "Align the draft; it is compared with v1 on the same examples", "align", EVALUATOR)
    _step(db, "Save the draft as v2", "save", EVALUATOR, "-m", f"Optimizer proposal #{proposal}")
    _step(
        db,
        "Check v2 once on the held-out test split",
        "align",
        EVALUATOR,
        "--prompt",
        "v2",
        "--split",
        "test",
    )
    _step(db, "Versions and their scores", "versions", EVALUATOR)


def run_demo(directory: Path | None, simulated: bool) -> Path:
    """Run the demo into a new store under `directory` (a new temporary directory by default); returns the store."""
    from align_mcp.errors import InvalidInput

    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="align-mcp-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "align.db"
    if db.exists():
        raise InvalidInput(f"{db} already exists; the demo needs a fresh store. Pass another --dir.")
    use_real = not simulated and any(os.environ.get(name) for name in JUDGE_ENV)
    with resources.as_file(resources.files("align_mcp.testing").joinpath(SAMPLE)) as runs:
        if use_real:
            model = os.environ.get(config.ENV_JUDGE_MODEL) or REAL_JUDGE_MODEL
            where = os.environ.get(config.ENV_JUDGE_BASE_URL) or os.environ.get("OPENAI_BASE_URL")
            click.echo(f"Judge: {model} at {where or 'https://api.openai.com/v1'}. Store: {db}")
            _loop(db, runs, model)
        else:
            from align_mcp.testing.fakejudge import FakeJudgeServer
            from align_mcp.testing.simulated import simulated_responder

            with (
                FakeJudgeServer(responder=simulated_responder) as server,
                _environment(
                    **{config.ENV_JUDGE_BASE_URL: server.base_url, config.ENV_JUDGE_API_KEY: "sk-simulated"}
                ),
            ):
                click.echo(
                    "Judge: the SIMULATED judge (deterministic rules, offline) at "
                    f"{server.base_url}; every judge text says [simulated judge]. Set OPENAI_API_KEY (and "
                    f"OPENAI_BASE_URL for Ollama or vLLM) for a real one. Store: {db}"
                )
                _loop(db, runs, SIMULATED_MODEL)
    return db


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the demo's store (default: a new temporary directory).",
)
@click.option(
    "--simulated",
    is_flag=True,
    help="Use the offline simulated judge even when OPENAI_API_KEY / OPENAI_BASE_URL are set.",
)
def demo_cmd(directory: Path | None, simulated: bool) -> None:
    """Run the whole loop on sample data in a fresh store, printing each command and its output.

    The sample: 46 answers of a bike-rental support bot, labeled by a domain expert. The demo imports them,
    creates a judge, aligns it, groups its failures, triages them, lets the optimizer propose a revised prompt,
    applies it, aligns again (compared with v1), saves v2 and checks it on the held-out test split.

    The judge is the one OPENAI_API_KEY / OPENAI_BASE_URL (or ALIGN_MCP_JUDGE_*) point at, with
    ALIGN_MCP_JUDGE_MODEL (default gpt-4.1-mini); without them, or with --simulated, a deterministic simulated
    judge runs offline on 127.0.0.1 and every judge text says so.
    """
    from align_mcp.errors import AlignError

    try:
        db = run_demo(directory, simulated)
    except AlignError as e:
        from align_mcp.cli.render import error_text

        raise click.ClickException(error_text(e)) from e
    click.echo(
        f"\nThe store is at {db}; explore it with:  align-mcp --db {shlex.quote(str(db))} versions {EVALUATOR}"
    )
