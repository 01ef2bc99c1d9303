"""The label and review pages in a real browser: Playwright driving the system Chromium against a live server."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from align_mcp.core.models import ScoreType
from align_mcp.engine import evaluators, ingest, queues, reviews
from align_mcp.store import Store
from align_mcp.web.app import create_app
from webserver import NEEDS_CHROMIUM, PAYLOADS, READY, live_server, screenshot

pytestmark = NEEDS_CHROMIUM

T = TypeVar("T")


@pytest.fixture
def queued(runs_store: Store) -> Store:
    """The 46 support runs queued for the binary evaluator 'correctness'."""
    queues.add_to_queue(runs_store, "correctness", source="support")
    return runs_store


@pytest.fixture
def site(queued: Store) -> Iterator[str]:
    with live_server(create_app(store=queued)) as url:
        yield url


def open_label_view(browser: Any, url: str, name: str, evaluator: str = "correctness") -> Any:
    """A fresh browser context on the label view, the labeler's name typed in; returns the page."""
    context = browser.new_context()
    page = context.new_page()
    page.on("pageerror", lambda e: pytest.fail(f"script error on the page: {e}"))
    page.goto(f"{url}/label/{evaluator}")
    page.wait_for_selector("#labeler-name", state="visible")
    page.keyboard.type(name)
    page.keyboard.press("Enter")
    page.wait_for_function(READY, arg=[0])
    return page


def run_id(page: Any) -> str:
    return str(page.get_attribute("#run", "data-run-id"))


def renders(page: Any) -> int:
    return int(page.get_attribute("body", "data-renders") or 0)


def press(page: Any, key: str) -> str:
    """Press a key and wait until the page shows another run (or the end of the queue); returns its id."""
    before = renders(page)
    page.keyboard.press(key)
    page.wait_for_function(READY, arg=[before])
    return run_id(page)


def test_twenty_runs_labeled_with_the_keyboard_alone_land_in_the_store(
    browser: Any, site: str, queued: Store
) -> None:
    page = open_label_view(browser, site, "alice")
    given: dict[str, int] = {}
    for i in range(20):
        rid = run_id(page)
        assert rid and rid not in given
        score = 0 if i % 3 == 0 else 1
        if i == 4:
            page.keyboard.press("c")
            page.keyboard.type("Names the wrong station.")
            page.keyboard.press("Enter")
            assert page.inner_text("#comment-state").startswith("Comment kept")
        given[rid] = score
        press(page, str(score))
    progress = page.inner_text("#progress")
    assert "20 of 46 labeled, balance 7 fail / 13 pass" in progress
    assert "label at least 20" not in progress
    screenshot(page, "label-view-after-20")
    current = {row.run_id: row for row in queued.current_labels("correctness")}
    assert {rid: row.score for rid, row in current.items()} == given
    assert {row.labeler for row in current.values()} == {"alice"}
    fifth = list(given)[4]
    assert current[fifth].comment == "Names the wrong station."
    assert [r for r, row in current.items() if row.comment] == [fifth]
    page.context.close()


def test_keys_and_rubric_are_shown_on_the_page(browser: Any, site: str) -> None:
    page = open_label_view(browser, site, "alice")
    keys = page.inner_text(".keys")
    for words in ("1 pass", "0 fail", "c comment", "j / k next / previous run", "u undo", "s skip"):
        assert words in keys
    rubric = page.inner_text(".rubric")
    assert "Score 1 (pass) when the output is correct" in rubric
    assert "{{outputs}}" not in rubric  # the instructions, without the example's template
    page.context.close()


def test_undo_returns_to_the_last_label_and_a_new_score_relabels_keeping_history(
    browser: Any, site: str, queued: Store
) -> None:
    page = open_label_view(browser, site, "alice")
    first = run_id(page)
    second = press(page, "1")
    assert second != first
    assert press(page, "u") == first
    assert "You labeled this run pass" in page.inner_text("#banner")
    assert press(page, "0") == second  # back to the run that was waiting
    history = queues.label_history(queued, "correctness", first)
    assert [(row.score, row.labeler) for row in history] == [(1, "alice"), (0, "alice")]
    assert queued.current_label_rows("correctness", [first])[first].score == 0
    assert queues.summary(queued, "correctness").labeled == 1
    page.context.close()


def test_previous_next_and_skip_move_through_the_session(browser: Any, site: str, queued: Store) -> None:
    page = open_label_view(browser, site, "alice")
    a = run_id(page)
    b = press(page, "s")
    c = press(page, "1")
    assert len({a, b, c}) == 3
    assert press(page, "k") == b
    assert press(page, "k") == a
    assert "You skipped this run" in page.inner_text("#banner")
    assert press(page, "j") == b
    assert press(page, "j") == c
    assert queued.current_label_rows("correctness", [a, b, c]).keys() == {b}
    page.context.close()


def test_two_labelers_on_one_queue_never_get_the_same_run(browser: Any, site: str, queued: Store) -> None:
    alice = open_label_view(browser, site, "alice")
    bob = open_label_view(browser, site, "bob")
    seen: dict[str, list[str]] = {"alice": [], "bob": []}
    for _ in range(8):
        for name, page in (("alice", alice), ("bob", bob)):
            seen[name].append(run_id(page))
            press(page, "1")
        assert run_id(alice) != run_id(bob)
    assert not set(seen["alice"]) & set(seen["bob"])
    current = {row.run_id: row.labeler for row in queued.current_labels("correctness")}
    assert current == {**dict.fromkeys(seen["alice"], "alice"), **dict.fromkeys(seen["bob"], "bob")}
    alice.context.close()
    bob.context.close()


def test_a_run_under_blind_review_never_shows_the_first_label(browser: Any, runs_store: Store) -> None:
    store = runs_store
    queues.add_to_queue(store, "correctness", run_ids=["pp-001"])
    queues.submit_label(store, "correctness", "pp-001", 0, "FIRST-LABELER-SECRET reason", labeler="alice")
    reviews.request_review(store, "correctness", ["pp-001"])
    with live_server(create_app(store=store)) as url:
        bob = open_label_view(browser, url, "bob")
        assert run_id(bob) == "pp-001"
        html = bob.content()
        assert "FIRST-LABELER-SECRET" not in html
        assert "alice" not in html
        assert bob.is_hidden("#banner")
        screenshot(bob, "blind-review")
        press(bob, "1")
        assert "Nothing left to label" in bob.inner_text("#run")
        alice = open_label_view(browser, url, "alice")
        assert "Nothing left to label" in alice.inner_text("#run")  # she gave the first label: never hers
        bob.context.close()
        alice.context.close()
    (review,) = reviews.list_reviews(store, "correctness").reviews
    assert (review.status, review.second_labeler, review.second_score) == ("disputed", "bob", 1)


def test_a_refused_label_shows_the_engines_message_and_stores_nothing(
    browser: Any, runs_store: Store
) -> None:
    store = runs_store
    queues.add_to_queue(store, "correctness", run_ids=["pp-001"])
    queues.submit_label(store, "correctness", "pp-001", 0, labeler="alice")
    reviews.request_review(store, "correctness", ["pp-001"])
    with live_server(create_app(store=store)) as url:
        page = open_label_view(browser, url, "anonymous")
        assert run_id(page) == "pp-001"
        page.keyboard.press("1")
        page.wait_for_selector("#message:not([hidden])")
        assert page.inner_text("#message") == (
            "Run 'pp-001' is waiting for a blind second review for 'correctness': say who is labeling "
            "(labeler=...), so this label can be told apart from the earlier one."
        )
        assert run_id(page) == "pp-001"
        screenshot(page, "refused-label")
        page.context.close()
    assert [row.score for row in queues.label_history(store, "correctness", "pp-001")] == [0]


def test_an_invalid_score_is_refused_on_the_page_with_the_engines_words(
    browser: Any, site: str, queued: Store
) -> None:
    page = open_label_view(browser, site, "alice")
    rid = run_id(page)
    # A score button the page would never offer, added the way a stale page or a tampered one might send it.
    page.evaluate("const b = document.querySelector('button.score'); b.dataset.score = '7'; b.click();")
    page.wait_for_selector("#message:not([hidden])")
    assert "7" in page.inner_text("#message")
    assert run_id(page) == rid
    assert queued.current_labels("correctness") == []
    page.context.close()


def test_hostile_run_contents_stay_inert_text(browser: Any, store: Store) -> None:
    runs = [
        {
            "id": f"x-{name}",
            "inputs": {"question": payload, payload[:40]: "key"},
            "outputs": {"answer": payload, "json": {"nested": payload}},
            "reference_outputs": {"answer": payload * 200},
            "metadata": {"note": payload},
        }
        for name, payload in PAYLOADS.items()
    ]
    ingest.import_runs(store, "hostile", runs=runs)
    evaluators.create(store, "safety", ScoreType(kind="binary"))
    queues.add_to_queue(store, "safety", source="hostile")
    with live_server(create_app(store=store)) as url:
        page = open_label_view(browser, url, "alice", "safety")
        page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
        for _ in PAYLOADS:
            page.hover("#run")
            for button in page.query_selector_all("#run button.show-all"):
                button.click()
            for link in page.query_selector_all("#run a"):
                link.click()
            assert page.evaluate("window.__pwned") is None
            assert (
                page.query_selector_all("#run script, #run img, #run iframe, #run svg, #run [onerror]") == []
            )
            hrefs = page.eval_on_selector_all("#run a", "els => els.map(a => a.getAttribute('href'))")
            assert not [h for h in hrefs if not re.match(r"^(https?|mailto):", h or "")]
            press(page, "1")
        screenshot(page, "hostile-done")
        page.goto(f"{url}/label/safety")
        assert page.evaluate("window.__pwned") is None
        page.context.close()


def test_the_xss_payload_text_is_shown_to_the_labeler(browser: Any, store: Store) -> None:
    ingest.import_runs(
        store, "hostile", runs=[{"id": "x1", "inputs": {"q": "hi"}, "outputs": {"a": PAYLOADS["img"]}}]
    )
    evaluators.create(store, "safety", ScoreType(kind="binary"))
    queues.add_to_queue(store, "safety", source="hostile")
    with live_server(create_app(store=store)) as url:
        page = open_label_view(browser, url, "alice", "safety")
        assert "<img src=x onerror=\"window.__pwned = 'img'\">" in page.inner_text("#run")
        screenshot(page, "hostile-run")
        page.context.close()


def test_the_token_guard_holds_until_the_login_form_sets_its_cookie(browser: Any, queued: Store) -> None:
    token = "s3cret-" + "x" * 30
    with live_server(create_app(store=queued, token=token)) as url:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{url}/label/correctness")
        assert page.url.startswith(f"{url}/login?next=")
        assert page.is_visible("#token")
        blocked = page.evaluate(
            "fetch('/api/next', {method: 'POST', headers: {'content-type': 'application/json'}, "
            "body: JSON.stringify({evaluator: 'correctness', labeler: 'mallory'})}).then(r => r.status)"
        )
        assert blocked == 401
        page.fill("#token", "wrong")
        page.press("#token", "Enter")
        assert "That is not this server's token" in page.inner_text(".message")
        page.fill("#token", token)
        page.press("#token", "Enter")
        page.wait_for_url(f"{url}/label/correctness")
        (cookie,) = context.cookies()
        assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
        assert token not in cookie["value"]
        assert page.evaluate("document.cookie") == ""
        page.keyboard.type("alice")
        page.keyboard.press("Enter")
        page.wait_for_function(READY, arg=[0])
        press(page, "1")
        context.close()
    assert [row.labeler for row in queued.current_labels("correctness")] == ["alice"]


def test_another_sites_page_cannot_submit_labels(browser: Any, site: str, queued: Store) -> None:
    with live_server(create_app(store=queued)) as other:  # a second origin (another port) plays the attacker
        page = browser.new_context().new_page()
        page.goto(f"{other}/")
        status = page.evaluate(
            "([target]) => fetch(target + '/api/label', {method: 'POST', mode: 'cors', headers: {'content-type': "
            "'text/plain'}, body: JSON.stringify({evaluator: 'correctness', run_id: 'pp-001', score: 1, labeler: "
            "'mallory'})}).then(r => r.status, e => 'blocked')",
            [site],
        )
        assert status in (403, "blocked")
        page.context.close()
    assert queued.current_labels("correctness") == []


def test_the_page_sets_a_strict_content_security_policy(browser: Any, site: str) -> None:
    page = browser.new_context().new_page()
    response = page.goto(f"{site}/label/correctness")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert page.query_selector_all("script:not([src])") == []
    page.context.close()


# ---- the review view ----------------------------------------------------------------------------------------

HOSTILE_REASONING = "<img src=x onerror=\"window.__pwned='reasoning'\"> [see](javascript:window.__pwned='r')"


def aside(fn: Callable[[], T]) -> T:
    """Run fn in another thread: Playwright's sync API keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result(timeout=120)


@pytest.fixture
def aligned(store: Store, support_runs: list[dict[str, Any]], judge: Any) -> tuple[Store, int]:
    """The support runs with their human labels, version 1 judged, then a draft judged against it (flips)."""
    import anyio

    from align_mcp.engine import alignment
    from align_mcp.testing.fakejudge import Reply, simulated_responder

    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    ingest.import_runs(store, "support", runs=support_runs)

    def respond(body: dict[str, Any]) -> Reply:
        reply = simulated_responder(body)
        return Reply(score=reply.score, reasoning=reply.reasoning + " " + HOSTILE_REASONING)

    judge.responder = respond
    aside(lambda: anyio.run(lambda: alignment.run_alignment(store, "correctness", 1, split="all")))
    evaluators.update_draft(
        store,
        "correctness",
        replace=(
            "Rubric:",
            "Check every number, price and duration against the reference exactly.\n\nRubric:",
        ),
    )
    report = aside(lambda: anyio.run(lambda: alignment.run_alignment(store, "correctness", split="all")))
    return store, report.run.id


def test_the_review_view_shows_misaligned_cases_side_by_side_and_sends_them_to_review(
    browser: Any, aligned: tuple[Store, int]
) -> None:
    store, aid = aligned
    from align_mcp.engine import alignment

    expected = alignment.get_misaligned(store, "correctness", aid, limit=100)
    assert expected.total > 0
    with live_server(create_app(store=store)) as url:
        page = browser.new_context().new_page()
        page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
        page.goto(f"{url}/review/correctness")
        cases = page.query_selector_all("article.case")
        assert len(cases) == min(25, expected.total)
        first = expected.cases[0]
        box = page.inner_text("article.case >> nth=0")
        assert first.run_id in box
        assert f"Human: {'pass' if first.human_score == 1 else 'fail'}" in box
        assert f"Judge: {'pass' if first.judge_score == 1 else 'fail'}" in box
        assert (first.human_comment or "(no comment)")[:40] in box
        assert "[simulated judge]" in box and "onerror" in box  # the reasoning, hostile part shown as text
        assert page.evaluate("window.__pwned") is None
        assert page.query_selector_all("article.case img, article.case script") == []
        assert "Flips" in page.inner_text(".flips") and "Against v1" in page.inner_text(".flips")
        screenshot(page, "review-view")
        page.click("text=false pass")
        assert "direction=false_pass" in page.url
        shown = {el.inner_text() for el in page.query_selector_all("article.case .case-head .direction")}
        assert shown <= {"false pass"} and shown
        chosen = [el.get_attribute("value") for el in page.query_selector_all("input[name=run_ids]")][:2]
        for rid in chosen:
            page.check(f"input[name=run_ids][value='{rid}']")
        page.fill("#reason", "judge looks right here")
        page.click("text=Send checked runs to a blind second review")
        page.wait_for_selector(".flash")
        assert page.inner_text(".flash").startswith("Sent 2 run(s) to a blind second review (2 pending).")
        screenshot(page, "review-sent")
        page.context.close()
    sent = reviews.list_reviews(store, "correctness").reviews
    assert sorted(r.run_id for r in sent) == sorted(chosen)
    assert {r.reason for r in sent} == {"judge looks right here"}


def test_the_charts_render_as_images_in_the_browser(browser: Any, aligned: tuple[Store, int]) -> None:
    pytest.importorskip("vl_convert", reason="the charts extra (in the dev extra)")
    store, aid = aligned
    with live_server(create_app(store=store)) as url:
        page = browser.new_context().new_page()
        page.goto(f"{url}/review/correctness")
        page.click("text=charts")
        page.wait_for_url(f"{url}/charts/correctness?run={aid}")
        page.wait_for_load_state("networkidle")
        sizes = page.eval_on_selector_all(".chart img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
        assert len(sizes) == 2 and all(done and width > 100 for done, width in sizes), sizes
        screenshot(page, "charts")
        page.context.close()


def test_categorical_labels_take_their_digits_and_the_name_is_asked_once(browser: Any, store: Store) -> None:
    ingest.import_runs(
        store, "s", runs=[{"id": f"r{i}", "inputs": {"q": i}, "outputs": {"a": i}} for i in range(3)]
    )
    evaluators.create(store, "tone", ScoreType(kind="categorical", labels=["rude", "neutral", "warm"]))
    queues.add_to_queue(store, "tone", source="s")
    with live_server(create_app(store=store)) as url:
        page = open_label_view(browser, url, "dana", "tone")
        keys = page.inner_text(".keys")
        assert "1 rude" in keys and "2 neutral" in keys and "3 warm" in keys
        first = run_id(page)
        page.keyboard.press("c")
        page.keyboard.type("typed, then abandoned")
        page.keyboard.press("Escape")
        assert page.input_value("#comment") == ""
        press(page, "3")
        page.reload()  # the name is remembered: no question, straight to the next run
        page.wait_for_function(READY, arg=[0])
        assert page.is_hidden("#name-form") and page.inner_text("#labeler-shown") == "dana"
        press(page, "2")
        page.context.close()
    current = {row.run_id: (row.score, row.comment, row.labeler) for row in store.current_labels("tone")}
    assert current[first] == ("warm", None, "dana")
    assert sorted(score for score, _, _ in current.values()) == ["neutral", "warm"]
