"""Webhooks: which URLs hear about which events, for which models; adding, listing and removing them.

A webhook's secret signs every delivery (regctl/webhook_signature.py); it is returned once, when the
webhook is added, and never listed. The URL is checked here, before anything is written: only
http and https, no user or password in it, and a bounded length.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from sqlalchemy import select, update

from regctl.registry import audit
from regctl.registry.access import Caller
from regctl.registry.db import session_scope
from regctl.registry.entities import NewWebhook, WebhookInfo
from regctl.registry.errors.inputs import BadWebhookEvents, BadWebhookUrl, WebhookUrlTooLong
from regctl.registry.errors.lookup import UnknownWebhook
from regctl.registry.schema import Webhook, WebhookDelivery, utcnow
from regctl.registry.settings import Settings
from regctl.registry.tokens import check_model_pattern

EVENTS = ("version.ready", "version.failed", "alias.moved", "job.failed")
MAX_URL_CHARS = 2048


def check_webhook_url(url: str) -> str:
    """The URL if deliveries may go there; InvalidInput in one line otherwise (never echoing a password)."""
    if len(url) > MAX_URL_CHARS:
        raise WebhookUrlTooLong(length=len(url), limit=MAX_URL_CHARS)
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise BadWebhookUrl(problem="the webhook URL has spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    except ValueError:
        raise BadWebhookUrl(problem="the webhook URL does not parse") from None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = parts.scheme or "none"
        raise BadWebhookUrl(problem=f"webhook URLs must be http or https, not {scheme!r}")
    if "@" in parts.netloc:
        raise BadWebhookUrl(problem="the webhook URL carries a user or password")
    if not parts.hostname:
        raise BadWebhookUrl(problem="the webhook URL names no host")
    return url


def check_events(events: Iterable[str]) -> tuple[str, ...]:
    """The events, in the order given and without repeats; InvalidInput for none or an unknown one."""
    chosen = tuple(dict.fromkeys(e.strip() for e in events if e.strip()))
    unknown = [e for e in chosen if e not in EVENTS]
    if not chosen or unknown:
        problem = f"unknown events {', '.join(unknown)}" if unknown else "no events"
        raise BadWebhookEvents(problem=problem, events=EVENTS)
    return chosen


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


def add_webhook(
    settings: Settings,
    caller: Caller,
    url: str,
    events: Iterable[str],
    *,
    model_pattern: str | None = None,
) -> NewWebhook:
    """Add a webhook; the result holds its signing secret, which is never shown again."""
    url = check_webhook_url(url)
    chosen = check_events(events)
    if model_pattern is not None:
        check_model_pattern(model_pattern)
    secret = secrets.token_urlsafe(32)
    with session_scope(settings.database_url) as session:
        row = Webhook(
            url=url,
            events=list(chosen),
            model_pattern=model_pattern,
            secret=secret,
            created_by=caller.name[:128],
        )
        session.add(row)
        session.flush()
        # The host only: a URL's path or query often carries a receiver's own secret.
        detail = {"host": urlsplit(url).hostname, "events": list(chosen), "model_pattern": model_pattern}
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
