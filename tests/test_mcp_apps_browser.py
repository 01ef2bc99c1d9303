"""The MCP App views in a real browser: a small host page embeds the view of a tool in a sandboxed iframe and
relays its tool calls to the real server; labels go through the view into the store, the report shows the
metrics and the misaligned cases, and hostile run contents stay inert text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from align_mcp.core.models import ScoreType
from align_mcp.engine import alignment, evaluators, ingest, queues
from align_mcp.store import Store
from apps_host import APP_MIME, host_app
from webserver import NEEDS_CHROMIUM, PAYLOADS, READY, live_server, screenshot

pytestmark = NEEDS_CHROMIUM


@pytest.fixture
def host(db_path: Any) -> Iterator[str]:
    """The test host on loopback, relaying to a core align-mcp server on the test's store."""
    from align_mcp.mcp.server import create_server

    with live_server(host_app(create_server(db_path))) as url:
        yield url


def open_view(browser: Any, host: str, tool: str, args: dict[str, Any]) -> tuple[Any, Any]:
    """The host page showing `tool`'s view for a call with `args`; returns (page, the view's frame)."""
    page = browser.new_context().new_page()
    page.on("pageerror", lambda e: pytest.fail(f"script error on the host page: {e}"))
    page.goto(f"{host}/host?tool={tool}&args={quote(json.dumps(args))}")
    page.wait_for_selector("#view")
    frame = page.frame_locator("#view")
    frame.locator("body").wait_for()
    view = next(f for f in page.frames if f != page.main_frame)
    view.wait_for_function(READY, arg=[0])
    return page, view


def renders(view: Any) -> int:
    return int(view.evaluate("Number(document.body.dataset.renders || 0)"))


def press(page: Any, view: Any, key: str) -> str:
    """Press a key in the view and wait until it shows the next run; returns that run's id."""
    before = renders(view)
    page.keyboard.press(key)
    view.wait_for_function(READY, arg=[before])
    return str(view.get_attribute("#run", "data-run-id") or "")


def test_runs_labeled_in_the_view_land_in_the_store_through_the_host(
    browser: Any, host: str, runs_store: Store
) -> None:
    queues.add_to_queue(runs_store, "correctness", source="support")
    page, view = open_view(
        browser, host, "next_items", {"evaluator": "correctness", "labeler": "alice", "limit": 3}
    )
    assert page.evaluate("window.viewMime") == APP_MIME
    view.click("h1")  # the keys go to the view
    keys = view.inner_text("#keys")
    assert "1 pass" in keys and "0 fail" in keys and "c comment" in keys
    given: dict[str, int] = {}
    rid = str(view.get_attribute("#run", "data-run-id"))
    for i in range(5):  # past the first batch of 3: the view asks the server for more through the host
        assert rid and rid not in given
        score = 0 if i == 1 else 1
        if i == 2:
            page.keyboard.press("c")
            page.keyboard.type("Names the wrong station.")
            page.keyboard.press("Enter")
            assert view.inner_text("#comment-state").startswith("Comment kept")
        given[rid] = score
        rid = press(page, view, str(score))
        assert view.inner_text("#comment-state") == ""  # the comment went with that label
    assert "5 labeled, balance" in view.inner_text("#progress")
    screenshot(page, "mcp-app-label-view")
    current = {row.run_id: row for row in runs_store.current_labels("correctness")}
    assert {r: row.score for r, row in current.items()} == given
    assert {row.labeler for row in current.values()} == {"alice"}
    assert [row.comment for row in current.values() if row.comment] == ["Names the wrong station."]
    log = page.evaluate("window.hostLog")
    assert log[:2] == ["ui/initialize", "ui/notifications/initialized"]
    assert log.count("tools/call") == 6  # five labels and one more batch
    assert "ui/notifications/size-changed" in log
    size = page.evaluate("window.viewSize")
    assert size["height"] > 300 and size["width"] > 300
    page.context.close()


def test_undo_in_the_view_relabels_the_last_run(browser: Any, host: str, runs_store: Store) -> None:
    queues.add_to_queue(runs_store, "correctness", source="support")
    page, view = open_view(browser, host, "next_items", {"evaluator": "correctness", "labeler": "bo"})
    view.click("h1")
    first = str(view.get_attribute("#run", "data-run-id"))
    press(page, view, "1")
    page.keyboard.press("u")
    assert view.get_attribute("#run", "data-run-id") == first
    press(page, view, "0")
    assert [(r.run_id, r.score) for r in runs_store.current_labels("correctness")] == [(first, 0)]
    page.context.close()


def test_a_refused_label_shows_the_servers_message_and_stores_nothing(
    browser: Any, host: str, runs_store: Store
) -> None:
    queues.add_to_queue(runs_store, "correctness", source="support")
    page, view = open_view(browser, host, "next_items", {"evaluator": "correctness", "labeler": "cy"})
    before = renders(view)
    page.evaluate(
        """document.getElementById("view").contentWindow.postMessage({jsonrpc: "2.0",
        method: "ui/notifications/tool-result", params: {structuredContent: {evaluator: "correctness",
        score_type: "binary (0 = fail, 1 = pass)", labeler: "cy", pending: 1,
        items: [{run_id: "gone", source: "support", inputs: {}, outputs: {}}]}}}, "*")"""
    )
    view.wait_for_function(READY, arg=[before])
    view.click("h1")
    before = renders(view)
    page.keyboard.press("1")
    view.wait_for_function(READY, arg=[before])
    assert view.inner_text("#message") == (
        "Error executing tool submit_label: Label 1: no run with id 'gone'. Check the id. Import runs with "
        "import_runs."
    )
    assert view.get_attribute("#run", "data-run-id") == "gone"
    assert runs_store.current_labels("correctness") == []
    page.context.close()


def test_hostile_run_contents_stay_inert_text_in_the_view(browser: Any, host: str, store: Store) -> None:
    runs = [
        {
            "id": f"x-{name}",
            "inputs": {"question": payload, payload[:40]: "key"},
            "outputs": {"answer": payload, "json": {"nested": payload}},
            "reference_outputs": {"answer": payload * 200},
        }
        for name, payload in PAYLOADS.items()
    ]
    ingest.import_runs(store, "hostile", runs=runs)
    evaluators.create(store, "safety", ScoreType(kind="binary"))
    queues.add_to_queue(store, "safety", source="hostile")
    page, view = open_view(browser, host, "next_items", {"evaluator": "safety", "limit": 20})
    page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
    view.click("h1")
    for name, payload in PAYLOADS.items():
        assert view.get_attribute("#run", "data-run-id") == f"x-{name}"
        view.hover("#run")
        for button in view.query_selector_all("#run button.show-all"):
            button.click()
        assert payload in view.inner_text("#run")  # shown as the text it is
        assert (
            view.query_selector_all("#run script, #run img, #run iframe, #run svg, #run a, #run [onerror]")
            == []
        )
        assert view.evaluate("window.__pwned") is None
        assert page.evaluate("window.__pwned") is None
        press(page, view, "1")
    screenshot(page, "mcp-app-hostile-done")
    assert len(store.current_labels("safety")) == len(PAYLOADS)
    page.context.close()


def test_the_report_view_shows_metrics_and_misaligned_cases(
    browser: Any, host: str, store: Store, support_runs: list[dict[str, Any]], judge: Any
) -> None:
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    ingest.import_runs(store, "support", runs=support_runs)
    page, view = open_view(browser, host, "run_alignment", {"evaluator": "correctness", "split": "all"})
    summary = view.inner_text("#summary")
    assert "Agreement" in summary and "95% CI" in summary and "Cohen's κ" in summary
    report = alignment.list_runs(store, "correctness")[-1]
    assert (
        report.metrics is not None
        and report.metrics.kappa is not None
        and report.metrics.kappa_ci is not None
    )
    kci = report.metrics.kappa_ci
    assert f"{report.metrics.kappa:.3f} ({kci.low:.3f}–{kci.high:.3f})" in summary
    view.wait_for_selector("#cases .case")
    count = view.inner_text("#cases-count")
    assert "misaligned" in count
    first = view.query_selector("#cases .case")
    assert first is not None
    text = first.inner_text()
    assert "Human: fail (0)" in text or "Human: pass (1)" in text
    assert "Judge: " in text and "[simulated judge]" in text
    screenshot(page, "mcp-app-report-view")
    page.context.close()
