"""A small Markdown-to-HTML converter for the recommendation texts (no dependency).

It knows what those texts use: ``#`` headings, paragraphs, bulleted and numbered lists (items may
hold several paragraphs, nested lists and fenced code, indented under the marker), fenced code
blocks, and inline ``code``, **bold**, *emphasis*, [links](https://...) and bare https:// links.
Everything is escaped before any markup is added, so text can never become HTML; links keep only
http(s), mailto and in-page (#) targets.
"""

from __future__ import annotations

import html
import re

_FENCE = re.compile(r"^(\s*)(```|~~~)\s*([\w+-]*)\s*$")
_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SAFE_URL = re.compile(r"^(https?://|mailto:|#)", re.IGNORECASE)


def to_html(text: str, *, heading_offset: int = 0) -> str:
    """HTML for a Markdown text; ``heading_offset`` demotes headings (# becomes h1+offset)."""
    lines = text.replace("\r\n", "\n").replace("\t", "    ").split("\n")
    return "\n".join(_blocks(lines, heading_offset))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _dedent(lines: list[str], amount: int) -> list[str]:
    return [line[min(amount, _indent(line)) :] for line in lines]


def _blocks(lines: list[str], offset: int) -> list[str]:
    out: list[str] = []
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            indent, marker, lang = fence.group(1), fence.group(2), fence.group(3)
            body: list[str] = []
            i += 1
            while i < n and not lines[i].strip().startswith(marker):
                body.append(lines[i])
                i += 1
            i += 1  # the closing fence (or the end of the text)
            code = "\n".join(_dedent(body, len(indent)))
            cls = f' class="language-{html.escape(lang)}"' if lang else ""
            out.append(f"<pre><code{cls}>{html.escape(code)}</code></pre>")
            continue
        heading = _HEADING.match(line)
        if heading:
            level = min(len(heading.group(1)) + offset, 6)
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
            i += 1
            continue
        item = _ITEM.match(line)
        if item:
            i = _list(lines, i, offset, out)
            continue
        para = [line.strip()]
        i += 1
        while (
            i < n
            and lines[i].strip()
            and not _FENCE.match(lines[i])
            and not _HEADING.match(lines[i])
            and not _ITEM.match(lines[i])
        ):
            para.append(lines[i].strip())
            i += 1
        out.append(f"<p>{inline(' '.join(para))}</p>")
    return out


def _list(lines: list[str], i: int, offset: int, out: list[str]) -> int:
    """One list starting at ``lines[i]``; returns the index after it."""
    first = _ITEM.match(lines[i])
    assert first is not None
    base = len(first.group(1))
    ordered = first.group(2)[0].isdigit()
    tag = "ol" if ordered else "ul"
    start = int(first.group(2)[:-1]) if ordered else 1
    items: list[list[str]] = []
    n = len(lines)
    while i < n:
        m = _ITEM.match(lines[i])
        if not m or len(m.group(1)) != base or m.group(2)[0].isdigit() != ordered:
            break
        content_indent = len(m.group(1)) + len(m.group(2)) + 1
        body = [m.group(3)]
        i += 1
        while i < n:
            line = lines[i]
            if not line.strip():
                # A blank line ends the item unless indented content follows.
                j = i
                while j < n and not lines[j].strip():
                    j += 1
                if j < n and _indent(lines[j]) >= content_indent:
                    body.extend([""] * (j - i))
                    i = j
                    continue
                break
            if _indent(line) <= base and _ITEM.match(line):
                break
            if _indent(line) < content_indent and not _continues_paragraph(body, line):
                break
            body.append(line)
            i += 1
        items.append(_dedent(body[:1], 0) + _dedent(body[1:], content_indent))
    attr = f' start="{start}"' if ordered and start != 1 else ""
    parts = [f"<{tag}{attr}>"]
    for body in items:
        inner = _blocks(body, offset)
        # A single paragraph stays inline: <li>text</li>, not <li><p>text</p></li>.
        if len(inner) >= 1 and inner[0].startswith("<p>"):
            inner[0] = inner[0][3:-4]
        parts.append("<li>" + "\n".join(inner) + "</li>")
    parts.append(f"</{tag}>")
    out.append("\n".join(parts))
    return i


def _continues_paragraph(body: list[str], line: str) -> bool:
    """A lazily indented line that continues the item's paragraph text."""
    stripped = line.strip()
    return bool(body and body[-1].strip()) and not (
        _FENCE.match(line) or _HEADING.match(line) or _ITEM.match(line) or not stripped
    )


_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BARE = re.compile(r"(?<![\"=/\w])(https?://[^\s<>()]+[^\s<>().,;:])")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_EM = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")


def inline(text: str) -> str:
    """Inline Markdown of one paragraph: code spans first (their content is literal)."""
    pieces: list[str] = []
    pos = 0
    for m in _CODE.finditer(text):
        pieces.append(_inline_text(text[pos : m.start()]))
        pieces.append(f"<code>{html.escape(m.group(1))}</code>")
        pos = m.end()
    pieces.append(_inline_text(text[pos:]))
    return "".join(pieces)


def _inline_text(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _LINK.finditer(text):
        out.append(_emphasis(text[pos : m.start()]))
        out.append(_anchor(m.group(2), _emphasis(m.group(1), bare_links=False)))
        pos = m.end()
    out.append(_emphasis(text[pos:]))
    return "".join(out)


def _emphasis(text: str, *, bare_links: bool = True) -> str:
    escaped = html.escape(text, quote=False)
    if bare_links:
        escaped = _BARE.sub(lambda m: _anchor(html.unescape(m.group(1)), m.group(1)), escaped)
    escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
    return _EM.sub(r"<em>\1</em>", escaped)


def _anchor(url: str, label_html: str) -> str:
    if not _SAFE_URL.match(url):
        return label_html
    href = html.escape(url, quote=True)
    return f'<a href="{href}" target="_blank" rel="noopener noreferrer">{label_html}</a>'


__all__ = ["inline", "to_html"]
