"""Text a model or a registrant controls is shown as text: never markup, never a hidden character.

The job errors here are recorded straight into a real registry (what a hostile model's failure
leaves behind), then read through the real CLI, plain and `--json`.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from regctl.cli.main import main as _main  # noqa: F401  (registers every command)
from regctl.registry.errors import InvalidInput
from regctl.registry.jobs import create_job
from regctl.registry.lineage import check_description, check_tags
from regctl.registry.outcomes import record_failure
from regctl.registry.refs import parse_ref
from regctl.registry.settings import Settings
from regctl.registry.text import HIDDEN_CATEGORIES, first_hidden, is_hidden, visible, visible_data
from tests.conftest import cli_invoker

# No NUL: PostgreSQL refuses it in text, and the supervisor's one_line escapes it before it is stored.
HOSTILE = "[/x] [bold red]boom\x1b]0;pwned\x07\x1b[2J \u202egnp.exe\u200b\ufeff\x7f\x9b verified OK"
HIDDEN = ("\x1b", "\x07", "\x7f", "\x9b", "\u202e", "\u200b", "\ufeff")


@pytest.fixture
def run(settings: Settings):  # type: ignore[no-untyped-def]
    """Invoke regctl against the test registry; returns the click Result (stdout and stderr apart)."""
    return cli_invoker(settings, COLUMNS="400")  # wide enough that no table cell wraps the text under test


def _failed_job(run, settings: Settings, model_dir: Path, error: str) -> int:  # type: ignore[no-untyped-def]
    assert run("register", "victim", str(model_dir), "--no-convert").exit_code == 0
    job = create_job(settings, parse_ref("victim:1"), "convert")
    record_failure(settings, job.id, None, error, summary={"why": error})
    return job.id


def _assert_shown_as_text(output: str) -> None:
    for char in HIDDEN:
        assert char not in output, f"{char!r} reached the terminal"
    assert "[/x] [bold red]boom" in output  # the markup is shown literally, not interpreted
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in output and "\\u202egnp.exe" in output


# -- the one rule -----------------------------------------------------------------------------------------


def test_hidden_characters_become_visible_escapes_and_markup_stays_as_given() -> None:
    assert visible(HOSTILE, multiline=False) == (
        "[/x] [bold red]boom\\x1b]0;pwned\\x07\\x1b[2J \\u202egnp.exe\\u200b\\ufeff\\x7f\\x9b verified OK"
    )
    assert visible("nul\x00") == "nul\\x00"
    assert visible("line 1\n\tline 2\r") == "line 1\n\tline 2\\x0d"
    assert visible("line 1\n\tline 2", multiline=False) == "line 1\\x0a\\x09line 2"
    assert visible("\U000e0041\ud800\u2028\u0085") == "\\U000e0041\\ud800\\u2028\\x85"
    assert visible("héllo wörld · ✓ 模型 café\u00a0") == "héllo wörld · ✓ 模型 café\u00a0"
    assert visible(visible(HOSTILE)) == visible(HOSTILE)  # idempotent


@pytest.mark.parametrize(
    "char", ["\u200e", "\u200f", "\u061c", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))]
)
def test_every_bidi_mark_override_and_isolate_is_hidden(char: str) -> None:
    assert is_hidden(char) and visible(char) == f"\\u{ord(char):04x}"


def test_the_rule_is_exactly_the_unicode_categories_it_names() -> None:
    for code in range(0x110000):
        char = chr(code)
        assert is_hidden(char) == (unicodedata.category(char) in HIDDEN_CATEGORIES), hex(code)


def test_visible_data_escapes_every_string_of_a_nested_report() -> None:
    report = {"why\u202e": HOSTILE, "warnings": [{"message": "a\x1bb", "count": 2}], "ok": False}
    assert visible_data(report) == {
        "why\\u202e": visible(HOSTILE),
        "warnings": [{"message": "a\\x1bb", "count": 2}],
        "ok": False,
    }


# -- the CLI shows a hostile job error as text ------------------------------------------------------------


def test_jobs_list_jobs_show_and_versions_show_print_a_hostile_error_as_text(  # type: ignore[no-untyped-def]
    run, settings: Settings, model_dir: Path
) -> None:
    job_id = _failed_job(run, settings, model_dir, HOSTILE + "\nTraceback line two")
    for args in (("jobs", "list"), ("jobs", "show", str(job_id)), ("versions", "show", "victim:1")):
        result = run(*args)
        assert result.exit_code == 0, (args, result.output)
        _assert_shown_as_text(result.stdout)
        assert result.stderr == ""


def test_json_output_keeps_the_stored_error_exactly(run, settings: Settings, model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    job_id = _failed_job(run, settings, model_dir, HOSTILE)
    listed = run("jobs", "list", "--json")
    shown = run("jobs", "show", str(job_id), "--json")
    version = run("versions", "show", "victim:1", "--json")
    for result in (listed, shown, version):
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.stdout and "\u202e" not in result.stdout  # JSON escapes them
    assert json.loads(listed.stdout)[0]["error"] == HOSTILE
    assert json.loads(shown.stdout)["error"] == HOSTILE
    assert json.loads(version.stdout)["summary"]["why"] == HOSTILE


def test_jobs_watch_reports_a_hostile_failure_on_one_clean_line(  # type: ignore[no-untyped-def]
    run, settings: Settings, model_dir: Path
) -> None:
    job_id = _failed_job(run, settings, model_dir, HOSTILE + "\nsecond line")
    result = run("jobs", "watch", str(job_id))
    assert result.exit_code == 1
    _assert_shown_as_text(result.stderr)
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "second line" in error_lines[0]


def test_markup_in_a_description_and_tags_is_shown_literally(run, model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    registered = run(
        "register", "victim", str(model_dir), "--no-convert",
        "--description", "[/x] [bold red]desc", "--tag", "team=[/x][link=file:///etc]t",
    )  # fmt: skip
    assert registered.exit_code == 0, registered.output
    assert run("versions", "tag", "victim:1", "owner=[/bold]o").exit_code == 0
    for args in (("versions", "show", "victim:1"), ("models", "list"), ("models", "show", "victim")):
        result = run(*args)
        assert result.exit_code == 0, (args, result.output)
    shown = run("versions", "show", "victim:1").stdout
    assert "[/x] [bold red]desc" in shown and "team=[/x][link=file:///etc]t" in shown and "[/bold]o" in shown


# -- registration refuses hidden characters in descriptions and tags --------------------------------------


def _models(run) -> list[str]:  # type: ignore[no-untyped-def]
    return [m["name"] for m in json.loads(run("models", "list", "--json").stdout)]


@pytest.mark.parametrize(
    "option",
    [
        ("--description", "a \u202eevil"),
        ("--description", "title\x1b]0;x\x07"),
        ("--description", "zero\u200bwidth"),
        ("--description", "two\nlines"),
        ("--tag", "team=v\u2066ision"),
        ("--tag", "team=\x1b[2J"),
        ("--tag", "team=a\ufeff"),
        ("--tag", "te\u202eam=x"),
    ],
)
def test_registration_refuses_hidden_characters_with_exit_2_and_writes_nothing(  # type: ignore[no-untyped-def]
    run, settings: Settings, model_dir: Path, option: tuple[str, str]
) -> None:
    assert run("register", "first", str(model_dir), "--no-convert").exit_code == 0
    result = run("register", "victim", str(model_dir), "--no-convert", *option)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert not any(char in result.stderr for char in ("\x1b", "\u202e", "\u200b", "\ufeff", "\u2066"))
    assert "\\u" in lines[0] or "\\x" in lines[0] or "hidden" in lines[0] or "not valid" in lines[0]
    assert _models(run) == ["first"]


@pytest.mark.parametrize("pair", ["team=v\u202eision", "team=\x07", "team=a\u200db", "t\u2069=x"])
def test_a_tag_edit_refuses_hidden_characters_with_exit_2_and_changes_nothing(  # type: ignore[no-untyped-def]
    run, model_dir: Path, pair: str
) -> None:
    assert run("register", "victim", str(model_dir), "--no-convert", "--tag", "team=vision").exit_code == 0
    result = run("versions", "tag", "victim:1", pair)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert json.loads(run("versions", "show", "victim:1", "--json").stdout)["tags"] == {"team": "vision"}


def test_the_registry_checks_name_the_hidden_character_and_its_position() -> None:
    with pytest.raises(InvalidInput, match=r"description has a hidden character \(\\u202e at position 2\)"):
        check_description("ab\u202ecd")
    with pytest.raises(InvalidInput, match=r"printable .* \(it has \\x1b at position 0\)"):
        check_tags({"team": "\x1b[31m"})
    assert check_description("résumé · [bold] <b>") == "résumé · [bold] <b>"
    assert first_hidden("fine\ttext", multiline=True) is None
    assert first_hidden("fine\ttext") == (4, "\\x09")


def test_versions_show_says_how_many_warnings_the_report_left_out(  # type: ignore[no-untyped-def]
    run, settings: Settings, model_dir: Path
) -> None:
    assert run("register", "victim", str(model_dir), "--no-convert").exit_code == 0
    job = create_job(settings, parse_ref("victim:1"), "convert")
    warnings = [{"message": "w\u202e", "count": 4}, {"message": "[bold]v", "count": 1}]
    report = {"model_warnings": warnings, "torch_warnings": [], "warnings_dropped": 4900}
    record_failure(settings, job.id, None, "failed", summary={"report": report})
    shown = run("versions", "show", "victim:1")
    assert shown.exit_code == 0, shown.output
    assert "2 distinct (5 raised), 4900 more not kept" in shown.stdout
