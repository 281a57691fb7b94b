"""The web pages in real headless chromium, against a real `regctl serve` that runs its own jobs.

One server and two registered models serve the whole module: `conditional` (its trace is rejected on
a battery input) and `slow` (a forward that sleeps, so a conversion lasts long enough to watch).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from regctl.local import LocalClient
from regctl.registry.access import Caller
from regctl.registry.entities import JobInfo
from regctl.registry.settings import Settings
from tests.api_server import ApiServer
from tests.browser.conftest import WIDTHS, serve, until
from tests.factories import linear_model

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
READY_S = 240


class Site:
    """The server, its direct client and a few tokens."""

    def __init__(self, server: ApiServer, direct: LocalClient) -> None:
        self.server, self.direct = server, direct
        self.url = server.url
        self.reader = direct.create_token("rita", "reader").secret
        self.limited = direct.create_token("lim", "reader", model_pattern="cond*").secret
        self.writer = direct.create_token("wes", "writer").secret


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("pages")
    settings = Settings.from_env({}, home=root / "home")
    direct = LocalClient(settings)
    server = serve(settings, root)
    try:
        info = direct.register("conditional", EXAMPLES / "conditional", description=HOSTILE)
        assert direct.wait(info.jobs[0], timeout=READY_S).state == "succeeded", server.log_text()
        yield Site(server, direct)
    finally:
        server.stop()


def signed_in(browser: Any, site: Site, secret: str, width: int = 1280) -> Any:
    """A fresh browser context at `width` px, signed in through the form with `secret`."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(f"{site.url}/login")
    page.fill("#token", secret)
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{site.url}/")
    return page


def shoot(page: Any, screenshots: Path, name: str, width: int) -> None:
    page.screenshot(path=str(screenshots / f"{name}-{width}.png"), full_page=True)


# What a reader cannot see: text cut off by its box, chart text outside its chart, a chart wider than
# the screen, and a box that scrolls sideways with no cue that it does. Returns one line per finding.
CLIPPED = """() => {
    const found = [];
    const width = document.documentElement.clientWidth;
    const shown = (el) => el.getClientRects().length > 0 && !el.closest("[hidden]");
    const blocks = "main td, main th, main h1, main h2, main h3, main p, main dd, main dt, main li, "
        + "main figcaption, main summary, main caption, header a, header span";
    for (const el of document.querySelectorAll(blocks)) {
        if (!shown(el) || el.clientWidth === 0) continue;
        const style = getComputedStyle(el);
        if (el.scrollWidth > el.clientWidth + 1 && !["auto", "scroll"].includes(style.overflowX)) {
            found.push("cut off: " + el.tagName + " " + el.textContent.trim().slice(0, 50));
        }
    }
    for (const svg of document.querySelectorAll("svg.chart")) {
        const box = svg.getBoundingClientRect();
        if (box.left < -1 || box.right > width + 1) {
            found.push("chart off-screen: " + svg.getAttribute("aria-label"));
        }
        for (const text of svg.querySelectorAll("text")) {
            const r = text.getBoundingClientRect();
            const outside = r.left < box.left - 1 || r.right > box.right + 1
                || r.top < box.top - 1 || r.bottom > box.bottom + 1;
            if (outside) {
                found.push("chart text outside its chart: " + text.textContent);
            }
        }
    }
    for (const box of document.querySelectorAll(".scroll")) {
        if (shown(box) && box.scrollWidth > box.clientWidth + 1
            && !getComputedStyle(box).backgroundImage.includes("gradient")) {
            found.push("scrolls with no cue: " + box.getAttribute("aria-label"));
        }
    }
    return found;
}"""


def nothing_clipped(page: Any, where: str) -> None:
    """No text on the page is cut off and no chart runs off the screen (CLIPPED)."""
    found = page.evaluate(CLIPPED)
    assert found == [], f"{where}: {found}"
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width, f"{where} scrolls sideways"


def inside_viewport(page: Any, locator: Any, what: str) -> None:
    """The element's box lies within the viewport's width."""
    box = locator.bounding_box()
    width = page.viewport_size["width"]
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (
        f"{what}: {box}, {width} px"
    )


def test_signing_in_keeps_the_token_in_an_httponly_strict_cookie_and_a_bad_token_is_refused(
    browser: Any, site: Site
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site.url}/versions/conditional:1")
    assert page.url.startswith(f"{site.url}/login?next="), "an anonymous visit goes to the sign-in page"

    page.fill("#token", "rc_1_not-a-real-token")
    page.click("form.login button[type=submit]")
    assert "not valid" in page.inner_text("[role=alert]")
    assert context.cookies() == []

    page.fill("#token", site.reader)
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{site.url}/versions/conditional:1")
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == "", "no script may read the token"

    # The cookie opens the pages only: the API still wants a bearer token.
    api = httpx.get(f"{site.url}/api/v1/models", cookies={cookie["name"]: cookie["value"]})
    assert api.status_code == 401

    page.click("header form.signout button")
    page.wait_for_url(f"{site.url}/login")
    assert context.cookies() == []
    context.close()


def test_the_sign_in_page_fits_both_widths(browser: Any, site: Site, screenshots: Path) -> None:
    for width in WIDTHS:
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        page.goto(f"{site.url}/login")
        nothing_clipped(page, f"sign-in at {width} px")
        shoot(page, screenshots, "login", width)
        context.close()


def test_signing_in_never_redirects_to_another_site(site: Site) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = httpx.post(f"{site.url}/login", data={"token": site.reader, "next": target})
        assert response.status_code == 303
        assert response.headers["location"] == "/", target


def test_a_version_page_names_the_input_that_exposed_the_trace_and_draws_the_error_chart(
    browser: Any, site: Site, screenshots: Path
) -> None:
    report = site.direct.version("conditional:1").summary["report"]
    trace = report["candidates"]["trace"]
    assert report["method"] == "script" and trace["ok"] is False
    for width in WIDTHS:
        page = signed_in(browser, site, site.reader, width)
        page.on("dialog", lambda dialog: dialog.dismiss())
        page.goto(f"{site.url}/")
        assert page.locator("table a", has_text="conditional").count() >= 1
        # The key columns stay on screen: the model and its newest ready version.
        inside_viewport(page, page.locator("tbody th a", has_text="conditional").first, "model name")
        inside_viewport(page, page.locator("td.ready a").first, "newest ready version")
        nothing_clipped(page, f"models at {width} px")
        shoot(page, screenshots, "models", width)

        page.click("table a:text-is('conditional')")
        page.wait_for_url(f"{site.url}/models/conditional")
        assert page.locator("tbody .badge.status-ready").count() >= 1
        nothing_clipped(page, f"model at {width} px")
        shoot(page, screenshots, "model", width)

        page.click("a[aria-label='conditional version 1']")
        page.wait_for_url(f"{site.url}/versions/conditional%3A1")
        rejected = page.locator("article.candidate.rejected")
        assert rejected.locator("h3").inner_text() == "trace: rejected"
        assert rejected.locator(".failed-input").inner_text() == trace["failed_input"]
        assert page.locator("article.candidate.kept h3").inner_text() == "script: kept"
        # The chart is drawn: one mark per input the trace ran (its deciding inputs, all run in
        # LibTorch), a failing mark for each one over the tolerance.
        marks = rejected.locator("svg.chart g")
        assert marks.count() == len(trace["cases"]) >= 1
        failing = sum(1 for c in trace["cases"] if not c["ok"])
        assert rejected.locator("svg.chart g.fail").count() == failing >= 1
        # The failing marks are on screen at every width, without scrolling anything sideways.
        inside_viewport(
            page, rejected.locator("svg.chart g.fail").first, f"the trace's failing mark at {width} px"
        )
        inside_viewport(page, rejected.locator("svg.chart"), f"the trace's chart at {width} px")
        assert page.locator("article.candidate.kept svg.chart g.pass").count() == report["battery_size"]
        assert "model.py:11" in page.inner_text("#warnings-heading + div table")
        assert page.locator("table.battery tbody tr").count() == report["battery_size"]
        assert page.locator("svg.chart[aria-label^='median latency']").count() == 1
        # The model's own text is shown as text, never run.
        assert HOSTILE in page.inner_text("main")
        assert page.evaluate("window.__pwned") is None
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "no sideways scrolling"
        inside_viewport(
            page, page.locator("svg.bar-chart text").first, f"the eager latency label at {width} px"
        )
        assert page.locator("table.battery thead th").all_inner_texts()[:2] == ["Input", "Result"]
        nothing_clipped(page, f"version at {width} px")
        shoot(page, screenshots, "version", width)
        page.context.close()


def test_the_artifact_link_downloads_the_verified_torchscript(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    page = signed_in(browser, site, site.reader)
    page.goto(f"{site.url}/versions/conditional:1")
    expected = next(a for a in site.direct.version("conditional:1").artifacts if a.kind == "torchscript")
    assert expected.sha256 in page.inner_text("#artifacts-heading + div table")
    assert "regctl fetch conditional:1 -o conditional-1.pt" in page.inner_text("pre.copy")
    with page.expect_download() as caught:
        page.click("a[aria-label='Download the torchscript artifact of conditional:1']")
    target = tmp_path / "model.pt"
    caught.value.save_as(target)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == expected.sha256
    page.context.close()


def test_a_running_job_shows_its_stage_and_percentage_changing_without_a_reload(
    browser: Any, site: Site, screenshots: Path, tmp_path: Path
) -> None:
    # A forward that sleeps makes every battery input take a moment: many progress lines to watch.
    slow = linear_model(tmp_path / "slow", forward="time.sleep(0.4)")
    spec = slow / "regctl.toml"
    spec.write_text(spec.read_text().replace("samples = 1", "samples = 3"))
    info = site.direct.register("slow", slow)
    job: JobInfo = info.jobs[0]
    page = signed_in(browser, site, site.writer)
    page.goto(f"{site.url}/jobs/{job.id}")
    page.evaluate(
        """() => {
        window.__samePage = true;
        window.__stages = new Set();
        window.__percents = new Set();
        const live = document.querySelector('section.live');
        const note = () => {
            window.__stages.add(live.querySelector('[data-field=stage]').textContent);
            window.__percents.add(live.querySelector('[data-field=percent]').textContent);
        };
        note();
        new MutationObserver(note).observe(live, {subtree: true, childList: true, characterData: true});
    }"""
    )
    until(page, "window.__stages.size >= 3 && window.__percents.size >= 3", 120)
    shoot(page, screenshots, "job-running", 1280)
    # While it runs, at phone width: its bar and its stages so far, nothing cut off.
    page.set_viewport_size({"width": 390, "height": 900})
    assert page.locator("section.live progress").is_visible()
    assert page.locator("ol.timeline li").count() >= 2
    nothing_clipped(page, "running job at 390 px")
    shoot(page, screenshots, "job-running", 390)
    page.set_viewport_size({"width": 1280, "height": 900})
    until(page, "document.querySelector('section.live').dataset.live === 'ended'", READY_S)
    assert page.evaluate("window.__samePage") is True, "the page must update in place, not reload"
    assert page.inner_text("section.live [data-field=state-cell] .badge") == "succeeded"
    assert page.inner_text("section.live [data-field=started_at]").endswith(" UTC"), "the facts update too"
    assert page.inner_text("section.live [data-field=worker]") != "—"
    percents = page.evaluate("Array.from(window.__percents)")
    assert any(p.endswith("%") and p not in ("0%", "100%") for p in percents), percents
    assert site.direct.job(job.id).state == "succeeded"
    # Ended in place: no bar and no cancel line, and its stages with their lengths, as a reload shows them.
    assert page.locator("section.live progress:visible").count() == 0
    assert page.locator("[data-write]:visible").count() == 0, "nothing left to cancel"
    live_stages = page.locator("ol.timeline li .stage-name").all_inner_texts()
    assert live_stages[-1] == "done" and len(live_stages) >= 3, live_stages
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        shoot(page, screenshots, "job", width)
        page.goto(f"{site.url}/jobs")
        assert page.locator(f"tr[data-job='{job.id}'] .badge").inner_text() == "succeeded"
        assert page.locator(f"tr[data-job='{job.id}'] progress:visible").count() == 0
        nothing_clipped(page, f"jobs at {width} px")
        shoot(page, screenshots, "jobs", width)
        page.goto(f"{site.url}/jobs/{job.id}")
        assert page.locator("ol.timeline li .stage-name").all_inner_texts() == live_stages
        assert len(re.findall(r"\bdone\b", page.inner_text("main"))) == 1, "done appears once"
        nothing_clipped(page, f"job at {width} px")
    page.context.close()


def test_a_failed_job_shows_its_outcome_and_stages_without_a_progress_bar(
    browser: Any, site: Site, screenshots: Path, tmp_path: Path
) -> None:
    broken = linear_model(tmp_path / "broken", forward="raise RuntimeError('boom')")
    job = site.direct.wait(site.direct.register("broken", broken).jobs[0], timeout=READY_S)
    assert job.state == "failed", job
    for width in WIDTHS:
        page = signed_in(browser, site, site.reader, width)
        page.goto(f"{site.url}/jobs/{job.id}")
        assert page.inner_text("section.live [data-field=state-cell] .badge") == "failed"
        assert page.locator("main progress").count() == 0, "a finished job shows no progress bar"
        stages = page.locator("ol.timeline li")
        assert stages.count() >= 2 and stages.last.get_attribute("class") == "final"
        assert stages.last.locator(".stage-name").inner_text() == "failed"
        lengths = page.locator("ol.timeline li:not(.final) .stage-length").all_inner_texts()
        assert lengths and all(t.endswith(" s") for t in lengths), lengths
        nothing_clipped(page, f"failed job at {width} px")
        shoot(page, screenshots, "job-failed", width)
        page.goto(f"{site.url}/versions/broken:1")
        assert page.locator("h1 .badge").inner_text() == "failed"
        page.context.close()


def test_the_favicon_is_served_and_linked(browser: Any, site: Site) -> None:
    icon = httpx.get(f"{site.url}/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg")
    page = signed_in(browser, site, site.reader)
    assert page.locator("link[rel=icon]").get_attribute("href") == "/static/favicon.svg"
    assert page.request.get(f"{site.url}/static/favicon.svg").ok
    page.context.close()


def test_a_reader_sees_no_write_controls_and_a_writer_sees_the_cli_lines(browser: Any, site: Site) -> None:
    paths = ["/", "/models/conditional", "/versions/conditional:1", "/jobs", "/jobs/1"]
    page = signed_in(browser, site, site.reader)
    for path in paths:
        page.goto(f"{site.url}{path}")
        assert page.locator("[data-write]").count() == 0, path
        posting = page.locator("form[method=post]")
        assert posting.count() == 1 and posting.get_attribute("action") == "/logout", path
        for form in page.locator("form").all():
            assert form.get_attribute("method") in ("get", "post"), path
        assert page.locator("input[type=file], textarea").count() == 0, path
    page.context.close()

    page = signed_in(browser, site, site.writer)
    page.goto(f"{site.url}/versions/conditional:1")
    assert "regctl alias set conditional@staging 1" in page.inner_text("[data-write]")
    assert page.locator("form[method=post]").count() == 1, "a writer gets CLI lines, not buttons"
    page.context.close()


def test_a_limited_token_sees_only_its_models(browser: Any, site: Site, tmp_path: Path) -> None:
    site.direct.register("other", linear_model(tmp_path / "other"), convert=False)
    page = signed_in(browser, site, site.limited)
    page.goto(f"{site.url}/")
    names = page.locator("tbody th a").all_inner_texts()
    assert "conditional" in names and "other" not in names
    response = page.goto(f"{site.url}/models/other")
    assert response is not None and response.status == 403
    assert "limited to models matching 'cond*'" in page.inner_text("[role=alert]")
    page.context.close()


def test_pages_send_a_content_security_policy_and_refuse_framing(site: Site) -> None:
    login = httpx.post(f"{site.url}/login", data={"token": site.reader, "next": "/"})
    response = httpx.get(f"{site.url}/versions/conditional:1", cookies=login.cookies)
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "&lt;script&gt;window.__pwned" in response.text and "<script>window.__pwned" not in response.text


def test_after_a_validate_job_each_report_downloads_as_itself(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    # Last in the module: it adds a validation to conditional:1, which the tests above read as converted.
    job = site.direct.wait(site.direct.submit("conditional:1", "validate"), timeout=READY_S)
    assert job.state == "succeeded", job
    reports = {a.kind: a.sha256 for a in site.direct.version("conditional:1").artifacts if "report" in a.kind}
    assert set(reports) == {"conversion-report", "validation-report"}
    page = signed_in(browser, site, site.reader, 390)
    page.goto(f"{site.url}/versions/conditional:1")
    for kind, sha256 in reports.items():
        with page.expect_download() as caught:
            page.click(f"a[aria-label='Download the {kind} artifact of conditional:1']")
        assert caught.value.suggested_filename == f"conditional-1.{kind}.json"
        target = tmp_path / f"{kind}.json"
        caught.value.save_as(target)
        assert hashlib.sha256(target.read_bytes()).hexdigest() == sha256, kind
    assert page.inner_text("#validation-heading + p").startswith("Passed")
    assert "conversion-report" in page.inner_text(".report-source")
    nothing_clipped(page, "version with both reports at 390 px")
    page.context.close()


def test_a_pending_promotion_request_is_listed_read_only_at_both_widths(
    browser: Any, site: Site, screenshots: Path
) -> None:
    admin = LocalClient(site.direct.settings, Caller("release-bot", "admin", None, "test"))
    filed = admin.request_alias("conditional@prod", 1, "first release of the conditional model", force=True)
    try:
        for width in WIDTHS:
            page = signed_in(browser, site, site.reader, width)
            page.goto(f"{site.url}/models/conditional")
            section = page.locator("section[aria-labelledby=requests-heading]")
            text = section.inner_text()
            assert "first release of the conditional model" in text and "release-bot" in text
            assert "overrides the promotion policy" in text
            assert section.locator("form, button, input, [data-write]").count() == 0, "read-only"
            nothing_clipped(page, f"a model page with a pending request at {width} px")
            shoot(page, screenshots, "model-request", width)
            page.context.close()
    finally:
        admin.reject_request(filed.id)
