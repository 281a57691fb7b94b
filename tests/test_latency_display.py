"""Latency as people read it (issue 25): ratios at two significant figures, never without their
spread, "noisy" when no difference can be claimed; on the version page and in `versions show`."""

from __future__ import annotations

import html as markup
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from regctl.cli.app import cli
from regctl.cli.catalog import _latency_line
from regctl.cli.main import main as _main  # noqa: F401  (registers every command)
from regctl.registry.figures import ratio_text, significant_text, two_significant
from regctl.registry.settings import Settings
from tests.test_pages import REPORT, _render_version_page, version

LINEAR = Path(__file__).resolve().parents[1] / "examples" / "linear"
SECTION = {
    "input": "example batch=4",
    "eager_ms": 0.26,
    "artifact_ms": 0.2299,
    "eager": {"median_ms": 0.26, "q1_ms": 0.25, "q3_ms": 0.28, "runs": 400},
    "artifact": {"median_ms": 0.2299, "q1_ms": 0.22, "q3_ms": 0.25, "runs": 450},
    "ratio": 0.88,
    "ratio_range": [0.79, 1.0],
    "noisy": True,
    "measured_by": "the candidate builder (model side): eager and the artifact interleaved in one process",
    "runs": {"eager": 400, "artifact": 450},
}


@pytest.mark.parametrize(
    ("value", "rounded", "text"),
    [
        (0.0046297, 0.0046, "0.0046"),
        (0.884, 0.88, "0.88"),
        (1.0, 1.0, "1.0"),
        (9.96, 10.0, "10"),
        (123.4, 120.0, "120"),
        (0.0, 0.0, "0.0"),
    ],
)
def test_two_significant_figures(value: float, rounded: float, text: str) -> None:
    assert two_significant(value) == pytest.approx(rounded) and significant_text(value) == text


def test_a_ratio_is_shown_with_its_spread_and_noisy_or_says_its_spread_is_unknown() -> None:
    assert ratio_text(SECTION) == "0.88× eager's time (0.79–1.0, noisy)"
    assert ratio_text({**SECTION, "noisy": False}) == "0.88× eager's time (0.79–1.0)"
    # a report from before the spread was measured: its unrounded ratio, rounded, and said so
    assert ratio_text({"ratio": 0.004631}) == "0.0046× eager's time (spread not measured)"
    assert ratio_text({"ratio": None}) is None and ratio_text(None) is None
    assert ratio_text({"ratio": math.nan}) is None


def test_the_version_page_shows_each_range_the_rounded_ratio_with_its_spread_and_noisy() -> None:
    report = {**REPORT, "latency": SECTION}
    html = markup.unescape(_render_version_page(version(report)))
    paragraph = next(line for line in html.splitlines() if "the artifact takes" in line)
    assert "0.88× eager's time (0.79–1.0, noisy)" in paragraph
    assert "interquartile range 0.25–0.28" in paragraph and "(0.22–0.25)" in paragraph
    assert "Noisy" in paragraph and "the candidate builder (model side)" in paragraph
    old = markup.unescape(
        _render_version_page(version({**REPORT, "latency": {**REPORT["latency"], "ratio": 0.004631}}))
    )
    assert "0.0046× eager's time (spread not measured)" in old and "0.004631" not in old


def test_the_validation_summary_on_the_page_shows_the_ratio_with_its_spread() -> None:
    summary = {
        "report": REPORT,
        "validated": True,
        "validation": {"battery_size": 12, "latency_ratio": 0.88, "latency": ratio_text(SECTION)},
    }
    html = markup.unescape(_render_version_page(version(REPORT, summary=summary)))
    assert "0.88× eager's time (0.79–1.0, noisy)" in html


def test_the_cli_line_never_shows_a_ratio_alone() -> None:
    assert _latency_line({"latency": ratio_text(SECTION), "latency_ratio": 0.88}) == ratio_text(SECTION)
    assert _latency_line({"latency_ratio": 0.0046297}) == "0.0046× eager's time (spread not measured)"
    assert _latency_line({}) is None


@pytest.mark.slow
def test_versions_show_prints_the_measured_ratio_rounded_with_its_spread(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    env = {
        "REGCTL_HOME": str(sqlite_settings.home),
        "REGCTL_DATABASE_URL": "",
        "REGCTL_BROKER_URL": "",
        "REGCTL_ARTIFACT_STORE": "",
        "REGCTL_SANDBOX": "auto",
    }
    runner = CliRunner()
    directory = shutil.copytree(LINEAR, tmp_path / "linear")
    registered = runner.invoke(cli, ["register", "lin", str(directory), "--wait"], env=env)
    assert registered.exit_code == 0, registered.output
    text = runner.invoke(cli, ["versions", "show", "lin:1"], env=env).stdout
    (line,) = [line for line in text.splitlines() if "eager's time" in line]
    assert line.split()[0] == "latency" and "latency_ratio" not in text
    ratio, spread = line.split()[1], line[line.index("(") + 1 : line.index(")")]
    assert ratio.endswith("×") and len(ratio.rstrip("×").replace(".", "").lstrip("0")) <= 2, line
    assert "–" in spread, line  # a range, in the sandboxed job's own figures
