"""The pages' pure parts: the report laid out (also when it is malformed or hostile), the charts, the
progress lines and the sign-in redirect. The browser tests (tests/browser) cover the pages served."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from regctl.registry.entities import ArtifactInfo, JobInfo, VersionInfo
from regctl.registry.timeline import timeline
from regctl.server.charts import WIDTH, Bar, ErrorPoint, bar_chart, error_chart
from regctl.server.job_view import job_row, progress_parts
from regctl.server.page_auth import safe_next
from regctl.server.page_format import num, percent, size
from regctl.server.report_view import DEPLOYABLE, Segment, build_view, segments

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


def test_executorch_and_onnx_get_a_section_a_chart_a_latency_bar_and_a_fetch_line() -> None:
    case = {"label": "b=2", "ok": True, "max_abs_error": 0.0, "tolerance_used": 0.0}
    report = {
        **REPORT,
        "executorch": {"requested": True, "ok": True, "latency_ms": 0.02, "cases": [case], "runtime": "et"},
        "onnx": {
            "requested": True,
            "ok": False,
            "error": "the ONNX model differs from eager on input 'b=2': <b>1e-3</b>",
            "failed_input": "b=2",
            "latency_ms": 0.5,  # measured by nobody: a model that failed its proof gets no bar
            "cases": [{**case, "ok": False, "tolerance_used": 3.0}],
        },
    }
    artifacts = tuple(
        ArtifactInfo(kind, sha * 64, 10, "file:///x", "2.13.0", kind, NOW)
        for kind, sha in (("torchscript", "a"), ("executorch", "b"))
    )
    info = version(report, artifacts=artifacts)
    view = build_view(info)
    assert [(f.fmt, f.section["ok"]) for f in view.formats] == [("executorch", True), ("onnx", False)]
    assert all(f.chart is not None and f.chart.count("<g class=") == 1 for f in view.formats)
    assert view.latency_chart is not None
    assert "ExecuTorch" in view.latency_chart and "ONNX Runtime" not in view.latency_chart
    assert [d.fetch for d in view.downloads] == [
        "regctl fetch m:3 -o m-3.pt",
        "regctl fetch m:3 -o m-3.pte --format executorch",
    ]
    page = _render_version_page(info)
    assert "ExecuTorch program" in page and "ONNX model" in page
    assert "&lt;b&gt;1e-3&lt;/b&gt;" in page and "<b>1e-3</b>" not in page
    assert "regctl fetch m:3 -o m-3.pte --format executorch" in page
    assert build_view(version(REPORT)).formats == []


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
        deployable=DEPLOYABLE,
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


# -- reports that read right, and pages at 390 px ------------------------------------------------------


def _marks(chart: str) -> list[str]:
    return re.findall(r'<g class="(?:pass|fail)[^"]*">.*?</g>', chart)


def test_a_zero_error_sits_on_the_line_labelled_zero_below_the_log_scale() -> None:
    chart = error_chart("t", [ErrorPoint("exact", 0.0, True, "exact"), ErrorPoint("small", 1e-3, True, "s")])
    zero_label = re.search(r'<text[^>]*y="([\d.]+)"[^>]*class="tick zero"[^>]*>0</text>', chart)
    assert zero_label is not None, "the zero line is labelled"
    exact, small = _marks(chart)
    exact_y = float(re.search(r'cy="([\d.]+)"', exact).group(1))  # type: ignore[union-attr]
    small_y = float(re.search(r'cy="([\d.]+)"', small).group(1))  # type: ignore[union-attr]
    assert abs(exact_y - (float(zero_label.group(1)) - 4)) < 0.2, "the exact match is drawn on zero"
    assert small_y < exact_y - 20, "the log scale lies above the zero line, apart from it"
    assert "clamped" not in exact and "10⁻⁶" in chart


def test_an_off_scale_mark_is_clamped_to_the_edge_with_its_true_value_beside_it() -> None:
    points = [
        ErrorPoint("ok", 0.5, True, "ok"),
        ErrorPoint("far over", 3400.2, False, "far over"),
        ErrorPoint("raised", None, False, "raised"),
        ErrorPoint("not finite", math.inf, False, "inf"),
        ErrorPoint("tiny", 1e-15, True, "tiny"),
    ]
    chart = error_chart("t", points)
    ok, over, raised, infinite, tiny = _marks(chart)
    assert "clamped" not in ok
    assert 'class="fail clamped"' in over and "3,400 × tolerance" in over
    assert "raised" in raised and "∞ × tolerance" in infinite
    assert "1e-15 × tolerance" in tiny
    assert "10⁻¹²" in chart, "the scale reaches down to the smallest error it can show"
    # every mark and every label lies inside the drawing
    for x in re.findall(r'(?:cx|x)="(-?[\d.]+)"', chart):
        assert 0 <= float(x) <= WIDTH, x
    for label in re.finditer(r'<text x="([\d.]+)"[^>]*text-anchor="(start|end)"[^>]*>([^<]*)</text>', chart):
        x, anchor, text = float(label.group(1)), label.group(2), label.group(3)
        extent = len(text) * 0.62 * 12  # what the chart reserves per character
        assert (x + extent <= WIDTH + 1) if anchor == "start" else (x - extent >= -1), text


def test_charts_scale_to_their_box_and_bar_labels_sit_above_their_bars() -> None:
    chart = bar_chart("latency", [Bar("eager PyTorch", 12.5), Bar("TorchScript unoptimized", 0.04)])
    assert f'viewBox="0 0 {WIDTH} ' in chart and "width=" not in chart.split(">")[0]
    labels = re.findall(r'<text x="([\d.]+)"[^>]*text-anchor="start"[^>]*>([^<]*)</text>', chart)
    assert labels == [("0.0", "eager PyTorch: 12.5 ms"), ("0.0", "TorchScript unoptimized: 0.04 ms")]
    css = (Path(__file__).resolve().parents[1] / "server" / "static" / "regctl.css").read_text()
    rule = re.search(r"svg\.chart \{([^}]*)\}", css).group(1)  # type: ignore[union-attr]
    assert "width: 100%" in rule and "min-width" not in rule


def test_torch_notices_are_grouped_apart_from_the_model_warnings() -> None:
    notice = "`torch.jit.script` is deprecated. Please switch to `torch.compile` or `torch.export`."
    report = {
        **REPORT,
        "torch_warnings": [{"message": notice, "file": "torch/jit/_script.py", "line": 1, "count": 5}],
        "model_warnings": [{"message": "mine", "file": "model.py", "line": 3, "count": 1}],
    }
    view = build_view(version(report))
    assert [w.source for w in view.warnings] == ["trace", "model"]
    assert [w.message for w in view.torch_warnings] == [notice]
    html = _render_version_page(version(report))
    details = html[html.index('<details class="torch-notices">') : html.index("</details>")]
    assert "1 notice from torch itself (5 raised)" in details
    assert "<code>torch.jit.script</code> is deprecated" in details and "`" not in details
    table = html[
        html.index('<table class="warnings">') : html.index("</table>", html.index('class="warnings"'))
    ]
    assert "deprecated" not in table and "mine" in table
    assert segments("a `b` c `d") == [Segment("a ", False), Segment("b", True), Segment(" c `d", False)]


def test_the_battery_table_shows_the_input_once() -> None:
    html = _render_version_page(version(REPORT))
    battery = html[html.index('<table class="battery">') :]
    battery = battery[: battery.index("</table>")]
    assert "Shapes" not in battery
    assert re.findall(r'<th scope="col">([^<]*)</th>', battery) == [
        "Input",
        "Result",
        "Tolerance used",
        "Max abs error",
        "Max rel error",
    ]
    assert battery.count(">b=2<") == 0, "the group is not repeated beside the input's label"


def test_both_reports_get_their_own_download_link() -> None:
    artifacts = tuple(
        ArtifactInfo(kind, sha * 64, 10, "file:///x", "2.13.0", None, NOW)
        for kind, sha in (("conversion-report", "c"), ("validation-report", "d"))
    )
    view = build_view(version({"method": "script"}, artifacts=artifacts))
    assert [(d.kind, d.href) for d in view.downloads] == [
        ("conversion-report", "/files/m%3A3/conversion-report"),
        ("validation-report", "/files/m%3A3/validation-report"),
    ]
    fetch = "regctl fetch m:3 -o m-3.validation-report.json --kind validation-report"
    assert view.downloads[1].fetch == fetch


def _job(state: str, progress: str, stages: tuple[dict[str, str], ...]) -> JobInfo:
    return JobInfo(
        id=7,
        model="m",
        version=1,
        kind="convert",
        state=state,
        queue="cpu",
        method="auto",
        attempts=1,
        max_attempts=3,
        worker="host:1",
        progress=progress,
        error="boom" if state == "failed" else None,
        result=None,
        cancel_requested=False,
        heartbeat_at=NOW,
        created_at=NOW,
        published_at=NOW,
        started_at=NOW,
        finished_at=None if state == "running" else NOW.replace(minute=2),
        stages=stages,
    )


STAGES = (
    {"stage": "attempt 1 started", "at": "2026-11-30T00:00:00+00:00"},
    {"stage": "trace", "at": "2026-11-30T00:00:04+00:00"},
    {"stage": "failed", "at": "2026-11-30T00:00:34.500000+00:00"},
    {"stage": "", "at": "garbage"},
)


def _render_job_page(job: JobInfo) -> str:
    from regctl.server.pages import templates

    return templates.get_template("job.html").render(job=job_row(job), may_cancel=False, caller=None)


def test_a_finished_job_shows_no_progress_bar_and_a_timeline_of_its_stages() -> None:
    failed = _job("failed", "trace: battery 3/20", STAGES)
    row = job_row(failed)
    assert row["percent"] is None and row["stage"] is None
    assert [(s["stage"], s["seconds"], s["final"]) for s in timeline(failed)] == [
        ("attempt 1 started", 4.0, False),
        ("trace", 30.5, False),
        ("failed", None, True),
    ]
    html = _render_job_page(failed)
    assert "<progress" not in html and "15%" not in html
    listed = html[html.index('<ol class="timeline"') : html.index("</ol>")]
    assert "4 s" in listed and "30.5 s" in listed and "00:00:04 UTC" in listed

    done = _render_job_page(
        _job("succeeded", "done", ({"stage": "done", "at": "2026-11-30T00:01:00+00:00"},))
    )
    assert len(re.findall(r">\s*done\s*<", done)) == 1, "done appears once"

    running = _render_job_page(_job("running", "trace: battery 3/20", STAGES[:2]))
    assert '<progress max="100" data-field="bar" value="15"' in running
    assert "running" in running[running.index('<ol class="timeline"') :]


def test_the_base_page_links_the_favicon_and_the_favicon_is_an_svg() -> None:
    from regctl.server.pages import HERE, templates

    html = templates.get_template("login.html").render(caller=None, next="/", error=None)
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
    assert (HERE / "static" / "favicon.svg").read_text().startswith("<svg")


def test_each_candidate_says_which_inputs_it_ran_and_in_which_runtime() -> None:
    candidates = {
        "script": {"ok": True, "runtime": "libtorch", "judged_on": "battery", "inputs_run": 14},
        "trace": {
            "ok": True,
            "runtime": "libtorch",
            "judged_on": "deciding inputs",
            "inputs_run": 3,
            "judged_note": "trace also matched on the 3 deciding inputs; not judged further because "
            "script was kept",
        },
    }
    view = build_view(version({**REPORT, "method": "script", "candidates": candidates}))
    ran = {c.name: c.ran for c in view.candidates}
    assert (
        ran["script"]
        == "Ran 14 inputs (the whole battery) in LibTorch (C++), then its smallest input in Python"
    )
    assert ran["trace"].startswith("Ran 3 inputs (the deciding inputs) in LibTorch (C++), then its smallest")
    assert ran["trace"].endswith("not judged further because script was kept")
    python = {"ok": True, "runtime": "python", "judged_on": "battery", "inputs_run": 14, "runtime_note": "x"}
    view = build_view(version({**REPORT, "method": "script", "candidates": {"script": python}}))
    assert view.candidates[0].ran == "Ran 14 inputs (the whole battery) in Python: x"
    old = build_view(version({**REPORT, "candidates": {"script": {"ok": True, "runtime": True}}}))
    assert old.candidates[0].ran is None


def test_a_candidate_held_back_reads_not_run_with_why_not_rejected() -> None:
    note = "trace was not compiled or run because script compiled first and was kept: ..."
    held = {"ok": False, "error": None, "judged_on": "not run", "inputs_run": 0, "judged_note": note}
    script = {"ok": True, "runtime": "libtorch", "judged_on": "battery", "inputs_run": 14}
    info = version({**REPORT, "method": "script", "candidates": {"script": script, "trace": held}})
    trace = next(c for c in build_view(info).candidates if c.name == "trace")
    assert trace.not_run and not trace.ok and trace.ran == note
    html = _render_version_page(info)
    assert '<h3 id="cand-trace">trace: not run</h3>' in html
    assert "it did not match eager" not in html and 'class="candidate not-run"' in html
