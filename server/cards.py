"""A model card's markdown as HTML for the pages: CommonMark (with tables and strikethrough) by
markdown-it-py, with nothing in it that can run, load or style anything.

A card is the registrant's text, so it is hostile input:
- raw HTML is off: `<script>`, `<img onerror=…>` and every other tag show as the text they are;
- a link keeps its target only when that is an absolute http(s) URL (or a `#fragment`); anything else
  (`javascript:`, `data:`, `vbscript:`, `file:`, relative paths, entity-encoded schemes, which
  markdown-it decodes before the check) leaves the markdown as plain text. Links get
  `rel="nofollow noopener noreferrer"`;
- images are dropped: their alt text shows instead, so a card never makes the browser fetch anything
  (the pages' Content-Security-Policy would refuse it anyway);
- table cells lose their `style` (alignment), which the policy forbids;
- headings move down two levels, so a card's `# Title` sits under the page's own headings;
- nesting deeper than markdown-it's limit (MAX_NESTING) stops nesting, so a hostile `>>>>…` or
  `- - - …` costs linear time.
Hidden characters (controls, bidi overrides) are refused when a card is registered; any that reach
here anyway are shown as escapes first (registry/text.py), like every other text on the pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from markupsafe import Markup

from regctl.registry.text import visible

MAX_NESTING = 20
SAFE_SCHEMES = ("http", "https")
LINK_REL = "nofollow noopener noreferrer"


def safe_link(url: str) -> bool:
    """True for a link a card may keep: an absolute http(s) URL with a host, or a `#fragment`."""
    if url.startswith("#"):
        return True
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced IPv6 bracket and the like
        return False
    return parts.scheme.lower() in SAFE_SCHEMES and bool(parts.netloc)


def _image(tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    # The alt text only: nothing is fetched, and there is no attribute to hang a handler on.
    return escapeHtml("".join(child.content for child in tokens[idx].children or ()))


def _link_open(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    tokens[idx].attrSet("rel", LINK_REL)
    return renderer.renderToken(tokens, idx, options, env)


def _heading(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    token.tag = f"h{min(int(token.tag[1]) + 2, 6)}"
    return renderer.renderToken(tokens, idx, options, env)


def _cell(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    tokens[idx].attrs.pop("style", None)
    return renderer.renderToken(tokens, idx, options, env)


def _parser() -> MarkdownIt:
    md = MarkdownIt(
        "commonmark", {"html": False, "linkify": False, "typographer": False, "maxNesting": MAX_NESTING}
    )
    md.enable(["table", "strikethrough"])
    md.validateLink = safe_link
    md.add_render_rule("image", lambda self, tokens, idx, options, env: _image(tokens, idx, options, env))
    md.add_render_rule("link_open", _link_open)
    for rule in ("heading_open", "heading_close"):
        md.add_render_rule(rule, _heading)
    for rule in ("th_open", "td_open"):
        md.add_render_rule(rule, _cell)
    return md


_MARKDOWN = _parser()


@lru_cache(maxsize=32)
def render_card(markdown: str) -> Markup:
    """The card as safe HTML for a page (cached: the same card is shown on its model's and its version's
    pages, and a version's card never changes)."""
    return Markup(_MARKDOWN.render(visible(markdown)))
