"""Webhooks through the distributed service: real Redis, PostgreSQL, `regctl worker` processes and a real
HTTP receiver. Deliveries are Celery tasks on the webhooks queue, which a worker consumes by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regctl.registry.access import local_caller
from regctl.registry.deliveries import list_deliveries
from regctl.registry.entities import DeliveryInfo, JobInfo
from regctl.registry.requests import WebhookRequest
from regctl.registry.settings import Settings
from regctl.webhook_signature import verify_signature
from tests.conftest import write_model_dir
from tests.factories import promotable
from tests.integration.conftest import Service, linear_model, wait_until
from tests.webhook_receiver import Received, receiving

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
ADMIN = local_caller()


def _signed_payload(secret: str, request: Received) -> dict:
    headers = request.headers
    assert verify_signature(
        secret, request.body, headers["x-regctl-timestamp"], headers["x-regctl-signature"]
    )
    return json.loads(request.body)


def _settled(settings: Settings, hook_id: int, timeout: float = 30) -> DeliveryInfo:
    def done() -> DeliveryInfo | None:
        found = list_deliveries(settings, hook_id)
        return found[0] if found and found[0].state in ("succeeded", "failed") else None

    return wait_until(done, timeout, f"the delivery of webhook {hook_id} to settle")


def test_a_worker_posts_version_ready_signed_and_a_slow_receiver_never_delays_the_job(
    service: Service, tmp_path: Path
) -> None:
    from regctl.service.webhooks import add_webhook

    service.start_worker("cpu", concurrency=2)  # the webhooks queue comes with it
    model = linear_model(tmp_path / "linear")
    with receiving() as fast, receiving(delay=10) as slow:
        quick = add_webhook(
            service.settings, ADMIN, WebhookRequest(fast.url, ["version.ready"], model_pattern="lin*")
        )
        service.register("linear", model)
        baseline = service.wait_version("linear:1").jobs[0]
        [first] = fast.received(1, timeout=30)
        sleepy = add_webhook(service.settings, ADMIN, WebhookRequest(slow.url, ["version.ready"]))
        service.register("linear", model, new_version=True)
        version = service.wait_version("linear:2")
        second = fast.received(2, timeout=30)[1]
        [late] = slow.received(1, timeout=30)
        assert slow.answered == 0  # still asleep, and the job long finished
        slow.release.set()
        delivered = _settled(service.settings, quick.webhook.id)

    assert version.status == "ready"
    [job] = version.jobs
    assert late.at >= job.finished_at.timestamp()  # the version was ready before the receiver answered
    # Had the job waited for the receiver, it would have taken 10 s (the sleep, and the POST's
    # timeout) longer than the same job without one.
    took, alone = _duration(job), _duration(baseline)
    assert took < alone + 5.0, f"the job took {took:.1f}s with a sleeping receiver, {alone:.1f}s without"
    payload = _signed_payload(quick.secret, second)
    assert (payload["event"], payload["model"], payload["version"]) == ("version.ready", "linear", 2)
    assert payload["data"]["job"]["id"] == job.id and payload["data"]["status"] == "ready"
    assert _delivery_id(second) == str(delivered.id) == str(payload["id"])
    assert (delivered.state, delivered.attempts, delivered.last_status) == ("succeeded", 1, 200)
    assert _signed_payload(quick.secret, first)["version"] == 1
    assert _signed_payload(sleepy.secret, late)["version"] == 2
    assert not verify_signature(quick.secret, late.body, late.headers["x-regctl-timestamp"], _sig(late))


def _duration(job: JobInfo) -> float:
    assert job.finished_at is not None and job.started_at is not None
    return (job.finished_at - job.started_at).total_seconds()


def _delivery_id(request: Received) -> str:
    return request.headers["x-regctl-delivery"]


def _sig(request: Received) -> str:
    return request.headers["x-regctl-signature"]


def test_a_lost_message_is_resent_by_the_reconciler_and_a_receiver_failing_twice_gets_the_third_try(
    service: Service, tmp_path: Path
) -> None:
    from regctl.service.aliases import set_alias
    from regctl.service.webhooks import add_webhook
    from regctl.worker.reconciler import reconcile

    settings = service.settings  # the retry base that matters is the worker's (0.2 s, below)
    service.register("net", write_model_dir(tmp_path / "net"), convert=False)
    promotable(settings, "net")
    with receiving(statuses=(500, 500, 200)) as receiver:
        made = add_webhook(settings, ADMIN, WebhookRequest(receiver.url, ["alias.moved"]))
        set_alias(settings, ADMIN, "net", "staging", 1)  # publishes the delivery; no worker runs yet
        assert service.queue_length("webhooks") == 1
        service.redis.flushdb()  # Redis restarted: the message is gone, the outbox row is not
        service.start_worker("cpu", REGCTL_WEBHOOK_RETRY_BASE_S="0.2")
        [pending] = list_deliveries(settings, made.webhook.id)
        assert (pending.state, pending.attempts) == ("pending", 0)
        assert reconcile(settings).webhooks == (pending.id,)
        delivered = _settled(settings, made.webhook.id)
        requests = receiver.received(3, timeout=5)

    assert (delivered.state, delivered.attempts, delivered.last_status) == ("succeeded", 3, 200)
    assert [(a.attempt, a.status_code) for a in delivered.history] == [(1, 500), (2, 500), (3, 200)]
    assert all(a.duration_ms >= 0 and a.error is None for a in delivered.history)
    assert {r.headers["x-regctl-delivery"] for r in requests} == {str(delivered.id)}
    payloads = [_signed_payload(made.secret, r) for r in requests]
    assert all(p == payloads[0] for p in payloads) and payloads[0]["data"]["to"] == 1
