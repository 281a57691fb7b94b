"""Webhooks: adding, listing and removing them, their deliveries, and redelivery (admin-only)."""

from __future__ import annotations

from regctl.registry import deliveries as registry_deliveries
from regctl.registry import webhooks as registry_webhooks
from regctl.registry.access import Caller
from regctl.registry.entities import DeliveryInfo, NewWebhook, WebhookInfo
from regctl.registry.requests import WebhookRequest
from regctl.registry.settings import Settings
from regctl.service import dispatch


def add_webhook(settings: Settings, caller: Caller, request: WebhookRequest) -> NewWebhook:
    """Add a webhook for the request's events and models; its secret is in the result only."""
    caller.require("webhooks")
    return registry_webhooks.add_webhook(settings, caller, request)


def list_webhooks(settings: Settings, caller: Caller, *, removed: bool = False) -> list[WebhookInfo]:
    """The webhooks, newest first (never a secret); removed ones on request."""
    caller.require("webhooks")
    return registry_webhooks.list_webhooks(settings, removed=removed)


def remove_webhook(settings: Settings, caller: Caller, webhook_id: int) -> WebhookInfo:
    """Remove a webhook: no new deliveries, its unsent ones fail, its history stays readable."""
    caller.require("webhooks")
    return registry_webhooks.remove_webhook(settings, caller, webhook_id)


def list_deliveries(
    settings: Settings, caller: Caller, webhook_id: int, *, limit: int = 50
) -> list[DeliveryInfo]:
    """A webhook's newest deliveries with every attempt (status code, duration, error)."""
    caller.require("webhooks")
    return registry_deliveries.list_deliveries(settings, webhook_id, limit=limit)


def redeliver(settings: Settings, caller: Caller, delivery_id: int) -> DeliveryInfo:
    """Send a delivery again now: queued for a worker, or (embedded) sent from this process."""
    caller.require("webhooks")
    delivery = registry_deliveries.redeliver(settings, caller, delivery_id)
    dispatch.send_webhooks(settings)
    return delivery
