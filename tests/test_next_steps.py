"""Next steps: every action is worded by both surfaces, naming a tool or command that exists with its arguments."""

from __future__ import annotations

import re
import shlex
from typing import Any

import anyio
import click
import pytest
from mcp.types import Tool

from align_mcp.cli import main
from align_mcp.cli import render as cli_render
from align_mcp.core.models import NOTE_WORDS, Model, Note
from align_mcp.core.views import EvaluatorList
from align_mcp.errors import ACTION_ARGS, ACTIONS, AlignError, NextStep, NotFound
from align_mcp.mcp import render as mcp_render
from align_mcp.mcp.render import ProgressReporter
from align_mcp.mcp.server import create_server

SAMPLE_ARGS: dict[str, Any] = {
    "evaluator": "correctness",
    "source": "support",
    "run_id": "pp-001",
    "max_chars": 5000,
    "split": "dev",
    "alignment_run": 7,
    "retry_errors": True,
    "offset": 10,
    "run_ids": ["pp-001", "pp-002"],
    "limit": 60,
    "repeats": 3,
    "budget": 80,
    "mode": "gepa",
    "proposal_id": 2,
    "force": True,
    "include_prompts": True,
    "stale": True,
}


def steps() -> list[NextStep]:
    """Every action twice: with no arguments, and with every argument it may carry."""
    out = []
    for action in ACTIONS:
        out.append(NextStep(action))
        out.append(NextStep(action, {name: SAMPLE_ARGS[name] for name in ACTION_ARGS[action]}))
    return out


def step_id(step: NextStep) -> str:
    return f"{step.action}({', '.join(step.args)})"


@pytest.fixture(scope="module")
def tools() -> dict[str, Tool]:
    server = create_server(tools=["all"])
    return {t.name: t for t in anyio.run(server.list_tools)}


CALL = re.compile(r"\b([a-z]+(?:_[a-z]+)+)\(([^()]*)\)")
SNAKE = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")


def test_every_argument_has_a_sample() -> None:
    assert {name for names in ACTION_ARGS.values() for name in names} == set(SAMPLE_ARGS)
    assert set(ACTION_ARGS) == set(ACTIONS)


@pytest.mark.parametrize("step", steps(), ids=step_id)
def test_mcp_words_every_action_as_a_tool_the_server_lists(step: NextStep, tools: dict[str, Tool]) -> None:
    text = mcp_render.step_words(step)

    named = [name for name in SNAKE.findall(CALL.sub(r"\1", text)) if name in tools]
    assert named, f"{text!r} names no tool"
    for tool, arguments in CALL.findall(text):
        assert tool in tools, f"{text!r} calls {tool}, which the server does not list"
        for argument in re.findall(r"(\w+)=", arguments):
            assert argument in tools[tool].input_schema["properties"], f"{tool} has no argument {argument}"
    outside_calls = CALL.sub(r"\1", text)
    assert set(SNAKE.findall(outside_calls)) <= set(tools), f"{text!r} names something that is not a tool"


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The command a command line names, and the words after its name."""
    command: click.Command = main
    ctx = click.Context(main)
    while isinstance(command, click.Group) and words:
        sub = command.get_command(ctx, words[0])
        assert sub is not None, f"no command {words[0]!r} under {command.name!r}"
        command, words = sub, words[1:]
    assert not isinstance(command, click.Group), f"{command.name!r} is a group, not a command"
    return command, words


def check_command_line(line: str) -> None:
    """The command exists, takes every option the line gives, and as many arguments as it passes."""
    command, words = resolve(shlex.split(line))
    options = {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts}
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    positional = 0
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            assert word in options, f"`{line}`: {command.name} has no option {word}"
            option = options[word]
            i += 1 if option.is_flag else 1 + option.nargs
            continue
        positional += 1
        i += 1
    unlimited = any(a.nargs == -1 for a in arguments)
    assert positional >= sum(1 for a in arguments if a.required), f"`{line}`: arguments missing"
    assert unlimited or positional <= len(arguments), f"`{line}`: too many arguments"


@pytest.mark.parametrize("step", steps(), ids=step_id)
def test_cli_words_every_action_as_a_command_that_exists(step: NextStep) -> None:
    text = cli_render.step_words(step)

    lines = re.findall(r"`align-mcp ([^`]+)`", text)
    assert lines, f"{text!r} names no command"
    for line in lines:
        check_command_line(line)
    assert not SNAKE.findall(re.sub(r"`[^`]+`", "", text)), f"{text!r} names a Python or MCP name"


def test_a_step_refuses_an_argument_its_action_does_not_take() -> None:
    with pytest.raises(ValueError, match=r"^Next step 'show_run' takes no argument\(s\) evaluator\.$"):
        NextStep("show_run", {"evaluator": "correctness"})


def test_an_error_reads_as_its_message_then_the_step_in_each_surfaces_words() -> None:
    error = NotFound("No evaluator named 'tone'. Known: correctness.", NextStep("create_evaluator"))

    assert str(error) == "No evaluator named 'tone'. Known: correctness."
    assert mcp_render.error_text(error) == (
        "No evaluator named 'tone'. Known: correctness. Create one with create_evaluator."
    )
    assert cli_render.error_text(error) == (
        "No evaluator named 'tone'. Known: correctness. Create one with `align-mcp evaluator create NAME`."
    )
    assert mcp_render.error_text(AlignError("Nothing to do.")) == "Nothing to do."


def test_a_note_dumps_as_a_line_in_each_surfaces_words_and_as_data_without_one() -> None:
    listing = EvaluatorList(
        evaluators=[],
        notes=[
            Note(
                text="The draft is not saved.",
                next_steps=[
                    NextStep("run_alignment", {"evaluator": "tone"}),
                    NextStep("save_prompt", {"evaluator": "tone"}),
                ],
            )
        ],
    )

    assert mcp_render.as_data(listing)["notes"] == [
        "The draft is not saved. Judge the reference set with run_alignment(evaluator='tone'). Save it as a new "
        "version with save_prompt(evaluator='tone') when the user asks."
    ]
    assert cli_render.plain(listing)["notes"] == [
        "The draft is not saved. Judge the reference set with `align-mcp align tone`. Save it as a new version "
        "with `align-mcp save tone`."
    ]
    assert listing.model_dump(mode="json")["notes"] == [
        {
            "text": "The draft is not saved.",
            "next_steps": [
                {"action": "run_alignment", "args": {"evaluator": "tone"}},
                {"action": "save_prompt", "args": {"evaluator": "tone"}},
            ],
        }
    ]


def test_a_rendered_note_validates_back_and_its_schema_is_a_string() -> None:
    class Listing(Model):
        notes: list[Note]

    data = Listing(notes=[Note(text="x", next_steps=[NextStep("create_evaluator")])]).model_dump(
        mode="json", context={NOTE_WORDS: mcp_render.note_line}
    )

    assert data == {"notes": ["x Create one with create_evaluator."]}
    assert Listing.model_validate(data).notes == [Note(text="x Create one with create_evaluator.")]
    assert Listing.model_json_schema()["$defs"]["Note"] == {"type": "string"}


class Recorder:
    """Stands in for the MCP request context: records the progress the reporter sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, float | None, str | None]] = []

    async def report_progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        self.sent.append((progress, total, message))


def test_progress_adds_up_phases_and_never_goes_back() -> None:
    recorder = Recorder()
    report = ProgressReporter(recorder)  # type: ignore[arg-type]

    async def phases() -> None:
        for done in (1, 2, 3):
            await report(done, 3, f"draft: {done}/3 judged")
        await report(1, 3, "v1: 1/3 judged (1 from cache)")  # the comparison starts: a count that falls
        await report(3, 3, "v1: 3/3 judged")
        for used in (2, 2, 5):  # the optimizer's calls: the same count twice, then a new total
            await report(used, 10, f"optimizer: {used}/10 model calls used")

    anyio.run(phases)

    assert [(value, total) for value, total, _ in recorder.sent] == [
        (1, 3),
        (2, 3),
        (3, 3),
        (4, 6),
        (6, 6),
        (8, 16),
        (11, 16),
    ]
    assert recorder.sent[-1][2] == "optimizer: 5/10 model calls used"


def test_a_new_message_at_the_same_count_still_goes_out_with_a_slightly_higher_value() -> None:
    recorder = Recorder()
    report = ProgressReporter(recorder)  # type: ignore[arg-type]

    async def waits() -> None:
        await report(1, 3, "draft: 1/3 judged")
        await report(1, 3, "draft: 1/3 judged; waiting 30.0s after HTTP 429 from the judge")
        await report(
            1, 3, "draft: 1/3 judged; waiting 30.0s after HTTP 429 from the judge"
        )  # the same: dropped
        await report(2, 3, "draft: 2/3 judged")

    anyio.run(waits)

    assert recorder.sent == [
        (1, 3, "draft: 1/3 judged"),
        (pytest.approx(1.001), 3, "draft: 1/3 judged; waiting 30.0s after HTTP 429 from the judge"),
        (2, 3, "draft: 2/3 judged"),
    ]
