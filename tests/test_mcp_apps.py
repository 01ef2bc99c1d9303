"""MCP Apps over the SDK's in-memory Client: the label view and the alignment report are `ui://` resources of
MIME type text/html;profile=mcp-app, linked from next_items and run_alignment for hosts that negotiate the
extension (others get the listing unchanged); the alignment chart comes as PNG image content."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client import advertise
from mcp.shared.exceptions import MCPError
from mcp.types import BlobResourceContents, ImageContent, TextContent, TextResourceContents

from align_mcp.core.models import ScoreType
from align_mcp.engine import evaluators, ingest
from align_mcp.mcp.listing import listing_size
from align_mcp.mcp.server import create_server
from align_mcp.store import Store
from align_mcp.web.apps import LABEL_URI, REPORT_URI, source_hash, view_html

EXTENSION = "io.modelcontextprotocol/ui"
MIME = "text/html;profile=mcp-app"
STATIC = Path(__file__).resolve().parent.parent / "src" / "align_mcp" / "web" / "static"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def apps_client(server: Any, settings: dict[str, Any] | None = None) -> Client:
    """A client that negotiates MCP Apps, as Claude or VS Code do."""
    wanted = {"mimeTypes": [MIME]} if settings is None else settings
    return Client(server, cache=None, extensions=[advertise(EXTENSION, wanted)])


def wire(tools: Any) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]


@pytest.mark.anyio
async def test_the_views_are_mcp_app_resources_with_a_csp_that_runs_only_their_own_script(
    client: Client,
) -> None:
    listed = {r.uri: r for r in (await client.list_resources()).resources}
    assert {uri: listed[uri].mime_type for uri in (LABEL_URI, REPORT_URI)} == {
        LABEL_URI: MIME,
        REPORT_URI: MIME,
    }
    assert listed[LABEL_URI].title == "Label runs" and listed[REPORT_URI].title == "Alignment report"
    for uri, view in ((LABEL_URI, "label"), (REPORT_URI, "report")):
        content = (await client.read_resource(uri)).contents[0]
        assert isinstance(content, TextResourceContents)
        assert content.mime_type == MIME
        assert content.meta == {"ui": {"prefersBorder": True}}
        html = content.text
        assert html == view_html(view)  # type: ignore[arg-type]
        assert f'data-view="{view}"' in html
        scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
        assert len(scripts) == 1 and "<script src" not in html
        csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
        assert csp is not None
        policy = csp.group(1).replace("&#x27;", "'")
        assert (
            "default-src 'none'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
        )
        assert f"script-src {source_hash(scripts[0])};" in policy


def test_the_view_script_puts_run_contents_on_the_page_as_text_only() -> None:
    script = (STATIC / "app_view.js").read_text(encoding="utf-8")
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        ".src =",
    ):
        assert sink not in script, sink
    assert "textContent" in script
    assert "</" not in script and "</" not in (STATIC / "app_view.css").read_text(encoding="utf-8")


@pytest.mark.anyio
async def test_a_host_with_mcp_apps_gets_the_views_linked_from_next_items_and_run_alignment(
    db_path: Path,
) -> None:
    async with apps_client(create_server(db_path)) as c:
        assert c.server_capabilities.extensions is not None and EXTENSION in c.server_capabilities.extensions
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert tools["next_items"].meta == {"ui": {"resourceUri": LABEL_URI}}
    assert tools["run_alignment"].meta == {"ui": {"resourceUri": REPORT_URI}}
    assert [n for n, t in tools.items() if t.meta] == ["next_items", "run_alignment"]


@pytest.mark.anyio
async def test_hosts_without_mcp_apps_get_the_listing_unchanged(db_path: Path) -> None:
    server = create_server(db_path)
    measured = await server.list_tools()  # what the listing size test measures
    async with Client(server, cache=None) as c:
        plain = (await c.list_tools()).tools
    async with apps_client(server, {}) as c:  # the extension without the app MIME type: no views either
        no_mime = (await c.list_tools()).tools
    async with apps_client(server) as c:
        with_views = (await c.list_tools()).tools
    assert all(t.meta is None for t in plain)
    assert wire(plain) == wire(measured) == wire(no_mime)
    apps_size, plain_size = listing_size(with_views), listing_size(plain)
    assert apps_size.visible == plain_size.visible  # the model reads the same words either way
    assert 0 < apps_size.wire - plain_size.wire < 120  # two view links


# ---- charts as image content ---------------------------------------------------------------------------------


@pytest.fixture
def labeled(store: Store, support_runs: list[dict[str, Any]]) -> Store:
    """The support runs with their human labels and the binary evaluator 'correctness'."""
    evaluators.create(store, "correctness", ScoreType(kind="binary"))
    ingest.import_runs(store, "support", runs=support_runs)
    return store


@pytest.mark.anyio
async def test_the_agreement_chart_is_png_image_content(client: Client, labeled: Store, judge: Any) -> None:
    aligned = await client.call_tool("run_alignment", {"evaluator": "correctness", "split": "all"})
    assert not aligned.is_error
    result = await client.call_tool("alignment_chart", {"evaluator": "correctness"})
    assert not result.is_error, result.content
    image, words = result.content
    assert isinstance(image, ImageContent) and image.mime_type == "image/png"
    png = base64.b64decode(image.data)
    assert png.startswith(PNG_MAGIC)
    assert isinstance(words, TextContent)
    assert words.text == f"The agreement chart of correctness (PNG, {len(png):,} bytes)."
    assert result.structured_content == {
        "evaluator": "correctness",
        "chart": "agreement",
        "alignment_run": None,
        "mime_type": "image/png",
        "size": len(png),
    }
    confusion = await client.call_tool("alignment_chart", {"evaluator": "correctness", "chart": "confusion"})
    assert isinstance(confusion.content[0], ImageContent)
    assert base64.b64decode(confusion.content[0].data).startswith(PNG_MAGIC)
    blob = (await client.read_resource("align://charts/correctness/agreement")).contents[0]
    assert isinstance(blob, BlobResourceContents) and blob.mime_type == "image/png"
    assert base64.b64decode(blob.blob).startswith(PNG_MAGIC)


@pytest.mark.anyio
async def test_a_chart_before_any_alignment_run_says_what_to_run(client: Client, labeled: Store) -> None:
    result = await client.call_tool("alignment_chart", {"evaluator": "correctness"})
    assert result.is_error
    assert isinstance(result.content[0], TextContent)
    assert result.content[0].text == (
        "Error executing tool alignment_chart: Evaluator 'correctness' has no completed alignment run to chart "
        "yet. Judge the reference set with run_alignment(evaluator='correctness')."
    )


@pytest.mark.anyio
async def test_without_the_charts_extra_the_chart_names_the_install_command(
    client: Client, labeled: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "vl_convert", None)
    result = await client.call_tool("alignment_chart", {"evaluator": "correctness"})
    assert result.is_error
    assert isinstance(result.content[0], TextContent)
    assert result.content[0].text == (
        "Error executing tool alignment_chart: Charts need Altair and vl-convert (vl_convert is missing): "
        "pip install 'align-mcp[charts]'."
    )
    with pytest.raises(
        MCPError, match=re.escape("(vl_convert is missing): pip install 'align-mcp[charts]'.")
    ):
        await client.read_resource("align://charts/correctness/agreement")


def test_the_chart_tool_is_not_in_the_default_listing() -> None:
    core = anyio.run(create_server(":memory:").list_tools)
    every = anyio.run(create_server(":memory:", tools=["all"]).list_tools)
    assert "alignment_chart" not in {t.name for t in core}
    assert "alignment_chart" in {t.name for t in every}
