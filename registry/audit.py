"""The audit trail: every change made through the service, written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from regctl.registry.access import Caller
from regctl.registry.db import session_scope
from regctl.registry.entities import AuditEntry
from regctl.registry.schema import AuditEvent
from regctl.registry.settings import Settings


def record(
    session: Session,
    caller: Caller,
    action: str,
    target: str,
    *,
    model: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an audit row for `action` on `target` inside the caller's transaction."""
    session.add(
        AuditEvent(
            actor=caller.name[:128],
            action=action,
            model=model,
            target=target,
            detail=detail,
            address=(caller.address or "")[:64] or None,
        )
    )


def list_audit(settings: Settings, *, model: str | None = None, limit: int = 100) -> list[AuditEntry]:
    """The newest audit entries first, optionally only those about `model`."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if model is not None:
        query = query.where(AuditEvent.model == model)
    with session_scope(settings.database_url) as session:
        return [
            AuditEntry(e.id, e.at, e.actor, e.action, e.model, e.target, e.detail, e.address)
            for e in session.scalars(query)
        ]
