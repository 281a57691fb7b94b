"""The webhook outbox: a delivery row per matching webhook, added in the transaction that made the event.

Because the row commits (or rolls back) with the change itself, an event is never sent for a change
that did not happen and never lost for one that did; senders pick the rows up after the commit.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from regctl.registry.access import model_matches
from regctl.registry.schema import Job, ModelVersion, Webhook, WebhookDelivery, utcnow


def record_event(session: Session, event: str, model: str, version: int | None, data: dict[str, Any]) -> int:
    """Add one pending delivery for each live webhook that wants `event` for `model`; how many were added.

    The body is fixed here, once: every attempt sends exactly these bytes.
    """
    hooks = session.scalars(select(Webhook).where(Webhook.removed_at.is_(None)).order_by(Webhook.id)).all()
    wanted = [h for h in hooks if event in h.events and model_matches(model, h.model_pattern)]
    now = utcnow()
    for hook in wanted:
        row = WebhookDelivery(
            webhook_id=hook.id,
            event=event,
            model=model,
            version=version,
            body="",
            state="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        session.add(row)
        session.flush()  # the id goes into the body
        payload = {
            "id": row.id,
            "event": event,
            "created_at": now.isoformat(),
            "model": model,
            "version": version,
            "data": data,
        }
        row.body = json.dumps(payload, separators=(",", ":"), default=str)
    return len(wanted)


def _job(job: Job) -> dict[str, Any]:
    return {"id": job.id, "kind": job.kind, "attempts": job.attempts, "max_attempts": job.max_attempts}


def version_settled(session: Session, version: ModelVersion, model: str, job: Job, error: str | None) -> None:
    """`version.ready` or `version.failed`, whichever the version's status now says, caused by `job`."""
    if version.status not in ("ready", "failed"):
        return
    data: dict[str, Any] = {"status": version.status, "method": version.method, "job": _job(job)}
    if version.status == "failed":
        data["error"] = error
    record_event(session, f"version.{version.status}", model, version.version, data)


def job_failed(session: Session, job: Job, model: str, version: int, error: str | None) -> None:
    """`job.failed` for a job that just failed (an error, a crash, the time limit or the attempt cap)."""
    record_event(session, "job.failed", model, version, {"job": _job(job), "error": error})


def alias_moved(
    session: Session, model: str, alias: str, previous: int | None, target: int | None, actor: str
) -> None:
    """`alias.moved` for an alias set, moved or removed (`target` None)."""
    data = {"alias": alias, "from": previous, "to": target, "actor": actor}
    record_event(session, "alias.moved", model, target, data)


def promotion_request(session: Session, event: str, request: dict[str, Any]) -> None:
    """`alias.requested`, `alias.approved` or `alias.rejected`, with the request as the API shows it."""
    record_event(session, event, request["model"], request["version"], request)
