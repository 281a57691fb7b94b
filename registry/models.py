"""Listing and showing models."""

from __future__ import annotations

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from regctl.registry.db import session_scope
from regctl.registry.entities import ModelDetail, ModelSummary, VersionRow
from regctl.registry.lookup import count_versions, find_model, version_row_query
from regctl.registry.refs import check_model_name
from regctl.registry.schema import Alias, Model, ModelVersion
from regctl.registry.settings import Settings

SHOWN_VERSIONS = 20


def list_models(settings: Settings) -> list[ModelSummary]:
    """Every model with its version count, newest version and newest ready version, by name."""
    with session_scope(settings.database_url) as session:
        return summaries(session, summary_query())


def summary_query() -> Select:
    """The columns of a ModelSummary, one row per model, by name; callers add filters and a limit."""
    ready = case(
        ((ModelVersion.status == "ready") & ModelVersion.archived_at.is_(None), ModelVersion.version)
    )
    return (
        select(
            Model.name,
            Model.description,
            Model.created_at,
            func.count(ModelVersion.id),
            func.max(ModelVersion.version),
            func.max(ready),
        )
        .outerjoin(ModelVersion, ModelVersion.model_id == Model.id)
        .group_by(Model.id)
        .order_by(Model.name)
    )


def summaries(session: Session, query: Select) -> list[ModelSummary]:
    """The ModelSummary records of a `summary_query()` (with whatever filters the caller added)."""
    return [
        ModelSummary(
            name=name,
            description=description,
            created_at=created_at,
            versions=count,
            latest_version=latest,
            latest_ready=latest_ready,
        )
        for name, description, created_at, count, latest, latest_ready in session.execute(query)
    ]


def show_model(settings: Settings, name: str, limit: int = SHOWN_VERSIONS) -> ModelDetail:
    """A model, its newest `limit` versions (newest first) and its aliases."""
    check_model_name(name)
    with session_scope(settings.database_url) as session:
        model = find_model(session, name)
        rows = session.execute(
            version_row_query()
            .where(ModelVersion.model_id == model.id, ModelVersion.archived_at.is_(None))
            .order_by(ModelVersion.version.desc())
            .limit(limit)
        ).all()
        aliases = session.execute(
            select(Alias.name, ModelVersion.version)
            .join(ModelVersion, ModelVersion.id == Alias.version_id)
            .where(Alias.model_id == model.id)
            .order_by(Alias.name)
        ).all()
        return ModelDetail(
            name=model.name,
            description=model.description,
            created_at=model.created_at,
            version_count=count_versions(session, model.id),
            versions=tuple(VersionRow(*row) for row in rows),
            aliases={alias: version for alias, version in aliases},
        )
