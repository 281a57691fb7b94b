"""Aliases (`NAME@ALIAS`): set, move and remove, each recorded in the alias history."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from regctl.registry import audit, outbox
from regctl.registry.access import Caller, local_caller
from regctl.registry.db import session_scope
from regctl.registry.entities import AliasInfo
from regctl.registry.errors.inputs import PromotionRefused
from regctl.registry.errors.lookup import AliasNotSet
from regctl.registry.errors.promotion import ApprovalRequired
from regctl.registry.lookup import find_model, find_version
from regctl.registry.promotion import Candidate, refusal
from regctl.registry.refs import Ref, check_alias_name, check_model_name
from regctl.registry.schema import Alias, AliasEvent, Artifact, Model, ModelVersion, utcnow
from regctl.registry.settings import Settings


def set_alias(
    settings: Settings,
    name: str,
    alias: str,
    version: int,
    caller: Caller | None = None,
    *,
    force: bool = False,
) -> AliasInfo:
    """Point `name@alias` at `version` (creating or moving it) and record who did it and when.

    The promotion policy (registry/promotion.py) decides whether the version may be pointed at;
    `force` overrides its refusal, and the audit trail records what was overridden. With
    REGCTL_PROMOTION_APPROVALS=2 a protected alias moves only through an approved request
    (registry/promotion_requests.py), force or not. When the alias already points at `version`,
    nothing changes and nothing is recorded: the answer's `previous` equals its `version`, and names
    who set it there and when.
    """
    check_model_name(name)
    alias = check_alias_name(alias)
    caller = caller or local_caller()
    if settings.promotion_approvals > 1 and alias in settings.protected_aliases:
        raise ApprovalRequired(target=f"{name}@{alias}", version=version)
    with session_scope(settings.database_url) as session:
        model, target = find_version(session, Ref(name, version=version))
        refused = policy_refusal(session, settings, target, alias)
        if refused and not force:
            hint = "an admin may override this with --force, which the audit trail records"
            raise PromotionRefused(target=f"{name}@{alias}", version=version, reason=refused, hint=hint)
        return move_alias(session, caller, model, target, alias, forced=refused)


def policy_refusal(session: Session, settings: Settings, version: ModelVersion, alias: str) -> str | None:
    """Why the promotion policy refuses to point `alias` at `version`, or None when it allows it."""
    return refusal(
        _candidate(session, version),
        protected=alias in settings.protected_aliases,
        allowed_torch=settings.promotion_torch,
    )


def lock_aliases(session: Session, model: Model) -> None:
    """Take the model row's lock, which orders every change to its aliases and promotion requests.

    A first set has no alias row to lock yet, so the model's row is the one lock; what a change then
    reads (`previous`, an open request) is what it replaces. SQLite's transactions already hold the
    write lock from their start (registry/db.py).
    """
    session.execute(select(Model.id).where(Model.id == model.id).with_for_update()).one()


def move_alias(
    session: Session,
    caller: Caller,
    model: Model,
    target: ModelVersion,
    alias: str,
    *,
    forced: str | None = None,
    detail: dict[str, object] | None = None,
) -> AliasInfo:
    """Point `alias` at `target` inside `session`, recording history, audit (`forced`: the policy's
    refusal that was overridden; `detail`: more for the audit row) and the `alias.moved` webhook."""
    actor = caller.name[:128]
    version = target.version
    lock_aliases(session, model)
    row = session.scalars(
        select(Alias).where(Alias.model_id == model.id, Alias.name == alias).with_for_update()
    ).one_or_none()
    previous = session.get_one(ModelVersion, row.version_id).version if row else None
    if row is not None and previous == version:
        # Already there: nothing moves, so nothing is recorded (no history, audit or webhook).
        return AliasInfo(model.name, alias, version, previous, row.updated_by, row.updated_at)
    if row is None:
        row = Alias(model_id=model.id, name=alias, version_id=target.id)
        session.add(row)
    row.version_id, row.updated_by, row.updated_at = target.id, actor, utcnow()
    session.add(
        AliasEvent(
            model_id=model.id,
            name=alias,
            action="set",
            from_version=previous,
            to_version=version,
            actor=actor,
        )
    )
    recorded = {"from": previous, "to": version, **({"forced": forced} if forced else {}), **(detail or {})}
    target_name = f"{model.name}@{alias}"
    audit.record(session, caller, "alias.set", target_name, model=model.name, detail=recorded)
    outbox.alias_moved(session, model.name, alias, previous, version, actor)
    return AliasInfo(model.name, alias, version, previous, actor, row.updated_at)


def _candidate(session: Session, version: ModelVersion) -> Candidate:
    kinds = session.execute(
        select(Artifact.kind, Artifact.method, Artifact.torch_version)
        .where(Artifact.version_id == version.id)
        .order_by(Artifact.id)
    ).all()
    torch = next((t for k, _, t in reversed(kinds) if k == "torchscript"), None)
    signed = any(k == "attestation" and m == "torchscript" for k, m, _ in kinds)
    return Candidate(version.status, signed, torch)


def remove_alias(settings: Settings, name: str, alias: str, caller: Caller | None = None) -> AliasInfo:
    """Remove `name@alias`, recording the removal; NotFound if it is not set."""
    check_model_name(name)
    alias = check_alias_name(alias)
    caller = caller or local_caller()
    actor = caller.name[:128]
    with session_scope(settings.database_url) as session:
        model = find_model(session, name)
        row = session.scalars(
            select(Alias).where(Alias.model_id == model.id, Alias.name == alias).with_for_update()
        ).one_or_none()
        if row is None:
            raise AliasNotSet(name=name, alias=alias)
        previous = session.get_one(ModelVersion, row.version_id).version
        session.delete(row)
        event = AliasEvent(model_id=model.id, name=alias, action="remove", from_version=previous, actor=actor)
        session.add(event)
        audit.record(
            session, caller, "alias.remove", f"{name}@{alias}", model=name, detail={"from": previous}
        )
        outbox.alias_moved(session, name, alias, previous, None, actor)
        return AliasInfo(name, alias, None, previous, actor, utcnow())


def alias_history(settings: Settings, name: str, alias: str | None = None) -> list[AliasInfo]:
    """Every change to the model's aliases (or to one alias), oldest first."""
    with session_scope(settings.database_url) as session:
        model = find_model(session, name)
        query = select(AliasEvent).where(AliasEvent.model_id == model.id)
        if alias:
            query = query.where(AliasEvent.name == check_alias_name(alias))
        return [
            AliasInfo(name, e.name, e.to_version, e.from_version, e.actor, e.at)
            for e in session.scalars(query.order_by(AliasEvent.id))
        ]
