"""What tools/list carries: the toolsets ALIGN_MCP_TOOLS selects, sizes within the targets, compact schemas, one
full schema per result kind, and hints and descriptions that name only the tools a server lists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
from click.testing import CliRunner
from mcp import Client
from mcp.types import TextContent, Tool

from align_mcp.cli import main
from align_mcp.errors import ACTIONS, InvalidInput, NextStep
from align_mcp.mcp import render
from align_mcp.mcp.listing import listing_size
from align_mcp.mcp.server import create_server
from align_mcp.mcp.tools import CORE, DIAGNOSTICS, MODELS, toolsets
from conftest import EXAMPLE_RUNS
from test_next_steps import steps

WIRE_TARGET = 35_000
VISIBLE_TARGET = 12_000
ALL = toolsets()["all"]
UNKNOWN = (
    "ALIGN_MCP_TOOLS names 'nope', which is not a toolset or a tool. Toolsets: core, diagnostics, models, data, all. "
    "Tools: "
    + ", ".join(ALL)
    + ". Use a comma-separated list of them, e.g. ALIGN_MCP_TOOLS=core,triage_disagreements; unset, it is core."
)


def listed(*names: str) -> list[Tool]:
    return anyio.run(create_server(":memory:", tools=list(names) if names else None).list_tools)


def test_core_is_listed_by_default_within_the_size_targets() -> None:
    tools = listed()
    size = listing_size(tools)

    assert [t.name for t in tools] == [name for name in ALL if name in CORE]
    assert set(CORE) == {t.name for t in tools}
    assert size.wire <= WIRE_TARGET, size
    assert size.visible <= VISIBLE_TARGET, size


def test_all_lists_every_capability_and_is_bigger_than_core() -> None:
    every = listed("all")
    names = [t.name for t in every]

    assert set(CORE) | set(DIAGNOSTICS) | set(MODELS) | {
        "get_run",
        "pair_sources",
        "list_proposals",
        "apply_proposal",
        "alignment_chart",
        "export_reference_set",
        "judge_card",
    } == set(names)
    assert len(names) == len(set(names)) == len(ALL)
    assert listing_size(every).wire > listing_size(listed()).wire


def walk(value: Any) -> Any:
    """Every dict inside a JSON value."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def test_schemas_carry_no_generated_titles_and_optional_arguments_no_null() -> None:
    for tool in listed("all"):
        for schema in (tool.input_schema, tool.output_schema or {}):
            assert all(not isinstance(node.get("title"), str) for node in walk(schema)), tool.name
        assert tool.annotations is not None and tool.annotations.title is None, "the title is the tool's own"
    submit = {t.name: t for t in listed()}["submit_label"].input_schema
    assert submit["required"] == ["evaluator", "run_id"]
    assert submit["properties"]["comment"] == {
        "type": "string",
        "description": "The human's reason, in their words",
    }


@pytest.mark.anyio
async def test_each_result_kind_has_one_full_schema_that_the_results_validate_against(
    client: Client,
) -> None:
    await client.call_tool("create_evaluator", {"name": "correctness"})
    tools = {t.name: t for t in (await client.list_tools()).tools}
    output = tools["list_evaluators"].output_schema
    assert output is not None
    assert output["description"] == "EvaluatorList: align://schemas/EvaluatorList"
    assert output["properties"]["evaluators"] == {"type": "array"}

    full = json.loads((await client.read_resource("align://schemas/EvaluatorList")).contents[0].text)  # type: ignore[union-attr]
    result = await client.call_tool("list_evaluators", {})
    jsonschema.validate(result.structured_content, full)
    assert full["$defs"]["EvaluatorBrief"]["properties"]["name"]["type"] == "string"
    kinds = {o["description"].split(":")[0] for t in tools.values() if (o := t.output_schema)}
    assert "AlignmentReport" in kinds and len(kinds) < len(tools), "tools returning one kind share its schema"


@pytest.mark.anyio
async def test_text_content_is_compact_json(client: Client) -> None:
    await client.call_tool("create_evaluator", {"name": "correctness"})
    result = await client.call_tool("list_evaluators", {})
    block = result.content[0]

    assert isinstance(block, TextContent)
    assert block.text == json.dumps(result.structured_content, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.anyio
async def test_the_environment_selects_toolsets_and_tools_and_others_are_not_callable(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALIGN_MCP_TOOLS", " core , triage_disagreements,get_run ")
    async with Client(create_server(db_path), cache=None) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        refused = await client.call_tool("check_consistency", {"evaluator": "correctness"})
        run = await client.call_tool("get_run", {"run_id": "pp-001"})

    assert names == [n for n in ALL if n in {*CORE, "triage_disagreements", "get_run"}]
    assert refused.is_error
    assert refused.content[0].text == (  # type: ignore[union-attr]
        "check_consistency is not enabled on this server, which lists the tools ALIGN_MCP_TOOLS selects ("
        + ", ".join(names)
        + "). The user can add it, e.g. ALIGN_MCP_TOOLS=core,check_consistency."
    )
    assert run.is_error and "No run with id 'pp-001'" in run.content[0].text  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_the_diagnostics_toolset_alone(db_path: Path) -> None:
    async with Client(create_server(db_path, tools=["diagnostics"]), cache=None) as client:
        names = [t.name for t in (await client.list_tools()).tools]
    assert names == list(DIAGNOSTICS)


def test_an_unknown_name_is_a_startup_error_listing_the_valid_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInput) as raised:
        create_server(":memory:", tools=["core", "nope"])
    assert raised.value.message == UNKNOWN

    monkeypatch.setenv("ALIGN_MCP_TOOLS", "core,nope")
    with pytest.raises(InvalidInput):
        create_server(":memory:")
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 1
    assert result.output == f"Error: {UNKNOWN}\n"


SNAKE = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")


def test_core_descriptions_name_only_listed_tools() -> None:
    tools = listed()
    names = {t.name for t in tools}
    for tool in tools:
        texts = [tool.description or ""] + [
            str(node["description"]) for node in walk(tool.input_schema) if "description" in node
        ]
        for text in texts:
            mentioned = {word for word in SNAKE.findall(text) if word in ALL}
            assert mentioned <= names, (tool.name, text)


CALL = re.compile(r"\b([a-z]+(?:_[a-z]+)+)\(")


@pytest.mark.parametrize("action", ACTIONS)
def test_a_core_server_words_every_next_step_with_its_own_tools(action: str) -> None:
    for step in (candidate for candidate in steps() if candidate.action == action):
        text = render.step_words(step, CORE)
        called = set(CALL.findall(text))
        assert called <= set(CORE), text
        mentioned = {word for word in SNAKE.findall(text) if word in ALL}
        assert mentioned <= set(CORE) or "ALIGN_MCP_TOOLS=core," in text, text


def test_hints_to_unlisted_tools_say_how_to_reach_them() -> None:
    assert render.step_words(NextStep("show_run", {"run_id": "pp-001"}), CORE) == (
        "The resource align://runs/pp-001 holds it in full."
    )
    assert render.step_words(NextStep("apply_proposal", {"evaluator": "tone", "proposal_id": 3}), CORE) == (
        "To use it, copy the prompt of the resource align://proposals/3 into the draft with "
        "update_draft(evaluator='tone', prompt=...) when the user agrees."
    )
    assert render.step_words(NextStep("triage", {"evaluator": "tone"}), CORE) == (
        "(triage_disagreements would do it next, but this server does not list it: the user can add it to "
        "ALIGN_MCP_TOOLS, e.g. ALIGN_MCP_TOOLS=core,triage_disagreements.)"
    )
    assert render.step_words(NextStep("triage", {"evaluator": "tone"}), ALL) == (
        "Classify the disagreements with triage_disagreements(evaluator='tone')."
    )
    assert render.step_words(NextStep("resume_alignment", {"alignment_run": 4}), CORE) == (
        "Finish it with run_alignment(evaluator=..., resume=4)."
    )


@pytest.mark.anyio
async def test_a_cut_text_points_a_core_client_to_the_run_resource(db_path: Path) -> None:
    long_run = {"id": "long-1", "inputs": {"q": "x" * 5000}, "outputs": {"a": "y" * 5000}}
    notes: dict[str, list[str]] = {}
    for toolset in ("core", "all"):
        async with Client(create_server(db_path, tools=[toolset]), cache=None) as client:
            if toolset == "core":
                await client.call_tool("import_runs", {"source": "long", "runs": [long_run]})
                await client.call_tool(
                    "create_evaluator", {"name": "tone", "score_type": "ordinal", "min": 1, "max": 5}
                )
                await client.call_tool("add_to_queue", {"evaluator": "tone", "run_ids": ["long-1"]})
            page = await client.call_tool("next_items", {"evaluator": "tone", "max_chars": 200})
            assert not page.is_error, page.content
            assert page.structured_content is not None
            notes[toolset] = page.structured_content["notes"]

    assert "The resource align://runs/<run_id> holds a run in full." in notes["core"][-1], notes["core"]
    assert not any("get_run" in n for n in notes["core"])
    assert "get_run(run_id=...) returns a run in full." in notes["all"][-1], notes["all"]


@pytest.mark.anyio
async def test_retry_errors_applies_to_a_resumed_run_only(client: Client) -> None:
    await client.call_tool("import_runs", {"source": "support", "path": str(EXAMPLE_RUNS)})
    await client.call_tool("create_evaluator", {"name": "correctness"})
    result = await client.call_tool("run_alignment", {"evaluator": "correctness", "retry_errors": True})

    assert result.is_error
    assert result.content[0].text == (  # type: ignore[union-attr]
        "Error executing tool run_alignment: retry_errors=true applies to a resumed run: pass "
        "resume=<alignment run id> too."
    )


def said_in(value: Any) -> list[str]:
    """Every note, warning, verdict and message in a result's structured content."""
    out: list[str] = []
    for node in walk(value):
        for key, item in node.items():
            if key in ("notes", "warnings") and isinstance(item, list):
                out += [x for x in item if isinstance(x, str)]
            elif key in ("message", "verdict") and isinstance(item, str):
                out.append(item)
    return out


@pytest.mark.anyio
async def test_a_core_session_is_only_told_to_call_tools_it_lists(db_path: Path, judge: Any) -> None:
    """The loop through a default server: every hint in results, errors and reports calls a listed tool."""
    said: list[str] = []
    async with Client(create_server(db_path), cache=None) as client:
        listed_names = {t.name for t in (await client.list_tools()).tools}
        for tool, arguments in (
            ("import_runs", {"source": "support", "path": str(EXAMPLE_RUNS)}),
            ("create_evaluator", {"name": "correctness"}),
            ("list_evaluators", {}),
            ("list_queues", {}),
            ("next_items", {"evaluator": "correctness", "max_chars": 200}),
            ("run_alignment", {"evaluator": "correctness"}),
            ("get_misaligned", {"evaluator": "correctness", "max_chars": 200}),
            ("get_evaluator", {"name": "correctness"}),
            (
                "update_draft",
                {"evaluator": "correctness", "find": "Think step by step", "replace_with": "Think"},
            ),
            ("run_alignment", {"evaluator": "correctness"}),
            ("run_alignment", {"evaluator": "correctness", "split": "test"}),
            ("save_prompt", {"evaluator": "nope"}),
            ("run_alignment", {"evaluator": "correctness", "resume": 999}),
            ("propose_prompt", {"evaluator": "correctness", "mode": "reflect", "budget": 1}),
        ):
            result = await client.call_tool(tool, arguments)
            said += [c.text for c in result.content if isinstance(c, TextContent)]
            said += said_in(result.structured_content)

    assert len(said) > 20
    assert any("The resource align://runs/<run_id> holds a run in full." in t for t in said)
    for text in said:
        called = set(CALL.findall(text))
        assert called <= listed_names, text
        mentioned = {word for word in SNAKE.findall(text) if word in ALL} - listed_names
        assert not mentioned or "ALIGN_MCP_TOOLS=core," in text, text
