"""Fail when a module imports another module's private (`_name`) names: a name used elsewhere is public.

Usage: python scripts/check_private_imports.py [SRC_DIR]   (default: src/align_mcp)
Prints one line per offending import and exits 1; prints nothing and exits 0 when there are none.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def private_imports(root: Path) -> list[str]:
    """`path:line: from module import _name` for every private name imported across modules under root."""
    package = root.name
    problems: list[str] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = node.module or ""
            if node.level == 0 and module != package and not module.startswith(package + "."):
                continue
            for alias in node.names:
                name = alias.name
                if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                    where = "." * node.level + module
                    problems.append(f"{path}:{node.lineno}: from {where} import {name}")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path("src/align_mcp")
    problems = private_imports(root)
    for line in problems:
        print(line)
    if problems:
        print(
            f"{len(problems)} private name(s) imported across modules: make each public where it is defined "
            "(drop the underscore), or move it down into core/.",
            file=sys.stderr,
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
