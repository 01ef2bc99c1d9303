"""Prebuilt tool schemas: the shipped file is current, a server lists the same tools with or without it, a
missing or stale file falls back to building the tools, and a built listing is remembered in the user cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.types import TextContent

from align_mcp import toolschemas
from align_mcp.server import PrebuiltTool, create_server
from align_mcp.tools import registered_tools

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "support_runs.jsonl"
NAMES = [fn.__name__ for fn, _ in registered_tools()]
SHIPPED = toolschemas.SCHEMA_FILE


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def shipped() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SHIPPED.read_text(encoding="utf-8"))
    return data


def tool_kinds(server: MCPServer[Any]) -> set[type]:
    # The SDK has no public accessor for a registered tool object; the kind of tool is what is under test.
    return {type(tool) for tool in server._tool_manager.list_tools()}


@pytest.fixture
def no_schema_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    missing = tmp_path / "tool_schemas.json"
    monkeypatch.setattr(toolschemas, "SCHEMA_FILE", missing)
    return missing


# ---- the shipped file --------------------------------------------------------------------------------------


def test_shipped_file_matches_the_tool_sources() -> None:
    assert shipped()["fingerprint"]["sources"] == toolschemas.fingerprint()["sources"], (
        "tools.py or models.py changed since tool_schemas.json was generated: run `make schemas` and commit it"
    )
    assert [entry["name"] for entry in shipped()["tools"]] == NAMES


def test_shipped_schemas_are_what_the_sdk_builds() -> None:
    stamp, current = shipped()["fingerprint"], toolschemas.fingerprint()
    if stamp != current:
        pytest.skip(
            f"tool_schemas.json was generated with mcp {stamp['mcp']} / pydantic {stamp['pydantic']}, this "
            f"environment has mcp {current['mcp']} / pydantic {current['pydantic']}: servers here build their "
            "tools (test_stale_or_missing_files_fall_back_to_building_the_tools covers that path)"
        )
    assert SHIPPED.read_text(encoding="utf-8") == toolschemas.render(toolschemas.build())


def test_a_server_uses_the_shipped_schemas_when_current(tmp_path: Path) -> None:
    if shipped()["fingerprint"] != toolschemas.fingerprint():
        pytest.skip("the shipped schemas were generated with other mcp/pydantic versions")
    assert tool_kinds(create_server(tmp_path / "align.db")) == {PrebuiltTool}


# ---- stale, missing and damaged files -----------------------------------------------------------------------


def _stale(kind: str, path: Path) -> None:
    data = shipped()
    if kind == "missing":
        return
    if kind == "not json":
        path.write_text("{not json", encoding="utf-8")
        return
    if kind == "sources changed":
        data["fingerprint"]["sources"] = "0" * 64
    elif kind == "other pydantic":
        data["fingerprint"]["pydantic"] = "2.0.0"
    elif kind == "other mcp":
        data["fingerprint"]["mcp"] = "2.0.0"
    elif kind == "an entry without its schema":
        del data["tools"][3]["input_schema"]
    elif kind == "a name twice":
        data["tools"].append(data["tools"][0])
    elif kind == "tools not a list":
        data["tools"] = {entry["name"]: entry for entry in data["tools"]}
    elif kind == "not an object":
        data = ["tools"]  # type: ignore[assignment]
    path.write_text(json.dumps(data), encoding="utf-8")


STALE_KINDS = [
    "missing",
    "not json",
    "sources changed",
    "other pydantic",
    "other mcp",
    "an entry without its schema",
    "a name twice",
    "tools not a list",
    "not an object",
]


@pytest.mark.parametrize("kind", STALE_KINDS)
def test_stale_or_missing_files_fall_back_to_building_the_tools(
    kind: str, no_schema_file: Path, tmp_path: Path
) -> None:
    _stale(kind, no_schema_file)
    assert toolschemas.load() is None
    server = create_server(tmp_path / "align.db")
    kinds = tool_kinds(server)
    assert PrebuiltTool not in kinds and len(server._tool_manager.list_tools()) == len(NAMES)


# ---- the user cache behind a stale shipped file -------------------------------------------------------------


@pytest.mark.anyio
async def test_a_built_listing_is_remembered_and_used_by_the_next_start(
    no_schema_file: Path, tmp_path: Path
) -> None:
    cache = toolschemas.cache_file()
    assert cache.parent == tmp_path / "xdg-cache" / "align-mcp" and not cache.exists()
    first = create_server(tmp_path / "first.db")
    assert PrebuiltTool not in tool_kinds(first)
    assert cache.exists() and toolschemas.read(cache) is not None

    second = create_server(tmp_path / "second.db")
    assert tool_kinds(second) == {PrebuiltTool}
    assert await _listing(second) == await _listing(first)
    assert await _calls(second) == await _calls(first)


def test_remembering_replaces_listings_of_other_stamps(no_schema_file: Path, tmp_path: Path) -> None:
    cache = toolschemas.cache_file()
    cache.parent.mkdir(parents=True)
    older = cache.parent / "tool_schemas-0123456789abcdef.json"
    older.write_text("{}", encoding="utf-8")
    unrelated = cache.parent / "notes.txt"
    unrelated.write_text("kept", encoding="utf-8")
    create_server(tmp_path / "align.db")
    assert sorted(p.name for p in cache.parent.iterdir()) == sorted([cache.name, "notes.txt"])


def test_a_damaged_cache_file_is_rebuilt(no_schema_file: Path, tmp_path: Path) -> None:
    cache = toolschemas.cache_file()
    cache.parent.mkdir(parents=True)
    cache.write_text('{"fingerprint": ', encoding="utf-8")
    server = create_server(tmp_path / "align.db")
    assert PrebuiltTool not in tool_kinds(server)
    entries = toolschemas.read(cache)
    assert entries is not None and [e["name"] for e in entries] == NAMES


def test_an_unwritable_cache_directory_only_costs_the_build(
    no_schema_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert toolschemas.remember([]) is None
    server = create_server(tmp_path / "align.db")
    assert len(server._tool_manager.list_tools()) == len(NAMES)
    assert blocker.read_text(encoding="utf-8") == ""


def test_load_returns_the_listings_of_a_current_file(no_schema_file: Path) -> None:
    assert toolschemas.write(no_schema_file) == len(NAMES)
    entries = toolschemas.load()
    assert entries is not None and [entry["name"] for entry in entries] == NAMES
    get_run = next(entry for entry in entries if entry["name"] == "get_run")
    assert get_run["input_schema"]["required"] == ["run_id"]
    assert get_run["title"] == "Get a run" and get_run["is_async"] is False
    assert get_run["annotations"]["readOnlyHint"] is True
    assert get_run["description"].startswith("One run in full")


# ---- prebuilt and built servers behave the same -------------------------------------------------------------


async def _listing(server: MCPServer[Any]) -> list[dict[str, Any]]:
    async with Client(server) as client:
        tools = (await client.list_tools()).tools
    return [t.model_dump(by_alias=True, exclude_none=True) for t in tools]


def _timeless(value: Any) -> Any:
    """The value without its timestamps, which differ between two servers answering the same calls."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if not k.endswith("_at")}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


async def _calls(server: MCPServer[Any]) -> list[tuple[bool, str, Any]]:
    """A happy path, a domain error and an argument of the wrong type, through the in-memory client."""
    out: list[tuple[bool, str, Any]] = []
    async with Client(server) as client:
        for tool, args in [
            ("import_runs", {"source": "support", "path": str(EXAMPLES)}),
            ("create_evaluator", {"name": "correctness"}),
            ("list_versions", {"evaluator": "correctness"}),
            ("list_versions", {"evaluator": "nope"}),
            ("list_versions", {"evaluator": "correctness", "limit": "many"}),
            ("get_run", {}),
        ]:
            result = await client.call_tool(tool, args)
            text = "".join(c.text for c in result.content if isinstance(c, TextContent))
            out.append(
                (bool(result.is_error), text if result.is_error else "", _timeless(result.structured_content))
            )
    return out


@pytest.mark.anyio
async def test_prebuilt_and_built_servers_list_and_answer_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = tmp_path / "current.json"
    toolschemas.write(current)
    monkeypatch.setattr(toolschemas, "SCHEMA_FILE", current)
    prebuilt = create_server(tmp_path / "a.db")
    assert tool_kinds(prebuilt) == {PrebuiltTool}
    monkeypatch.setattr(toolschemas, "SCHEMA_FILE", tmp_path / "missing.json")
    built = create_server(tmp_path / "b.db")
    assert PrebuiltTool not in tool_kinds(built)

    assert await _listing(prebuilt) == await _listing(built)
    prebuilt_calls, built_calls = await _calls(prebuilt), await _calls(built)
    assert prebuilt_calls == built_calls
    errors = [text for is_error, text, _ in prebuilt_calls if is_error]
    assert errors[0] == (
        "Error executing tool list_versions: No evaluator named 'nope'. Known: correctness. "
        "Create one with create_evaluator."
    )
    assert "limit" in errors[1] and "valid integer" in errors[1], errors[1]
    assert "run_id" in errors[2], errors[2]


# ---- the generator command ----------------------------------------------------------------------------------


def test_check_reports_a_stale_file_and_write_fixes_it(
    no_schema_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_schema_file.write_text("{}", encoding="utf-8")
    assert toolschemas.main(["--check"]) == 1
    assert capsys.readouterr().err == f"{no_schema_file} is stale: run `make schemas` and commit it.\n"
    assert toolschemas.main([]) == 0
    assert capsys.readouterr().out == f"Wrote the schemas of {len(NAMES)} tools to {no_schema_file}.\n"
    assert toolschemas.main(["--check"]) == 0
    assert capsys.readouterr().out == f"{no_schema_file} is current.\n"
    assert toolschemas.main(["--bogus"]) == 2
    assert "usage: python -m align_mcp.toolschemas [--check]" in capsys.readouterr().err
