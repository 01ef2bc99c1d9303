"""The benchmarks still run: every bench in --quick mode (tiny sizes) produces its figures and results.json.

Timing targets are not checked here: `make bench` measures them at full size.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

HAS_DSPY = importlib.util.find_spec("dspy") is not None
EXPECTED = {
    "align": ["align-mcp / bare loop (floor)", "CPU per judged example"]
    + (["align-mcp / DSPy Evaluate"] if HAS_DSPY else []),
    "cache": ["re-run: judge calls", "re-run wall / cold run wall"],
    "startup": ["align-mcp serve / bare MCPServer"],
    "store": [
        "import throughput: align-mcp / sqlite-utils",
        "list_queues p95",
        "get_misaligned (first page) p95",
    ],
    "prefix": ["prompt tokens in the common prefix"],
    "context": ["run_alignment + first get_misaligned page"],
    "listing": ["tools/list on the wire", "model-visible"],
    "load": ["failed requests", "labels stored twice", "runs reserved by two labelers", "read p95"],
    "compare": ["3 models / one model", "requests in flight at the server during the comparison"],
    "fewshot": ["few-shot off", "few-shot on"],
}


def test_every_bench_runs_in_quick_mode_and_reports_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=480,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["quick"] is True and results["machine"]["cores"]
    assert sorted(results["benches"]) == sorted(EXPECTED)
    for name, wanted in EXPECTED.items():
        bench = results["benches"][name]
        assert bench["error"] is None, bench["error"]
        figures = {f["name"]: f for f in bench["figures"]}
        for fragment in wanted:
            matching = [f for n, f in figures.items() if fragment in n]
            assert matching, f"{name}: no figure named like {fragment!r} in {sorted(figures)}"
            assert all(f["value"] is not None for f in matching), matching
    # The zero-call cache target and the 50 misaligned cases hold at any size.
    cache = {f["name"]: f["value"] for f in results["benches"]["cache"]["figures"]}
    assert cache["re-run: judge calls"] == 0
    context = {f["name"]: f["value"] for f in results["benches"]["context"]["figures"]}
    assert context["sample data: misaligned cases in the run"] == 50
    listing = [f for f in results["benches"]["listing"]["figures"] if f["target"]]
    assert len(listing) == 2 and all(f["met"] for f in listing), listing  # sizes do not depend on --quick
    load = {f["name"]: f["value"] for f in results["benches"]["load"]["figures"]}
    assert (load["failed requests"], load["labels stored twice"], load["runs reserved by two labelers"]) == (
        0,
        0,
        0,
    )
    assert "align" in done.stdout and "wrote" in done.stdout


def test_a_single_bench_can_be_selected_by_name(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "prefix", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(json.loads(out.read_text())["benches"]) == ["prefix"]
