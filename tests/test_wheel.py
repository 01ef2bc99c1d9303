"""The built distributions: the wheel ships what the installed command needs, the sdist builds the same wheel, and
the wheel installed in a fresh venv (no source tree on the path) runs --version, the demo and the MCP server."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

import align_mcp
from conftest import ROOT, clean_env

SAMPLE = "align_mcp/testing/data/support_runs.jsonl"


def build(outdir: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", *args, "--outdir", str(outdir), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from it, as `make dist` builds them."""
    outdir = tmp_path_factory.mktemp("dist")
    build(outdir)
    return outdir


def only(outdir: Path, pattern: str) -> Path:
    (found,) = outdir.glob(pattern)
    return found


def test_wheel_contains_prompts_the_licence_the_sample_and_the_package(dist: Path) -> None:
    wheel = zipfile.ZipFile(only(dist, "align_mcp-*.whl"))
    names = set(wheel.namelist())
    shipped_prompts = {p.name for p in (ROOT / "prompts").glob("*.md")}
    assert {
        "binary.md",
        "categorical.md",
        "ordinal.md",
        "triage.md",
        "optimizer_reflect.md",
    } <= shipped_prompts
    for name in shipped_prompts:
        assert f"align_mcp/prompts/{name}" in names
    for module in (
        "cli/main",
        "cli/demo",
        "store/database",
        "llm/judge",
        "engine/alignment",
        "testing/fakejudge",
        "testing/simulated",
    ):
        assert f"align_mcp/{module}.py" in names
    assert wheel.read(SAMPLE) == (ROOT / "src" / SAMPLE).read_bytes()
    # Every file of the package ships: data and (when they land) web assets as well as modules.
    package = ROOT / "src" / "align_mcp"
    tracked = [
        f"align_mcp/{path.relative_to(package).as_posix()}"
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert [name for name in tracked if name not in names] == []
    version = align_mcp.__version__
    licence = f"align_mcp-{version}.dist-info/licenses/LICENSE"
    assert wheel.read(licence) == (ROOT / "LICENSE").read_bytes()
    metadata = wheel.read(f"align_mcp-{version}.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
    entry_points = wheel.read(f"align_mcp-{version}.dist-info/entry_points.txt").decode()
    assert "align-mcp = align_mcp.cli:main" in entry_points
    assert {"align_mcp/web/app.py", "align_mcp/web/static/page.js", "align_mcp/web/static/style.css"} <= names
    assert {
        "align_mcp/web/apps.py",
        "align_mcp/web/static/app_view.js",
        "align_mcp/web/static/app_view.css",
    } <= names
    assert not [n for n in names if n.startswith(("tests/", "examples/", "bench/")) or "__pycache__" in n]


def test_apache_licence_is_the_official_text() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    assert len(text.split()) > 1500


def test_sdist_carries_the_tree_and_builds_the_same_wheel(dist: Path, tmp_path: Path) -> None:
    sdist = only(dist, "align_mcp-*.tar.gz")
    top = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    for path in ("LICENSE", "README.md", "CHANGELOG.md", "server.json", "Makefile", "pyproject.toml"):
        assert f"{top}/{path}" in names, path
    assert f"{top}/src/{SAMPLE}" in names and f"{top}/prompts/binary.md" in names
    assert f"{top}/scripts/release_check.py" in names
    direct = tmp_path / "direct"
    build(direct, "--wheel")
    from_tree = zipfile.ZipFile(only(direct, "align_mcp-*.whl"))
    from_sdist = zipfile.ZipFile(only(dist, "align_mcp-*.whl"))
    assert sorted(from_tree.namelist()) == sorted(from_sdist.namelist())
    for name in from_tree.namelist():
        if not name.endswith("RECORD"):
            assert from_tree.read(name) == from_sdist.read(name), name


# ---- the wheel installed in a fresh venv (~20 s; `make wheel-smoke` runs these on what `make dist` built) ------


def runtime_closure(requirements: list[str]) -> list[importlib.metadata.Distribution]:
    """The distributions of this environment that `requirements` (as a wheel's Requires-Dist, without its
    extras) need, transitively, honouring markers and the extras each requirement asks for."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, importlib.metadata.Distribution] = {}
    todo: list[tuple[str, frozenset[str]]] = [(r, frozenset({""})) for r in requirements]
    while todo:
        text, extras = todo.pop()
        requirement = Requirement(text)
        if requirement.marker is not None and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in extras
        ):
            continue
        name = canonicalize_name(requirement.name)
        wanted = frozenset({"", *requirement.extras})
        if name in found and not requirement.extras:
            continue
        dist = importlib.metadata.distribution(name)
        found[name] = dist
        todo.extend((sub, wanted) for sub in dist.requires or [])
    return list(found.values())


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh venv with the wheel installed, offline: no index is asked (no network in tests).

    The wheel is $ALIGN_MCP_WHEEL (what `make dist` built) or the one built from the sdist here. Its dependencies
    are the distributions of this test environment that the wheel's own Requires-Dist need (its extras left
    out, so nothing the dev tools or the optimizer pull in), linked into one directory that a .pth file adds to
    the venv's path. align_mcp is not among them, so the only align_mcp the venv can import is the wheel's, and a
    runtime import the wheel does not declare fails here.
    """
    given = os.environ.get("ALIGN_MCP_WHEEL")
    wheel = Path(given).resolve() if given else only(request.getfixturevalue("dist"), "align_mcp-*.whl")
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index"]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True, timeout=300)
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [
            line.removeprefix("Requires-Dist: ")
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist: ")
        ]
    deps = venv / "dependencies"
    deps.mkdir()
    closure = runtime_closure(requires)
    assert "align-mcp" not in {d.metadata["Name"].lower() for d in closure}
    for dist in closure:
        assert dist.files is not None, dist.metadata["Name"]
        for top in {f.parts[0] for f in dist.files if f.parts[0] not in ("..", "__pycache__")}:
            if not top.endswith(".pth") and not (deps / top).exists():
                (deps / top).symlink_to(Path(str(dist.locate_file(top))))
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text(f"{deps}\n")
    yield venv


def venv_env(tmp_path: Path) -> dict[str, str]:
    env = clean_env(ALIGN_MCP_DB=str(tmp_path / "align.db"), XDG_DATA_HOME=str(tmp_path / "xdg"))
    env.pop("PYTHONPATH", None)
    return env


def run(venv: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "align-mcp"), *args],
        cwd=tmp_path,
        env=venv_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_installed_wheel_imports_from_the_venv_not_the_source_tree(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import align_mcp; print(align_mcp.__file__)"],
        cwd=tmp_path,
        env=venv_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed), where
    assert not Path(where).is_relative_to(ROOT)


def test_installed_wheel_prints_its_version(installed: Path, tmp_path: Path) -> None:
    result = run(installed, tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"align-mcp, version {align_mcp.__version__}"


def test_installed_wheel_runs_the_demo_offline(installed: Path, tmp_path: Path) -> None:
    result = run(installed, tmp_path, "demo", "--dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    imported = next(line for line in out.splitlines() if line.startswith("$ align-mcp import "))
    sample = Path(imported.split()[3])
    assert sample.is_relative_to(installed) and sample.name == "support_runs.jsonl"
    for text in (
        "Judge: the SIMULATED judge",
        "Imported 46 new run(s)",
        "grouped by llm:",
        "Misses wrong figures [false_pass] (4): [simulated judge]",
        "Proposal 1 (reflect) for 'correctness': proposed",
        "Proposal 1 is now the draft of 'correctness'.",
        "Flips vs v1: draft fixed 8 and broke 0",
        "Saved 'correctness' v2",
    ):
        assert text in out, text
    assert (tmp_path / "demo" / "align.db").is_file()


def test_installed_wheel_serves_mcp_over_stdio(installed: Path, tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=str(installed / "bin" / "align-mcp"),
        args=["serve"],
        env=venv_env(tmp_path),
        cwd=str(tmp_path),
    )

    async def session() -> tuple[set[str], bool, object]:
        with anyio.fail_after(120):
            async with Client(params, cache=None) as client:
                names = {t.name for t in (await client.list_tools()).tools}
                listed = await client.call_tool("list_evaluators", {})
                return names, listed.is_error, listed.structured_content

    names, is_error, content = anyio.run(session)
    assert {"import_runs", "run_alignment", "list_evaluators", "propose_prompt"} <= names
    assert not is_error and content is not None


# ---- scripts/release_check.py -----------------------------------------------------------------------------------


def release_check(dist: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "release_check.py"), str(dist)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_release_check_prints_the_files_their_sha256_and_the_commands(dist: Path) -> None:
    result = release_check(dist)
    assert result.returncode == 0, result.stderr
    version = align_mcp.__version__
    for path in (only(dist, "align_mcp-*.tar.gz"), only(dist, "align_mcp-*.whl")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"{path}  " in result.stdout and f"sha256 {digest}" in result.stdout
    assert f"align-mcp {version} is ready to publish" in result.stdout
    assert f"git tag -a v{version}" in result.stdout
    assert "python -m twine upload " in result.stdout and "mcp-publisher publish" in result.stdout


def test_release_check_refuses_a_dist_of_another_version(tmp_path: Path) -> None:
    (tmp_path / "align_mcp-9.9.9-py3-none-any.whl").write_bytes(b"")
    result = release_check(tmp_path)
    assert result.returncode == 1
    version = align_mcp.__version__
    assert (
        f"{tmp_path} lacks align_mcp-{version}.tar.gz, align_mcp-{version}-py3-none-any.whl" in result.stderr
    )
    assert f"{tmp_path} also holds align_mcp-9.9.9-py3-none-any.whl" in result.stderr
