"""The label view and the alignment report as MCP App views (MCP Apps, SEP-1865), for hosts that render a
server's HTML inside the chat.

Each view is one HTML document: the static stylesheet and script of this package inlined, and a
Content-Security-Policy that lets only that exact script run (by its hash) and lets the view load nothing and
connect nowhere: everything it shows comes from the host bridge (the tool's result, and the tools it calls
through the host). The script puts run contents on the page as text only.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib.resources import files
from typing import Literal

from align_mcp import __version__
from align_mcp.web.markup import esc

ViewName = Literal["label", "report"]

LABEL_URI = "ui://align-mcp/label"
REPORT_URI = "ui://align-mcp/report"
VIEW_URIS: dict[ViewName, str] = {"label": LABEL_URI, "report": REPORT_URI}

TITLES: dict[ViewName, str] = {"label": "Label runs", "report": "Alignment report"}
DESCRIPTIONS: dict[ViewName, str] = {
    "label": "The label view: one queued run at a time, scored with the keyboard (for hosts with MCP Apps)",
    "report": "The alignment report: metrics with intervals and the misaligned cases (for hosts with MCP Apps)",
}


def _static(name: str) -> str:
    return (files("align_mcp.web") / "static" / name).read_text(encoding="utf-8")


def source_hash(text: str) -> str:
    """The CSP source that allows exactly this inline script or stylesheet."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _body(view: ViewName) -> str:
    if view == "label":
        return (
            "<p id=progress></p>"
            "<div id=run></div>"
            "<div id=scores></div>"
            "<label for=comment>Comment (<kbd>c</kbd>)</label> <span id=comment-state></span>"
            "<textarea id=comment rows=2></textarea>"
            "<ul id=keys class=keys></ul>"
        )
    return (
        "<div id=summary></div>"
        "<h2 id=cases-title>Misaligned cases</h2><p id=cases-count></p>"
        "<div id=cases></div><button type=button id=more hidden>More</button>"
    )


@cache
def view_html(view: ViewName) -> str:
    """The whole HTML document of one view."""
    script = _static("app_view.js")
    style = _static("app_view.css")
    if "</" in script or "</" in style:  # inlined as they are: nothing in them may close their element
        raise ValueError("app_view.js and app_view.css must not contain '</'")
    csp = (
        f"default-src 'none'; script-src {source_hash(script)}; style-src {source_hash(style)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
        f"<title>{esc(TITLES[view])}</title><style>{style}</style></head>"
        f'<body data-view="{esc(view)}" data-version="{esc(__version__)}" data-state=starting data-renders=0>'
        f"<h1>{esc(TITLES[view])}: <span id=evaluator></span></h1><p id=message hidden></p>"
        f"{_body(view)}<script>{script}</script></body></html>"
    )
