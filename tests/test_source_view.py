"""The version page's annotated source (server/source_view.py): rows from a coverage section and the
bundle's files, also when both are hostile; the template's escaping; reading files from a stored bundle."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from regctl.local import LocalClient
from regctl.registry.access import Caller
from regctl.registry.errors import NotAllowed
from regctl.registry.settings import Settings
from regctl.server.pages import templates
from regctl.server.source_view import (
    MAX_FILE_BYTES,
    MAX_LINKS,
    annotated_source,
    clean_name,
    source_view,
    summary_line,
    wanted_files,
)
from regctl.service.artifacts import read_bundle_files
from tests.conftest import write_model_dir

SOURCE = """import torch


def forward(x):
    \"\"\"Gate on the input's largest value.\"\"\"
    # <script>alert(1)</script> stays text
    h = torch.relu(x)
    if h.amax() > 1.0:
        h = h * 2
    if h.sum() > 1e9:
        h = h - 1
    return h
"""
# statements in the function body: 7 (h =), 8 (if), 9, 10 (if), 11, 12 (return)
COVERAGE: dict[str, Any] = {
    "recorded": True,
    "warning": None,
    "lines_run": 5,
    "lines": 6,
    "files": [{"file": "model.py", "lines_run": 5, "lines": 6, "never_run": [11], "some_run": [9]}],
    "decisions": [
        {
            "file": "model.py",
            "line": 8,
            "source": "if h.amax() > 1.0:",
            "kind": "__bool__",
            "reached": 14,
            "one_way": False,
            "taken": [{"value": True, "inputs": list(range(12))}, {"value": False, "inputs": [12, 13]}],
            "flipped_by_search": True,
            "baked": True,
            "accepted": True,
        },
        {
            "file": "model.py",
            "line": 10,
            "source": "if h.sum() > 1e9:",
            "kind": "__bool__",
            "reached": 14,
            "one_way": True,
            "taken": [{"value": False, "inputs": list(range(14))}],
        },
    ],
    "inputs": [f"batch=1 draw {i}" for i in range(13)] + ["found by search for model.py:8 <b>x</b>"],
}


def rows_of(view: Any, name: str = "model.py") -> dict[int, Any]:
    (file,) = [f for f in view.files if f.name == name]
    return {r.number: r for r in file.rows}


def test_each_executable_line_is_marked_and_the_others_are_not() -> None:
    view = source_view(COVERAGE, {"model.py": SOURCE.encode()})
    rows = rows_of(view)
    assert view.note is None
    assert view.summary == "5/6 lines; 1 of 2 decisions taken both ways"
    assert {n: r.run for n, r in rows.items() if r.run} == {
        7: "all",
        8: "all",
        9: "some",
        10: "all",
        11: "never",
        12: "all",
    }
    assert rows[4].run is None and rows[5].run is None and rows[6].run is None  # def, docstring, comment
    assert rows[11].run_label == "never ran" and rows[9].run_label == "ran on some inputs"
    assert rows[6].text == "    # <script>alert(1)</script> stays text"  # the text as it is, escaped later
    assert len(rows) == SOURCE.count("\n")


def test_a_decision_lists_its_values_and_the_inputs_that_took_them() -> None:
    rows = rows_of(source_view(COVERAGE, {"model.py": SOURCE.encode()}))
    (gate,) = rows[8].decisions
    assert (gate.state, gate.baked, gate.accepted) == ("flipped", True, True)
    assert gate.label == "taken both ways, a side first by an input the search found"
    true, false = gate.sides
    assert (true.value, true.inputs, true.more) == ("True", tuple(range(MAX_LINKS)), 12 - MAX_LINKS)
    assert (false.value, false.inputs, false.more) == ("False", (12, 13), 0)
    (never,) = rows[10].decisions
    assert (never.state, never.label, never.baked) == ("one", "one way only", False)
    assert rows[9].decisions == ()


def test_the_flags_being_added_are_optional_and_an_untaken_decision_says_so() -> None:
    decision = {"file": "model.py", "line": 8, "kind": "item", "one_way": False, "taken": []}
    section = {**COVERAGE, "decisions": [decision]}
    (point,) = rows_of(source_view(section, {"model.py": SOURCE.encode()}))[8].decisions
    assert (point.state, point.label, point.reached) == ("none", "reached by no input", 0)
    two = {**decision, "taken": [{"value": 1, "inputs": [0]}, {"value": None, "inputs": [1]}]}
    (point,) = rows_of(source_view({**COVERAGE, "decisions": [two]}, {"model.py": SOURCE.encode()}))[
        8
    ].decisions
    assert (point.state, point.label) == ("both", "took more than one value")
    assert [s.value for s in point.sides] == ["1", "a value not recorded"]


def test_hostile_names_and_absent_files_show_nothing() -> None:
    hostile = [
        "../../etc/passwd",
        "/etc/passwd",
        "a/../model.py",
        "./model.py",
        "model.py\x00",
        "a\\b.py",
        "..",
    ]
    for name in hostile:
        assert not clean_name(name), name
    assert clean_name("model.py") and clean_name("pkg/layers.py")
    files = [{"file": n, "lines_run": 1, "lines": 1, "never_run": [1], "some_run": []} for n in hostile]
    section = {**COVERAGE, "files": [*files, {"file": "absent.py", "lines": 1}, *COVERAGE["files"]]}
    assert wanted_files(section) == ["absent.py", "model.py"]
    # even when something was read under a hostile name, it is not shown
    sources = {n: b"root:x:0:0" for n in hostile} | {"model.py": SOURCE.encode()}
    view = source_view(section, sources)
    assert [f.name for f in view.files] == ["model.py"]


def test_a_file_over_the_cap_says_so_and_an_unparsable_one_keeps_only_the_listed_marks() -> None:
    view = source_view(COVERAGE, {"model.py": None})
    (file,) = view.files
    assert file.rows == () and file.note == f"not shown: over {MAX_FILE_BYTES // 1024} KB"
    broken = SOURCE.replace("return h", "return h)")  # not Python: the statements are unknown
    rows = rows_of(source_view(COVERAGE, {"model.py": broken.encode()}))
    assert {n: r.run for n, r in rows.items() if r.run} == {9: "some", 11: "never"}
    (file,) = source_view(COVERAGE, {"model.py": broken.encode()}).files
    assert file.note == "lines with no mark ran on every input or are not executable"


def test_a_count_that_disagrees_with_the_parse_marks_only_what_the_report_lists() -> None:
    section = {**COVERAGE, "files": [{**COVERAGE["files"][0], "lines": 9}]}
    rows = rows_of(source_view(section, {"model.py": SOURCE.encode()}))
    assert {n: r.run for n, r in rows.items() if r.run} == {9: "some", 11: "never"}


def test_only_pythons_own_line_ends_number_the_lines() -> None:
    # a form feed or U+2028 must not shift line 11 away from the line coverage.py called 11
    shifted = SOURCE.replace("stays text", "stays\x0c text\u2028 still line 6")
    rows = rows_of(source_view(COVERAGE, {"model.py": shifted.encode()}))
    assert rows[11].text == "        h = h - 1" and rows[11].run == "never"


def test_no_coverage_is_one_line() -> None:
    assert source_view({}, {}).note == "Coverage was not recorded."
    section = {"recorded": False, "warning": "coverage not recorded: no coverage.json"}
    assert (
        source_view(section, {}).note == "Coverage was not recorded: coverage not recorded: no coverage.json."
    )
    assert summary_line({"decisions": "junk"}) == "0 of 0 decisions taken both ways"


def test_malformed_sections_never_raise() -> None:
    for junk in (
        {"recorded": True, "files": "x", "decisions": [1, None], "inputs": 3},
        {"recorded": True, "files": [{"file": "model.py", "never_run": "x", "some_run": [None, "1"]}]},
        {
            "recorded": True,
            "decisions": [{"file": "model.py", "line": True, "taken": [{"inputs": ["0", -1]}]}],
        },
        {"recorded": True, "decisions": [{"file": "model.py", "line": 2, "taken": [{"inputs": [0, -1]}]}]},
    ):
        view = source_view(junk, {"model.py": SOURCE.encode()})
        assert view.note is None, junk


def render(view: Any) -> str:
    return templates.env.get_template("_source.html").render(source=view)


def test_the_template_escapes_the_source_and_links_each_value_to_its_inputs() -> None:
    html = render(source_view(COVERAGE, {"model.py": SOURCE.encode()}))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert '<li id="input-13">' in html and 'href="#input-12"' in html
    assert f"and {12 - MAX_LINKS} more" in html
    assert 'class="flag baked-flag"' in html and 'class="flag accepted-flag"' in html
    assert 'title="never ran">never</td>' in html
    assert "5/6 lines; 1 of 2 decisions taken both ways." in html


def test_the_template_shows_hidden_characters_as_escapes() -> None:
    # a bidi override could make the shown code read differently from what ran (Trojan Source)
    html = render(source_view(COVERAGE, {"model.py": SOURCE.replace("stays", "\u202estays").encode()}))
    assert "\u202e" not in html and "\\u202e" in html


@pytest.fixture
def registered(sqlite_settings: Settings, tmp_path: Path) -> LocalClient:
    files = {"model.py": SOURCE, "pkg/big.py": "x = 1\n" * (MAX_FILE_BYTES // 6 + 1)}
    client = LocalClient(sqlite_settings)
    client.register("gated", write_model_dir(tmp_path / "gated", files=files), convert=False)
    return client


def test_files_are_read_from_the_stored_bundle_by_exact_name(
    registered: LocalClient, sqlite_settings: Settings
) -> None:
    version = registered.version("gated:1")
    reader = Caller("rita", "reader")
    names = ["model.py", "pkg/big.py", "absent.py", "../regctl.toml", "/etc/passwd"]
    found = read_bundle_files(sqlite_settings, reader, version, names, MAX_FILE_BYTES)
    assert found == {"model.py": SOURCE.encode(), "pkg/big.py": None}
    with pytest.raises(NotAllowed):
        read_bundle_files(sqlite_settings, Caller("o", "reader", "other*"), version, names, MAX_FILE_BYTES)


def test_the_page_section_reads_the_bundle_and_says_when_it_cannot(
    registered: LocalClient, sqlite_settings: Settings
) -> None:
    version = registered.version("gated:1")
    reader = Caller("rita", "reader")
    assert annotated_source(sqlite_settings, reader, version).note == "Coverage was not recorded."
    covered = replace(version, summary={"report": {"coverage": COVERAGE}})
    view = annotated_source(sqlite_settings, reader, covered)
    assert view.note is None and rows_of(view)[11].run == "never"
    sourceless = replace(covered, artifacts=tuple(a for a in covered.artifacts if a.kind != "source"))
    note = annotated_source(sqlite_settings, reader, sourceless).note
    assert note is not None and note.startswith("The source bundle could not be read: gated:1 has no source")
    damaged = [replace(a, sha256="0" * 64) if a.kind == "source" else a for a in covered.artifacts]
    note = annotated_source(sqlite_settings, reader, replace(covered, artifacts=tuple(damaged))).note
    assert note is not None and note.startswith("The source bundle could not be read")


def test_the_search_and_the_owners_accepted_points_are_said_under_the_summary() -> None:
    search = {"tried": 48, "found": [{"input": 12}], "stopped": "used its 48 forwards"}
    section = {**COVERAGE, "search": search, "accept_baked": ["model.py:10", "<b>x.py:1</b>"]}
    remarks = source_view(section, {"model.py": SOURCE.encode()}).remarks
    assert "The search for untaken sides tried 48 inputs and found 1 that joined the battery" in remarks[-2]
    assert remarks[-1] == (
        "The owner accepts these decisions baked one way (accept_baked): model.py:10, <b>x.py:1</b>."
    )
    assert source_view({**COVERAGE, "search": {"tried": 0}}, {}).remarks == source_view(COVERAGE, {}).remarks


def test_a_report_that_lists_the_lines_run_everywhere_is_marked_from_it_not_from_a_parse() -> None:
    (entry,) = COVERAGE["files"]
    listed = {**entry, "all_run": [7, 8], "lines": 4}  # lines 10 and 12 left out on purpose
    view = source_view({**COVERAGE, "files": [listed]}, {"model.py": SOURCE.encode()})
    marks = {n: r.run for n, r in rows_of(view).items() if r.run}
    assert marks == {7: "all", 8: "all", 9: "some", 11: "never"}
