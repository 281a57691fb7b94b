"""A request is checked once, where it is built: a bad one never reaches the client, service or registry."""

from __future__ import annotations

import ast
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from regctl.local import LocalClient
from regctl.registry.errors import InvalidInput
from regctl.registry.requests import EVENTS, TokenRequest, VersionQuery, WebhookRequest
from regctl.registry.settings import Settings
from regctl.remote import Client

UNREACHABLE = "http://127.0.0.1:9"
ROOT = Path(__file__).resolve().parent.parent


def test_token_and_webhook_options_are_named_by_the_requests_and_the_front_doors_only() -> None:
    # The client, the service and the registry pass a TokenRequest or WebhookRequest on whole; only
    # the click commands take the options one by one (a Python call passes them as keywords).
    named = set()
    for folder in ("cli", "regctl", "registry", "server", "service", "worker"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    names = {a.arg for a in [*node.args.args, *node.args.kwonlyargs]}
                    if names & {"model_pattern", "expires"}:
                        named.add(f"{path.relative_to(ROOT)}:{node.name}")
    assert named == {
        "cli/access.py:tokens_create",
        "cli/webhooks.py:webhooks_add",
        "registry/requests.py:_lifetime",
    }


def test_token_requests_are_checked_before_anything_is_written() -> None:
    made = TokenRequest("ci-deploy", "reader", model_pattern="resnet*", expires="90d")
    assert (made.name, made.role, made.model_pattern, made.expires) == (
        "ci-deploy",
        "reader",
        "resnet*",
        "90d",
    )
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
            TokenRequest(name, role, model_pattern=pattern)


def test_a_bad_role_names_the_roles_to_choose_from() -> None:
    with pytest.raises(InvalidInput, match="role 'owner' is not one of reader, writer, admin"):
        TokenRequest("ci", "owner")


def test_expiry_takes_hours_days_weeks_or_never() -> None:
    def lifetime(expires: str | None) -> timedelta | None:
        return TokenRequest("ci", "reader", expires=expires).lifetime

    assert lifetime("90d") == timedelta(days=90)
    assert lifetime("12h") == timedelta(hours=12)
    assert lifetime("2w") == timedelta(weeks=2)
    assert lifetime("never") is None
    assert lifetime(None) is None
    for bad in ("0d", "-1d", "10y", "1.5d", "9999999d", "d"):
        with pytest.raises(InvalidInput, match="--expires"):
            lifetime(bad)


def test_a_webhook_request_keeps_its_events_in_order_without_repeats_or_blanks() -> None:
    hook = WebhookRequest("https://hooks.example.com/x", ["alias.moved", " job.failed", "", "alias.moved"])
    assert hook.events == ("alias.moved", "job.failed")
    assert WebhookRequest("http://h.example.com/", EVENTS, model_pattern="net*").model_pattern == "net*"
    with pytest.raises(dataclasses.FrozenInstanceError):
        hook.url = "http://elsewhere.example.com/"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "events", "pattern", "says"),
    [
        ("file:///etc/passwd", ["version.ready"], None, "must be http or https, not 'file'"),
        ("http://admin:hunter2@h.example.com/", ["version.ready"], None, "carries a user or password"),
        ("https://h.example.com/" + "a" * 3000, ["version.ready"], None, "the limit is 2048"),
        ("http:///no-host", ["version.ready"], None, "names no host"),
        ("https://h.example.com/", ["version.gone"], None, "unknown events version.gone; choose from"),
        ("https://h.example.com/", [" ", ""], None, "no events; choose from version.ready"),
        ("https://h.example.com/", ["version.ready"], "a/b", "model pattern 'a/b' is not valid"),
    ],
)
def test_a_bad_webhook_request_is_refused_where_it_is_built(
    url: str, events: list[str], pattern: str | None, says: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        WebhookRequest(url, events, model_pattern=pattern)
    assert says in str(refused.value) and "hunter2" not in str(refused.value)


def test_a_version_query_names_a_model_or_none_and_checks_status_tags_and_limit() -> None:
    query = VersionQuery("resnet", status="ready", tags={"team": "vision"}, archived=True, limit=10)
    assert (query.name, query.status, dict(query.tags), query.archived, query.limit) == (
        "resnet",
        "ready",
        {"team": "vision"},
        True,
        10,
    )
    assert VersionQuery(None).tags == {} and VersionQuery(None, tags=None).tags == {}  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="version status 'done' is not one of registered, converting"):
        VersionQuery("resnet", status="done")
    with pytest.raises(InvalidInput, match="model name 'no spaces' is not valid"):
        VersionQuery("no spaces")
    with pytest.raises(InvalidInput, match="tag key"):
        VersionQuery(None, tags={"bad key!": "x"})
    for limit in (0, 1001, True):
        with pytest.raises(InvalidInput, match="limit"):
            VersionQuery(None, limit=limit)


def test_the_clients_build_the_request_before_anything_leaves_the_process(tmp_path: Path) -> None:
    # An unreachable server would answer ServiceUnavailable: InvalidInput means nothing was sent.
    with Client(UNREACHABLE) as remote:
        with pytest.raises(InvalidInput, match="is not one of reader, writer, admin"):
            remote.create_token("ci", "owner")
        with pytest.raises(InvalidInput, match="must be http or https"):
            remote.add_webhook("ftp://h.example.com/", ["version.ready"])
        with pytest.raises(InvalidInput, match="version status"):
            remote.versions("resnet", status="done")
        with pytest.raises(TypeError, match="not both"):
            remote.versions(VersionQuery("resnet"), limit=5)
    local = LocalClient(Settings.from_env({}, home=tmp_path / "home"))
    with pytest.raises(TypeError, match="not both"):
        local.create_token(TokenRequest("ci", "reader"), expires="1d")


def test_a_request_and_its_options_as_keywords_do_the_same(tmp_path: Path) -> None:
    client = LocalClient(Settings.from_env({}, home=tmp_path / "home"))
    before = datetime.now(UTC)
    whole = client.create_token(TokenRequest("ci", "writer", model_pattern="net*", expires="2w"))
    spelled = client.create_token("cd", "writer", model_pattern="net*", expires="2w")
    after = datetime.now(UTC)
    assert (whole.token.role, whole.token.model_pattern) == (spelled.token.role, spelled.token.model_pattern)
    for made in (whole, spelled):  # the lifetime runs from the moment the registry writes the token
        assert made.token.expires_at is not None
        assert before + timedelta(weeks=2) <= made.token.expires_at <= after + timedelta(weeks=2)
    hook = client.add_webhook(WebhookRequest("https://h.example.com/", ["alias.moved"], model_pattern="net*"))
    again = client.add_webhook("https://h.example.com/", ["alias.moved"], model_pattern="net*")
    assert (hook.webhook.events, hook.webhook.model_pattern) == (
        again.webhook.events,
        again.webhook.model_pattern,
    )
    assert client.versions(None) == client.versions(VersionQuery(None)) == []
