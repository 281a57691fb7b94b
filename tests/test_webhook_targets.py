"""Where deliveries may go (SSRF) and how they are spread: private targets refused at send time unless
allowed, the request pinned to the address checked, receivers served in parallel, one at a time each.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from regctl.registry.access import local_caller
from regctl.registry.aliases import set_alias
from regctl.registry.deliveries import list_deliveries
from regctl.registry.requests import RegisterRequest, WebhookRequest
from regctl.registry.settings import Settings
from regctl.registry.versions import register_version
from regctl.registry.webhooks import add_webhook
from regctl.worker.webhook_sender import post, send_due
from regctl.worker.webhook_target import TargetRefused, checked_target
from tests.conftest import wait_until, write_model_dir
from tests.factories import promotable
from tests.webhook_receiver import receiving

ADMIN = local_caller()
DEADLINE_S = 60.0


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:6379/", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://0.0.0.0:8000/", "unspecified"),
        ("http://100.64.0.1/", "shared"),
    ],
)
def test_a_private_target_is_refused_unless_allowed(url: str, kind: str) -> None:
    with pytest.raises(TargetRefused, match=f"a {kind} address; list it in REGCTL_WEBHOOK_ALLOW_PRIVATE"):
        checked_target(url, ())
    allowed = (
        "127.0.0.0/8",
        "::1",
        "169.254.0.0/16",
        "10.0.0.0/8",
        "192.168.0.0/16",
        "0.0.0.0",
        "100.64.0.0/10",
    )
    assert checked_target(url, allowed).url.startswith("http://")  # listed: let through


def test_a_public_address_passes_and_the_request_is_pinned_to_it() -> None:
    target = checked_target("https://93.184.216.34:8443/hooks?x=1", ())
    assert target.url == "https://93.184.216.34:8443/hooks?x=1" and target.host == "93.184.216.34"


def test_an_allowed_name_is_sent_to_the_address_checked_with_its_own_host_header() -> None:
    with receiving() as receiver:
        url = receiver.url.replace("127.0.0.1", "localhost")
        assert checked_target(url, ("localhost",)).url == receiver.url
        result = post(url, b"{}", {"Content-Type": "application/json"}, allowed=("localhost",))
        [request] = receiver.received(1, timeout=DEADLINE_S)
    assert result.ok
    assert request.headers["host"] == url.split("//")[1].split("/")[0]  # localhost:PORT, not the address


def test_a_delivery_to_a_private_receiver_is_refused_at_send_time_and_recorded(
    sqlite_settings: Settings,
) -> None:
    register_version(
        sqlite_settings, RegisterRequest("net"), write_model_dir(sqlite_settings.home.parent / "m")
    )
    promotable(sqlite_settings, "net")
    with receiving() as receiver:
        hook = add_webhook(sqlite_settings, ADMIN, WebhookRequest(receiver.url, ["alias.moved"]))
        set_alias(sqlite_settings, "net", "staging", 1)
        assert send_due(sqlite_settings) == 1
        assert receiver.requests == []
    [delivery] = list_deliveries(sqlite_settings, hook.webhook.id)
    assert delivery.state == "pending"  # retried later, as any failed attempt
    error = delivery.last_error or ""
    assert delivery.attempts == 1 and error.startswith(
        "refused: 127.0.0.1 resolves to 127.0.0.1, a loopback address"
    )


def test_receivers_are_sent_to_side_by_side_and_a_slow_one_gets_one_request_at_a_time(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    settings = dataclasses.replace(sqlite_settings, webhook_allow_private=("127.0.0.1",))
    register_version(settings, RegisterRequest("net"), write_model_dir(tmp_path / "m"))
    promotable(settings, "net")
    with receiving(delay=60) as slow, receiving() as fast:
        add_webhook(settings, ADMIN, WebhookRequest(slow.url, ["alias.moved"]))
        set_alias(settings, "net", "staging", 1)
        set_alias(settings, "net", "prod", 1)  # two deliveries for the slow receiver
        add_webhook(settings, ADMIN, WebhookRequest(fast.url, ["alias.moved"]))
        set_alias(settings, "net", "canary", 1)  # one more for it, and one for the fast one
        sending = threading.Thread(target=send_due, args=(settings,), daemon=True)
        sending.start()
        [request] = fast.received(1, timeout=DEADLINE_S)  # not held behind the slow receiver's answer
        # Both lanes start at once, but the slow lane's first request may land after the fast one's.
        wait_until(lambda: len(slow.requests) >= 1, DEADLINE_S, "the slow receiver's first request")
        assert len(slow.requests) == 1 and slow.answered == 0  # its next waits for this one
        slow.release.set()
        wait_until(lambda: not sending.is_alive(), DEADLINE_S, "the sender to finish")
        assert len(slow.requests) == 3 and slow.answered == 3
        assert b'"canary"' in request.body
