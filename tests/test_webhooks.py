"""Webhooks without a broker: the outbox, signing, sending to a real local HTTP receiver, retries,
the CLI and the API's admin-only door. SQLite and PostgreSQL wherever the registry is involved."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from regctl.local import LocalClient
from regctl.registry.access import local_caller
from regctl.registry.aliases import set_alias
from regctl.registry.db import session_scope
from regctl.registry.deliveries import (
    GIVE_UP_AFTER,
    RETRY_CAP_S,
    claim_delivery,
    get_delivery,
    list_deliveries,
    record_attempt,
    retry_delay,
)
from regctl.registry.entities import DeliveryInfo
from regctl.registry.requests import RegisterRequest, WebhookRequest
from regctl.registry.schema import WebhookDelivery, utcnow
from regctl.registry.settings import Settings
from regctl.registry.versions import register_version
from regctl.registry.webhooks import add_webhook, remove_webhook
from regctl.webhook_signature import sign, verify_signature
from regctl.worker.dispatch.server_runner import ServerRunner
from regctl.worker.webhook_sender import deliver, post, send_due, wait_for_background
from tests.conftest import direct_cli, wait_until
from tests.factories import promotable
from tests.webhook_receiver import Received, receiving

ADMIN = local_caller()


LOOPBACK = ("127.0.0.1",)  # where this test's receivers listen, refused to deliveries by default


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The registry's settings, its deliveries allowed to reach this test's receivers on loopback."""
    return dataclasses.replace(settings, webhook_allow_private=LOOPBACK)


@pytest.fixture
def sqlite_settings(sqlite_settings: Settings) -> Settings:
    """Embedded settings, allowed to reach this test's receivers on loopback."""
    return dataclasses.replace(sqlite_settings, webhook_allow_private=LOOPBACK)


@pytest.fixture(autouse=True)
def background_sends_finish() -> Iterator[None]:
    """Every background send a test started ends before its database goes away."""
    yield
    assert wait_for_background(15), "a background webhook send outlived its test"


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """The test's registry with retries 0.2 s, 0.4 s, 0.8 s … apart."""
    return dataclasses.replace(settings, webhook_retry_base=0.2)


def _verified(secret: str, request: Received) -> dict:
    headers = request.headers
    assert verify_signature(
        secret, request.body, headers["x-regctl-timestamp"], headers["x-regctl-signature"]
    )
    return json.loads(request.body)


def _settled(settings: Settings, hook_id: int, count: int = 1) -> list[DeliveryInfo]:
    def done() -> list[DeliveryInfo] | None:
        found = list_deliveries(settings, hook_id)
        return (
            found if len(found) >= count and all(d.state in ("succeeded", "failed") for d in found) else None
        )

    return wait_until(done, 20, f"{count} deliveries of webhook {hook_id} to settle")


# -- signing -----------------------------------------------------------------------------------------


def test_the_signature_verifies_and_a_tampered_body_a_wrong_secret_or_a_stale_timestamp_fails() -> None:
    body, now = b'{"event":"version.ready","id":1}', time.time()
    stamp = int(now)
    signature = sign("s3cret", body, stamp)
    assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
    assert verify_signature("s3cret", body, str(stamp), signature)
    assert not verify_signature("s3cret", body.replace(b"1", b"2"), stamp, signature)
    assert not verify_signature("other", body, stamp, signature)
    # The timestamp is signed: moving it breaks the signature; an old signature is refused outright.
    assert not verify_signature("s3cret", body, stamp + 1, signature)
    old = stamp - 301
    assert not verify_signature("s3cret", body, old, sign("s3cret", body, old))
    assert verify_signature("s3cret", body, old, sign("s3cret", body, old), tolerance_s=400)
    assert not verify_signature("s3cret", body, "12x", signature)
    assert not verify_signature("s3cret", body, stamp, signature.replace("sha256=", "sha1="))


def test_retries_double_from_the_base_and_are_capped_at_an_hour() -> None:
    assert [retry_delay(30, n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert retry_delay(30, 40) == RETRY_CAP_S == 3600


# -- the outbox ----------------------------------------------------------------------------------------


def test_an_event_reaches_only_the_live_webhooks_that_want_it_for_that_model(
    settings: Settings, model_dir: Path
) -> None:
    register_version(settings, RegisterRequest("net"), model_dir)
    promotable(settings, "net")
    wanted = add_webhook(
        settings, ADMIN, WebhookRequest("http://127.0.0.1:9/a", ["alias.moved"], model_pattern="ne*")
    ).webhook
    other_event = add_webhook(
        settings, ADMIN, WebhookRequest("http://127.0.0.1:9/b", ["version.ready"])
    ).webhook
    other_model = add_webhook(
        settings, ADMIN, WebhookRequest("http://127.0.0.1:9/c", ["alias.moved"], model_pattern="resnet")
    )
    removed = add_webhook(settings, ADMIN, WebhookRequest("http://127.0.0.1:9/d", ["alias.moved"])).webhook
    remove_webhook(settings, ADMIN, removed.id)

    set_alias(settings, "net", "staging", 1)

    [delivery] = list_deliveries(settings, wanted.id)
    assert (delivery.event, delivery.model, delivery.version, delivery.state) == (
        "alias.moved",
        "net",
        1,
        "pending",
    )
    for hook_id in (other_event.id, other_model.webhook.id, removed.id):
        assert list_deliveries(settings, hook_id) == []


def test_a_failed_job_and_a_ready_version_write_their_events_with_the_outcome(
    settings: Settings, model_dir: Path
) -> None:
    from regctl.registry.jobs import claim_job
    from regctl.registry.outcomes import record_failure, record_success, start_stage

    hook = add_webhook(
        settings,
        ADMIN,
        WebhookRequest("http://127.0.0.1:9/", ["version.ready", "version.failed", "job.failed"]),
    )
    failing = register_version(settings, RegisterRequest("m"), model_dir, jobs=("convert",)).jobs[0]
    claim_job(settings, failing.id, "host:1")
    record_failure(settings, failing.id, "host:1", "the model raised ValueError")
    passing = register_version(settings, RegisterRequest("m"), model_dir, jobs=("convert",)).jobs[0]
    claim_job(settings, passing.id, "host:1")
    start_stage(settings, passing.id, "host:1")
    record_success(settings, passing.id, "host:1", [], {"validated": True}, {}, method="script", proved=True)

    found = list(reversed(list_deliveries(settings, hook.webhook.id)))
    bodies = [json.loads(_body(settings, d.id)) for d in found]
    assert [(b["event"], b["model"], b["version"]) for b in bodies] == [
        ("job.failed", "m", 1),
        ("version.failed", "m", 1),
        ("version.ready", "m", 2),
    ]
    assert bodies[0]["data"]["error"] == "the model raised ValueError"
    assert bodies[0]["data"]["job"] == {"id": failing.id, "kind": "convert", "attempts": 1, "max_attempts": 3}
    assert bodies[1]["data"]["status"] == "failed" and bodies[1]["data"]["job"]["id"] == failing.id
    assert bodies[2]["data"]["status"] == "ready" and bodies[2]["data"]["method"] == "script"
    assert [b["id"] for b in bodies] == [d.id for d in found]


def test_a_job_that_exhausts_its_attempts_fails_with_job_failed_and_version_failed(
    settings: Settings, model_dir: Path
) -> None:
    from regctl.registry.jobs import claim_job

    hook = add_webhook(
        settings, ADMIN, WebhookRequest("http://127.0.0.1:9/", ["job.failed", "version.failed"])
    ).webhook
    job = register_version(settings, RegisterRequest("m"), model_dir, jobs=("convert",)).jobs[0]
    for attempt in range(settings.max_attempts):
        assert claim_job(settings, job.id, f"host:{attempt}", owner_is_dead=lambda _: True).should_run
    assert claim_job(settings, job.id, "host:9", owner_is_dead=lambda _: True).outcome == "exhausted"
    events = sorted(d.event for d in list_deliveries(settings, hook.id))
    assert events == ["job.failed", "version.failed"]


def _body(settings: Settings, delivery_id: int) -> str:
    with session_scope(settings.database_url) as session:
        return session.get_one(WebhookDelivery, delivery_id).body


def test_a_delivery_is_claimed_by_one_sender_and_taken_over_once_its_lease_ran_out(
    settings: Settings, model_dir: Path
) -> None:
    register_version(settings, RegisterRequest("net"), model_dir)
    promotable(settings, "net")
    hook = add_webhook(settings, ADMIN, WebhookRequest("http://127.0.0.1:9/", ["alias.moved"]))
    set_alias(settings, "net", "staging", 1)
    [delivery] = list_deliveries(settings, hook.webhook.id)

    won: list[object] = []
    start = threading.Barrier(6)

    def race() -> None:
        start.wait()
        won.append(claim_delivery(settings, delivery.id, lease_s=0.0))

    racers = [threading.Thread(target=race) for _ in range(6)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    claims = [c for c in won if c is not None]
    # A zero lease expires at once, so later racers may take over; every claim is a new attempt.
    assert sorted(c.attempt for c in claims) == list(range(1, len(claims) + 1))  # type: ignore[attr-defined]
    assert claim_delivery(settings, delivery.id, lease_s=60) is not None
    assert claim_delivery(settings, delivery.id) is None  # a live lease is never shared

    # The stale sender's attempt is recorded, but the delivery stays with the sender that holds it.
    from regctl.registry.deliveries import SendResult

    stale = claims[0]
    record_attempt(settings, stale, SendResult(utcnow(), 5, 200))  # type: ignore[arg-type]
    after = get_delivery(settings, delivery.id)
    assert after.state == "sending" and after.attempts == len(claims) + 1
    assert [a.status_code for a in after.history] == [200]


# -- sending to a real receiver ------------------------------------------------------------------------------


def test_an_alias_move_is_posted_signed_and_recorded(settings: Settings, model_dir: Path) -> None:
    client = LocalClient(settings)
    client.register("net", model_dir, convert=False)
    promotable(client.settings, "net")
    with receiving() as receiver:
        made = client.add_webhook(receiver.url, ["alias.moved"])
        client.alias("net@staging", 1)  # embedded: sent from a background thread of this process
        [request] = receiver.received(1, timeout=20)
        [delivery] = _settled(settings, made.webhook.id)

    payload = _verified(made.secret, request)
    assert payload["event"] == "alias.moved" and payload["id"] == delivery.id
    assert (payload["model"], payload["version"]) == ("net", 1)
    assert payload["data"] == {"alias": "staging", "from": None, "to": 1, "actor": ADMIN.name}
    assert request.headers["x-regctl-event"] == "alias.moved"
    assert request.headers["x-regctl-delivery"] == str(delivery.id)
    assert request.headers["content-type"] == "application/json"
    assert request.body == _body(settings, delivery.id).encode()  # exactly the stored bytes
    tampered = request.body.replace(b'"to":1', b'"to":2')
    assert tampered != request.body
    headers = request.headers
    assert not verify_signature(
        made.secret, tampered, headers["x-regctl-timestamp"], headers["x-regctl-signature"]
    )
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("succeeded", 1, 200)
    [attempt] = delivery.history
    assert attempt.status_code == 200 and attempt.error is None and attempt.duration_ms >= 0


def test_a_receiver_that_answers_500_twice_gets_the_delivery_on_the_third_attempt(
    quick: Settings, model_dir: Path
) -> None:
    register_version(quick, RegisterRequest("net"), model_dir)
    promotable(quick, "net")
    with receiving(statuses=(500, 500, 200)) as receiver:
        made = add_webhook(quick, ADMIN, WebhookRequest(receiver.url, ["alias.moved"]))
        set_alias(quick, "net", "staging", 1)

        def third_answer() -> bool:
            send_due(quick)  # what an embedded runner does at each idle check
            return receiver.answered >= 3

        wait_until(third_answer, 20, "the receiver's third answer")
        requests = receiver.received(3, timeout=5)
    [delivery] = list_deliveries(quick, made.webhook.id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("succeeded", 3, 200)
    assert [a.status_code for a in delivery.history] == [500, 500, 200]
    assert [a.attempt for a in delivery.history] == [1, 2, 3]
    assert len({r.headers["x-regctl-delivery"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1  # every attempt sends the same bytes
    first, second, third = delivery.history
    assert (second.at - first.at).total_seconds() >= 0.2 and (third.at - second.at).total_seconds() >= 0.4


def test_a_redirect_is_a_failed_attempt_and_is_never_followed(
    sqlite_settings: Settings, model_dir: Path
) -> None:
    settings = sqlite_settings
    register_version(settings, RegisterRequest("net"), model_dir)
    promotable(settings, "net")
    with receiving() as target, receiving(statuses=(302,), location=target.url) as redirecting:
        hook = add_webhook(settings, ADMIN, WebhookRequest(redirecting.url, ["alias.moved"])).webhook
        set_alias(settings, "net", "staging", 1)
        [pending] = list_deliveries(settings, hook.id)
        after = deliver(settings, pending.id)
        assert redirecting.received(1, timeout=5) and target.requests == []
    assert after is not None and after.state == "pending" and after.last_status == 302
    assert "redirect" in (after.last_error or "") and after.next_attempt_at is not None


def test_a_delivery_still_failing_a_day_after_its_event_fails_for_good(
    sqlite_settings: Settings, model_dir: Path
) -> None:
    settings = sqlite_settings
    register_version(settings, RegisterRequest("net"), model_dir)
    promotable(settings, "net")
    with receiving(statuses=(503,)) as receiver:
        hook = add_webhook(settings, ADMIN, WebhookRequest(receiver.url, ["alias.moved"])).webhook
        set_alias(settings, "net", "staging", 1)
        [young] = list_deliveries(settings, hook.id)
        with session_scope(settings.database_url) as session:
            old = utcnow() - GIVE_UP_AFTER - timedelta(minutes=1)
            session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == young.id).values(created_at=old)
            )
        after = deliver(settings, young.id)
    assert after is not None and (after.state, after.last_status, after.next_attempt_at) == (
        "failed",
        503,
        None,
    )
    assert deliver(settings, young.id) is None  # failed deliveries are not due


def test_a_receiver_that_never_answers_costs_one_timeout_not_more() -> None:
    with receiving(delay=30) as receiver:
        started = time.monotonic()
        result = post(
            receiver.url, b"{}", {"Content-Type": "application/json"}, timeout=0.5, allowed=LOOPBACK
        )
        took = time.monotonic() - started
        assert receiver.received(1, timeout=5)
    assert result.status_code is None and "no answer within 0.5 s" in (result.error or "")
    assert took < 2.0 and result.duration_ms < 2000


def test_an_unreachable_receiver_is_a_failed_attempt_with_the_reason(sqlite_settings: Settings) -> None:
    from tests.api_server import free_port

    result = post(f"http://127.0.0.1:{free_port()}/", b"{}", {}, timeout=5, allowed=LOOPBACK)
    assert result.status_code is None and not result.ok
    assert "ConnectError" in (result.error or "")


def test_the_embedded_job_is_recorded_before_a_slow_receiver_answers(
    sqlite_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.factories import linear_model

    monkeypatch.setenv("REGCTL_LIBTORCH", "off")  # not what is tested here, and a first build takes long
    client = LocalClient(sqlite_settings)
    with receiving(delay=10) as receiver:
        made = client.add_webhook(receiver.url, ["version.ready"])
        job = client.register("linear", linear_model(tmp_path / "linear")).jobs[0]
        final = client.wait(job, timeout=120)
        answered_when_done = receiver.answered
        [request] = receiver.received(1, timeout=20)
        receiver.release.set()
        [delivery] = _settled(sqlite_settings, made.webhook.id)
    assert final.state == "succeeded" and client.version("linear:1").status == "ready"
    assert answered_when_done == 0  # the job's result was in before the receiver answered
    assert final.finished_at is not None and final.started_at is not None
    # The POST started only once the job's outcome was recorded, so the receiver's 10 s are never
    # part of the job's duration (the integration test compares that duration with a bound as well).
    assert request.at >= final.finished_at.timestamp()
    payload = _verified(made.secret, request)
    assert (payload["event"], payload["model"], payload["version"]) == ("version.ready", "linear", 1)
    assert payload["data"]["job"]["id"] == final.id
    assert delivery.state == "succeeded"


def test_the_api_servers_runner_sends_retries_when_their_backoff_runs_out(
    sqlite_settings: Settings, model_dir: Path
) -> None:
    settings = dataclasses.replace(sqlite_settings, webhook_retry_base=0.2)
    register_version(settings, RegisterRequest("net"), model_dir)
    promotable(settings, "net")
    with receiving(statuses=(500, 200)) as receiver:
        hook = add_webhook(settings, ADMIN, WebhookRequest(receiver.url, ["alias.moved"])).webhook
        set_alias(settings, "net", "staging", 1)
        runner = ServerRunner(settings)
        runner.start()
        try:
            [delivery] = _settled(settings, hook.id)
        finally:
            runner.stop()
    assert delivery.state == "succeeded" and [a.status_code for a in delivery.history] == [500, 200]


# -- the CLI -----------------------------------------------------------------------------------------------


def test_the_cli_adds_lists_shows_deliveries_redelivers_and_removes_a_webhook(
    sqlite_settings: Settings, model_dir: Path
) -> None:
    settings = sqlite_settings
    LocalClient(settings).register("net", model_dir, convert=False)
    promotable(settings, "net")
    with receiving() as receiver:
        added = direct_cli(settings, "webhooks", "add", receiver.url, "--events", "alias.moved,job.failed")
        assert added.exit_code == 0, added.output
        secret = added.stdout.strip()
        assert len(secret) >= 40 and "\n" not in secret
        assert "added webhook 1" in added.stderr and "shown only now" in added.stderr

        listed = direct_cli(settings, "webhooks", "list", "--json")
        [hook] = json.loads(listed.stdout)
        assert hook["url"] == receiver.url and hook["events"] == ["alias.moved", "job.failed"]
        assert secret not in listed.stdout

        assert direct_cli(settings, "alias", "set", "net@staging", "1").exit_code == 0
        [first] = receiver.received(1, timeout=20)
        [delivery] = _settled(settings, 1)
        shown = json.loads(direct_cli(settings, "webhooks", "deliveries", "1", "--json").stdout)
        assert shown[0]["state"] == "succeeded" and shown[0]["history"][0]["status_code"] == 200
        assert "succeeded" in direct_cli(settings, "webhooks", "deliveries", "1").stdout

        again = direct_cli(settings, "webhooks", "redeliver", str(delivery.id))
        assert again.exit_code == 0 and "is due again now" in again.stdout
        second = receiver.received(2, timeout=20)[1]
        wait_until(lambda: get_delivery(settings, delivery.id).attempts == 2, 10, "the second attempt")
        assert second.body == first.body and second.headers["x-regctl-delivery"] == str(delivery.id)
        assert _verified(secret, second)["event"] == "alias.moved"

    removed = direct_cli(settings, "webhooks", "remove", "1")
    assert removed.exit_code == 0 and "removed webhook 1" in removed.stdout
    assert json.loads(direct_cli(settings, "webhooks", "list", "--json").stdout) == []
    assert len(json.loads(direct_cli(settings, "webhooks", "deliveries", "1", "--json").stdout)) == 1
    gone = direct_cli(settings, "webhooks", "remove", "1")
    assert gone.exit_code == 3 and gone.stderr.startswith("error: webhook 1 not found")
    audited = [e.action for e in LocalClient(settings).audit()]
    assert {"webhook.add", "webhook.redeliver", "webhook.remove"} <= set(audited)


def test_a_one_shot_cli_command_sends_its_delivery_before_it_exits(
    sqlite_settings: Settings, model_dir: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    settings = sqlite_settings
    register_version(settings, RegisterRequest("net"), model_dir)
    promotable(settings, "net")
    regctl = str(Path(sys.executable).with_name("regctl"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **settings.to_env()}
    env = {k: v for k, v in env.items() if v != ""}
    with receiving() as receiver:
        made = add_webhook(settings, ADMIN, WebhookRequest(receiver.url, ["alias.moved"]))
        done = subprocess.run(
            [regctl, "alias", "set", "net@prod", "1"], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        # Sent (and recorded) by the time the process is gone: no polling needed.
        assert len(receiver.requests) == 1 and receiver.answered == 1
    [delivery] = list_deliveries(settings, made.webhook.id)
    assert (delivery.state, delivery.attempts) == ("succeeded", 1)
    assert _verified(made.secret, receiver.requests[0])["data"]["alias"] == "prod"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("file:///etc/passwd", "must be http or https, not 'file'"),
        ("ftp://files.example.com/hook", "must be http or https, not 'ftp'"),
        ("http://admin:hunter2@hooks.example.com/", "carries a user or password"),
        ("https://hooks.example.com/" + "a" * 3000, "the limit is 2048"),
        ("javascript:alert(1)", "must be http or https"),
        ("http://hooks.example.com/a b", "spaces, control or non-ASCII"),
        ("http:///no-host", "names no host"),
        ("http://hooks.example.com:99999/", "does not parse"),
    ],
)
def test_the_cli_refuses_a_hostile_webhook_url_in_one_line(
    sqlite_settings: Settings, url: str, says: str
) -> None:
    result = direct_cli(sqlite_settings, "webhooks", "add", url, "--events", "version.ready")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and says in result.stderr
    assert result.stderr.count("\n") == 1 and "hunter2" not in result.stderr
    assert json.loads(direct_cli(sqlite_settings, "webhooks", "list", "--json").stdout) == []


def test_the_cli_refuses_unknown_events(sqlite_settings: Settings) -> None:
    result = direct_cli(
        sqlite_settings, "webhooks", "add", "https://h.example.com/", "--events", "version.gone"
    )
    assert result.exit_code == 2 and "unknown events version.gone; choose from version.ready" in result.stderr


# -- the HTTP API ------------------------------------------------------------------------------------------


def test_only_admin_tokens_manage_webhooks_through_the_api(sqlite_settings: Settings, tmp_path: Path) -> None:
    import httpx

    from regctl.remote import Client
    from tests.api_server import ApiServer

    direct = LocalClient(sqlite_settings)
    tokens = {role: direct.create_token(role, role).secret for role in ("reader", "writer", "admin")}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **sqlite_settings.to_env()}
    server = ApiServer.start({k: v for k, v in env.items() if v != ""}, tmp_path)
    try:
        api = f"{server.url}/api/v1"
        body = {"url": "https://hooks.example.com/x", "events": ["version.ready"]}
        for role in ("reader", "writer"):
            auth = {"Authorization": f"Bearer {tokens[role]}"}
            assert httpx.post(f"{api}/webhooks", json=body, headers=auth).status_code == 403
            assert httpx.get(f"{api}/webhooks", headers=auth).status_code == 403
            assert httpx.delete(f"{api}/webhooks/1", headers=auth).status_code == 403
            assert httpx.get(f"{api}/webhooks/1/deliveries", headers=auth).status_code == 403
            assert httpx.post(f"{api}/webhooks/deliveries/1/redeliver", headers=auth).status_code == 403
        assert httpx.get(f"{api}/webhooks").status_code == 401
        with Client(server.url, tokens["admin"]) as admin:
            made = admin.add_webhook("https://hooks.example.com/x", ["version.ready"], model_pattern="net*")
            assert made.secret and made.webhook.model_pattern == "net*"
            assert [w.id for w in admin.webhooks()] == [made.webhook.id]
            assert admin.webhook_deliveries(made.webhook.id) == []
            assert admin.remove_webhook(made.webhook.id).removed_at is not None
            assert admin.webhooks() == [] and len(admin.webhooks(removed=True)) == 1
        refused = httpx.post(
            f"{api}/webhooks",
            json={**body, "url": "http://u:p@h.example.com/"},
            headers={"Authorization": f"Bearer {tokens['admin']}"},
        )
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_input"
    finally:
        server.stop()
