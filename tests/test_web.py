"""The pages without a browser: safe markup, the guard, the JSON endpoints' engine calls, `ui` and `/ui`."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from align_mcp.cli import main
from align_mcp.engine import queues
from align_mcp.errors import ACTIONS, NextStep, NotFound
from align_mcp.store import Store
from align_mcp.web import pages
from align_mcp.web.app import create_app
from align_mcp.web.guard import CSP, TOKEN_COOKIE, cookie_value
from align_mcp.web.markup import instructions, markdown, safe_href
from conftest import clean_env, snapshot

HERE = "http://127.0.0.1:8766"


# ---- markup ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
        ('<img src=x onerror="alert(1)">', "<p>&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</p>"),
        ("[x](javascript:alert(1))", "<p>[x](javascript:alert(1))</p>"),
        ("[x](JaVaScRiPt:alert(1))", "<p>[x](JaVaScRiPt:alert(1))</p>"),
        ("[x](java\tscript:alert(1))", "<p>[x](java\tscript:alert(1))</p>"),
        ("[x](data:text/html,hi)", "<p>[x](data:text/html,hi)</p>"),
        (
            '[docs](https://example.com/a?b=1&c="2")',
            '<p><a href="https://example.com/a?b=1&amp;c=&quot;2&quot;" rel="noopener noreferrer nofollow">docs</a></p>',
        ),
        (
            "**bold** and *it* and `<b>code</b>`",
            "<p><strong>bold</strong> and <em>it</em> and <code>&lt;b&gt;code&lt;/b&gt;</code></p>",
        ),
        (
            "# Title\n\n- one\n- two\n  more\n\n1. first",
            "<h3>Title</h3><ul><li>one</li><li>two more</li></ul><ol><li>first</li></ol>",
        ),
        ("```\n<script>x</script>\n```", "<pre><code>&lt;script&gt;x&lt;/script&gt;</code></pre>"),
        ("**<svg onload=alert(1)>**", "<p><strong>&lt;svg onload=alert(1)&gt;</strong></p>"),
    ],
)
def test_markdown_escapes_everything_and_adds_only_safe_markup(text: str, html: str) -> None:
    assert markdown(text) == html


def test_only_http_https_and_mailto_links_are_followed() -> None:
    assert safe_href("https://example.com") == "https://example.com"
    assert safe_href("mailto:a@example.com") == "mailto:a@example.com"
    for url in (
        "javascript:alert(1)",
        " javascript:alert(1)",
        "vbscript:x",
        "data:text/html,x",
        "file:///etc/passwd",
    ):
        assert safe_href(url) is None


def test_the_rubric_is_the_drafts_instructions_without_the_example_template() -> None:
    draft = "Judge **correctness**.\n\nBe strict.\n\n<inputs>\n{{inputs}}\n</inputs>\n<outputs>\n{{outputs}}\n</outputs>\n"
    assert instructions(draft) == "Judge **correctness**.\n\nBe strict."
    assert instructions("Only {{inputs}} here") == "Only {{inputs}} here"


def test_every_next_step_has_words_on_the_page() -> None:
    assert set(pages.STEP_WORDS) == set(ACTIONS)
    error = NotFound("No run 'x'.", NextStep("import_runs"), NextStep("label", {"evaluator": "e"}))
    assert pages.error_text(error) == (
        "No run 'x'. Next: import runs (align-mcp import); label it on the label page."
    )


# ---- the guard ------------------------------------------------------------------------------------------------


@pytest.fixture
def queued(runs_store: Store) -> Store:
    queues.add_to_queue(runs_store, "correctness", source="support")
    return runs_store


def client(store: Store, token: str | None = None, base_url: str = HERE, **kw: Any) -> TestClient:
    return TestClient(create_app(store=store, token=token), base_url=base_url, **kw)


def post_json(c: TestClient, path: str, body: dict[str, Any], origin: str | None = HERE) -> Any:
    headers = {"origin": origin} if origin else {}
    return c.post(path, json=body, headers=headers)


def test_every_response_carries_the_strict_headers(queued: Store) -> None:
    c = client(queued)
    for response in (c.get("/label/correctness"), c.get("/static/page.js"), c.post("/api/next", json={})):
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert "unsafe-inline" not in CSP and "script-src 'self'" in CSP


def test_a_loopback_server_refuses_other_host_names(queued: Store) -> None:
    response = client(queued, base_url="http://evil.example:8766").get("/label/correctness")
    assert response.status_code == 403
    assert "Host evil.example is not served here: open the page at 127.0.0.1." in response.text


def test_changes_need_this_pages_origin(db_path: Path, queued: Store) -> None:
    c = client(queued)
    before = snapshot(db_path)
    body = {"evaluator": "correctness", "labeler": "mallory"}
    for origin in (None, "http://evil.example", "http://127.0.0.1:9999", "null"):
        response = post_json(c, "/api/next", body, origin)
        assert response.status_code == 403
        assert response.json()["error"].startswith(f"Refused a change from origin {origin or '(none)'}")
    assert snapshot(db_path) == before
    assert post_json(c, "/api/next", body).status_code == 200


def test_with_a_token_pages_redirect_to_the_login_and_the_api_answers_401(queued: Store) -> None:
    c = client(queued, token="tok-123", follow_redirects=False)
    page = c.get("/label/correctness?x=1")
    assert (page.status_code, page.headers["location"]) == (303, "/login?next=%2Flabel%2Fcorrectness%3Fx%3D1")
    api = post_json(c, "/api/next", {"evaluator": "correctness", "labeler": "a"})
    assert api.status_code == 401
    assert api.json() == {"error": "Log in with ALIGN_MCP_TOKEN first: open the page and enter the token."}
    assert c.get("/login").status_code == 200
    assert c.get("/static/style.css").status_code == 200
    bearer = c.get("/label/correctness", headers={"authorization": "Bearer tok-123"})
    assert bearer.status_code == 200


def test_the_login_sets_an_httponly_strict_cookie_without_the_token(queued: Store) -> None:
    c = client(queued, token="tok-123", follow_redirects=False)
    wrong = c.post("/login", data={"token": "nope", "next": "/"}, headers={"origin": HERE})
    assert wrong.status_code == 401 and "not this server&#x27;s token" in wrong.text
    ok = c.post("/login", data={"token": "tok-123", "next": "/label/correctness"}, headers={"origin": HERE})
    assert (ok.status_code, ok.headers["location"]) == (303, "/label/correctness")
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith(f"{TOKEN_COOKIE}={cookie_value('tok-123')};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "tok-123" not in cookie
    assert c.get("/label/correctness").status_code == 200


def test_the_login_only_redirects_to_paths_on_this_server(queued: Store) -> None:
    c = client(queued, token="t", follow_redirects=False)
    for target in ("//evil.example/x", "https://evil.example/", "javascript:alert(1)"):
        response = c.post("/login", data={"token": "t", "next": target}, headers={"origin": HERE})
        assert response.headers["location"] == "/"


# ---- the JSON endpoints call the engine ----------------------------------------------------------------------


def test_a_refused_score_answers_the_engines_message_and_stores_nothing(db_path: Path, queued: Store) -> None:
    c = client(queued)
    item = post_json(c, "/api/next", {"evaluator": "correctness", "labeler": "alice"}).json()
    before = snapshot(db_path)
    body = {"evaluator": "correctness", "run_id": item["run_id"], "score": "maybe", "labeler": "alice"}
    response = post_json(c, "/api/label", body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"Label 1 (run {item['run_id']!r}): ")
    assert "maybe" in response.json()["error"]
    assert snapshot(db_path) == before


def test_a_label_from_the_page_is_the_engines_label(queued: Store) -> None:
    c = client(queued)
    item = post_json(c, "/api/next", {"evaluator": "correctness", "labeler": "alice"}).json()
    assert item["run_id"] == "pp-001"
    assert "1 reserved" in item["progress_html"]
    body = {
        "evaluator": "correctness",
        "run_id": "pp-001",
        "score": "0",
        "comment": "wrong",
        "labeler": "alice",
    }
    answer = post_json(c, "/api/label", body).json()
    assert answer["message"] == "Labeled pp-001 = 0; 1 labeled, 45 pending."
    assert answer["progress_html"] == (
        "<p class=counts><strong>1 of 46 labeled</strong>, balance 1 fail / 0 pass</p><ul class=warnings>"
        "<li>Only 1 labeled run(s); label at least 20 before trusting the alignment score.</li>"
        "<li>No &#x27;pass&#x27; (1) labels: the judge cannot be checked on that class.</li></ul>"
    )
    (row,) = queued.current_labels("correctness")
    assert (row.run_id, row.score, row.comment, row.labeler) == ("pp-001", 0, "wrong", "alice")


def test_skipped_runs_are_passed_over_and_offered_again_when_nothing_else_is_left(runs_store: Store) -> None:
    queues.add_to_queue(runs_store, "correctness", run_ids=["pp-001", "pp-002"])
    c = client(runs_store)
    ask = {"evaluator": "correctness", "labeler": "alice"}
    assert post_json(c, "/api/next", {**ask, "skip": []}).json()["run_id"] == "pp-001"
    assert post_json(c, "/api/next", {**ask, "skip": ["pp-001"]}).json()["run_id"] == "pp-002"
    again = post_json(c, "/api/next", {**ask, "skip": ["pp-001", "pp-002"]}).json()
    assert (again["run_id"], again["skips_cleared"]) == ("pp-001", True)
    # bob never sees what alice holds, skipped or not
    assert post_json(c, "/api/next", {"evaluator": "correctness", "labeler": "bob"}).json()["run_id"] is None


def test_an_unknown_evaluator_is_named_on_the_page(queued: Store) -> None:
    response = client(queued).get("/label/tone")
    assert response.status_code == 404
    assert "No evaluator named &#x27;tone&#x27;" in response.text


# ---- align-mcp ui and serve --http ---------------------------------------------------------------------------


def test_ui_refuses_a_public_bind_without_a_token() -> None:
    result = CliRunner().invoke(main, ["ui", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: Refusing to serve the pages on 0.0.0.0: an address other machines can reach needs a token. Set "
        "ALIGN_MCP_TOKEN to a long random secret (e.g. `openssl rand -hex 32`), or bind 127.0.0.1."
    )


def test_ui_names_an_unknown_evaluator_before_serving(runs_store: Store) -> None:
    result = CliRunner().invoke(main, ["ui", "--evaluator", "tone"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: No evaluator named 'tone'.")


def test_serve_http_mounts_the_pages_under_ui_behind_their_own_guard(db_path: Path, queued: Store) -> None:
    from align_mcp.mcp.server import create_server
    from align_mcp.mcp.transport import http_app

    app = http_app(create_server(db_path), token="tok", ui=create_app(db_path, token="tok"))
    c = TestClient(app, base_url="http://127.0.0.1:8765", follow_redirects=False)
    assert c.get("/ui/label/correctness").headers["location"] == "/ui/login?next=%2Flabel%2Fcorrectness"
    login = c.post(
        "/ui/login",
        data={"token": "tok", "next": "/label/correctness"},
        headers={"origin": "http://127.0.0.1:8765"},
    )
    assert login.headers["location"] == "/ui/label/correctness"
    assert "Path=/ui" in login.headers["set-cookie"]
    page = c.get("/ui/label/correctness")
    assert page.status_code == 200
    assert "href='/ui/static/style.css'" in page.text and "src='/ui/static/page.js'" in page.text
    assert 'data-base="/ui"' in page.text
    assert c.get("/ui/static/page.js").status_code == 200
    assert c.post("/mcp", json={}).status_code == 401  # the MCP endpoint still wants its bearer token


def test_ui_serves_the_pages_and_prints_their_address(db_path: Path, runs_store: Store) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "align_mcp.cli", "ui", "--port", "0", "--evaluator", "correctness"],
        env=clean_env(ALIGN_MCP_DB=str(db_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        match = re.fullmatch(
            r"align-mcp: labeling and review pages at (http://127\.0\.0\.1:\d+/label/correctness) "
            r"\(no token, this machine only\); Ctrl-C stops\.",
            line,
        )
        assert match, line
        page = httpx.get(match.group(1), timeout=10)
        assert page.status_code == 200 and "<title>Label correctness · align-mcp</title>" in page.text
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_reserving_the_next_run_reads_only_the_front_of_a_large_queue(store: Store) -> None:
    """Each keypress on the label page reserves the next run: that must not cost a pass over the whole queue."""
    from align_mcp.core.models import ScoreType
    from align_mcp.engine import evaluators, ingest

    evaluators.create(store, "big", ScoreType(kind="binary"))
    for start in range(0, 20_000, 10_000):
        ingest.import_runs(
            store,
            "s",
            runs=[{"id": f"r{i:05d}", "inputs": {}, "outputs": {}} for i in range(start, start + 10_000)],
        )
    queues.add_to_queue(store, "big", source="s")
    assert [i.run_id for i in queues.next_items(store, "big", "alice", limit=2)] == ["r00000", "r00001"]
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    store.conn.set_progress_handler(count, 100)  # called every 100 SQLite VM instructions
    try:
        assert [i.run_id for i in queues.next_items(store, "big", "alice", limit=3)] == [
            "r00000",
            "r00001",
            "r00002",
        ]
        assert [i.run_id for i in queues.next_items(store, "big", "bob", limit=2)] == ["r00003", "r00004"]
    finally:
        store.conn.set_progress_handler(None, 0)
    assert steps < 200  # a pass over the 20,000 queued runs takes thousands


def test_the_index_lists_the_queues_and_ui_evaluator_opens_one(queued: Store) -> None:
    page = client(queued).get("/")
    assert "<td>correctness</td><td>binary (0 = fail, 1 = pass)</td><td>0</td><td>46</td>" in page.text
    assert "<a href='/label/correctness'>label</a>" in page.text
    direct = TestClient(
        create_app(store=queued, evaluator="correctness"), base_url=HERE, follow_redirects=False
    )
    assert direct.get("/").headers["location"] == "/label/correctness"


def test_serve_http_serves_the_pages_at_ui(tmp_path: Path, db_path: Path, runs_store: Store) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "align_mcp.cli", "serve", "--http", "--port", str(port)],
        env=clean_env(ALIGN_MCP_DB=str(db_path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/ui/label/correctness", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve --http did not start"
                time.sleep(0.05)
        assert page.status_code == 200
        assert "src='/ui/static/page.js'" in page.text
        assert httpx.get(f"http://127.0.0.1:{port}/ui/static/page.js", timeout=2).status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert f"align-mcp: labeling and review pages at http://127.0.0.1:{port}/ui/" in err
