"""server.json, pyproject.toml and the README stay in sync with each other and with the server itself."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import anyio
import pytest

import align_mcp
from align_mcp import config
from align_mcp.mcp.server import create_server
from conftest import ROOT

SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
NAME = re.compile(r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$")
ENV_NAMES = {
    config.ENV_DB,
    config.ENV_JUDGE_MODEL,
    config.ENV_JUDGE_BASE_URL,
    config.ENV_JUDGE_API_KEY,
    config.ENV_CONCURRENCY,
    config.ENV_TOOLS,
    config.ENV_PRICES,
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def mcp_section(readme: str) -> str:
    return readme.split("<!-- mcp:start -->", 1)[1].split("<!-- mcp:end -->", 1)[0]


def test_server_json_follows_the_registry_schema(manifest: dict[str, Any]) -> None:
    assert manifest["$schema"] == SCHEMA
    assert NAME.match(manifest["name"]) and 3 <= len(manifest["name"]) <= 200
    assert manifest["name"].startswith("io.github.")
    assert 1 <= len(manifest["description"]) <= 100, len(manifest["description"])
    assert len(manifest.get("title", "")) <= 100
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", manifest["version"]), "a concrete version, not a range"
    allowed = {"$schema", "name", "title", "description", "version", "websiteUrl", "repository", "packages"}
    assert set(manifest) <= allowed | {"icons", "remotes", "_meta"}


def test_server_json_matches_pyproject_and_the_package(
    manifest: dict[str, Any], pyproject: dict[str, Any]
) -> None:
    project = pyproject["project"]
    assert manifest["version"] == project["version"] == align_mcp.__version__
    [package] = manifest["packages"]
    assert package["registryType"] == "pypi"
    assert package["registryBaseUrl"] == "https://pypi.org"
    assert package["identifier"] == project["name"]
    assert package["version"] == project["version"]
    assert package["transport"] == {"type": "stdio"}
    # uvx align-mcp serve: the package's console script, then the serve command.
    assert package["runtimeHint"] == "uvx"
    assert project["scripts"][project["name"]] == "align_mcp.cli:main"
    assert package["packageArguments"] == [{"type": "positional", "value": "serve"}]
    assert manifest["repository"]["url"] == project["urls"]["Homepage"] == manifest["websiteUrl"]


def test_server_json_environment_variables_are_the_documented_ones(
    manifest: dict[str, Any], readme: str
) -> None:
    variables = manifest["packages"][0]["environmentVariables"]
    names = [v["name"] for v in variables]
    assert set(names) == ENV_NAMES and len(names) == len(set(names))
    for variable in variables:
        assert variable["description"], variable["name"]
        assert variable["isSecret"] is variable["name"].endswith("_API_KEY"), variable["name"]
        assert f"`{variable['name']}`" in readme, f"{variable['name']} is not in the README"
    required = {v["name"] for v in variables if v["isRequired"]}
    assert required == {config.ENV_JUDGE_MODEL}


RELEASE_HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<when>.+))?$", re.M)


def latest_release(changelog: str) -> tuple[str, str | None]:
    """(version, date or "Unreleased") of the CHANGELOG's first release heading, skipping `## [Unreleased]`."""
    for match in RELEASE_HEADING.finditer(changelog):
        if match["version"] != "Unreleased":
            return match["version"], match["when"]
    raise AssertionError("the CHANGELOG has no `## [X.Y.Z]` release heading")


def test_one_version_everywhere(manifest: dict[str, Any], pyproject: dict[str, Any]) -> None:
    version = pyproject["project"]["version"]
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    released, when = latest_release(changelog)
    assert {
        "pyproject.toml": version,
        "align_mcp.__version__": align_mcp.__version__,
        "server.json version": manifest["version"],
        "server.json packages[0].version": manifest["packages"][0]["version"],
        "CHANGELOG latest release": released,
    } == dict.fromkeys(
        (
            "pyproject.toml",
            "align_mcp.__version__",
            "server.json version",
            "server.json packages[0].version",
            "CHANGELOG latest release",
        ),
        version,
    )
    assert when == "Unreleased" or re.fullmatch(r"\d{4}-\d{2}-\d{2}", when or ""), when


def test_latest_release_skips_the_unreleased_heading() -> None:
    text = "# Changelog\n\n## [Unreleased]\n\n## [0.2.0] - 2027-01-05\n\n## [0.1.0] - 2026-12-02\n"
    assert latest_release(text) == ("0.2.0", "2027-01-05")
    with pytest.raises(AssertionError, match=re.escape("no `## [X.Y.Z]` release heading")):
        latest_release("# Changelog\n\n## [Unreleased]\n")


def test_readme_install_works_from_a_clone_today(readme: str) -> None:
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    for command in (
        "uv tool install .",
        "pipx install .",
        ".venv/bin/pip install .",
        "uvx --from /path/to/align-mcp",
    ):
        assert command in install, command
    assert "not on PyPI yet" in install
    assert "Once the package is published on PyPI, this becomes `pip install align-mcp`" in install
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "align-mcp demo" in quick and "[simulated judge]" in quick
    assert "`pip install align-mcp`" not in readme.split("## Install", 1)[0]


def test_readme_carries_the_mcp_name_marker(manifest: dict[str, Any], readme: str) -> None:
    markers = re.findall(r"mcp-name:\s*(\S+)", readme)
    assert markers == [manifest["name"]]


def test_runtime_dependencies_cover_the_http_transport(pyproject: dict[str, Any]) -> None:
    dependencies = [re.split(r"[<>=!~ \[]", d, maxsplit=1)[0] for d in pyproject["project"]["dependencies"]]
    assert {"mcp", "uvicorn"} <= set(dependencies)
    assert "server.json" in pyproject["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]


def _json_blocks(section: str) -> list[Any]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]


def test_readme_client_configs_launch_the_stdio_server(mcp_section: str, manifest: dict[str, Any]) -> None:
    claude, vscode = _json_blocks(mcp_section)
    package = manifest["packages"][0]
    # Today (not on PyPI yet): uvx builds the clone; once published, server.json's `uvx align-mcp serve`.
    published = [package["identifier"], package["packageArguments"][0]["value"]]
    expected = ["--from", "/path/to/align-mcp", *published]
    desktop = claude["mcpServers"]["align-mcp"]
    assert desktop["command"] == package["runtimeHint"] == "uvx" and desktop["args"] == expected
    assert config.ENV_JUDGE_MODEL in desktop["env"]
    server = vscode["servers"]["align-mcp"]
    assert server["type"] == "stdio" and server["command"] == "uvx" and server["args"] == expected
    once = f'"command": "{package["runtimeHint"]}", "args": {json.dumps(published)}'
    assert f"Once the package is published on PyPI, the configs become\n`{once}`" in mcp_section
    assert '"command": "/full/path/to/align-mcp", "args": ["serve"]' in mcp_section
    inputs = {i["id"] for i in vscode["inputs"]}
    for value in server["env"].values():
        for ref in re.findall(r"\$\{input:([^}]+)\}", value):
            assert ref in inputs, f"VS Code config refers to an undefined input {ref!r}"
    for env in (desktop["env"], server["env"]):
        assert set(env) <= ENV_NAMES
    assert "claude_desktop_config.json" in mcp_section and ".vscode/mcp.json" in mcp_section


def test_readme_tool_table_lists_exactly_the_server_tools(mcp_section: str) -> None:
    documented = re.findall(r"^\| `([a-z_]+)` \|", mcp_section, re.M)

    async def listed() -> list[str]:
        return [t.name for t in await create_server(":memory:", tools=["all"]).list_tools()]

    tools = anyio.run(listed)
    assert sorted(documented) == sorted(tools)
    assert len(documented) == len(set(documented))


def test_readme_documents_the_prompt_the_commands_and_http_security(mcp_section: str) -> None:
    for text in (
        "align-mcp serve",
        "align-mcp serve --http",
        "`align_evaluator`",
        config.ENV_TOKEN,
        "401",
        "127.0.0.1",
        "Origin",
        "align://reports/{alignment_run}",
    ):
        assert text in mcp_section, text
