"""A version's life after registration: tags edited, archived (and back), deleted.

Deleting removes the version's rows (artifacts, jobs, tags) in one transaction and records what it
removed in the audit trail; the blobs stay until `regctl gc` finds no row naming them. Version
numbers are never reused (`models.last_version`), so `NAME:3` never comes to mean something else.
"""

from __future__ import annotations

from sqlalchemy import delete, select

from regctl.registry import audit, outbox
from regctl.registry.access import Caller, local_caller
from regctl.registry.db import session_scope
from regctl.registry.errors.inputs import AliasesPointAt, TooManyTags, VersionBusy
from regctl.registry.lineage import MAX_TAGS, check_tags
from regctl.registry.lookup import find_version, tags_of
from regctl.registry.refs import Ref
from regctl.registry.schema import Alias, AliasEvent, Artifact, Job, ModelVersion, VersionTag, utcnow
from regctl.registry.settings import Settings


def tag_version(
    settings: Settings,
    ref: Ref,
    set_tags: dict[str, str],
    remove: tuple[str, ...] = (),
    caller: Caller | None = None,
) -> dict[str, str]:
    """Set and remove tags on the version `ref` points at; return its tags afterwards."""
    caller = caller or local_caller()
    set_tags = check_tags(set_tags)
    check_tags(dict.fromkeys(remove, ""))
    with session_scope(settings.database_url) as session:
        model, row = find_version(session, ref)
        for key in remove:
            session.execute(delete(VersionTag).where(VersionTag.version_id == row.id, VersionTag.key == key))
        for key, value in set_tags.items():
            existing = session.get(VersionTag, (row.id, key))
            if existing is None:
                session.add(VersionTag(version_id=row.id, key=key, value=value))
            else:
                existing.value = value
        session.flush()
        tags = tags_of(session, row.id)
        if len(tags) > MAX_TAGS:
            raise TooManyTags(whose=f"{model.name}:{row.version}", count=len(tags), limit=MAX_TAGS)
        detail = {"set": set_tags, "removed": list(remove)}
        audit.record(
            session, caller, "version.tag", f"{model.name}:{row.version}", model=model.name, detail=detail
        )
        return tags


def archive_version(settings: Settings, ref: Ref, archived: bool = True, caller: Caller | None = None) -> str:
    """Hide (or show again) a version in NAME resolution and lists; return `name:version`."""
    caller = caller or local_caller()
    with session_scope(settings.database_url) as session:
        model, row = find_version(session, ref)
        target = f"{model.name}:{row.version}"
        if (row.archived_at is not None) == archived:
            return target  # already so: archiving twice is not an error
        row.archived_at = utcnow() if archived else None
        action = "version.archive" if archived else "version.unarchive"
        audit.record(session, caller, action, target, model=model.name)
        return target


def delete_version(
    settings: Settings, ref: Ref, *, force: bool = False, caller: Caller | None = None
) -> dict:
    """Delete a version's rows; refuse while an alias points at it (unless `force`) or a job runs on it.

    With `force`, each alias that pointed at it is removed, and the removal recorded in its history.
    Returns what was removed: the ref, the aliases and the blobs it named (left for `regctl gc`).
    """
    caller = caller or local_caller()
    with session_scope(settings.database_url) as session:
        model, row = find_version(session, ref)
        target = f"{model.name}:{row.version}"
        active = session.scalars(
            select(Job.id).where(Job.version_id == row.id, Job.state.in_(("queued", "running")))
        ).all()
        if active:
            raise VersionBusy(ref=target, job_id=active[0])
        aliases = session.scalars(select(Alias).where(Alias.version_id == row.id).order_by(Alias.name)).all()
        if aliases and not force:
            raise AliasesPointAt.of([f"{model.name}@{a.name}" for a in aliases], target)
        for alias in aliases:
            session.add(
                AliasEvent(
                    model_id=model.id,
                    name=alias.name,
                    action="remove",
                    from_version=row.version,
                    actor=caller.name[:128],
                )
            )
            outbox.alias_moved(session, model.name, alias.name, row.version, None, caller.name[:128])
            session.delete(alias)
        blobs = sorted(set(session.scalars(select(Artifact.sha256).where(Artifact.version_id == row.id))))
        removed = {"ref": target, "aliases": [a.name for a in aliases], "blobs": blobs}
        audit.record(session, caller, "version.delete", target, model=model.name, detail=removed)
        session.delete(session.get_one(ModelVersion, row.id))
        return removed
