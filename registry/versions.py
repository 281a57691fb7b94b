"""Registering versions and resolving references to them."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from regctl.registry import audit
from regctl.registry.access import Caller, local_caller
from regctl.registry.bundle import build_bundle, weights_file
from regctl.registry.db import ensure_schema, session_scope
from regctl.registry.entities import RegisteredVersion, VersionInfo, VersionRow
from regctl.registry.errors.lookup import NameTooLike
from regctl.registry.jobs import queue_for
from regctl.registry.lineage import Lineage, with_git
from regctl.registry.lookup import find_model, find_version, tags_of, version_row_query
from regctl.registry.names import name_key
from regctl.registry.records import version_info
from regctl.registry.refs import Ref
from regctl.registry.requests import RegisterRequest, VersionQuery
from regctl.registry.schema import Alias, Artifact, Job, Model, ModelVersion, VersionTag
from regctl.registry.settings import Settings
from regctl.registry.spec import ModelSpec, prepare_spec
from regctl.registry.store import BlobRef, open_store
from regctl.registry.version_query import SUPPORTED, load_version


def register_version(
    settings: Settings,
    request: RegisterRequest,
    directory: Path,
    *,
    jobs: tuple[str, ...] = (),
    caller: Caller | None = None,
    skip_unchanged: bool = False,
) -> RegisteredVersion:
    """Register the model directory as the next version of `request.name`; create the model on first use.

    The request's `formats` override the spec's `formats`, which override REGCTL_FORMATS. What to do
    about its `convert` and `new_version` is the service's choice, made here through `jobs` (job kinds
    to queue in the same transaction) and `skip_unchanged`: with it (what every front door asks for
    unless told `--new-version`), content whose source bundle, weights and spec equal the newest
    unarchived version's creates nothing, and that version is returned with `unchanged=True`.

    Everything that can be wrong with the input is checked before anything is written (the request
    was checked when it was built). The source bundle and the weights are stored first, each as its
    own blob (content-addressed, so a retry or a version that changes only the other one stores
    nothing again), then the rows are written in one transaction.
    """
    caller = caller or local_caller()
    directory = Path(directory)
    spec = prepare_spec(directory, request.method, request.device, request.formats, settings.formats)
    weights = weights_file(directory, spec, settings.max_weights_bytes)
    # An unreachable or outdated database fails here, before any blob is stored (no orphans).
    ensure_schema(settings.database_url)
    _check_name_free(settings, request.name)
    store = open_store(settings.artifact_store)
    with tempfile.TemporaryDirectory(prefix="regctl-bundle-") as tmp:
        bundle = build_bundle(directory, spec, Path(tmp) / "source.tar", settings.max_bundle_bytes)
        blob = store.put_file(bundle.path)
        lineage = with_git(request.lineage, directory, [*bundle.files, *spec.data_files()])
        weights_blob = (
            store.put_file(weights, maybe_stored=_size_stored(settings, weights.stat().st_size))
            if weights is not None
            else None
        )
        info = _insert(
            settings,
            request.name,
            spec,
            blob,
            weights_blob,
            lineage,
            jobs,
            caller,
            skip_unchanged,
            bundle.card,
        )
        if info.unchanged:
            return info
        # `regctl gc` may have deleted a reused blob between the upload and the commit: store it again.
        for ref, path in ((blob, bundle.path), (weights_blob, weights)):
            if ref is not None and path is not None and not store.exists(ref.sha256):
                store.put_file(path)
    return info


def _check_name_free(settings: Settings, name: str) -> None:
    """Refuse, before anything is stored, a new name that reads like an existing model's (NameTooLike).

    `_lock_model` checks again under the lock, for a registration racing this one.
    """
    with session_scope(settings.database_url) as session:
        taken = session.scalar(select(Model.name).where(Model.name_key == name_key(name)))
    if taken is not None and taken != name:
        raise NameTooLike(name=name, existing=taken)


# Below this, hashing a file before copying it costs less than asking the database about its size.
SIZE_CHECK_BYTES = 64 * 1024 * 1024


def _size_stored(settings: Settings, size: int) -> bool:
    """Whether stored weights might hold these bytes: some weights artifact has exactly this size.

    When none has, the store skips the pass that would only look for them (`put_file`).
    """
    if size < SIZE_CHECK_BYTES:
        return True
    with session_scope(settings.database_url) as session:
        query = select(Artifact.id).where(Artifact.kind == "weights", Artifact.size == size).limit(1)
        return session.scalar(query) is not None


def _insert(
    settings: Settings,
    name: str,
    spec: ModelSpec,
    blob: BlobRef,
    weights_blob: BlobRef | None,
    lineage: Lineage,
    jobs: tuple[str, ...],
    caller: Caller,
    skip_unchanged: bool,
    card: str | None = None,
) -> RegisteredVersion:
    """The version's rows, its artifacts, tags and queued jobs, in one transaction.

    The identical-content check runs under the model's lock, so two identical registrations racing
    each other make one version, not two.
    """
    with session_scope(settings.database_url) as session:
        model = _lock_model(session, name)
        same = _same_as_newest(session, model, spec, blob, weights_blob) if skip_unchanged else None
        if same is not None:
            found = load_version(session, Ref(name, same)) if _one_statement(session) else None
            if found is None:
                found = _version_detail(session, Ref(name, same))
            return RegisteredVersion.of(found, unchanged=True)
        if lineage.description and model.description != lineage.description:
            model.description = lineage.description
        model.last_version += 1
        row = ModelVersion(
            model_id=model.id,
            version=model.last_version,
            status="registered",
            spec=spec.to_dict(),
            source_sha256=blob.sha256,
            weights_sha256=weights_blob.sha256 if weights_blob else None,
            created_by=caller.name[:128],
            description=lineage.description,
            git_commit=lineage.git_commit,
            git_dirty=lineage.git_dirty,
            run_url=lineage.run_url,
            card=card,
        )
        session.add(row)
        session.flush()
        session.add_all(VersionTag(version_id=row.id, key=k, value=v) for k, v in lineage.tags.items())
        stored = [_artifact(row, "source", blob)]
        if weights_blob is not None:
            stored.append(_artifact(row, "weights", weights_blob))
        session.add_all(stored)
        queued = [_new_job(row, kind, spec, settings) for kind in jobs]
        session.add_all(queued)
        session.flush()
        detail = {
            "source_sha256": blob.sha256,
            "weights_sha256": row.weights_sha256,
            "jobs": [j.id for j in queued],
            "git_commit": lineage.git_commit,
        }
        audit.record(session, caller, "version.register", f"{name}:{row.version}", model=name, detail=detail)
        info = version_info(row, name, artifacts=stored, jobs=queued, tags=lineage.tags)
        return RegisteredVersion.of(info, unchanged=False)


def _same_as_newest(
    session: Session, model: Model, spec: ModelSpec, blob: BlobRef, weights_blob: BlobRef | None
) -> int | None:
    """The newest unarchived version's number when its code, weights and spec equal these; else None.

    An archived version does not count: its owner hid it, so registering its content again is news.
    """
    newest = session.execute(
        select(
            ModelVersion.version, ModelVersion.source_sha256, ModelVersion.weights_sha256, ModelVersion.spec
        )
        .where(ModelVersion.model_id == model.id, ModelVersion.archived_at.is_(None))
        .order_by(ModelVersion.version.desc())
        .limit(1)
    ).first()
    if newest is None:
        return None
    weights = weights_blob.sha256 if weights_blob is not None else None
    # The spec as the database hands it back (JSON: tuples become lists), so equal specs compare equal.
    same_spec = _canonical(newest.spec) == _canonical(spec.to_dict())
    if newest.source_sha256 == blob.sha256 and newest.weights_sha256 == weights and same_spec:
        return int(newest.version)
    return None


def _canonical(spec: object) -> str:
    return json.dumps(spec if not isinstance(spec, str) else json.loads(spec), sort_keys=True)


def _artifact(row: ModelVersion, kind: str, blob: BlobRef) -> Artifact:
    return Artifact(version_id=row.id, kind=kind, sha256=blob.sha256, size=blob.size, uri=blob.uri)


def _new_job(row: ModelVersion, kind: str, spec: ModelSpec, settings: Settings) -> Job:
    return Job(
        version_id=row.id,
        kind=kind,
        state="queued",
        queue=queue_for(spec.device),
        method=spec.method,
        attempts=0,
        max_attempts=settings.max_attempts,
    )


def _lock_model(session: Session, name: str) -> Model:
    """Create the model row if missing, then lock it so version numbers are handed out one at a time.

    A new name that reads like an existing model's (names.py) is refused: its key is taken.
    """
    dialect = session.get_bind().dialect.name
    key = name_key(name)
    values = {"name": name, "name_key": key, "description": "", "last_version": 0}
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # no conflict target: a taken name and a taken key both insert nothing, told apart below
        session.execute(insert(Model).values(**values).on_conflict_do_nothing())
    elif session.scalar(select(Model.id).where(Model.name_key == key)) is None:
        session.add(Model(**values))
        session.flush()
    model = session.scalars(select(Model).where(Model.name == name).with_for_update()).one_or_none()
    if model is None:
        existing = session.scalar(select(Model.name).where(Model.name_key == key))
        raise NameTooLike(name=name, existing=existing)
    return model


def resolve(settings: Settings, ref: Ref) -> VersionInfo:
    """The version a reference points at, without artifacts or jobs (the fast path for lookups)."""
    with session_scope(settings.database_url) as session:
        model, row = find_version(session, ref)
        return version_info(row, model.name)


def get_version(settings: Settings, ref: Ref) -> VersionInfo:
    """The version a reference points at, with its artifacts, aliases and jobs.

    On PostgreSQL and SQLite one statement (`registry.version_query`); a miss falls back to
    `find_version` for its precise message.
    """
    with session_scope(settings.database_url) as session:
        if _one_statement(session):
            found = load_version(session, ref)
            if found is not None:
                return found
        return _version_detail(session, ref)


def _one_statement(session: Session) -> bool:
    """True where `registry.version_query` loads a version with everything in one statement."""
    return session.get_bind().dialect.name in SUPPORTED


def _version_detail(session: Session, ref: Ref) -> VersionInfo:
    """A version with its artifacts, aliases, jobs and tags, read row by row (NotFound when missing)."""
    model, row = find_version(session, ref)
    artifacts = session.scalars(
        select(Artifact).where(Artifact.version_id == row.id).order_by(Artifact.id)
    ).all()
    aliases = session.scalars(select(Alias.name).where(Alias.version_id == row.id)).all()
    jobs = session.scalars(select(Job).where(Job.version_id == row.id).order_by(Job.id)).all()
    tags = tags_of(session, row.id)
    return version_info(row, model.name, list(artifacts), list(aliases), list(jobs), tags)


def list_versions(settings: Settings, request: VersionQuery) -> list[VersionRow]:
    """The newest versions of the model `request.name` first, filtered in SQL as the request asks.

    A query that names no model spans every model the caller may see: `registry.search` answers it.
    """
    if request.name is None:
        raise TypeError("list_versions needs a query naming a model; use search.search_versions")
    name, status = request.name, request.status
    with session_scope(settings.database_url) as session:
        model = find_model(session, name)
        query = (
            version_row_query()
            .where(ModelVersion.model_id == model.id)
            .order_by(ModelVersion.version.desc())
            .limit(request.limit)
        )
        if status is not None:
            query = query.where(ModelVersion.status == status)
        if not request.archived:
            query = query.where(ModelVersion.archived_at.is_(None))
        for key, value in request.tags.items():
            tagged = select(VersionTag.version_id).where(
                VersionTag.version_id == ModelVersion.id, VersionTag.key == key, VersionTag.value == value
            )
            query = query.where(tagged.exists())
        return [VersionRow(*row) for row in session.execute(query)]
