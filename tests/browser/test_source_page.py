"""The version page's annotated source in real headless chromium, against a real `regctl serve` that
converts a model with a data-dependent branch (so the battery takes it both ways) and a line no input
reaches."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regctl.local import LocalClient
from regctl.registry.settings import Settings
from tests.browser.conftest import WIDTHS, WatchedPage, serve, until
from tests.browser.test_pages import nothing_clipped
from tests.conftest import write_model_dir

pytestmark = pytest.mark.slow
READY_S = 240
HOSTILE = "<script>window.__pwned = 1</script>"
MODEL = f'''
"""A gate on the input's values."""

import torch
from torch import Tensor, nn


class Gate(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        # {HOSTILE} is a comment, shown as text
        if x.sum() > 0:
            return torch.relu(x)
        if x.dim() > 9:
            return x * 0
        return -x


def build() -> nn.Module:
    return Gate()
'''
SPEC = """
entrypoint = "model.py:build"
method = "auto"
device = "cpu"

[[inputs]]
name = "x"
dtype = "float32"
shape = ["batch", 8]

[dims]
batch = { min = 1, max = 4, opt = 2, batch = true }

[validation]
samples = 4
"""
COMMENT, BRANCH, POSITIVE, SHAPE, NEVER, NEGATIVE = 10, 11, 12, 13, 14, 15  # line numbers in MODEL


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, LocalClient, str]]:
    root = tmp_path_factory.mktemp("source-page")
    settings = Settings.from_env({}, home=root / "home")
    direct = LocalClient(settings)
    server = serve(settings, root)
    try:
        model = write_model_dir(root / "gate", spec=SPEC, files={"model.py": textwrap.dedent(MODEL)})
        info = direct.register("gate", model)
        assert direct.wait(info.jobs[0], timeout=READY_S).state == "succeeded", server.log_text()
        yield server, direct, direct.create_token("rita", "reader").secret
    finally:
        server.stop()


def test_the_version_page_shows_the_source_with_its_coverage_and_the_inputs_of_each_side(
    browser: Any, site: tuple[Any, LocalClient, str], screenshots: Path
) -> None:
    server, direct, token = site
    coverage = direct.version("gate:1").summary["report"]["coverage"]
    assert coverage["recorded"] is True, coverage["warning"]
    (branch,) = [d for d in coverage["decisions"] if d["line"] == BRANCH]
    assert {s["value"] for s in branch["taken"]} == {True, False}, "the battery takes both sides"
    for width in WIDTHS:
        with WatchedPage(browser, width) as watched:
            page = watched.page
            page.goto(f"{server.url}/login?next=/versions/gate:1")
            page.fill("#token", token)
            page.click("form.login button[type=submit]")
            page.wait_for_url(f"{server.url}/versions/gate:1")
            section = page.locator("section.source-coverage")
            assert section.locator(".coverage-summary").inner_text() == (
                f"{coverage['lines_run']}/{coverage['lines']} lines; 1 of 2 decisions taken both ways."
            )
            # the size test is a decision too, and no input in the spec's range takes its other side
            size_test = section.locator(f"#source-1-{SHAPE} + tr.decision")
            assert size_test.locator(".decision-state").inner_text().startswith("one way only")
            rows = {n: section.locator(f"#source-1-{n}") for n in range(COMMENT, NEGATIVE + 1)}
            # Each mark is a word with a title, not a colour alone.
            assert rows[BRANCH].get_attribute("class") == "line run-all has-decision"
            assert rows[BRANCH].locator("td.mark").inner_text() == "all"
            assert rows[POSITIVE].locator("td.mark").inner_text() == "some"
            assert rows[SHAPE].locator("td.mark").inner_text() == "some"
            assert rows[NEGATIVE].locator("td.mark").inner_text() == "some"
            assert rows[NEVER].locator("td.mark").inner_text() == "never"
            assert rows[NEVER].locator("td.mark").get_attribute("title") == "never ran"
            assert rows[COMMENT].get_attribute("class") == "line", "a comment is not marked"
            # The model's comment is text, never run.
            assert HOSTILE in rows[COMMENT].locator("td.code").inner_text()
            assert page.evaluate("window.__pwned") is None
            assert watched.refused_by_policy() == []

            decision = section.locator(f"#source-1-{BRANCH} + tr.decision")
            assert decision.locator(".decision-state").inner_text().startswith("taken both ways")
            for side in branch["taken"]:
                shown = side["inputs"][:10]
                item = decision.locator("ul.sides li", has_text=repr(side["value"]))
                hrefs = [a.get_attribute("href") for a in item.locator("a").all()]
                assert hrefs == [f"#input-{i}" for i in shown], side
            # Following a side's link lands on that input, labelled as the report labels it.
            first = branch["taken"][0]["inputs"][0]
            decision.locator(f"a[href='#input-{first}']").first.click()
            until(page, f"location.hash === '#input-{first}'", 10)
            target = page.locator(f"li#input-{first}")
            assert target.inner_text() == coverage["inputs"][first]
            assert target.evaluate("el => el.matches(':target')") is True
            nothing_clipped(page, f"version with its source at {width} px")
            page.screenshot(path=str(screenshots / f"version-source-{width}.png"), full_page=True)
