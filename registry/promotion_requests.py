"""Promotion requests: a protected alias moved by two people (REGCTL_PROMOTION_APPROVALS=2).

A writer or admin files a request (`resnet@prod` to version 7, with a reason); a different admin
approves it, and only then does the alias move, or rejects it. An alias has at most one open request
at a time, ordered by the model row's lock (as every alias change is) and held by a partial unique
index. A request waits REGCTL_PROMOTION_REQUEST_TTL_S at most; after that it reads as expired and
can no longer be approved. The promotion policy is checked when the request is filed and again at
approval, since the registry may have changed in between (a torch delisted, a key retired).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from regctl.registry import audit, outbox
from regctl.registry.access import Caller
from regctl.registry.aliases import lock_aliases, move_alias, policy_refusal
from regctl.registry.db import session_scope
from regctl.registry.entities import PromotionRequestInfo
from regctl.registry.errors.inputs import PromotionRefused
from regctl.registry.errors.promotion import (
    EmptyReason,
    NotProtected,
    OwnRequest,
    RequestDecided,
    RequestExpired,
    RequestPending,
    UnknownRequest,
)
from regctl.registry.lookup import find_version
from regctl.registry.records import request_info
from regctl.registry.refs import Ref, check_alias_name, check_model_name
from regctl.registry.schema import Model, ModelVersion, PromotionRequest, utcnow
from regctl.registry.settings import Settings
from regctl.registry.text import check_text

MAX_REASON_CHARS = 1000


def check_reason(reason: str | None, what: str = "the reason") -> str:
    """A request's reason (or a decision's note) as given: 1 to MAX_REASON_CHARS visible characters."""
    text = (reason or "").strip()
    if not text or len(text) > MAX_REASON_CHARS:
        raise EmptyReason(limit=MAX_REASON_CHARS)
    return check_text(what, text, multiline=True)


def file_request(
    settings: Settings,
    caller: Caller,
    name: str,
    alias: str,
    version: int,
    reason: str,
    *,
    force: bool = False,
) -> PromotionRequestInfo:
    """File a request to point the protected `name@alias` at `version`; a different admin decides it.

    The promotion policy is checked now, so nobody is asked to approve what cannot move; `force`
    (an admin's) lets the request override it, and the approver sees that it does.
    """
    check_model_name(name)
    alias = check_alias_name(alias)
    reason = check_reason(reason)
    if alias not in settings.protected_aliases:
        protected = ", ".join(settings.protected_aliases) or "none"
        raise NotProtected(alias=alias, protected=protected, target=f"{name}@{alias}", version=version)
    with session_scope(settings.database_url) as session:
        model, target = find_version(session, Ref(name, version=version))
        lock_aliases(session, model)
        refused = policy_refusal(session, settings, target, alias)
        if refused and not force:
            hint = "an admin may file the request with --force, which the approver sees and the audit records"
            raise PromotionRefused(target=f"{name}@{alias}", version=version, reason=refused, hint=hint)
        now = utcnow()
        open_ = _open_request(session, model, alias)
        if open_ is not None:
            raise RequestPending(
                target=f"{name}@{alias}",
                request_id=open_.id,
                requested_by=open_.requested_by,
                version=_version_of(session, open_),
                expires=f"{open_.expires_at:%Y-%m-%d %H:%M UTC}",
            )
        row = PromotionRequest(
            model_id=model.id,
            alias=alias,
            version_id=target.id,
            reason=reason,
            force=force,
            requested_by=caller.name[:128],
            requested_at=now,
            expires_at=now + timedelta(seconds=settings.promotion_request_ttl),
            state="pending",
        )
        session.add(row)
        session.flush()
        info = request_info(row, model.name, version)
        detail: dict[str, Any] = {"request": row.id, "to": version, "reason": reason}
        if refused:
            detail["forced"] = refused
        audit.record(session, caller, "alias.request", info.target, model=model.name, detail=detail)
        outbox.promotion_request(session, "alias.requested", info.to_json())
        return info


def approve_request(
    settings: Settings, caller: Caller, request_id: int, note: str | None = None
) -> PromotionRequestInfo:
    """Approve a pending request, moving its alias: never by its requester, never once expired.

    The promotion policy is checked again; a request filed with force overrides it, recorded.
    """
    note = check_reason(note, "the note") if note else None
    with session_scope(settings.database_url) as session:
        row, model = _decidable(session, caller, request_id)
        if row.requested_by == caller.name[:128]:
            raise OwnRequest(caller=caller.name, request_id=row.id)
        target = session.get_one(ModelVersion, row.version_id)
        refused = policy_refusal(session, settings, target, row.alias)
        if refused and not row.force:
            hint = "reject the request, or have an admin file it again with --force"
            raise PromotionRefused(
                target=f"{model.name}@{row.alias}", version=target.version, reason=refused, hint=hint
            )
        detail = {"request": row.id, "requested_by": row.requested_by}
        moved = move_alias(session, caller, model, target, row.alias, forced=refused, detail=detail)
        row.state, row.decided_by, row.decided_at, row.note = "approved", caller.name[:128], utcnow(), note
        row.previous = moved.previous
        info = request_info(row, model.name, target.version)
        audit.record(
            session, caller, "alias.approve", info.target, model=model.name, detail={"request": row.id}
        )
        outbox.promotion_request(session, "alias.approved", info.to_json())
        return info


def reject_request(
    settings: Settings, caller: Caller, request_id: int, note: str | None = None
) -> PromotionRequestInfo:
    """Reject a pending request (its requester may withdraw it this way too); the alias stays."""
    note = check_reason(note, "the note") if note else None
    with session_scope(settings.database_url) as session:
        row, model = _decidable(session, caller, request_id)
        row.state, row.decided_by, row.decided_at, row.note = "rejected", caller.name[:128], utcnow(), note
        info = request_info(row, model.name, _version_of(session, row))
        detail = {"request": row.id, **({"note": note} if note else {})}
        audit.record(session, caller, "alias.reject", info.target, model=model.name, detail=detail)
        outbox.promotion_request(session, "alias.rejected", info.to_json())
        return info


def get_request(settings: Settings, request_id: int) -> PromotionRequestInfo:
    """One request by id, or UnknownRequest."""
    with session_scope(settings.database_url) as session:
        row = session.get(PromotionRequest, request_id)
        if row is None:
            raise UnknownRequest(request_id=request_id)
        return request_info(row, session.get_one(Model, row.model_id).name, _version_of(session, row))


def list_requests(
    settings: Settings, name: str | None = None, *, pending_only: bool = True, limit: int = 100
) -> list[PromotionRequestInfo]:
    """Requests, newest first: the pending ones (not yet expired), or all with `pending_only=False`."""
    query = (
        select(PromotionRequest, Model.name, ModelVersion.version)
        .join(Model, Model.id == PromotionRequest.model_id)
        .join(ModelVersion, ModelVersion.id == PromotionRequest.version_id)
        .order_by(PromotionRequest.id.desc())
        .limit(limit)
    )
    if name is not None:
        query = query.where(Model.name == check_model_name(name))
    if pending_only:
        query = query.where(PromotionRequest.state == "pending", PromotionRequest.expires_at > utcnow())
    with session_scope(settings.database_url) as session:
        return [request_info(row, model, version) for row, model, version in session.execute(query)]


def _open_request(session: Session, model: Model, alias: str) -> PromotionRequest | None:
    """The alias's open request; one past its time is marked expired here, so a new one may be filed."""
    row = session.scalars(
        select(PromotionRequest).where(
            PromotionRequest.model_id == model.id,
            PromotionRequest.alias == alias,
            PromotionRequest.state == "pending",
        )
    ).one_or_none()
    if row is not None and row.expires_at <= utcnow():
        row.state = "expired"
        session.flush()  # before the new row: the open-request index holds one pending row per alias
        return None
    return row


def _decidable(session: Session, caller: Caller, request_id: int) -> tuple[PromotionRequest, Model]:
    """The request, locked with its model, when it is still pending and not expired."""
    row = session.get(PromotionRequest, request_id)
    model = session.get_one(Model, row.model_id) if row is not None else None
    if row is None or model is None or not caller.may_see(model.name):
        raise UnknownRequest(request_id=request_id)
    lock_aliases(session, model)
    session.refresh(row, with_for_update=True)  # what another decision committed meanwhile
    if row.state != "pending":
        raise RequestDecided(request_id=row.id, state=row.state, decided_by=row.decided_by or "its expiry")
    if row.expires_at <= utcnow():
        raise RequestExpired(
            request_id=row.id,
            expires=f"{row.expires_at:%Y-%m-%d %H:%M UTC}",
            target=f"{model.name}@{row.alias}",
            version=_version_of(session, row),
        )
    return row, model


def _version_of(session: Session, row: PromotionRequest) -> int:
    return session.get_one(ModelVersion, row.version_id).version
