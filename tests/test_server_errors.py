"""What the MCP server says when something is refused: arguments and form answers in the house style, resource
errors with a message, the prompt's description, and the optimizer's progress to its real total."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.client import ClientRequestContext
from mcp.server import MCPServer
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult, TextContent

from align_mcp.testing.fakejudge import FakeJudgeServer
from conftest import EXAMPLE_RUNS, snapshot
from test_optimize import ScriptedModel

pytestmark = pytest.mark.anyio


def text(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def seed(client: Client) -> None:
    await client.call_tool("import_runs", {"source": "support", "path": str(EXAMPLE_RUNS)})
    await client.call_tool("create_evaluator", {"name": "correctness"})
    await client.call_tool("create_evaluator", {"name": "tone", "score_type": "ordinal", "min": 1, "max": 5})


# ---- arguments ------------------------------------------------------------------------------------------------


async def test_an_argument_out_of_range_names_the_value_what_is_allowed_and_the_next_step(
    client: Client,
) -> None:
    result = await client.call_tool("next_items", {"evaluator": "correctness", "limit": 500})

    assert text(result) == (
        "Error executing tool next_items: limit=500 is not allowed: limit takes a whole number from 1 to 20. "
        "Call next_items again with limit fixed; nothing was done."
    )


async def test_several_refused_arguments_are_each_named_without_pydantic_texts(client: Client) -> None:
    result = await client.call_tool(
        "get_misaligned", {"evaluator": "correctness", "direction": "sideways", "max_chars": "lots"}
    )

    message = text(result)
    assert message == (
        'Error executing tool get_misaligned: direction="sideways" is not allowed: direction takes one of '
        '"false_pass", "false_fail", "over", "under", "mismatch". max_chars="lots" is not allowed: max_chars '
        "takes a whole number from 200 to 20000. Call get_misaligned again with direction and max_chars fixed; "
        "nothing was done."
    )
    assert "pydantic" not in message and "validation error" not in message


async def test_a_missing_argument_says_what_it_is(client: Client) -> None:
    assert text(await client.call_tool("next_items", {})) == (
        "Error executing tool next_items: next_items needs evaluator (The evaluator's name). Call next_items "
        "again with evaluator fixed; nothing was done."
    )
    nested = await client.call_tool(
        "submit_labels", {"evaluator": "correctness", "labels": [{"run_id": "a"}]}
    )
    assert text(nested) == (
        "Error executing tool submit_labels: submit_labels needs labels[0].score (1/0, a label, an integer or "
        "A/B/tie). Call submit_labels again with labels[0].score fixed; nothing was done."
    )


# ---- form answers -----------------------------------------------------------------------------------------------


class Answer:
    """An elicitation callback answering every form with the same content."""

    def __init__(self, content: dict[str, Any]) -> None:
        self.content = content

    async def __call__(self, ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="accept", content=self.content)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_form_answer_out_of_range_is_refused_in_the_house_style(
    server: MCPServer[Any], db_path: Path, mode: str
) -> None:
    async with Client(server, cache=None, mode=mode, elicitation_callback=Answer({"score": 7})) as client:  # type: ignore[arg-type]
        await seed(client)
        before = snapshot(db_path)
        result = await client.call_tool("submit_label", {"evaluator": "tone", "run_id": "pp-001"})

    message = text(result)
    assert message == (
        "Error executing tool submit_label: The human's form answer score=7 is not allowed: score takes ordinal "
        "(1..5). Nothing was stored. Ask again with submit_label(evaluator='tone', run_id='pp-001'), or ask the "
        "human in the chat and pass the score."
    )
    assert "Resolver" not in message and "align_mcp" not in message
    assert snapshot(db_path) == before


async def test_a_binary_form_answer_that_is_not_a_choice_is_refused(server: MCPServer[Any]) -> None:
    async with Client(server, cache=None, elicitation_callback=Answer({"score": "maybe"})) as client:  # type: ignore[arg-type]
        await seed(client)
        result = await client.call_tool("submit_label", {"evaluator": "correctness", "run_id": "pp-001"})

    assert text(result) == (
        'Error executing tool submit_label: The human\'s form answer score="maybe" is not allowed: score takes '
        "binary (0 = fail, 1 = pass). Nothing was stored. Ask again with submit_label(evaluator='correctness', "
        "run_id='pp-001'), or ask the human in the chat and pass the score."
    )


# ---- resources and the prompt ------------------------------------------------------------------------------------


async def read(client: Client, uri: str) -> str:
    content = (await client.read_resource(uri)).contents[0]
    assert hasattr(content, "text")
    return str(content.text)


async def test_a_version_resource_takes_v2_as_tools_do_and_every_error_has_a_message(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    await seed(client)
    await client.call_tool(
        "update_draft", {"evaluator": "correctness", "find": "Think step by step", "replace_with": "Think"}
    )
    await client.call_tool("save_prompt", {"evaluator": "correctness"})

    with caplog.at_level(logging.INFO):
        assert await read(client, "align://evaluators/correctness/versions/v2") == await read(
            client, "align://evaluators/correctness/versions/2"
        )
        assert "Think step by step" not in await read(client, "align://evaluators/correctness/versions/v2")
        failures = {}
        for uri in (
            "align://evaluators/correctness/versions/two",
            "align://evaluators/correctness/versions/v9",
            "align://reports/latest",
            "align://proposals/x",
            "align://proposals/4",
            "align://schemas/Nope",
        ):
            with pytest.raises(MCPError) as raised:
                await client.read_resource(uri)
            failures[uri] = str(raised.value)

    assert failures == {
        "align://evaluators/correctness/versions/two": (
            "Version 'two' in align://evaluators/correctness/versions/two is not a version such as v2 (or 2)."
        ),
        "align://evaluators/correctness/versions/v9": "Evaluator 'correctness' has no version 9. Known: v1, v2.",
        "align://reports/latest": "Alignment run 'latest' in align://reports/latest is not a whole number such as 3.",
        "align://proposals/x": "Proposal 'x' in align://proposals/x is not a whole number such as 3.",
        "align://proposals/4": (
            "No proposal 4. list_proposals lists the proposals. Let the optimizer propose a revised prompt with "
            "propose_prompt."
        ),
        "align://schemas/Nope": failures["align://schemas/Nope"],
    }
    assert failures["align://schemas/Nope"].startswith("No result kind 'Nope' on this server. Known: ")
    assert "Error creating resource from template" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_the_prompt_description_reads_as_one_paragraph(client: Client) -> None:
    [prompt] = (await client.list_prompts()).prompts

    assert prompt.description == (
        "Walk through aligning an LLM-as-judge evaluator with human labels: the loop, how to read kappa and the "
        "intervals, and when to ask for more labels."
    )


# ---- the optimizer's progress ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "budget"), [("reflect", 150), ("gepa", 150)])
async def test_a_proposal_reports_progress_steadily_up_to_its_total(
    server: MCPServer[Any], monkeypatch: pytest.MonkeyPatch, mode: str, budget: int
) -> None:
    model = ScriptedModel()
    with FakeJudgeServer(responder=model) as judge:
        monkeypatch.setenv("OPENAI_BASE_URL", judge.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", "fake-judge")
        sent: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            sent.append((progress, total, message))

        async with Client(server, cache=None) as client:
            await seed(client)
            result = await client.call_tool(
                "propose_prompt",
                {"evaluator": "correctness", "mode": mode, "budget": budget},
                progress_callback=on_progress,
            )
        assert not result.is_error, result.content
        assert result.structured_content is not None
        used = result.structured_content["budget"]["used"]

    values = [value for value, _, _ in sent]
    assert values == sorted(set(values)) and len(values) > 10, "steady and increasing"
    assert all(total is not None and value <= total for value, total, _ in sent)
    last_value, last_total, last_message = sent[-1]
    assert last_value == last_total, "progress ends at its total"
    if mode == "reflect":
        assert last_total == used == judge.calls, "a reflect proposal's total is its real number of calls"
        assert last_message == f"optimizer: {used} of {budget} model calls used"
    else:
        assert last_total == budget
        assert last_message == f"optimizer: done, {used} of {budget} model calls used"
