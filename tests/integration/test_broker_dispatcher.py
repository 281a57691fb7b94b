"""The broker's dispatcher on real Redis: a message per job on its queue, following only reads the rows.

No worker consumes the test's Redis database here, so what the dispatcher put there stays to be read.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from regctl.registry.access import local_caller
from regctl.registry.aliases import set_alias
from regctl.registry.jobs import get_job, request_cancel
from regctl.registry.requests import RegisterRequest, WebhookRequest
from regctl.registry.settings import Settings
from regctl.registry.versions import register_version
from regctl.registry.webhooks import add_webhook
from regctl.worker.dispatch import Dispatcher, dispatcher_for
from regctl.worker.dispatch.broker import BrokerDispatcher
from regctl.worker.dispatch.publishing import app_for
from regctl.worker.queues import DELIVER_WEBHOOK_TASK, RUN_JOB_TASK, WEBHOOK_QUEUE
from tests.factories import promotable
from tests.integration.conftest import linear_model

pytestmark = [pytest.mark.redis]


@pytest.fixture
def broker(sqlite_settings: Settings, redis_url: str) -> Iterator[Dispatcher]:
    """The dispatcher for a SQLite registry whose broker is the test's own Redis database."""
    settings = dataclasses.replace(sqlite_settings, broker_url=redis_url)
    yield dispatcher_for(settings)
    app_for(settings).close()


@pytest.fixture
def messages(redis_url: str) -> Iterator[Any]:
    """The messages waiting on a queue of the test's Redis database, oldest first, as (task, args)."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)

    def waiting(queue: str) -> list[tuple[str, list[Any]]]:
        # kombu pushes on the left: the oldest message is the last of the list.
        raw = [json.loads(item) for item in reversed(client.lrange(queue, 0, -1))]
        return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in raw]

    yield waiting
    client.close()


def test_the_broker_is_chosen_and_answers_its_preflight(broker: Dispatcher) -> None:
    assert isinstance(broker, BrokerDispatcher)
    broker.preflight()


def test_publish_puts_one_message_per_job_on_its_queue_and_records_it(
    broker: Dispatcher, messages: Any, tmp_path: Path
) -> None:
    settings = broker.settings
    [job] = register_version(
        settings, RegisterRequest("linear"), linear_model(tmp_path / "linear"), jobs=("convert",)
    ).jobs
    assert messages(job.queue) == []  # the row is committed before any message is sent
    broker.publish([job])
    assert messages(job.queue) == [(RUN_JOB_TASK, [job.id])]
    assert get_job(settings, job.id).published_at is not None


def test_following_reads_the_rows_and_runs_nothing_here(broker: Dispatcher, tmp_path: Path) -> None:
    settings = broker.settings
    [job] = register_version(
        settings, RegisterRequest("linear"), linear_model(tmp_path / "linear"), jobs=("convert",)
    ).jobs
    following = broker.follow(job)
    assert next(following).state == "queued"
    request_cancel(settings, job.id)  # nobody runs it, so it ends only when cancelled
    rest = list(following)
    assert [update.state for update in rest] == ["cancelled"] and rest[-1].worker is None


def test_webhook_deliveries_go_to_the_webhooks_queue(
    broker: Dispatcher, messages: Any, model_dir: Path
) -> None:
    settings = broker.settings
    register_version(settings, RegisterRequest("net"), model_dir)
    promotable(settings, "net")
    add_webhook(settings, local_caller(), WebhookRequest("https://hooks.example.com/regctl", ["alias.moved"]))
    set_alias(settings, "net", "staging", 1)
    broker.send_webhooks()
    [(task, [delivery_id])] = messages(WEBHOOK_QUEUE)
    assert task == DELIVER_WEBHOOK_TASK and delivery_id >= 1
