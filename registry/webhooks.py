"""Webhooks: which URLs hear about which events, for which models; adding, listing and removing them.

A webhook's secret signs every delivery (regctl/webhook_signature.py); it is returned once, when the
webhook is added, and never listed. Its URL, events and model pattern were checked when its
`WebhookRequest` was built (only http and https, no user or password, a bounded length).
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from sqlalchemy import select, update

from regctl.registry import audit
from regctl.registry.access import Caller
from regctl.registry.db import session_scope
from regctl.registry.entities import NewWebhook, WebhookInfo
from regctl.registry.errors.lookup import UnknownWebhook
from regctl.registry.requests import WebhookRequest
from regctl.registry.schema import Webhook, WebhookDelivery, utcnow
from regctl.registry.settings import Settings


def webhook_info(row: Webhook) -> WebhookInfo:
    """The record of a webhook row (without its secret)."""
    return WebhookInfo(
        row.id,
        row.url,
        tuple(row.events),
        row.model_pattern,
        row.created_by,
        row.created_at,
        row.removed_at,
    )


def add_webhook(settings: Settings, caller: Caller, request: WebhookRequest) -> NewWebhook:
    """Add a webhook; the result holds its signing secret, which is never shown again."""
    secret = secrets.token_urlsafe(32)
    with session_scope(settings.database_url) as session:
        row = Webhook(
            url=request.url,
            events=list(request.events),
            model_pattern=request.model_pattern,
            secret=secret,
            created_by=caller.name[:128],
        )
        session.add(row)
        session.flush()
        # The host only: a URL's path or query often carries a receiver's own secret.
        detail = {
            "host": urlsplit(request.url).hostname,
            "events": list(request.events),
            "model_pattern": request.model_pattern,
        }
        audit.record(session, caller, "webhook.add", f"webhook {row.id}", detail=detail)
        return NewWebhook(webhook_info(row), secret)


def list_webhooks(settings: Settings, *, removed: bool = False) -> list[WebhookInfo]:
    """The webhooks, newest first; removed ones only when asked."""
    query = select(Webhook).order_by(Webhook.id.desc())
    if not removed:
        query = query.where(Webhook.removed_at.is_(None))
    with session_scope(settings.database_url) as session:
        return [webhook_info(row) for row in session.scalars(query)]


def remove_webhook(settings: Settings, caller: Caller, webhook_id: int) -> WebhookInfo:
    """Remove a webhook: it gets no new deliveries and its unsent ones fail; its history stays."""
    with session_scope(settings.database_url) as session:
        row = session.get(Webhook, webhook_id, with_for_update=True)
        if row is None or row.removed_at is not None:
            raise UnknownWebhook(webhook_id=webhook_id)
        row.removed_at = utcnow()
        session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.webhook_id == webhook_id,
                WebhookDelivery.state.in_(("pending", "sending")),
            )
            .values(state="failed", claimed_until=None, last_error="the webhook was removed")
            .execution_options(synchronize_session=False)
        )
        audit.record(session, caller, "webhook.remove", f"webhook {webhook_id}")
        return webhook_info(row)
