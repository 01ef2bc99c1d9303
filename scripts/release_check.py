"""Check that a built release is consistent, and print what a maintainer publishes: files, sha256, commands.

Usage: python scripts/release_check.py DIST_DIR  (run by `make release-check` after lint, tests, dist and the
wheel smoke test). Exits 1, naming what disagrees, when the versions of pyproject.toml, align_mcp.__version__,
server.json and the CHANGELOG differ or DIST_DIR does not hold exactly this version's sdist and wheel.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<when>.+))?$", re.M)
SOURCE_VERSION = re.compile(r'^__version__ = "(?P<version>[^"]+)"$', re.M)


def versions() -> tuple[dict[str, str], str | None]:
    """Every place that states the version, and the date (or "Unreleased") of the CHANGELOG's latest release."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    manifest = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
    source = SOURCE_VERSION.search((ROOT / "src" / "align_mcp" / "__init__.py").read_text(encoding="utf-8"))
    release = next(
        (
            m
            for m in HEADING.finditer((ROOT / "CHANGELOG.md").read_text(encoding="utf-8"))
            if m["version"] != "Unreleased"
        ),
        None,
    )
    found = {
        "pyproject.toml": project["version"],
        "align_mcp.__version__": source["version"] if source else "(missing)",
        "server.json version": manifest["version"],
        "server.json packages[0].version": manifest["packages"][0]["version"],
        "CHANGELOG.md latest release heading": release["version"] if release else "(missing)",
    }
    return found, release["when"] if release else None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/release_check.py DIST_DIR", file=sys.stderr)
        return 2
    dist = Path(argv[0])
    found, when = versions()
    version = found["pyproject.toml"]
    problems = [
        f"{where} says {value!r}, pyproject.toml says {version!r}"
        for where, value in found.items()
        if value != version
    ]
    expected = [dist / f"align_mcp-{version}.tar.gz", dist / f"align_mcp-{version}-py3-none-any.whl"]
    present = sorted(dist.glob("align_mcp-*")) if dist.is_dir() else []
    missing = [p.name for p in expected if p not in present]
    extra = [p.name for p in present if p not in expected]
    if missing:
        problems.append(f"{dist} lacks {', '.join(missing)}; build them with `make dist`")
    if extra:
        problems.append(
            f"{dist} also holds {', '.join(extra)}; remove them (`make dist` starts from an empty dist/)"
        )
    if problems:
        print("Release check failed:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1

    print(f"\nalign-mcp {version} is ready to publish. Files:")
    for path in expected:
        print(f"  {path}  {path.stat().st_size:>9,} bytes  sha256 {sha256(path)}")
    files = " ".join(str(p) for p in expected)
    print("\nThen:")
    step = 1
    if when is None or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", when):
        print(
            f"  {step}. Date the release in CHANGELOG.md: `## [{version}] - {when}` -> `## [{version}] - YYYY-MM-DD`,"
        )
        print("     commit, and run `make release-check` again.")
        step += 1
    print(
        f"  {step}. Tag the release:        git tag -a v{version} -m 'align-mcp {version}' && git push origin v{version}"
    )
    print(
        f"  {step + 1}. Publish to PyPI:        python -m twine check {files} && python -m twine upload {files}"
    )
    print(f"  {step + 2}. Check the published one: uvx --refresh align-mcp@{version} --version")
    print(f"  {step + 3}. Publish to the MCP registry (server.json, after PyPI has {version}):")
    print("     mcp-publisher login github && mcp-publisher publish")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
