"""Who may do what (pure policy), token expiry parsing and HTTP range parsing."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from regctl.registry.access import NEEDS, Caller, alias_action
from regctl.registry.errors import InvalidInput, NotAllowed
from regctl.registry.tokens import check_token_request, parse_expiry
from regctl.server.ranges import Unsatisfiable, byte_range, etag_matches

PROTECTED = ("prod",)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("reader", {"read", "fetch"}),
        ("writer", {"read", "fetch", "register", "submit", "cancel", "retry", "alias", "tag", "archive"}),
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
                "tag",
                "archive",
                "delete",
                "gc",
                "protected-alias",
                "tokens",
                "audit",
                "webhooks",
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


def test_token_requests_are_checked_before_anything_is_written() -> None:
    check_token_request("ci-deploy", "reader", "resnet*")
    for name, role, pattern, fragment in [
        ("", "reader", None, "token name"),
        ("bad name", "reader", None, "token name"),
        ("x\n", "reader", None, "token name"),
        ("x", "owner", None, "role"),
        ("x", "admin", "resnet*", "covers every model"),
        ("x", "reader", "a/b", "pattern"),
        ("x", "reader", "-bad", "model name"),
    ]:
        with pytest.raises(InvalidInput, match=fragment):
            check_token_request(name, role, pattern)


def test_expiry_takes_hours_days_weeks_or_never() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("90d", now) == now + timedelta(days=90)
    assert parse_expiry("12h", now) == now + timedelta(hours=12)
    assert parse_expiry("2w", now) == now + timedelta(weeks=2)
    assert parse_expiry("never", now) is None
    assert parse_expiry(None, now) is None
    for bad in ("0d", "-1d", "10y", "1.5d", "9999999d", "d"):
        with pytest.raises(InvalidInput, match="--expires"):
            parse_expiry(bad, now)


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
