"""Webhook deliveries: claiming one to send, recording each attempt, the retry policy, listing, redelivery.

A delivery is claimed with one conditional UPDATE (due and pending, or sending under a lease that
expired), so two senders never send the same attempt; a sender that dies leaves a lease that runs
out, and the delivery is claimed again. A failed attempt is retried after an exponential backoff
(REGCTL_WEBHOOK_RETRY_BASE_S, doubling, at most RETRY_CAP_S apart) until GIVE_UP_AFTER has passed
since the event; then the delivery fails. Nothing here does network I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from regctl.registry import audit
from regctl.registry.access import Caller
from regctl.registry.db import session_scope
from regctl.registry.entities import AttemptInfo, DeliveryInfo
from regctl.registry.errors.inputs import DeliveryBeingSent, DeliveryOfRemovedWebhook
from regctl.registry.errors.lookup import UnknownDelivery, UnknownWebhook
from regctl.registry.schema import Webhook, WebhookAttempt, WebhookDelivery, utcnow
from regctl.registry.settings import Settings

LEASE_S = 60.0  # longer than any attempt (its timeout is 10 s), so a live sender keeps its claim
RETRY_CAP_S = 3600.0
GIVE_UP_AFTER = timedelta(hours=24)
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class ClaimedDelivery:
    """What a sender needs for one attempt, which it now owns until `claimed_until`."""

    id: int
    webhook_id: int
    url: str
    secret: str
    event: str
    body: bytes
    attempt: int
    claimed_until: datetime


@dataclass(frozen=True)
class SendResult:
    """How one POST went: the receiver's status code (None if it never answered) and how long it took."""

    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True for a 2xx answer; anything else (a redirect included) is a failed attempt."""
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_delay(base: float, attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed attempt: base, 2·base, 4·base … at most RETRY_CAP_S."""
    # Not tenacity: this schedule is stored (next_attempt_at) and read by any sender in any process,
    # while tenacity's waits serve one loop that sleeps in-process and take its live RetryCallState.
    return min(base * 2.0 ** max(0, attempts - 1), RETRY_CAP_S)


def _claimable(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now),
        and_(WebhookDelivery.state == "sending", WebhookDelivery.claimed_until < now),
    )


def claim_delivery(settings: Settings, delivery_id: int, lease_s: float = LEASE_S) -> ClaimedDelivery | None:
    """Take delivery `delivery_id` for one attempt if it is due; None when it is not (or another has it)."""
    now = utcnow()
    until = now + timedelta(seconds=lease_s)
    with session_scope(settings.database_url) as session:
        taken = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, _claimable(now))
            .values(state="sending", claimed_until=until, attempts=WebhookDelivery.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:
            return None
        row, hook = session.execute(
            select(WebhookDelivery, Webhook)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id == delivery_id)
        ).one()
        return ClaimedDelivery(
            row.id, hook.id, hook.url, hook.secret, row.event, row.body.encode(), row.attempts, until
        )


def record_attempt(settings: Settings, claimed: ClaimedDelivery, result: SendResult) -> DeliveryInfo:
    """Record an attempt and move the delivery on: succeeded, pending again after a backoff, or failed.

    The attempt is always recorded; the delivery's state only if this sender still holds the claim.
    """
    with session_scope(settings.database_url) as session:
        session.add(
            WebhookAttempt(
                delivery_id=claimed.id,
                attempt=claimed.attempt,
                at=result.started_at,
                status_code=result.status_code,
                duration_ms=result.duration_ms,
                error=_clip(result.error),
            )
        )
        row = session.get_one(WebhookDelivery, claimed.id, with_for_update=True)
        if row.state == "sending" and row.attempts == claimed.attempt:
            _settle(row, result, settings.webhook_retry_base, utcnow())
        session.flush()
        return _info(row, _attempts(session, [row.id]).get(row.id, ()))


def _settle(row: WebhookDelivery, result: SendResult, base: float, now: datetime) -> None:
    row.claimed_until = None
    row.last_status, row.last_error = result.status_code, _clip(result.error)
    if result.ok:
        row.state, row.delivered_at = "succeeded", now
        return
    retry_at = now + timedelta(seconds=retry_delay(base, row.attempts))
    if retry_at > row.created_at + GIVE_UP_AFTER:
        row.state = "failed"
    else:
        row.state, row.next_attempt_at = "pending", retry_at


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_ERROR_CHARS else flat[: MAX_ERROR_CHARS - 1] + "…"


def due_deliveries(settings: Settings, limit: int = 100, *, url: str | None = None) -> list[int]:
    """Ids of deliveries to send now (due, or under an expired lease), the longest-waiting first.

    With `url`, only those to that receiver.
    """
    query = select(WebhookDelivery.id).where(_claimable(utcnow()))
    if url is not None:
        query = query.join(Webhook, Webhook.id == WebhookDelivery.webhook_id).where(Webhook.url == url)
    query = query.order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)
    with session_scope(settings.database_url) as session:
        return list(session.scalars(query))


def due_urls(settings: Settings, limit: int = 100) -> list[str]:
    """The receivers with a delivery to send now, the one waiting longest first."""
    waiting = func.min(WebhookDelivery.next_attempt_at)
    query = (
        select(Webhook.url)
        .join(WebhookDelivery, WebhookDelivery.webhook_id == Webhook.id)
        .where(_claimable(utcnow()))
        .group_by(Webhook.url)
        .order_by(waiting)
        .limit(limit)
    )
    with session_scope(settings.database_url) as session:
        return list(session.scalars(query))


def list_deliveries(settings: Settings, webhook_id: int, *, limit: int = 50) -> list[DeliveryInfo]:
    """A webhook's deliveries, newest first, each with its attempts; NotFound for an unknown webhook."""
    with session_scope(settings.database_url) as session:
        if session.get(Webhook, webhook_id) is None:
            raise UnknownWebhook(webhook_id=webhook_id)
        rows = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        ).all()
        attempts = _attempts(session, [row.id for row in rows])
        return [_info(row, attempts.get(row.id, ())) for row in rows]


def get_delivery(settings: Settings, delivery_id: int) -> DeliveryInfo:
    """One delivery with its attempts."""
    with session_scope(settings.database_url) as session:
        row = _find(session, delivery_id)
        return _info(row, _attempts(session, [row.id]).get(row.id, ()))


def redeliver(settings: Settings, caller: Caller, delivery_id: int) -> DeliveryInfo:
    """Make a delivery due now, whatever its state (a receiver that lost it), unless it is being sent.

    Its attempts keep counting; if this attempt fails and the event is older than GIVE_UP_AFTER, it
    fails again at once.
    """
    now = utcnow()
    with session_scope(settings.database_url) as session:
        row = _find(session, delivery_id, lock=True)
        if row.state == "sending" and row.claimed_until is not None and row.claimed_until >= now:
            raise DeliveryBeingSent(delivery_id=delivery_id)
        hook = session.get_one(Webhook, row.webhook_id)
        if hook.removed_at is not None:
            raise DeliveryOfRemovedWebhook(delivery_id=delivery_id, webhook_id=hook.id)
        row.state, row.next_attempt_at, row.claimed_until = "pending", now, None
        detail = {"event": row.event, "webhook": row.webhook_id}
        audit.record(
            session, caller, "webhook.redeliver", f"delivery {delivery_id}", model=row.model, detail=detail
        )
        return _info(row, _attempts(session, [row.id]).get(row.id, ()))


def _find(session: Session, delivery_id: int, lock: bool = False) -> WebhookDelivery:
    row = session.get(WebhookDelivery, delivery_id, with_for_update=lock)
    if row is None:
        raise UnknownDelivery(delivery_id=delivery_id)
    return row


def _attempts(session: Session, delivery_ids: list[int]) -> dict[int, tuple[AttemptInfo, ...]]:
    if not delivery_ids:
        return {}
    found: dict[int, list[AttemptInfo]] = {}
    query = (
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(delivery_ids))
        .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt)
    )
    for a in session.scalars(query):
        found.setdefault(a.delivery_id, []).append(
            AttemptInfo(a.attempt, a.at, a.status_code, a.duration_ms, a.error)
        )
    return {key: tuple(value) for key, value in found.items()}


def _info(row: WebhookDelivery, history: tuple[AttemptInfo, ...]) -> DeliveryInfo:
    waiting = row.state in ("pending", "sending")
    return DeliveryInfo(
        id=row.id,
        webhook_id=row.webhook_id,
        event=row.event,
        model=row.model,
        version=row.version,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if waiting else None,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        last_status=row.last_status,
        last_error=row.last_error,
        history=history,
    )
