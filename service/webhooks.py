"""Webhooks: adding, listing and removing them, their deliveries, and redelivery (admin-only)."""

from __future__ import annotations

from collections.abc import Iterable

from regctl.registry.access import Caller
from regctl.registry.entities import DeliveryInfo, NewWebhook, WebhookInfo
from regctl.registry.settings import Settings
from regctl.service import dispatch


def add_webhook(
    settings: Settings,
    caller: Caller,
    url: str,
    events: Iterable[str],
    *,
    model_pattern: str | None = None,
) -> NewWebhook:
    """Add a webhook for `events` (of models matching `model_pattern`); its secret is in the result only."""
    from regctl.registry.webhooks import add_webhook as add

    caller.require("webhooks")
    return add(settings, caller, url, events, model_pattern=model_pattern)


def list_webhooks(settings: Settings, caller: Caller, *, removed: bool = False) -> list[WebhookInfo]:
    """The webhooks, newest first (never a secret); removed ones on request."""
    from regctl.registry.webhooks import list_webhooks as query

    caller.require("webhooks")
    return query(settings, removed=removed)


def remove_webhook(settings: Settings, caller: Caller, webhook_id: int) -> WebhookInfo:
    """Remove a webhook: no new deliveries, its unsent ones fail, its history stays readable."""
    from regctl.registry.webhooks import remove_webhook as remove

    caller.require("webhooks")
    return remove(settings, caller, webhook_id)


def list_deliveries(
    settings: Settings, caller: Caller, webhook_id: int, *, limit: int = 50
) -> list[DeliveryInfo]:
    """A webhook's newest deliveries with every attempt (status code, duration, error)."""
    from regctl.registry.deliveries import list_deliveries as query

    caller.require("webhooks")
    return query(settings, webhook_id, limit=limit)


def redeliver(settings: Settings, caller: Caller, delivery_id: int) -> DeliveryInfo:
    """Send a delivery again now: queued for a worker, or (embedded) sent from this process."""
    from regctl.registry.deliveries import redeliver as again

    caller.require("webhooks")
    delivery = again(settings, caller, delivery_id)
    dispatch.send_webhooks(settings)
    return delivery
