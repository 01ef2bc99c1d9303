"""The layout holds: every folder is in the layer contract, and no private name is imported across modules."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "align_mcp"
CHECK = ROOT / "scripts" / "check_private_imports.py"


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), str(root)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_package_imports_no_private_name_across_modules() -> None:
    result = _check(PACKAGE)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def test_a_private_name_imported_from_another_module_is_reported(tmp_path: Path) -> None:
    pkg = tmp_path / "align_mcp"
    (pkg / "engine").mkdir(parents=True)
    (pkg / "__init__.py").write_text('__version__ = "0"\n')
    (pkg / "engine" / "a.py").write_text("def _helper() -> int:\n    return 1\n")
    (pkg / "engine" / "b.py").write_text(
        "from align_mcp import __version__\nfrom align_mcp.engine.a import _helper\nfrom . import a\n"
    )
    (pkg / "engine" / "c.py").write_text("from .a import _helper as helper\n")
    result = _check(pkg)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{pkg / 'engine' / 'b.py'}:2: from align_mcp.engine.a import _helper",
        f"{pkg / 'engine' / 'c.py'}:1: from .a import _helper",
    ]
    assert result.stderr.strip() == (
        "2 private name(s) imported across modules: make each public where it is defined (drop the underscore), "
        "or move it down into core/."
    )


def test_every_subpackage_is_in_a_layer() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (layers,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    named = {part.strip() for layer in layers["layers"] for part in layer.split("|")}
    folders = {f"align_mcp.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")} - {"align_mcp.testing"}
    modules = {f"align_mcp.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert folders | modules == named
