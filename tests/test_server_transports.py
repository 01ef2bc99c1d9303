"""The server over real transports: a stdio subprocess, streamable HTTP with a token, and the MCP Inspector CLI."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextContent

from align_mcp.errors import InvalidInput
from align_mcp.mcp.transport import check_http_bind, is_loopback, serve
from align_mcp.testing.fakejudge import FakeJudgeServer
from conftest import EXAMPLE_RUNS, clean_env

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
TOKEN = "test-token-0123456789abcdef"

pytestmark = pytest.mark.anyio


def server_env(db: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a server subprocess: a temp store, no judge keys, no user config."""
    return clean_env(ALIGN_MCP_DB=str(db), PYTHONUNBUFFERED="1", **extra)


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "align_mcp.cli", "serve", *args]


# ---- stdio --------------------------------------------------------------------------------------------------


async def test_stdio_subprocess_serves_the_loop(tmp_path: Path, judge: FakeJudgeServer) -> None:
    db = tmp_path / "align.db"
    command, *args = serve_command()
    env = server_env(
        db,
        OPENAI_BASE_URL=judge.base_url,
        OPENAI_API_KEY="sk-test-fake",
        ALIGN_MCP_JUDGE_MODEL="fake-judge",
    )
    params = StdioServerParameters(command=command, args=args, env=env, cwd=str(tmp_path))
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    with anyio.fail_after(90):
        async with Client(params, cache=None) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"import_runs", "run_alignment", "submit_label"} <= names
            imported = await client.call_tool("import_runs", {"source": "support", "path": str(EXAMPLE_RUNS)})
            assert not imported.is_error and imported.structured_content is not None
            assert imported.structured_content["inserted"] == 46
            await client.call_tool("create_evaluator", {"name": "correctness"})
            missing = await client.call_tool("get_evaluator", {"name": "tone"})
            assert missing.is_error
            block = missing.content[0]
            assert isinstance(block, TextContent) and "No evaluator named 'tone'" in block.text
            aligned = await client.call_tool(
                "run_alignment", {"evaluator": "correctness"}, progress_callback=on_progress
            )
            assert not aligned.is_error and aligned.structured_content is not None
            assert aligned.structured_content["run"]["status"] == "completed"
            prompt = await client.get_prompt("align_evaluator", {})
            assert prompt.messages
    assert judge.calls == aligned.structured_content["run"]["total"]
    assert progress and progress == sorted(progress)
    assert db.exists()


# ---- streamable HTTP ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    """`align-mcp serve --http` on a loopback port, with ALIGN_MCP_TOKEN set; yields the endpoint URL."""
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        serve_command("--http", "--port", str(port)),
        env=server_env(tmp_path / "align.db", ALIGN_MCP_TOKEN=TOKEN),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                httpx2.get(url, timeout=1.0)
                break
            except httpx2.TransportError:
                time.sleep(0.05)  # the port is not open yet
        else:
            pytest.fail("the HTTP server did not start: " + (tmp_path / "server.log").read_text())
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


async def test_http_requires_the_bearer_token_and_checks_origin(http_server: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        missing = await http.post(http_server, json=INITIALIZE, headers=JSON_HEADERS)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "ALIGN_MCP_TOKEN" in missing.text
        wrong = await http.post(
            http_server, json=INITIALIZE, headers={**JSON_HEADERS, "Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        foreign = await http.post(
            http_server,
            json=INITIALIZE,
            headers={**JSON_HEADERS, "Authorization": f"Bearer {TOKEN}", "Origin": "https://evil.example"},
        )
        assert foreign.status_code == 403

    headers = {"Authorization": f"Bearer {TOKEN}"}
    with anyio.fail_after(30):
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(http_server, http_client=http), cache=None) as client,
        ):
            names = {t.name for t in (await client.list_tools()).tools}
            assert "run_alignment" in names
            await client.call_tool("import_runs", {"source": "support", "path": str(EXAMPLE_RUNS)})
            created = await client.call_tool("create_evaluator", {"name": "correctness"})
            assert not created.is_error
            listed = await client.call_tool("list_evaluators", {})
            assert listed.structured_content is not None
            assert listed.structured_content["evaluators"][0]["name"] == "correctness"


def test_http_beyond_loopback_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIGN_MCP_TOKEN", raising=False)
    with pytest.raises(InvalidInput, match="Set ALIGN_MCP_TOKEN"):
        serve(http=True, host="0.0.0.0", port=1)  # refused before anything binds
    check_http_bind("0.0.0.0", "a-token")
    check_http_bind("127.0.0.1", None)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("example.com")


# ---- start-up -----------------------------------------------------------------------------------------------


def test_startup_imports_no_llm_clients_no_engine_and_no_other_command(tmp_path: Path) -> None:
    # What `align-mcp serve` loads before answering tools/list: no LLM client, no store, no engine or feature
    # code, and of the command line only the group (the other commands load when invoked).
    code = (
        "import sys, anyio\n"
        "import align_mcp.cli, align_mcp.mcp.transport\n"
        "from align_mcp.mcp.server import create_server\n"
        "server = create_server()\n"
        "assert len(anyio.run(server.list_tools)) == 16\n"
        "print(sorted(m for m in sys.modules if m in ('openai', 'dspy', 'litellm', 'sqlite_utils') or "
        "m.startswith(('align_mcp.store', 'align_mcp.llm', 'align_mcp.engine', 'align_mcp.optimize', "
        "'align_mcp.diagnose')) or (m.startswith('align_mcp.cli.') and m != 'align_mcp.cli.main')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=server_env(tmp_path / "align.db"),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "[]", out.stderr


# ---- MCP Inspector CLI --------------------------------------------------------------------------------------


def inspector(tmp_path: Path, *method: str) -> Any:
    """Run the MCP Inspector CLI against `align-mcp serve` over stdio; returns its JSON output."""
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx (Node.js) is not installed, so the MCP Inspector CLI cannot run")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = server_env(tmp_path / "align.db")
    # The Inspector writes ~/.mcp-inspector; a temp HOME keeps it out of the user's. npm's download cache
    # stays where it was, so the ~110 MB package is fetched once, not on every run.
    env.setdefault("npm_config_cache", str(Path.home() / ".npm"))
    env.update(
        HOME=str(home), MCP_CATALOG_PATH=str(tmp_path / "catalog.json"), npm_config_update_notifier="false"
    )
    command = [
        npx,
        "-y",
        INSPECTOR,
        "--cli",
        "-e",
        f"ALIGN_MCP_DB={tmp_path / 'align.db'}",
        *serve_command(),
        *method,
        "--format",
        "json",
        "-q",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_mcp_inspector_lists_tools_and_calls_a_read_only_one(tmp_path: Path) -> None:
    listed = inspector(tmp_path, "--method", "tools/list")
    tools = {t["name"]: t for t in listed["result"]["tools"]}
    assert {"import_runs", "run_alignment", "get_misaligned", "save_prompt"} <= set(tools)
    assert tools["list_queues"]["annotations"]["readOnlyHint"] is True
    called = inspector(tmp_path, "--method", "tools/call", "--tool-name", "list_evaluators")
    result = called["result"]
    assert result.get("isError") is not True
    assert result["structuredContent"]["notes"] == ["No evaluators yet. Create one with create_evaluator."]
