"""The wheel ships the prompt templates and the code the console script needs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


def test_wheel_contains_prompts_and_the_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("align_mcp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped_prompts = {p.name for p in (ROOT / "prompts").glob("*.md")}
    assert {"binary.md", "categorical.md", "ordinal.md"} <= shipped_prompts
    for name in shipped_prompts:
        assert f"align_mcp/prompts/{name}" in names
    for module in ("cli/main", "store/database", "llm/judge", "engine/alignment", "testing/fakejudge"):
        assert f"align_mcp/{module}.py" in names
    assert {"align_mcp/web/app.py", "align_mcp/web/static/page.js", "align_mcp/web/static/style.css"} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "align-mcp = align_mcp.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
