"""Who may do what (pure policy) and HTTP range parsing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from regctl.registry.access import NEEDS, Caller, alias_action
from regctl.registry.errors import NotAllowed
from regctl.server.ranges import Unsatisfiable, byte_range, etag_matches

PROTECTED = ("prod",)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("reader", {"read", "fetch"}),
        (
            "writer",
            {"read", "fetch", "register", "submit", "cancel", "retry", "alias", "request-alias", "tag"}
            | {"archive"},
        ),
        (
            "admin",
            {
                "read",
                "fetch",
                "register",
                "submit",
                "cancel",
                "retry",
                "alias",
                "request-alias",
                "tag",
                "archive",
                "delete",
                "gc",
                "protected-alias",
                "approve-alias",
                "tokens",
                "audit",
                "webhooks",
                "keys",
            },
        ),
    ],
)
def test_each_role_allows_exactly_its_actions(role: str, allowed: set[str]) -> None:
    caller = Caller("t", role)
    assert {a for a in NEEDS if caller.can(a, "resnet")} == allowed


def test_only_protected_aliases_need_an_admin() -> None:
    assert alias_action("prod", PROTECTED) == "protected-alias"
    assert alias_action("staging", PROTECTED) == "alias"
    writer = Caller("ci", "writer")
    writer.require(alias_action("staging", PROTECTED), "resnet")
    with pytest.raises(NotAllowed, match="needs role admin"):
        writer.require(alias_action("prod", PROTECTED), "resnet")


def test_a_model_pattern_is_a_case_sensitive_glob_that_admins_ignore() -> None:
    vision = Caller("v", "writer", "vision-*")
    assert vision.can("register", "vision-resnet")
    assert not vision.can("register", "Vision-resnet")
    assert not vision.can("read", "speech")
    with pytest.raises(NotAllowed, match="limited to models matching 'vision-\\*'"):
        vision.require("read", "speech")
    assert Caller("root", "admin", "vision-*").can("read", "speech")


def test_byte_ranges_follow_rfc_9110() -> None:
    etag = '"abc"'
    assert byte_range("bytes=0-9", 100, None, etag) == (0, 9)
    assert byte_range("bytes=90-", 100, None, etag) == (90, 99)
    assert byte_range("bytes=-10", 100, None, etag) == (90, 99)
    assert byte_range("bytes=95-200", 100, None, etag) == (95, 99)
    assert byte_range("bytes=0-9", 100, '"other"', etag) is None  # If-Range names another version
    assert byte_range("bytes=0-1,5-6", 100, None, etag) is None  # several ranges: the whole body
    assert byte_range("bytes=٣-", 100, None, etag) is None  # not ASCII digits: malformed, whole body
    assert byte_range("bytes=3-\n", 100, None, etag) == (3, 99)  # surrounding whitespace is stripped
    assert byte_range("bytes=3-4x", 100, None, etag) is None
    assert byte_range("items=0-9", 100, None, etag) is None
    assert byte_range(None, 100, None, etag) is None
    with pytest.raises(Unsatisfiable):
        byte_range("bytes=100-", 100, None, etag)
    assert etag_matches('W/"abc", "def"', etag)
    assert etag_matches("*", etag)
    assert not etag_matches('"abcd"', etag)


def test_only_the_service_decides_what_a_caller_may_do() -> None:
    # The HTTP handlers, the CLI and the clients say who the caller is; whether it may act is checked
    # in one place, the service layer, whichever door the request came through.
    root = Path(__file__).resolve().parent.parent

    def checks(folder: str) -> list[str]:
        found = []
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "require":
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
        return found

    elsewhere = ("server", "cli", "regctl", "worker", "registry")
    assert [hit for folder in elsewhere for hit in checks(folder)] == []
    assert checks("service")  # the checks are still made, there
