"""Every error message regctl writes once, as a template on its class, checked once here.

Each named error is rendered with sample fields: every field shows in the text, the text is one line,
and after the problem it says what to do. No two classes share a template, so one failure reads the
same wherever it is raised.
"""

from __future__ import annotations

import pickle
import re
import string
from types import SimpleNamespace

import pytest

from regctl.client import WaitTimeout
from regctl.registry.errors import (
    ConversionFailed,
    InvalidInput,
    NotFound,
    RegctlError,
    error_classes,
)
from regctl.registry.errors import access as access_errors
from regctl.registry.errors import files as file_errors
from regctl.registry.errors import inputs as input_errors
from regctl.registry.errors import lookup as lookup_errors
from regctl.registry.errors import services as service_errors
from regctl.registry.errors.lookup import NotAChoice, UnknownModel, UnknownVersion

FAMILIES = (access_errors, file_errors, input_errors, lookup_errors, service_errors)
# What follows the problem: a command to run, a setting to change, a form to use, a place to look.
ACTION = re.compile(
    r"\b(use|run|set|check|try|give|create|remove|pick|ask|keep|move|see|expected|choose|install|delete|"
    r"cancel|submit|restore|point|write|send|name|copy|raise|wait|shorten|save|fetch|drop|upload|pass|"
    r"look|lower|replace|read|change|regctl)\b"
)


def _templated() -> list[type[RegctlError]]:
    found: list[type[RegctlError]] = []
    pending: list[type[RegctlError]] = [RegctlError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__dict__.get("template") and cls.__module__.startswith("regctl.registry.errors"):
            found.append(cls)
    return sorted(found, key=lambda cls: cls.__name__)


TEMPLATED = _templated()


def _sample(cls: type[RegctlError]) -> dict[str, object]:
    """A distinct value for every field the template names; a number where it is formatted as one.

    The values hold no words, so the check for what to do reads the template's own text; a field that
    carries the fix itself (`hint`, `fix`) gets one, as its raise sites give.
    """
    fields: dict[str, object] = {}
    for _literal, name, spec, _conversion in string.Formatter().parse(cls.template):
        if name in ("hint", "fix"):
            fields[name] = f"run 'regctl versions show' ({len(fields)})"
        elif name:
            fields[name] = 2.5 if spec else f"<{len(fields)}>"
    return fields


def test_every_family_module_holds_named_errors() -> None:
    for module in FAMILIES:
        assert any(cls.__module__ == module.__name__ for cls in TEMPLATED), module.__name__
    assert len(TEMPLATED) >= 90


@pytest.mark.parametrize("cls", TEMPLATED, ids=lambda cls: cls.__name__)
def test_each_template_renders_its_fields_on_one_line_and_says_what_to_do(cls: type[RegctlError]) -> None:
    fields = _sample(cls)
    exc = cls(**fields)
    text = str(exc)
    assert text == exc.message == exc.args[0]
    for name, value in fields.items():
        assert (str(value) if isinstance(value, float) else value) in text, f"{{{name}}} is not shown"
    assert "\n" not in text and text == text.strip()
    assert "{" not in cls.template.replace("{{", "").format(**fields)  # nothing left unfilled
    problem, sep, fix = text.partition("; ")
    assert sep and problem, f"{cls.__name__} does not say, after '; ', what to do: {text}"
    assert ACTION.search(fix) or ACTION.search(problem.split(":")[-1]), f"{cls.__name__}: {text}"
    assert cls.__doc__ and cls.__doc__.startswith("Raised when"), cls.__name__


def test_no_two_classes_share_a_template() -> None:
    by_template: dict[str, list[str]] = {}
    for cls in TEMPLATED:
        by_template.setdefault(cls.template, []).append(cls.__name__)
    assert [names for names in by_template.values() if len(names) > 1] == []


def test_a_named_error_keeps_its_familys_exit_code_http_status_and_code() -> None:
    exc = UnknownModel(name="resnet")
    assert isinstance(exc, NotFound)
    assert (exc.exit_code, exc.http_status, exc.code) == (3, 404, "not_found")
    assert exc.fields == {"name": "resnet"}
    # A client rebuilds the server's error from its code: the base class, never a named one.
    assert error_classes()["not_found"] is NotFound
    assert error_classes()["invalid_input"] is InvalidInput
    assert error_classes()["conversion_failed"] is ConversionFailed


def test_a_plain_message_still_works_and_pickles_as_the_rendered_text() -> None:
    assert str(InvalidInput("one-off text; fix it")) == "one-off text; fix it"
    rebuilt = pickle.loads(pickle.dumps(UnknownModel(name="resnet")))
    assert type(rebuilt) is UnknownModel and str(rebuilt) == str(UnknownModel(name="resnet"))
    assert str(UnknownModel("as the server said")) == "as the server said"


def test_a_missing_field_is_a_bug_at_the_raise_site() -> None:
    with pytest.raises(KeyError, match="name"):
        UnknownModel(model="resnet")
    with pytest.raises(TypeError, match="has no template"):
        InvalidInput()


def test_several_values_render_as_a_comma_separated_list() -> None:
    exc = NotAChoice(what="job kind", value="build", choices=("convert", "validate"))
    assert str(exc) == "job kind 'build' is not one of convert, validate; use one of those"


def test_unknown_version_says_which_versions_exist() -> None:
    assert "m has versions 1 to 3" in str(UnknownVersion.of("m:7", "m", 3))
    assert "m has no versions" in str(UnknownVersion.of("m:1", "m", 0))


def test_conversion_failed_names_the_job_and_where_to_read_more() -> None:
    exc = ConversionFailed(kind="convert", job_id=7, ref="m:1", reason="trace differs at shape [1, 9]")
    assert str(exc) == (
        "convert job 7 for m:1 failed: trace differs at shape [1, 9]; "
        "details: regctl versions show m:1 --json"
    )
    assert (exc.exit_code, exc.http_status) == (1, 409)


def test_with_fields_restates_the_error_from_its_fields() -> None:
    exc = UnknownModel(name="/srv/tmp/resnet")
    restated = exc.with_fields(name="resnet")
    assert type(restated) is UnknownModel and restated.fields == {"name": "resnet"}
    assert str(restated) == str(UnknownModel(name="resnet"))
    assert str(exc) == str(UnknownModel(name="/srv/tmp/resnet"))  # the original is left as it was


def test_a_failed_job_reads_as_conversion_failed_on_one_line() -> None:
    job = SimpleNamespace(kind="convert", id=7, model="m", version=1, error="differs\n  at shape [1, 9]")
    exc = ConversionFailed.of_job(job)
    assert str(exc) == (
        "convert job 7 for m:1 failed: differs at shape [1, 9]; details: regctl versions show m:1 --json"
    )
    unexplained = SimpleNamespace(**{**vars(job), "error": None})
    assert "failed: no reason recorded;" in str(ConversionFailed.of_job(unexplained))


def test_a_wait_that_gives_up_names_the_job_and_how_to_follow_it() -> None:
    exc = WaitTimeout(job_id=7, state="running", timeout=2.5)
    assert str(exc).startswith("job 7 is still running after 2.5s; ")
    assert "regctl jobs watch 7" in str(exc) and exc.exit_code == 1
