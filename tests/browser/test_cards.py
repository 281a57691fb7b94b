"""A model card in real headless chromium at 1280 and 390 px: shown on the version and model pages,
nothing in it runs, nothing is fetched for it, and it never makes the page wider than the screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from regctl.local import LocalClient
from regctl.registry.settings import Settings
from tests.api_server import ApiServer
from tests.browser.conftest import WIDTHS, WatchedPage, serve, until
from tests.conftest import write_model_dir

CARD = """# Doubler

Doubles its input; see [the paper](https://example.com/paper) and
https://example.com/a/very/long/address/that/has/no/break/anywhere/in/it/at/all/xxxxxxxxxxxxxxxxxxxxxxxxxxxxx

| metric | value | notes |
|:-------|------:|-------|
| accuracy | 100% | measured on a held-out set that nobody looked at |

```python
model = torch.jit.load("doubler.pt")  # a long line of code that must scroll inside its own box, not the page
```

<script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 2">
[click me](javascript:window.__pwned=3) ![pixel](https://evil.example/pixel.png)
"""

OVERFLOW = """() => {
    const found = [];
    const width = document.documentElement.clientWidth;
    if (document.documentElement.scrollWidth > width + 1) found.push("page wider than the screen");
    for (const el of document.querySelectorAll(".card-body p, .card-body td, .card-body th, .card-body h3")) {
        const style = getComputedStyle(el);
        if (el.scrollWidth > el.clientWidth + 1 && !["auto", "scroll"].includes(style.overflowX)) {
            found.push("cut off: " + el.tagName + " " + el.textContent.trim().slice(0, 40));
        }
    }
    return found;
}"""


class Site:
    def __init__(self, server: ApiServer, reader: str) -> None:
        self.server, self.url, self.reader = server, server.url, reader


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("cards")
    settings = Settings.from_env({}, home=root / "home")
    direct = LocalClient(settings)
    direct.register("doubler", write_model_dir(root / "model", files={"README.md": CARD}), convert=False)
    reader = direct.create_token("reader", "reader").secret
    server = serve(settings, root)
    yield Site(server, reader)
    server.stop()


@pytest.mark.parametrize("width", WIDTHS)
def test_a_hostile_card_reads_right_and_does_nothing_at_each_width(
    browser: Any, site: Site, screenshots: Path, width: int
) -> None:
    with WatchedPage(browser, width) as watched:
        page = watched.page
        page.goto(f"{site.url}/login")
        page.fill("#token", site.reader)
        page.click("form.login button[type=submit]")
        page.wait_for_url(f"{site.url}/")
        for path, name in (("/versions/doubler:1", "card-version"), ("/models/doubler", "card-model")):
            page.goto(f"{site.url}{path}")
            until(page, "document.querySelector('.card-body h3')", 10)
            assert page.inner_text(".card-body h3") == "Doubler"
            assert page.get_attribute(".card-body a[href='https://example.com/paper']", "rel") == (
                "nofollow noopener noreferrer"
            )
            assert page.evaluate("() => window.__pwned === undefined")
            assert (
                page.evaluate("() => document.querySelectorAll('.card-body img, .card-body script').length")
                == 0
            )
            assert page.evaluate(OVERFLOW) == []
            assert page.locator(".card-body a[href^='javascript']").count() == 0
            page.screenshot(path=str(screenshots / f"{name}-{width}.png"), full_page=True)
    assert watched.hosts == {urlsplit(site.url).netloc}, watched.hosts
    assert watched.refused_by_policy() == [], watched.console
