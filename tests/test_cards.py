"""Model cards: a model directory's README.md (or `register_module(card=...)`) stored with the version,
returned by the API as markdown, and rendered on the pages with nothing in it that can run or load."""

from __future__ import annotations

import importlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from regctl.from_python import register_module
from regctl.local import LocalClient
from regctl.registry.card import MAX_CARD_BYTES
from regctl.registry.errors import InvalidSpec
from regctl.registry.settings import Settings
from regctl.server.app import create_app
from regctl.server.cards import render_card
from tests.conftest import direct_cli, write_model_dir

CARD = """# Doubler

Doubles its input. Trained on *nothing*; see [the paper](https://example.com/paper).

| metric | value |
|:-------|------:|
| acc    | 100%  |
"""

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JAVASCRIPT:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](&#x6A;avascript&colon;alert(1))",
    "[click](java\u0000script:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](vbscript:msgbox(1))",
    "[click](file:///etc/passwd)",
    "[click](//evil.example/x)",
    "[click](relative/page.md)",
    '[click](https://ok.example/"onmouseover="alert(1))',
    "<javascript:alert(1)>",
    "<data:text/html,<script>alert(1)</script>>",
    "![x](https://evil.example/pixel.png)",
    '![x" onerror="alert(1)](https://evil.example/x.png)',
    "![x](javascript:alert(1))",
    "[ref]\n\n[ref]: javascript:alert(1)",
    '<iframe src="https://evil.example"></iframe>',
    "<style>body{display:none}</style>",
    "| a |\n|:-:|\n| <b onclick=alert(1)>b</b> |",
    "&lt;script&gt;alert(1)&lt;/script&gt; &#60;script&#62;",
    "```html\n<script>alert(1)</script>\n```",
    "<!-- <script>alert(1)</script> -->",
]


class Tags(HTMLParser):
    """Every tag and attribute of a piece of HTML, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    parser.close()
    return parser.tags


ALLOWED_TAGS = {
    "p", "h3", "h4", "h5", "h6", "em", "strong", "code", "pre", "a", "ul", "ol", "li", "blockquote",
    "table", "thead", "tbody", "tr", "th", "td", "hr", "br", "s",
}  # fmt: skip


def assert_inert(html: str) -> None:
    """Only harmless tags; links only to http(s) or a fragment; no handler, source or style anywhere."""
    for tag, attrs in tags_of(html):
        assert tag in ALLOWED_TAGS, (tag, html)
        for name, value in attrs.items():
            assert name in ("href", "rel", "start", "class"), (tag, name, html)
            if name == "href":
                assert value is not None and value.startswith(("https://", "http://", "#")), html
            if name == "class":
                assert value is not None and value.startswith("language-"), html


@pytest.mark.parametrize("markdown", HOSTILE)
def test_hostile_markdown_renders_as_inert_html(markdown: str) -> None:
    assert_inert(render_card(markdown))


def test_a_card_keeps_its_formatting_links_and_tables() -> None:
    html = str(render_card(CARD))
    assert "<h3>Doubler</h3>" in html  # a card's headings sit under the page's own
    assert '<a href="https://example.com/paper" rel="nofollow noopener noreferrer">the paper</a>' in html
    assert "<td>100%</td>" in html and "style=" not in html
    assert "<img" not in str(render_card("![a cat](https://example.com/cat.png)"))
    assert "a cat" in str(render_card("![a cat](https://example.com/cat.png)"))


@pytest.mark.parametrize(
    "markdown",
    [
        ">" * 200_000,
        "- " * 100_000,
        "[" * 200_000,
        "*a" * 100_000,
        "`" * 200_000,
        "1. " * 80_000,
        "[a](" * 50_000,
        "<" * 200_000,
    ],
    ids=["quotes", "lists", "brackets", "emphasis", "backticks", "ordered", "links", "angles"],
)
def test_huge_nesting_renders_in_bounded_time(markdown: str) -> None:
    started = time.monotonic()
    html = str(render_card(markdown))
    assert time.monotonic() - started < 20
    assert html.count("<blockquote>") <= 25 and html.count("<ul>") <= 25
    assert_inert(html)


def test_hidden_characters_that_reach_the_renderer_are_shown_as_escapes() -> None:
    html = str(render_card("a\x1b[31mb\u202ec"))
    assert "\x1b" not in html and "\u202e" not in html
    assert "\\x1b" in html and "\\u202e" in html


def card_dir(tmp_path: Path, card: str | bytes | None) -> Path:
    files: dict[str, str | bytes] = {"README.md": card} if card is not None else {}
    return write_model_dir(tmp_path / "model", files=files)


def test_a_readme_becomes_the_version_card_and_the_json_carries_it(
    settings: Settings, tmp_path: Path
) -> None:
    directory = card_dir(tmp_path, "\ufeff" + CARD.replace("\n", "\r\n"))
    result = direct_cli(settings, "register", "doubler", str(directory), "--no-convert")
    assert result.exit_code == 0, result.output
    shown = direct_cli(settings, "versions", "show", "doubler:1", "--json")
    assert json.loads(shown.stdout)["card"] == CARD  # byte-order mark dropped, CRLF as LF
    assert "model card" in direct_cli(settings, "versions", "show", "doubler:1").stdout
    plain = write_model_dir(tmp_path / "plain")
    assert LocalClient(settings).register("plain", plain, convert=False).card is None


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("x" * (MAX_CARD_BYTES + 1), "larger than 256 KB"),
        ("é" * (MAX_CARD_BYTES // 2 + 1), "larger than 256 KB"),
        (b"caf\xe9", "not UTF-8"),
        ("hello \x1b[2J world", "hidden character"),
        ("trojan \u202e source", "hidden character"),
        ("nul \x00", "hidden character"),
    ],
    ids=["too-large", "too-large-multibyte", "latin1", "escape", "bidi", "nul"],
)
def test_a_bad_card_is_refused_in_one_line_and_nothing_is_stored(
    settings: Settings, tmp_path: Path, content: str | bytes, fragment: str
) -> None:
    directory = card_dir(tmp_path, content)
    result = direct_cli(settings, "register", "doubler", str(directory), "--no-convert")
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "README.md" in result.stderr
    assert LocalClient(settings).models() == []


def test_a_readme_that_is_a_folder_or_links_outside_is_refused(settings: Settings, tmp_path: Path) -> None:
    folder = write_model_dir(tmp_path / "folder")
    (folder / "README.md").mkdir()
    linked = write_model_dir(tmp_path / "linked")
    secret = tmp_path / "secret.md"
    secret.write_text("the server's secrets")
    (linked / "README.md").symlink_to(secret)
    client = LocalClient(settings)
    for directory in (folder, linked):
        with pytest.raises(InvalidSpec):
            client.register("m", directory, convert=False)


@pytest.fixture
def function_module(tmp_path: Path) -> Iterator[object]:
    """A training script's module on sys.path, defining a plain function of tensors."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "cardnet.py").write_text("def double(x):\n    return x * 2\n")
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("cardnet")
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("cardnet", None)


def test_register_module_takes_a_card(settings: Settings, function_module: object) -> None:
    client = LocalClient(settings)
    inputs = [{"name": "x", "dtype": "float32", "shape": [1, 4]}]
    info = register_module(
        "doubler", function_module.double, inputs=inputs, convert=False, client=client, card=CARD
    )
    assert client.version(info.ref).card == CARD
    with pytest.raises(InvalidSpec, match="hidden character"):
        register_module(
            "doubler", function_module.double, inputs=inputs, convert=False, client=client, card="\x1b]0;"
        )
    with pytest.raises(InvalidSpec, match="markdown text"):
        register_module(
            "doubler", function_module.double, inputs=inputs, convert=False, client=client, card=3
        )  # type: ignore[arg-type]
    assert client.model("doubler").version_count == 1


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    """The app in-process with a version whose card is hostile, and a signed-in reader."""
    hostile = CARD + "\n\n" + "\n\n".join(m for m in HOSTILE if "\x00" not in m)  # a NUL is refused
    LocalClient(settings).register("doubler", card_dir(tmp_path, hostile), convert=False)
    # PostgreSQL's tokens outlive a test (conftest truncates the registry's own tables): a fresh name.
    reader = LocalClient(settings).create_token(f"reader-{uuid.uuid4().hex[:8]}", "reader").secret
    with TestClient(create_app(settings, run_jobs=False)) as client:
        yield client, reader


def test_the_api_returns_the_card_as_markdown(served: tuple[TestClient, str]) -> None:
    client, reader = served
    response = client.get("/api/v1/versions/doubler:1", headers={"Authorization": f"Bearer {reader}"})
    assert response.status_code == 200
    assert response.json()["card"].startswith("# Doubler\n")


def test_the_version_and_model_pages_render_the_card_inertly(served: tuple[TestClient, str]) -> None:
    client, reader = served
    client.post("/login", data={"token": reader, "next": "/"}, follow_redirects=False)
    for path in ("/versions/doubler:1", "/models/doubler"):
        page = client.get(path)
        assert page.status_code == 200
        assert "Content-Security-Policy" in page.headers
        start = page.text.index('<div class="card-body">')
        body = page.text[start : page.text.index("</section>", start)]
        assert '<a href="https://example.com/paper" rel="nofollow noopener noreferrer">' in body
        assert_inert(body.removeprefix('<div class="card-body">'))


def test_export_and_import_carry_the_card(settings: Settings, tmp_path: Path) -> None:
    LocalClient(settings).register("doubler", card_dir(tmp_path, CARD), convert=False)
    archive = tmp_path / "doubler.tar"
    exported = direct_cli(settings, "export", "doubler", "-o", str(archive))
    assert exported.exit_code == 0, exported.output
    other = Settings.from_env({}, home=tmp_path / "other")
    imported = direct_cli(other, "import", str(archive))
    assert imported.exit_code == 0, imported.output
    assert LocalClient(other).version("doubler:1").card == CARD


def test_a_changed_card_is_a_new_version_and_an_unchanged_one_is_not(
    settings: Settings, tmp_path: Path
) -> None:
    client = LocalClient(settings)
    directory = card_dir(tmp_path, CARD)
    assert client.register("doubler", directory, convert=False).version == 1
    (directory / "README.md").write_text(CARD + "\nNow with more detail.\n")
    second = client.register("doubler", directory, convert=False)
    assert (second.version, second.unchanged) == (2, False)
    assert second.card is not None and second.card.endswith("Now with more detail.\n")
    again = client.register("doubler", directory, convert=False)
    assert (again.version, again.unchanged) == (2, True)
