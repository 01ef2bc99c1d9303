"""No surface names another's tools or commands: every hint and error each one produces is in its own words."""

from __future__ import annotations

import ast
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import click
import pytest
from click.testing import CliRunner
from mcp import Client, MCPError
from mcp.server import MCPServer
from mcp.types import TextContent

from align_mcp.cli import main
from align_mcp.mcp.server import create_server

SRC = Path(__file__).resolve().parents[1] / "src" / "align_mcp"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "support_runs.jsonl"

# Below the surfaces: the layers whose texts reach users through both of them.
SCANNED_PACKAGES = ("core", "store", "llm", "engine", "optimize", "diagnose")

CONVERTED = {
    "core/__init__.py",
    "core/comparison.py",
    "core/few_shot.py",
    "core/jury.py",
    "core/metrics.py",
    "core/models.py",
    "core/pairwise.py",
    "core/templates.py",
    "core/text.py",
    "core/views.py",
    "core/cards.py",
    "core/exports.py",
    "store/__init__.py",
    "store/batches.py",
    "store/codec.py",
    "store/database.py",
    "store/migrations.py",
    "store/paging.py",
    "store/rows.py",
    "llm/__init__.py",
    "llm/batch.py",
    "llm/endpoint.py",
    "llm/client.py",
    "llm/judge.py",
    "llm/runner.py",
    "llm/structured.py",
    "engine/__init__.py",
    "engine/alignment.py",
    "engine/compare.py",
    "engine/batches.py",
    "engine/evaluators.py",
    "engine/feedback.py",
    "engine/few_shot.py",
    "engine/formats.py",
    "engine/holdout.py",
    "engine/ingest.py",
    "engine/jury.py",
    "engine/leases.py",
    "engine/labeling.py",
    "engine/overview.py",
    "engine/platforms/__init__.py",
    "engine/platforms/common.py",
    "engine/platforms/langfuse.py",
    "engine/platforms/mlflow.py",
    "engine/platforms/opik.py",
    "engine/platforms/otel.py",
    "engine/platforms/phoenix.py",
    "engine/pairing.py",
    "engine/pending.py",
    "engine/queues.py",
    "engine/review_rules.py",
    "engine/reviews.py",
    "engine/samples.py",
    "engine/card.py",
    "engine/exports.py",
    "engine/rubrics.py",
    "engine/swap.py",
    "optimize/__init__.py",
    "optimize/candidates.py",
    "optimize/failure_modes.py",
    "optimize/few_shot_search.py",
    "optimize/gepa.py",
    "optimize/overview.py",
    "optimize/proposals.py",
    "diagnose/__init__.py",
    "diagnose/consistency.py",
    "diagnose/consistency_batch.py",
    "diagnose/pass_counts.py",
    "diagnose/pass_rate.py",
    "diagnose/sampling.py",
    "diagnose/suggestions.py",
    "diagnose/triage.py",
}
"""Modules whose texts name no tool, command or function: their hints are NextSteps."""

REMAINING: set[str] = set()
"""Modules whose messages still name tools in MCP words (being edited on other branches): convert each to
NextSteps, then move it to CONVERTED."""


def modules() -> list[str]:
    return sorted(
        str(path.relative_to(SRC)) for package in SCANNED_PACKAGES for path in (SRC / package).rglob("*.py")
    )


def literal_texts(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """The text of every string literal (f-strings with `{}` for their expressions), except docstrings, bare
    identifiers, field descriptions (schema text the MCP client reads) and the action and arguments of a
    NextStep."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skipped.add(id(body[0].value))
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name == "NextStep":
                skipped.update(id(n) for arg in node.args for n in ast.walk(arg))
            skipped.update(
                id(n) for kw in node.keywords if kw.arg == "description" for n in ast.walk(kw.value)
            )
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.JoinedStr):
            skipped.update(id(v) for v in node.values)
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            yield node.lineno, text
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and not node.value.isidentifier():
            # A bare identifier is a key or a name (as in __all__), not something said to a user.
            yield node.lineno, node.value


def function_names() -> set[str]:
    """The public functions of every scanned module: the names a hint must not send a user to."""
    names: set[str] = set()
    for module in modules():
        tree = ast.parse((SRC / module).read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
                names.add(node.name)
    return names


def command_names(group: click.Group = main) -> set[str]:
    ctx = click.Context(group)
    names = set()
    for name in group.list_commands(ctx):
        names.add(name)
        sub = group.get_command(ctx, name)
        if isinstance(sub, click.Group):
            names |= command_names(sub)
    return names


@pytest.fixture(scope="module")
def server_names() -> tuple[set[str], set[str]]:
    """The tools the server lists, and every name in their input and output schemas."""
    tools = anyio.run(create_server(tools=["all"]).list_tools)
    fields: set[str] = set()

    def collect(schema: Any) -> None:
        if isinstance(schema, dict):
            fields.update(schema.get("properties", {}))
            for value in schema.values():
                collect(value)
        elif isinstance(schema, list):
            for value in schema:
                collect(value)

    for tool in tools:
        collect(tool.input_schema)
        collect(tool.output_schema)
    return {t.name for t in tools}, fields


SNAKE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
CALL = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\((?!s\)|ies\))")  # a call, not a plural such as run(s)
COMMAND = re.compile(r"\balign-mcp ([a-z][a-z-]*)")


def engine_findings(text: str, tools: set[str], commands: set[str], functions: set[str]) -> list[str]:
    found = [f"tool {name}" for name in SNAKE.findall(text) if name in tools]
    found += [f"command align-mcp {c}" for c in COMMAND.findall(text) if c in commands]
    found += [f"function {name}" for name in SNAKE.findall(text) if name in functions - tools]
    found += [f"function {name}(" for name in CALL.findall(text) if name in functions]
    return found


def test_every_module_below_the_surfaces_is_listed_as_converted_or_remaining() -> None:
    assert not CONVERTED & REMAINING
    assert set(modules()) == CONVERTED | REMAINING


def test_the_converted_modules_name_no_tool_command_or_function(
    server_names: tuple[set[str], set[str]],
) -> None:
    tools, _ = server_names
    commands, functions = command_names(), function_names()
    problems = [
        f"{module}:{line}: {finding} in {text[:80]!r}"
        for module in sorted(CONVERTED)
        for line, text in literal_texts(ast.parse((SRC / module).read_text(encoding="utf-8")))
        for finding in engine_findings(text, tools, commands, functions)
    ]
    assert problems == []


def test_each_remaining_module_still_names_a_tool(server_names: tuple[set[str], set[str]]) -> None:
    # Once a module's texts are converted, this fails until the module moves to CONVERTED.
    tools, _ = server_names
    commands, functions = command_names(), function_names()
    for module in sorted(REMAINING):
        texts = literal_texts(ast.parse((SRC / module).read_text(encoding="utf-8")))
        assert any(engine_findings(text, tools, commands, functions) for _, text in texts), module


# ---- what the MCP server says ---------------------------------------------------------------------------------


def mcp_foreign(
    text: str, tools: set[str], fields: set[str], commands: set[str], functions: set[str]
) -> list[str]:
    """Names in an MCP text that belong to another surface: commands, and functions that are not tools."""
    found = [f"command align-mcp {c}" for c in COMMAND.findall(text) if c in commands]
    found += [f"call {name}(" for name in CALL.findall(text) if name not in tools]
    found += [f"function {name}" for name in SNAKE.findall(text) if name in functions - tools - fields]
    return found


def texts_in(value: Any) -> Iterator[str]:
    """Every note, warning and message in a result's structured content."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("notes", "warnings") and isinstance(item, list):
                yield from (x for x in item if isinstance(x, str))
            elif key == "message" and isinstance(item, str):
                yield item
            else:
                yield from texts_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts_in(item)


LONG = "x" * 5000
MCP_CALLS: list[tuple[str, dict[str, Any], bool]] = [
    ("list_evaluators", {}, True),
    ("list_queues", {}, True),
    ("get_evaluator", {"name": "tone"}, False),
    ("import_runs", {"source": "support", "path": str(EXAMPLES)}, True),
    (
        "import_runs",
        {"source": "long", "runs": [{"id": "long-1", "inputs": {"q": LONG}, "outputs": {"a": LONG}}]},
        True,
    ),
    ("create_evaluator", {"name": "correctness"}, True),
    ("create_evaluator", {"name": "correctness"}, False),
    ("get_run", {"run_id": "zz-9"}, False),
    ("get_run", {"run_id": "long-1", "max_chars": 200}, True),
    ("update_draft", {"evaluator": "correctness", "find": "no such passage", "replace_with": "x"}, False),
    ("save_prompt", {"evaluator": "correctness"}, False),
    ("submit_label", {"evaluator": "correctness", "run_id": "pp-001"}, False),
    ("get_misaligned", {"evaluator": "correctness"}, False),
    ("add_to_queue", {"evaluator": "correctness", "run_ids": ["zz-9"]}, False),
    (
        "update_draft",
        {"evaluator": "correctness", "find": "Think step by step", "replace_with": "Think"},
        True,
    ),
    ("get_evaluator", {"name": "correctness"}, True),
    ("save_prompt", {"evaluator": "correctness", "message": "shorter"}, True),
    ("list_versions", {"evaluator": "correctness", "limit": 1}, True),
    ("next_items", {"evaluator": "correctness"}, True),
    ("create_evaluator", {"name": "tone", "score_type": "ordinal", "min": 1, "max": 5}, True),
    ("add_to_queue", {"evaluator": "tone", "run_ids": ["long-1", "pp-001"]}, True),
    ("next_items", {"evaluator": "tone", "max_chars": 200}, True),
    ("list_proposals", {"evaluator": "correctness"}, True),
]


@pytest.fixture
async def client(db_path: Path) -> AsyncIterator[Client]:
    server: MCPServer[Any] = create_server(db_path, tools=["all"])
    async with Client(server, cache=None) as c:
        yield c


@pytest.mark.anyio
async def test_the_mcp_server_names_only_its_tools(
    client: Client, server_names: tuple[set[str], set[str]]
) -> None:
    tools, fields = server_names
    commands, functions = command_names(), function_names()
    said: list[str] = []
    for tool, arguments, succeeds in MCP_CALLS:
        result = await client.call_tool(tool, arguments)
        assert result.is_error is not succeeds, (tool, arguments, result.content)
        if result.is_error:
            block = result.content[0]
            assert isinstance(block, TextContent)
            said.append(block.text)
        else:
            said.extend(texts_in(result.structured_content))
    with pytest.raises(MCPError) as raised:
        await client.read_resource("align://evaluators/nope")
    said.append(str(raised.value))

    assert [
        (text, found) for text in said if (found := mcp_foreign(text, tools, fields, commands, functions))
    ] == []
    for expected in (
        "Error executing tool get_evaluator: No evaluator named 'tone'. There are no evaluators yet. Create one "
        "with create_evaluator.",
        "Error executing tool create_evaluator: An evaluator named 'correctness' already exists; pick another "
        "name. get_evaluator(name='correctness') shows it.",
        "Error executing tool get_run: No run with id 'zz-9'. Check the id. Import runs with import_runs.",
        "Error executing tool update_draft: The text to replace does not occur in the draft of 'correctness': "
        "'no such passage'. Quote a passage that occurs exactly once, or replace the whole prompt. "
        "get_evaluator(name='correctness') shows the draft; the resource align://evaluators/correctness/draft "
        "holds it in full.",
        "The draft has unsaved changes. Judge the reference set with run_alignment(evaluator='correctness'). "
        "Save it as a new version with save_prompt(evaluator='correctness') when the user asks.",
        "The prompt texts are left out. list_versions(evaluator='correctness', include_prompts=true) includes "
        "them; the resource align://evaluators/correctness/versions/<N> holds one version's text.",
        "1 more version(s). The next page: list_versions(evaluator='correctness', offset=1).",
        "Scores: ordinal (1..5). The labels are the human's verdicts. Record each of the human's verdicts with "
        "submit_label(evaluator='tone', run_id=..., score=..., comment=...).",
        "Long strings were cut at 200 characters. get_run(run_id=...) returns a run in full.",
        "No proposals yet. Let the optimizer propose a revised prompt with propose_prompt(evaluator='correctness').",
        "Error executing tool get_misaligned: Evaluator 'correctness' has no alignment run yet. Judge the reference "
        "set with run_alignment(evaluator='correctness').",
        "Error executing tool add_to_queue: 1 run id(s) are not in the store: 'zz-9'. Import runs with import_runs.",
    ):
        assert expected in said


# ---- what the command line says -------------------------------------------------------------------------------


def cli_foreign(text: str, tools: set[str], functions: set[str]) -> list[str]:
    """Names in a CLI text that belong to another surface: tools, functions and Python call syntax."""
    found = [f"tool {name}" for name in SNAKE.findall(text) if name in tools]
    found += [f"function {name}" for name in SNAKE.findall(text) if name in functions - tools]
    found += [f"call {name}(" for name in CALL.findall(text) if "_" in name or name in functions]
    return found


CLI_RUNS: list[tuple[list[str], int]] = [
    (["evaluator", "list"], 0),
    (["queue", "list"], 0),
    (["evaluator", "show", "tone"], 1),
    (["import", str(EXAMPLES), "--source", "support"], 0),
    (["evaluator", "create", "correctness"], 0),
    (["evaluator", "create", "correctness"], 1),
    (["show-run", "zz-9"], 1),
    (["draft", "edit", "correctness", "--replace", "no such passage", "x"], 1),
    (["save", "correctness"], 1),
    (["restore", "correctness", "9"], 1),
    (["misaligned", "correctness"], 1),
    (["queue", "add", "correctness", "--ids", "zz-9"], 1),
    (["draft", "edit", "correctness", "--replace", "Think step by step", "Think"], 0),
    (["draft", "edit", "correctness", "--set", "temperature=0.1", "--json"], 0),
    (["evaluator", "show", "correctness"], 0),
    (["save", "correctness", "-m", "shorter"], 0),
    (["queue", "next", "correctness"], 0),
    (["evaluator", "create", "tone", "--score-type", "ordinal", "--range", "1-5"], 0),
    (["queue", "add", "tone", "--ids", "pp-001,pp-002"], 0),
    (["queue", "next", "tone"], 0),
    (["proposals", "correctness"], 0),
]


def test_the_command_line_names_only_its_commands(
    db_path: Path, server_names: tuple[set[str], set[str]]
) -> None:
    tools, _ = server_names
    functions = function_names()
    runner = CliRunner()
    said: list[str] = []
    for args, status in CLI_RUNS:
        result = runner.invoke(main, ["--db", str(db_path), *args], catch_exceptions=False)
        assert result.exit_code == status, (args, result.output)
        said.extend(line for line in (result.stdout + result.stderr).splitlines() if line.strip())

    assert [(line, found) for line in said if (found := cli_foreign(line, tools, functions))] == []
    for expected in (
        "Error: No evaluator named 'tone'. There are no evaluators yet. Create one with "
        "`align-mcp evaluator create NAME`.",
        "Error: An evaluator named 'correctness' already exists; pick another name. "
        "`align-mcp evaluator show correctness` shows it.",
        "Error: No run with id 'zz-9'. Check the id. Import runs with `align-mcp import PATH --source SOURCE`.",
        "Error: The draft of 'correctness' is identical to v1; nothing to save. Edit the draft with "
        "`align-mcp draft edit correctness --file PROMPT_FILE` (or --replace OLD NEW).",
        "Error: Evaluator 'correctness' has no version 9. Known: v1.",
        "note: The draft is not saved. Judge the reference set with `align-mcp align correctness`. Save it as a "
        "new version with `align-mcp save correctness`.",
        "note: No evaluators yet. Create one with `align-mcp evaluator create NAME`.",
        "note: Nothing left to label in this queue. Queue runs with `align-mcp queue add correctness --source "
        "SOURCE`, then label them with `align-mcp queue next correctness` and `align-mcp label correctness RUN_ID "
        "SCORE`.",
        "note: Scores: ordinal (1..5). The labels are the human's verdicts. Label each with "
        "`align-mcp label tone RUN_ID SCORE --comment '...'`.",
        "note: No proposals yet. Let the optimizer propose a revised prompt with `align-mcp propose correctness`.",
        "Error: Evaluator 'correctness' has no alignment run yet. Judge the reference set with "
        "`align-mcp align correctness`.",
        "Error: 1 run id(s) are not in the store: 'zz-9'. Import runs with `align-mcp import PATH --source SOURCE`.",
    ):
        assert expected in said
