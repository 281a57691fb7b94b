"""The pages' pure parts: the report laid out (also when it is malformed or hostile), the charts, the
progress lines and the sign-in redirect. The browser tests (tests/browser) cover the pages served."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

from regctl.registry.entities import ArtifactInfo, VersionInfo
from regctl.server.charts import ErrorPoint, error_chart
from regctl.server.job_view import progress_parts
from regctl.server.page_auth import safe_next
from regctl.server.page_format import num, percent, size
from regctl.server.report_view import build_view

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def version(report: object, **changes: object) -> VersionInfo:
    base = VersionInfo(
        model="m",
        version=3,
        status="ready",
        spec={"validation": {"rtol": 1e-4, "atol": 1e-5}},
        source_sha256="a" * 64,
        weights_sha256=None,
        method="script",
        summary={"report": report},
        created_by="me",
        created_at=NOW,
        updated_at=NOW,
    )
    return replace(base, **changes)


REPORT = {
    "method": "script",
    "why": "trace was rejected",
    "battery_size": 3,
    "candidates": {
        "trace": {
            "ok": False,
            "error": "differs from eager on input 'b=2 draw 1 positive'",
            "failed_input": "b=2 draw 1 positive",
            "cases": [
                {
                    "label": "b=2 draw 0",
                    "group": "b=2",
                    "ok": True,
                    "max_abs_error": 0.0,
                    "max_rel_error": 0.0,
                    "tolerance_used": 0.0,
                },
                {
                    "label": "b=2 draw 1 positive",
                    "group": "b=2",
                    "ok": False,
                    "max_abs_error": 2.5,
                    "max_rel_error": 2.0,
                    "tolerance_used": "inf",
                },
            ],
            "warnings": [
                {
                    "message": "Converting a tensor to a Python boolean",
                    "file": "model.py",
                    "line": 11,
                    "count": 1,
                }
            ],
        },
        "script": {
            "ok": True,
            "cases": [
                {
                    "label": f"case {i}",
                    "group": "b=2",
                    "ok": True,
                    "max_abs_error": 1e-7,
                    "max_rel_error": 1e-7,
                    "tolerance_used": 0.01,
                }
                for i in range(3)
            ],
        },
    },
    "latency": {"input": "b=2", "eager_ms": 0.02, "artifact_ms": 0.04, "ratio": 2.0},
}


def test_the_view_names_the_rejected_candidate_and_the_input_that_exposed_it() -> None:
    view = build_view(version(REPORT))
    assert [c.name for c in view.candidates] == ["script", "trace"]
    (rejected,) = view.rejected
    assert rejected.failed_input == "b=2 draw 1 positive"
    assert rejected.cases[1]["tolerance_used"] == math.inf
    assert rejected.chart is not None and rejected.chart.count("<g class=") == 2
    assert len(view.battery) == 3 and all(b["ok"] for b in view.battery)
    assert view.warnings[0].where == "model.py:11" and view.warnings[0].source == "trace"
    assert view.latency_chart is not None and "TorchScript" in view.latency_chart


def test_a_malformed_report_gives_an_empty_view_instead_of_an_error() -> None:
    for report in (
        None,
        "text",
        [],
        {"candidates": "x", "latency": [1], "battery_size": "many"},
        {"candidates": {"trace": {"cases": ["x", {"label": 1, "tolerance_used": "nan"}]}}},
    ):
        view = build_view(version(report))
        assert view.battery == [] and view.latency_chart is None
        assert all(not c.chosen for c in view.candidates)


def test_hostile_labels_are_escaped_in_the_chart() -> None:
    chart = error_chart("t", [ErrorPoint("<script>x</script>", 2.0, False, "<img src=x onerror=y>")])
    assert "<script>" not in chart and "<img" not in chart
    assert "&lt;img src=x onerror=y&gt;" in chart


def test_download_links_and_fetch_lines_are_built_from_the_version_not_from_the_report() -> None:
    artifact = ArtifactInfo("torchscript", "b" * 64, 10, "file:///x", "2.13.0", "script", NOW)
    view = build_view(version({"method": "script"}, artifacts=(artifact,)))
    (download,) = view.downloads
    assert download.href == "/files/m%3A3/torchscript"
    assert download.fetch == "regctl fetch m:3 -o m-3.pt"


def test_progress_lines_give_a_stage_and_a_percentage() -> None:
    assert progress_parts("trace: battery 12/40, ~3 s left") == ("trace: battery", 30)
    assert progress_parts("eager reference 9/9") == ("eager reference", 100)
    assert progress_parts("storing artifacts") == ("storing artifacts", None)
    assert progress_parts("3/0") == ("3/0", None)
    assert progress_parts(None) == ("", None)


def test_after_signing_in_only_a_path_on_this_site_is_followed() -> None:
    assert safe_next("/versions/m%3A1") == "/versions/m%3A1"
    for hostile in ("//evil.example", "https://evil.example", "/\\evil.example", "", None, "javascript:x"):
        assert safe_next(hostile) == "/"


def test_numbers_read_as_people_write_them() -> None:
    assert num(2.5e-07) == "2.5e-07" and num(math.inf) == "∞" and num(None) == "—" and num(True) == "—"
    assert percent(0.25) == "25%" and percent(math.inf) == "∞"
    assert size(2_200) == "2.1 KB" and size(12) == "12 B" and size(None) == "—"


def test_an_aoti_section_gets_its_own_chart_and_a_third_latency_bar() -> None:
    report = {
        **REPORT,
        "aoti": {
            "requested": True,
            "ok": True,
            "latency_ms": 0.01,
            "cases": [{"label": "b=2", "ok": True, "max_abs_error": 0.0, "tolerance_used": 0.0}],
        },
    }
    view = build_view(version(report))
    assert view.aoti["ok"] is True
    assert view.aoti_chart is not None and view.aoti_chart.count("<g class=") == 1
    assert view.latency_chart is not None and "AOTInductor" in view.latency_chart
    assert build_view(version(REPORT)).aoti == {}


# -- model and registrant text on the pages: escaped, hidden characters visible, warnings bounded ------------

HOSTILE = "<script>alert(1)</script> [/x] \x1b]0;pwned\x07\x1b[2J \u202egnp.exe\u200b\ufeff"


def _render_version_page(version_info: VersionInfo) -> str:
    from regctl.server.pages import templates

    page = templates.get_template("version.html")
    return page.render(
        version=version_info,
        view=build_view(version_info),
        jobs=[],
        may_fetch=False,
        may_alias=False,
        may_submit=False,
        caller=None,
    )


def test_a_hostile_report_description_and_tags_show_as_text_on_the_version_page() -> None:
    report = {
        **REPORT,
        "why": HOSTILE,
        "model_warnings": [{"message": HOSTILE, "file": "model.py", "line": 3, "count": 2}],
    }
    html = _render_version_page(
        version(report, description=HOSTILE, tags={"team": HOSTILE}, summary={"report": report})
    )
    for char in ("\x1b", "\x07", "\u202e", "\u200b", "\ufeff"):
        assert char not in html, f"{char!r} reached the page"
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; [/x] \\x1b]0;pwned\\x07\\x1b[2J \\u202egnp.exe" in html


def test_a_report_flooded_with_warnings_shows_a_bounded_list_and_how_many_it_left_out() -> None:
    flood = [{"message": f"w{i}", "file": "model.py", "line": i, "count": 1} for i in range(150)]
    report = {**REPORT, "model_warnings": flood, "warnings_dropped": 4850}
    view = build_view(version(report))
    assert len([w for w in view.warnings if w.source == "model"]) == 100
    assert view.warnings_dropped == 4850 + 50
    assert "4900 more warnings were raised and not kept" in _render_version_page(version(report))


def test_a_forged_warnings_dropped_is_never_negative() -> None:
    assert build_view(version({**REPORT, "warnings_dropped": -7})).warnings_dropped == 0
    assert build_view(version({**REPORT, "warnings_dropped": "many"})).warnings_dropped == 0


def test_live_job_events_show_hidden_characters_as_visible_escapes() -> None:
    import asyncio
    import concurrent.futures
    import json

    from regctl.server.page_format import visible_events

    async def stream():  # type: ignore[no-untyped-def]
        yield "event: job\ndata: " + json.dumps({"progress": "trace \u202e", "error": "\x1b[2J"}) + "\n\n"
        yield ": keepalive\n\n"

    async def collect() -> list[str]:
        return [chunk async for chunk in visible_events(stream())]  # type: ignore[misc]

    # In a thread of its own: the browser tests' Playwright may leave an event loop running here.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first, keepalive = pool.submit(asyncio.run, collect()).result(timeout=30)
    data = json.loads(first.split("data: ", 1)[1])
    assert data == {"progress": "trace \\u202e", "error": "\\x1b[2J"}
    assert keepalive == ": keepalive\n\n"
