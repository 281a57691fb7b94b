"""Finding models and versions by name and reference inside a session (no store, no bundle code)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from regctl.registry.errors.lookup import NoReadyVersion, UnknownAlias, UnknownModel, UnknownVersion
from regctl.registry.refs import Ref
from regctl.registry.schema import Alias, Artifact, Model, ModelVersion, VersionTag


def find_model(session: Session, name: str) -> Model:
    """The model row named `name`, or NotFound with a hint."""
    model = session.scalars(select(Model).where(Model.name == name)).one_or_none()
    if model is None:
        raise UnknownModel(name=name)
    return model


def pointed_at(query: Select, name: Any, version: Any = None, alias: Any = None) -> Select:
    """Narrow a query over models joined to model_versions to the version a reference points at.

    `version` or `alias` given (a value or a bind parameter) picks that one; neither picks the
    newest ready version.
    """
    query = query.where(Model.name == name)
    if version is not None:
        return query.where(ModelVersion.version == version)
    if alias is not None:
        return query.join(Alias, Alias.version_id == ModelVersion.id).where(Alias.name == alias)
    newest_ready = query.where(ModelVersion.status == "ready", ModelVersion.archived_at.is_(None))
    return newest_ready.order_by(ModelVersion.version.desc()).limit(1)


def find_version(session: Session, ref: Ref) -> tuple[Model, ModelVersion]:
    """The model and version rows a reference points at, or NotFound saying which part is missing.

    One joined query on the hot path (a deployment polling NAME@prod); only a miss pays for a second
    query that finds out which part is missing.
    """
    joined = select(Model, ModelVersion).join(ModelVersion, ModelVersion.model_id == Model.id)
    found = session.execute(pointed_at(joined, ref.name, ref.version, ref.alias)).first()
    if found is not None:
        return found[0], found[1]
    model = find_model(session, ref.name)
    if ref.version is not None:
        raise UnknownVersion.of(ref, ref.name, model.last_version)
    if ref.alias is not None:
        raise UnknownAlias(ref=ref)
    raise NoReadyVersion(name=ref.name)


def count_versions(session: Session, model_id: int) -> int:
    """How many versions a model has."""
    return session.scalar(select(func.count()).where(ModelVersion.model_id == model_id)) or 0


def tags_of(session: Session, version_id: int) -> dict[str, str]:
    """A version's tags, sorted by key."""
    rows = session.execute(
        select(VersionTag.key, VersionTag.value).where(VersionTag.version_id == version_id)
    )
    return dict(sorted((key, value) for key, value in rows))


def version_row_query() -> Select:
    """The columns of a VersionRow, in its field order; the caller adds the filters and the order."""
    torch_version = (
        select(func.max(Artifact.torch_version))
        .where(Artifact.version_id == ModelVersion.id, Artifact.kind == "torchscript")
        .scalar_subquery()
    )
    return select(
        ModelVersion.version,
        ModelVersion.status,
        ModelVersion.method,
        ModelVersion.created_at,
        ModelVersion.archived_at.is_not(None),
        ModelVersion.created_by,
        torch_version,
    )
