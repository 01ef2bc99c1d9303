"""Untrusted run contents as HTML: everything escaped, markdown as a small safe subset, JSON pretty-printed.

Run inputs and outputs are model output and may hold anything. Every string is escaped before any markup is
added, and the only markup added is a fixed set of tags without attributes, except `href` on links whose
scheme is http, https or mailto. Nothing a run contains can become a tag, an attribute or a script.
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any
from urllib.parse import urlsplit

LONG_FIELD_CHARS = 1_200
"""A field longer than this is shown collapsed, with a "show all" button."""

SAFE_SCHEMES = ("http", "https", "mailto")

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,9}[.)]\s+(.*)$")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]\n]{1,500})\]\(([^()\s]{1,2000})\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])")


def esc(value: object) -> str:
    """Text for HTML element content or a quoted attribute value."""
    return escape(str(value), quote=True)


def safe_href(url: str) -> str | None:
    """The URL if a link to it runs no script (http, https, mailto), else None."""
    cleaned = "".join(ch for ch in url if ch.isprintable() and not ch.isspace())
    try:
        scheme = urlsplit(cleaned).scheme.lower()
    except ValueError:
        return None
    return cleaned if scheme in SAFE_SCHEMES else None


def inline(text: str) -> str:
    """One line of markdown: code spans, links (safe schemes only), bold and italic; the rest escaped."""
    out: list[str] = []
    pos = 0
    for m in _CODE_SPAN.finditer(text):
        out.append(_inline_text(text[pos : m.start()]))
        out.append(f"<code>{esc(m.group(1))}</code>")
        pos = m.end()
    out.append(_inline_text(text[pos:]))
    return "".join(out)


def _inline_text(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _LINK.finditer(text):
        out.append(_emphasis(esc(text[pos : m.start()])))
        label, url = m.group(1), m.group(2)
        href = safe_href(url)
        if href is None:
            # Shown as text: the reader sees what the run tried to link, and nothing can follow it.
            out.append(_emphasis(esc(m.group(0))))
        else:
            out.append(
                f'<a href="{esc(href)}" rel="noopener noreferrer nofollow">{_emphasis(esc(label))}</a>'
            )
        pos = m.end()
    out.append(_emphasis(esc(text[pos:])))
    return "".join(out)


def _emphasis(escaped: str) -> str:
    escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
    return _ITALIC.sub(r"<em>\1</em>", escaped)


def markdown(text: str) -> str:
    """Markdown as HTML: paragraphs, headings, lists, fenced code and inline marks. Raw HTML shows as text."""
    blocks: list[str] = []
    para: list[str] = []
    items: list[str] = []
    list_tag = ""
    code: list[str] | None = None
    fence = ""

    def flush() -> None:
        nonlocal list_tag
        if para:
            blocks.append("<p>" + "<br>".join(inline(line) for line in para) + "</p>")
            para.clear()
        if items:
            blocks.append(f"<{list_tag}>" + "".join(f"<li>{i}</li>" for i in items) + f"</{list_tag}>")
            items.clear()
            list_tag = ""

    for line in text.splitlines():
        if code is not None:
            if line.strip().startswith(fence):
                blocks.append("<pre><code>" + esc("\n".join(code)) + "</code></pre>")
                code = None
            else:
                code.append(line)
            continue
        fenced = _FENCE.match(line)
        if fenced:
            flush()
            code, fence = [], fenced.group(1)
            continue
        if not line.strip():
            flush()
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            level = min(len(heading.group(1)) + 2, 6)  # a run's "#" sits below the page's own headings
            blocks.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
            continue
        bullet, numbered = _BULLET.match(line), _NUMBERED.match(line)
        if bullet or numbered:
            tag = "ul" if bullet else "ol"
            if para or (items and tag != list_tag):
                flush()
            list_tag = tag
            items.append(inline((bullet or numbered).group(1)))  # type: ignore[union-attr]
            continue
        if items:
            items[-1] += " " + inline(line.strip())  # a lazy continuation of the list item
            continue
        para.append(line)
    if code is not None:
        blocks.append("<pre><code>" + esc("\n".join(code)) + "</code></pre>")
    flush()
    return "".join(blocks)


def pretty_json(value: Any) -> str:
    """A JSON value, indented, escaped inside <pre>."""
    return "<pre class=json>" + esc(json.dumps(value, indent=2, ensure_ascii=False, default=str)) + "</pre>"


def value_html(value: Any) -> str:
    """A field's value: strings as markdown, everything else as pretty JSON."""
    if isinstance(value, str):
        return f"<div class=md>{markdown(value)}</div>"
    return pretty_json(value)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(json.dumps(value, ensure_ascii=False, default=str))


def collapsible(body: str, size: int) -> str:
    """Wrap a rendered value; long ones start collapsed with a "show all" button (the page's script)."""
    if size <= LONG_FIELD_CHARS:
        return f"<div class=value>{body}</div>"
    return (
        f"<div class='value long collapsed'>{body}</div>"
        f"<button type=button class=show-all>show all ({size:,} characters)</button>"
    )


def fields_html(title: str, data: dict[str, Any] | None) -> str:
    """A section of a run (inputs, outputs, reference outputs): one labeled block per top-level key."""
    if data is None:
        return ""
    rows = []
    for key, value in data.items():
        rows.append(
            f"<div class=field><div class=key>{esc(key)}</div>{collapsible(value_html(value), _size(value))}</div>"
        )
    if not rows:
        rows.append("<div class=empty>(empty)</div>")
    return f"<section class=part><h3>{esc(title)}</h3>{''.join(rows)}</section>"


_OPENING_TAG = re.compile(r"^\s*<[a-z_]+>\s*$")
_EXAMPLE_VARIABLE = re.compile(r"\{\{\s*(inputs|outputs(?:_[ab])?|reference_outputs)\b")


def instructions(draft: str) -> str:
    """The draft's instructions: its text before the example's template variables (which come last)."""
    lines = draft.splitlines()
    cut = next((i for i, line in enumerate(lines) if _EXAMPLE_VARIABLE.search(line)), len(lines))
    while cut and (_OPENING_TAG.match(lines[cut - 1]) or not lines[cut - 1].strip()):
        cut -= 1
    return "\n".join(lines[:cut]) if cut else draft
