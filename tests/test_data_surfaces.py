"""Data out through the surfaces: `align-mcp export` / `card` / `queue add --stale`, and the MCP tools
export_reference_set and judge_card, the align://cards resource and add_to_queue(stale=True)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from mcp import Client
from mcp.types import TextContent

from align_mcp.cli import main
from conftest import EXAMPLE_RUNS

NEW_PROMPT = (
    "Grade strictly: every figure must match the reference.\n{{inputs}}\n{{outputs}}\n{{reference_outputs}}"
)


def cli(db_path: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--db", str(db_path), *args], catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def seeded(db_path: Path, tmp_path: Path) -> Path:
    ok(cli(db_path, "import", str(EXAMPLE_RUNS), "--source", "support"))
    ok(cli(db_path, "evaluator", "create", "correctness"))
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(NEW_PROMPT, encoding="utf-8")
    ok(cli(db_path, "draft", "edit", "correctness", "--file", str(prompt)))
    ok(cli(db_path, "save", "correctness"))
    return db_path


def test_cli_export_prints_jsonl_or_writes_the_file_and_says_what_it_wrote(
    seeded: Path, tmp_path: Path
) -> None:
    lines = ok(cli(seeded, "export", "correctness")).splitlines()
    out = tmp_path / "set.csv"

    result = cli(seeded, "export", "correctness", "--format", "csv", "-o", str(out))

    assert len(lines) == 46 and json.loads(lines[0])["feedback"]["correctness"]["rubric_version"] == 1
    assert ok(result) == (
        f"Wrote 46 labeled run(s) (46 labels, 0 dev / 0 test) of 'correctness' to {out} as csv.\n"
    )
    assert out.read_text(encoding="utf-8").startswith("id,inputs,outputs,reference_outputs,metadata.channel,")


def test_cli_card_prints_markdown_or_json(seeded: Path) -> None:
    text = ok(cli(seeded, "card", "correctness"))
    data = json.loads(ok(cli(seeded, "card", "correctness", "--version", "1", "--format", "json")))

    assert text.startswith("# Judge card: correctness v2\n")
    assert "- By rubric: 46 under v1; 46 possibly stale (instructions changed since)." in text
    assert (data["version"], data["stale_labels"], data["test"]) == (1, 46, None)


def test_cli_lists_stale_labels_and_queues_them_for_a_relabel(seeded: Path) -> None:
    listing = ok(cli(seeded, "queue", "list"))
    added = ok(cli(seeded, "queue", "add", "correctness", "--stale"))

    assert listing.splitlines()[0].split() == [
        "evaluator",
        "pending",
        "reserved",
        "labeled",
        "stale",
        "balance",
    ]
    assert listing.splitlines()[2].split()[:5] == ["correctness", "0", "0", "46", "46"]
    assert added == "Queued 46 run(s) for 'correctness' (0 already queued); 46 pending.\n"


async def seed(client: Client) -> None:
    for tool, args in (
        ("import_runs", {"source": "support", "path": str(EXAMPLE_RUNS)}),
        ("create_evaluator", {"name": "correctness"}),
        ("update_draft", {"evaluator": "correctness", "prompt": NEW_PROMPT}),
        ("save_prompt", {"evaluator": "correctness"}),
    ):
        result = await client.call_tool(tool, args)
        assert not result.is_error, result.content


def text_of(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


@pytest.mark.anyio
async def test_mcp_export_returns_inline_or_writes_a_new_file_under_the_import_root(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(client)
    root = tmp_path / "shared"
    root.mkdir()
    monkeypatch.setenv("ALIGN_MCP_IMPORT_ROOT", str(root))

    inline = await client.call_tool(
        "export_reference_set", {"evaluator": "correctness", "format": "langsmith"}
    )
    written = await client.call_tool(
        "export_reference_set", {"evaluator": "correctness", "path": str(root / "a.jsonl")}
    )
    again = await client.call_tool(
        "export_reference_set", {"evaluator": "correctness", "path": str(root / "a.jsonl")}
    )
    outside = await client.call_tool(
        "export_reference_set", {"evaluator": "correctness", "path": str(tmp_path / "b.jsonl")}
    )

    assert inline.structured_content is not None and inline.structured_content["records"] == 46
    assert inline.structured_content["content"].count("\n") == 46
    assert written.structured_content is not None and written.structured_content["path"] == str(
        root / "a.jsonl"
    )
    assert len((root / "a.jsonl").read_text(encoding="utf-8").splitlines()) == 46
    assert again.is_error and text_of(again) == (
        f"Error executing tool export_reference_set: {str(root / 'a.jsonl')!r} already exists; give another "
        "file name (nothing was written)."
    )
    assert outside.is_error and text_of(outside) == (
        f"Error executing tool export_reference_set: Export path {str(tmp_path / 'b.jsonl')!r} is outside "
        f"ALIGN_MCP_IMPORT_ROOT ({root}). Give a path under that directory, or leave out path to get the export inline."
    )
    assert not (tmp_path / "b.jsonl").exists()
    imported = await client.call_tool("import_runs", {"source": "again", "path": str(root / "a.jsonl")})
    assert not imported.is_error and imported.structured_content is not None
    assert imported.structured_content["skipped"] == 46


@pytest.mark.anyio
async def test_mcp_card_tool_and_resource_and_stale_relabel(client: Client) -> None:
    await seed(client)

    card = await client.call_tool("judge_card", {"evaluator": "correctness"})
    resource = await client.read_resource("align://cards/correctness")
    queues = await client.call_tool("list_queues", {})
    requeued = await client.call_tool("add_to_queue", {"evaluator": "correctness", "stale": True})

    assert text_of(card).startswith("# Judge card: correctness v2\n")
    assert card.structured_content is not None and card.structured_content["stale_labels"] == 46
    shown = getattr(resource.contents[0], "text", "")
    assert shown.startswith("# Judge card: correctness v2\n")
    assert "- By rubric: 46 under v1; 46 possibly stale (instructions changed since).\n" in shown
    assert queues.structured_content is not None and queues.structured_content["queues"][0]["stale"] == 46
    assert requeued.structured_content is not None and requeued.structured_content["added"] == 46
