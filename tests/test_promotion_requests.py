"""The two-person rule (REGCTL_PROMOTION_APPROVALS=2): a protected alias moves only when an admin other
than its requester approves a pending request. On the embedded default (SQLite and PostgreSQL) and
through a real `regctl serve` with the CLI, the Python client and the pages.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from regctl.local import LocalClient
from regctl.registry.access import Caller
from regctl.registry.db import session_scope
from regctl.registry.errors import NotAllowed, NotFound, RegctlError
from regctl.registry.errors.inputs import PromotionRefused
from regctl.registry.errors.promotion import (
    ApprovalRequired,
    EmptyReason,
    NotProtected,
    OwnRequest,
    RequestDecided,
    RequestExpired,
    RequestPending,
    UnknownRequest,
)
from regctl.registry.schema import PromotionRequest, utcnow
from regctl.registry.settings import Settings
from regctl.remote import Client
from tests.api_server import REGCTL, ApiServer
from tests.conftest import at_once, cli_invoker
from tests.factories import linear_model, promotable
from tests.webhook_receiver import receiving

DEADLINE_S = 60.0  # generous: a loaded machine sends slowly, and the test waits only as long as it must
WRITER = Caller("alice", "writer", None, "test")
ADMIN = Caller("bob", "admin", None, "test")
SECOND_ADMIN = Caller("carol", "admin", None, "test")


def two_person(settings: Settings) -> Settings:
    return dataclasses.replace(settings, promotion_approvals=2)


def as_(settings: Settings, caller: Caller) -> LocalClient:
    return LocalClient(settings, caller)


@pytest.fixture
def registry(settings: Settings, tmp_path: Path) -> Settings:
    """net:1 and net:2 proved and signed (as far as the policy looks), net:3 never converted."""
    local = LocalClient(settings)
    model = linear_model(tmp_path / "m")
    local.register("net", model, convert=False)
    for _ in range(2):
        local.register("net", model, convert=False, new_version=True)
    promotable(settings, "net", 1, 2)
    return two_person(settings)


def test_prod_moves_only_when_a_second_admin_approves_and_everything_is_recorded(registry: Settings) -> None:
    settings = dataclasses.replace(registry, webhook_allow_private=("127.0.0.1",))
    with receiving() as receiver:
        events = ["alias.requested", "alias.approved", "alias.moved"]
        LocalClient(settings).add_webhook(receiver.url, events)
        with pytest.raises(ApprovalRequired, match=r"net@prod moves only through an approved request"):
            as_(settings, ADMIN).alias("net@prod", 1, force=True)  # even an admin, even with force
        filed = as_(settings, WRITER).request_alias("net@prod", 2, "fixes the tokenizer bug (#42)")
        assert (filed.state, filed.requested_by, filed.version) == ("pending", "alice", 2)
        assert filed.target == "net@prod"
        assert timedelta(days=2.9) < filed.expires_at - filed.requested_at <= timedelta(days=3)
        assert "prod" not in LocalClient(settings).model("net").aliases  # nothing moved yet
        with pytest.raises(NotAllowed):  # a writer cannot approve, not even somebody else's
            as_(settings, WRITER).approve_request(filed.id)
        approved = as_(settings, ADMIN).approve_request(filed.id, "reviewed the report")
        received = receiver.received(3, timeout=DEADLINE_S)
    assert as_(settings, WRITER).alias("net@staging", 1).version == 1  # ordinary aliases as before
    assert (approved.state, approved.decided_by, approved.note, approved.previous) == (
        "approved",
        "bob",
        "reviewed the report",
        None,
    )
    assert LocalClient(settings).model("net").aliases["prod"] == 2
    with pytest.raises(RequestDecided, match="already approved by bob"):
        as_(settings, SECOND_ADMIN).approve_request(filed.id)

    [moved] = [e for e in LocalClient(settings).alias_history("net") if e.name == "prod"]
    assert (moved.version, moved.updated_by) == (2, "bob")
    entries = LocalClient(settings).audit(model="net")
    audit = [(e.actor, e.action, e.detail) for e in entries if e.target == "net@prod"]
    assert audit == [
        ("bob", "alias.approve", {"request": filed.id}),
        ("bob", "alias.set", {"from": None, "to": 2, "request": filed.id, "requested_by": "alice"}),
        ("alice", "alias.request", {"request": filed.id, "to": 2, "reason": "fixes the tokenizer bug (#42)"}),
    ]
    by_event = {r.headers["x-regctl-event"]: json.loads(r.body) for r in received}
    assert sorted(by_event) == ["alias.approved", "alias.moved", "alias.requested"]
    assert by_event["alias.requested"]["data"]["reason"] == "fixes the tokenizer bug (#42)"
    assert by_event["alias.approved"]["data"]["id"] == filed.id
    assert (
        by_event["alias.approved"]["data"]["decided_by"] == "bob"
        and by_event["alias.approved"]["version"] == 2
    )
    assert LocalClient(settings).alias_requests("net") == []  # nothing pending any more
    assert [r.state for r in LocalClient(settings).alias_requests("net", pending_only=False)] == ["approved"]


def test_the_requester_cannot_approve_their_own_request(registry: Settings) -> None:
    filed = as_(registry, ADMIN).request_alias("net@prod", 1, "first release")
    with pytest.raises(OwnRequest, match=r"'bob' filed promotion request .*ask another admin to approve it"):
        as_(registry, ADMIN).approve_request(filed.id)
    assert "prod" not in LocalClient(registry).model("net").aliases
    assert as_(registry, SECOND_ADMIN).approve_request(filed.id).state == "approved"


def test_an_expired_request_cannot_be_approved_and_frees_the_alias_for_a_new_one(registry: Settings) -> None:
    filed = as_(registry, WRITER).request_alias("net@prod", 1, "first release")
    with session_scope(registry.database_url) as session:
        session.execute(
            update(PromotionRequest)
            .where(PromotionRequest.id == filed.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with pytest.raises(RequestExpired, match=f"promotion request {filed.id} expired at"):
        as_(registry, ADMIN).approve_request(filed.id)
    assert "prod" not in LocalClient(registry).model("net").aliases
    assert LocalClient(registry).alias_requests("net") == []
    [old] = LocalClient(registry).alias_requests("net", pending_only=False)
    assert old.state == "expired"
    again = as_(registry, WRITER).request_alias("net@prod", 2, "second try")
    assert again.state == "pending"
    states = {r.id: r.state for r in LocalClient(registry).alias_requests("net", pending_only=False)}
    assert states == {filed.id: "expired", again.id: "pending"}


def test_a_second_request_waits_for_the_first_even_when_both_are_filed_at_once(registry: Settings) -> None:
    filers = 8
    outcomes = at_once(
        [
            functools.partial(as_(registry, WRITER).request_alias, "net@prod", 1 + i % 2, f"attempt {i}")
            for i in range(filers)
        ]
    )
    won = [o for o in outcomes if not isinstance(o, Exception)]
    lost = [o for o in outcomes if isinstance(o, Exception)]
    assert len(won) == 1 and len(lost) == filers - 1, outcomes
    assert all(isinstance(e, RequestPending) and f"({won[0].id}, by alice" in str(e) for e in lost), lost
    assert [r.id for r in LocalClient(registry).alias_requests("net")] == [won[0].id]


def test_two_admins_approving_at_once_move_the_alias_once(registry: Settings) -> None:
    filed = as_(registry, WRITER).request_alias("net@prod", 2, "release")
    approvers = (as_(registry, ADMIN), as_(registry, SECOND_ADMIN))
    outcomes = at_once([functools.partial(client.approve_request, filed.id) for client in approvers])
    assert sorted(type(o).__name__ for o in outcomes) == ["PromotionRequestInfo", "RequestDecided"], outcomes
    assert [e.name for e in LocalClient(registry).alias_history("net")] == ["prod"]  # one move


def test_the_policy_is_checked_when_filed_and_again_when_approved(registry: Settings) -> None:
    with pytest.raises(PromotionRefused, match="net@prod cannot move to version 3: it was never converted"):
        as_(registry, WRITER).request_alias("net@prod", 3, "please")
    with pytest.raises(NotAllowed):  # only an admin asks to override the policy
        as_(registry, WRITER).request_alias("net@prod", 3, "please", force=True)
    filed = as_(registry, WRITER).request_alias("net@prod", 1, "release")
    strict = dataclasses.replace(registry, promotion_torch=("9.9.9",))  # the fleet moved on meanwhile
    with pytest.raises(PromotionRefused, match=r"which REGCTL_PROMOTION_TORCH .* does not list"):
        as_(strict, ADMIN).approve_request(filed.id)
    assert LocalClient(strict).alias_requests("net")[0].state == "pending"  # still for someone to reject
    as_(strict, ADMIN).reject_request(filed.id, "torch 9.9.9 only now")

    forced = as_(registry, ADMIN).request_alias("net@prod", 3, "hotfix, validated by hand", force=True)
    assert forced.force
    approved = as_(registry, SECOND_ADMIN).approve_request(forced.id)
    assert approved.state == "approved" and LocalClient(registry).model("net").aliases["prod"] == 3
    set_row = next(e for e in LocalClient(registry).audit(model="net") if e.action == "alias.set")
    assert set_row.detail["forced"] == "it was never converted" and set_row.actor == "carol"
    asked = next(e for e in LocalClient(registry).audit(model="net") if e.action == "alias.request")
    assert asked.detail["forced"] == "it was never converted" and asked.actor == "bob"


def test_rejecting_withdrawing_and_bad_requests(registry: Settings) -> None:
    filed = as_(registry, WRITER).request_alias("net@prod", 1, "release")
    assert as_(registry, WRITER).reject_request(filed.id).state == "rejected"  # the requester withdraws
    with pytest.raises(RequestDecided, match="already rejected by alice"):
        as_(registry, ADMIN).approve_request(filed.id)
    other = as_(registry, ADMIN).request_alias("net@prod", 1, "release")
    with pytest.raises(NotAllowed):  # a writer rejects only their own
        as_(registry, WRITER).reject_request(other.id)
    assert as_(registry, SECOND_ADMIN).reject_request(other.id, "not this week").note == "not this week"
    assert "prod" not in LocalClient(registry).model("net").aliases

    reader = Caller("rita", "reader", None, "test")
    with pytest.raises(NotAllowed):
        as_(registry, reader).request_alias("net@prod", 1, "release")
    with pytest.raises(NotProtected, match="staging is not a protected alias"):
        as_(registry, WRITER).request_alias("net@staging", 1, "release")
    for reason in ("", "   ", "x" * 1001):
        with pytest.raises(EmptyReason):
            as_(registry, WRITER).request_alias("net@prod", 1, reason)
    with pytest.raises(RegctlError, match="hidden character"):
        as_(registry, WRITER).request_alias("net@prod", 1, "release\x1b[2J")
    with pytest.raises(UnknownRequest):
        as_(registry, ADMIN).approve_request(999)
    outsider = Caller("olga", "writer", "vision-*", "test")  # may not see net: a request of it is missing
    with pytest.raises(UnknownRequest):
        as_(registry, outsider).reject_request(other.id)
    assert as_(registry, outsider).alias_requests(pending_only=False) == []


def test_with_one_approval_requests_are_optional_and_prod_moves_directly(registry: Settings) -> None:
    one = dataclasses.replace(registry, promotion_approvals=1)
    filed = as_(one, WRITER).request_alias("net@prod", 1, "a writer asks an admin")
    assert as_(one, ADMIN).approve_request(filed.id).state == "approved"
    assert as_(one, ADMIN).alias("net@prod", 2).version == 2


def test_the_cli_on_the_embedded_default(sqlite_settings: Settings, tmp_path: Path) -> None:
    local = LocalClient(sqlite_settings)
    local.register("net", linear_model(tmp_path / "m"), convert=False)
    promotable(sqlite_settings, "net", 1)
    run = cli_invoker(sqlite_settings, REGCTL_PROMOTION_APPROVALS="2")
    refused = run("alias", "set", "net@prod", "1")
    assert refused.exit_code == 2 and "moves only through an approved request" in refused.output
    missing_reason = run("alias", "request", "net@prod", "1")
    assert missing_reason.exit_code == 2 and "--reason" in missing_reason.output
    filed = run("alias", "request", "net@prod", "1", "--reason", "first release", "--json")
    assert filed.exit_code == 0, filed.output
    request_id = json.loads(filed.output)["id"]
    listed = run("alias", "requests", "net")
    assert listed.exit_code == 0 and "net@prod" in listed.output and "pending" in listed.output
    [shown] = json.loads(run("alias", "requests", "--json").output)
    assert (shown["id"], shown["reason"], shown["state"]) == (request_id, "first release", "pending")
    own = run("alias", "approve", str(request_id))  # the local user filed it: not theirs to approve
    assert own.exit_code == 5 and "ask another admin to approve it" in own.output
    assert run("alias", "approve", "99").exit_code == 3
    assert run("alias", "reject", str(request_id), "--note", "withdrawn").exit_code == 0
    assert "rejected" in run("alias", "requests", "net", "--all").output
    bad = run("alias", "requests", "net", "--json")
    assert bad.exit_code == 0 and json.loads(bad.output) == []
    wrong = cli_invoker(sqlite_settings, REGCTL_PROMOTION_APPROVALS="3")("alias", "requests")
    assert wrong.exit_code == 2 and "REGCTL_PROMOTION_APPROVALS='3' is not 1 or 2" in wrong.output


# -- through `regctl serve` ------------------------------------------------------------------------------


@pytest.fixture
def served(sqlite_settings: Settings, tmp_path: Path) -> Iterator[tuple[ApiServer, LocalClient]]:
    settings = two_person(sqlite_settings)
    direct = LocalClient(settings)
    direct.register("net", linear_model(tmp_path / "m"), convert=False)
    direct.register("net", linear_model(tmp_path / "m"), convert=False, new_version=True)
    promotable(settings, "net", 1, 2)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **settings.to_env()}
    server = ApiServer.start({k: v for k, v in env.items() if v != ""}, tmp_path)
    yield server, direct
    server.stop()


def _cli(server: ApiServer, secret: str, *args: str, cwd: Path) -> tuple[int, str, str]:
    import subprocess

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "REGCTL_URL": server.url,
        "REGCTL_TOKEN": secret,
    }
    done = subprocess.run([REGCTL, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def test_the_two_person_rule_through_regctl_serve(
    served: tuple[ApiServer, LocalClient], tmp_path: Path
) -> None:
    server, direct = served
    alice, bob, carol = (
        direct.create_token(name, role).secret
        for name, role in (("alice", "writer"), ("bob", "admin"), ("carol", "admin"))
    )
    code, _, err = _cli(server, bob, "alias", "set", "net@prod", "1", "--force", cwd=tmp_path)
    assert code == 2 and "moves only through an approved request" in err
    code, out, err = _cli(
        server, alice, "alias", "request", "net@prod", "1", "--reason", "first release", cwd=tmp_path
    )
    assert code == 0, err
    assert out.startswith("request ") and "another admin runs 'regctl alias approve" in out
    first = int(out.split()[1].rstrip(":"))
    code, _, err = _cli(server, bob, "alias", "request", "net@prod", "2", "--reason", "mine", cwd=tmp_path)
    assert code == 2 and f"already has a pending request ({first}, by alice" in err
    code, _, err = _cli(server, alice, "alias", "approve", str(first), cwd=tmp_path)
    assert code == 5 and "role writer" in err

    # The pages show it, read-only: no form posts a decision.
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        browser.post("/login", data={"token": alice, "next": "/"})
        page = browser.get("/models/net").text
    section = page[
        page.index('id="requests-heading"') : page.index("</section>", page.index("requests-heading"))
    ]
    assert "first release" in section and "alice" in section and "<form" not in section

    # The Python client, as the second admin: bob files, bob cannot approve, carol does.
    as_bob, as_carol, as_alice = Client(server.url, bob), Client(server.url, carol), Client(server.url, alice)
    try:
        assert as_bob.reject_request(first, "one at a time").state == "rejected"
        mine = as_bob.request_alias("net@prod", 2, "second release")
        with pytest.raises(NotAllowed, match="ask another admin to approve it"):
            as_bob.approve_request(mine.id)
        with pytest.raises(NotFound):
            as_carol.approve_request(mine.id + 100)
        approved = as_carol.approve_request(mine.id, "looked at the report")
        assert (approved.state, approved.decided_by, approved.version) == ("approved", "carol", 2)
        assert direct.model("net").aliases["prod"] == 2
        listed = as_alice.alias_requests("net", pending_only=False)
        assert [(r.id, r.state) for r in listed] == [(mine.id, "approved"), (first, "rejected")]
    finally:
        for client in (as_bob, as_carol, as_alice):
            client.close()
    assert [(e.actor, e.action, e.address) for e in direct.audit(model="net")][:2] == [
        ("carol", "alias.approve", "127.0.0.1"),
        ("carol", "alias.set", "127.0.0.1"),
    ]
    # A request without a body, or with a reason the API bounds, is answered, never a traceback.
    with httpx.Client(base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {alice}"}) as api:
        empty = api.post("/models/net/aliases/prod/requests", json={"version": 1, "reason": ""})
        assert empty.status_code == 422
        assert api.post(f"/alias-requests/{mine.id}/reject").status_code == 403  # bob's, and alice writes
        assert api.post(f"/alias-requests/{first}/reject").status_code == 409  # hers, decided; no body needed
