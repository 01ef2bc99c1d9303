"""Charts: one Vega-Lite spec per chart from the engine's alignment runs, as SVG for the page and PNG for the CLI."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from align_mcp.cli import main
from align_mcp.core.models import ScoreType
from align_mcp.engine import alignment, evaluators, ingest
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer
from align_mcp.web import charts
from align_mcp.web.app import create_app

pytest.importorskip("altair", reason="the charts extra (in the dev extra)")
pytest.importorskip("vl_convert", reason="the charts extra (in the dev extra)")

STRICTER = "Check every number, price and duration against the reference exactly.\n\nRubric:"


@pytest.fixture
def aligned(store: Store, support_runs: list[dict[str, Any]], judge: FakeJudgeServer) -> Store:
    """v1 judged over the labeled support runs, then a stricter draft judged on the same split."""
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    ingest.import_runs(store, "support", runs=support_runs)
    anyio.run(lambda: alignment.run_alignment(store, "correctness", 1, split="all"))
    evaluators.update_draft(store, "correctness", replace=("Rubric:", STRICTER))
    anyio.run(lambda: alignment.run_alignment(store, "correctness", split="all"))
    return store


def test_the_agreement_chart_plots_each_version_and_the_draft_with_its_interval(aligned: Store) -> None:
    runs = alignment.list_runs(aligned, "correctness")
    split, chosen = charts.versions_on_one_split(runs)
    assert (split, [r.prompt_ref for r in chosen]) == ("all", ["v1", "draft"])
    rows = charts.agreement_rows(chosen)
    for run in chosen:
        m = run.metrics
        assert m is not None and m.agreement.ci is not None
        assert {
            "prompt": run.prompt_ref,
            "measure": "agreement",
            "value": m.agreement.value,
            "low": m.agreement.ci.low,
            "high": m.agreement.ci.high,
            "n": m.n,
        } in rows
        assert m.kappa is not None and m.kappa_ci is not None
        assert {
            "prompt": run.prompt_ref,
            "measure": "kappa",
            "value": m.kappa,
            "low": m.kappa_ci.low,
            "high": m.kappa_ci.high,
            "n": m.n,
        } in rows
    svg = charts.svg(charts.chart_spec(aligned, "correctness", "agreement"))
    assert svg.startswith("<svg") and "saved versions and the draft on the all split" in svg


def test_the_confusion_chart_counts_human_by_judge(aligned: Store) -> None:
    latest = alignment.list_runs(aligned, "correctness")[-1]
    assert latest.metrics is not None
    spec = charts.chart_spec(aligned, "correctness", "confusion")
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["rect", "text"]
    values = spec["data"]["values"]
    confusion = latest.metrics.confusion
    assert {(v["human"], v["judge"]): v["count"] for v in values} == {
        (h, j): confusion.get(hk, {}).get(jk, 0)
        for hk, h in (("1", "pass"), ("0", "fail"))
        for jk, j in (("1", "pass"), ("0", "fail"))
    }


def test_chart_writes_png_and_svg_files(aligned: Store, tmp_path: Path) -> None:
    runner = CliRunner()
    png = tmp_path / "agreement.png"
    result = runner.invoke(main, ["chart", "correctness", "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert result.output == f"Wrote the agreement chart of correctness to {png}.\n"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = tmp_path / "confusion.svg"
    assert (
        runner.invoke(main, ["chart", "correctness", "--kind", "confusion", "--out", str(svg)]).exit_code == 0
    )
    assert svg.read_text().startswith("<svg")


def test_chart_without_an_alignment_run_says_what_to_run(runs_store: Store, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["chart", "correctness", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: Evaluator 'correctness' has no completed alignment run to chart yet. Judge the reference set with "
        "`align-mcp align correctness`."
    )


def test_chart_without_the_extra_names_the_install_command(
    runs_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "altair", None)
    result = CliRunner().invoke(main, ["chart", "correctness", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: Charts need Altair and vl-convert (altair is missing): pip install 'align-mcp[charts]'."
    )


def test_the_page_serves_charts_as_svg_images(aligned: Store) -> None:
    c = TestClient(create_app(store=aligned), base_url="http://127.0.0.1:8766")
    page = c.get("/charts/correctness")
    assert "<img src='/charts/correctness/agreement.svg'" in page.text
    image = c.get("/charts/correctness/agreement.svg")
    assert image.headers["content-type"] == "image/svg+xml"
    assert image.text.startswith("<svg")
    assert "script-src 'self'" in image.headers["content-security-policy"]
    missing = c.get("/charts/correctness/pie.svg")
    assert (missing.status_code, missing.text) == (404, "No chart named 'pie'; charts: agreement, confusion.")
