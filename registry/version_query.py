"""A whole version in one SQL statement: its row, its model's name, and its artifacts, aliases and jobs
gathered into JSON arrays by correlated subqueries.

`versions show` is what deployments and dashboards repeat; as one statement it costs one round trip
instead of five. PostgreSQL aggregates with `json_agg(json_build_object(...))`, SQLite with
`json_group_array(json_object(...))`; any other backend takes the plain path in `registry.versions`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from itertools import chain
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, bindparam, func, literal_column, select
from sqlalchemy.orm import Session

from regctl.registry.entities import VersionInfo
from regctl.registry.lookup import pointed_at
from regctl.registry.records import version_info
from regctl.registry.refs import Ref
from regctl.registry.schema import Alias, Artifact, Job, Model, ModelVersion, VersionTag

SUPPORTED = ("postgresql", "sqlite")
ARTIFACT_FIELDS = ("kind", "sha256", "size", "uri", "torch_version", "method", "created_at")
JOB_FIELDS = (
    "id",
    "kind",
    "parent_id",
    "state",
    "queue",
    "method",
    "attempts",
    "max_attempts",
    "worker",
    "progress",
    "error",
    "result",
    "cancel_requested",
    "heartbeat_at",
    "created_at",
    "published_at",
    "started_at",
    "finished_at",
    "stages",
)
_JSON_FIELDS = ("result", "stages")
_MOMENTS = ("created_at", "heartbeat_at", "published_at", "started_at", "finished_at")


def load_version(session: Session, ref: Ref) -> VersionInfo | None:
    """The version `ref` points at with its artifacts, aliases and jobs, or None when there is none."""
    shape = "version" if ref.version is not None else "alias" if ref.alias is not None else "ready"
    params: dict[str, Any] = {"name": ref.name, "version": ref.version, "alias": ref.alias}
    statement = _statement(session.get_bind().dialect.name, shape)
    row = session.execute(statement, {k: v for k, v in params.items() if v is not None}).first()
    if row is None:
        return None
    artifacts = [SimpleNamespace(**_moments(item)) for item in _by_id(row.artifact_list)]
    jobs = [_job(item) for item in _by_id(row.job_list)]
    tags = row.tag_map if isinstance(row.tag_map, dict) else json.loads(row.tag_map or "{}")
    return version_info(row, ref.name, artifacts, _decoded(row.alias_list), jobs, tags)  # type: ignore[arg-type]


@cache
def _statement(dialect: str, shape: str) -> Select:
    """The statement for a backend and a kind of reference, built once (building costs more than running)."""
    versions, models = ModelVersion.__table__, Model.__table__
    owner = versions.c.id
    query = select(
        versions,
        _array(dialect, Artifact.__table__, ARTIFACT_FIELDS, owner).label("artifact_list"),
        _names(dialect, owner).label("alias_list"),
        _array(dialect, Job.__table__, JOB_FIELDS, owner).label("job_list"),
        _tags(dialect, owner).label("tag_map"),
    ).join(models, models.c.id == versions.c.model_id)
    version = bindparam("version") if shape == "version" else None
    alias = bindparam("alias") if shape == "alias" else None
    return pointed_at(query, bindparam("name"), version, alias)


def _array(dialect: str, table: Table, fields: tuple[str, ...], owner: ColumnElement) -> Any:
    """A scalar subquery: the rows of `table` belonging to the version as a JSON array of objects.

    Each object carries its `_id`, and the caller sorts by it: SQLite's json_group_array has no
    ORDER BY before 3.44, and a derived table to sort in would not be correlated with the version.
    """
    where = table.c.version_id == owner
    columns = [(name, table.c[name]) for name in fields] + [("_id", table.c.id)]
    if dialect == "postgresql":
        pairs = chain.from_iterable((literal_column(f"'{name}'"), column) for name, column in columns)
        agg = func.json_agg(func.json_build_object(*pairs))
        return select(func.coalesce(agg, literal_column("'[]'::json"))).where(where).scalar_subquery()
    # json(): a JSON column is stored as text and must be embedded as JSON, not as a string.
    pairs = chain.from_iterable(
        (literal_column(f"'{name}'"), func.json(column) if name in _JSON_FIELDS else column)
        for name, column in columns
    )
    return select(func.json_group_array(func.json_object(*pairs))).where(where).scalar_subquery()


def _names(dialect: str, owner: ColumnElement) -> Any:
    # Its own name for the table: a NAME@ALIAS lookup joins `aliases` in the outer query too, and
    # SQLAlchemy would otherwise correlate the two.
    aliases = Alias.__table__.alias("version_aliases")
    where = aliases.c.version_id == owner
    if dialect == "postgresql":
        agg = func.coalesce(func.json_agg(aliases.c.name), literal_column("'[]'::json"))
        return select(agg).where(where).scalar_subquery()
    return select(func.json_group_array(aliases.c.name)).where(where).scalar_subquery()


def _tags(dialect: str, owner: ColumnElement) -> Any:
    tags = VersionTag.__table__
    where = tags.c.version_id == owner
    if dialect == "postgresql":
        agg = func.coalesce(func.json_object_agg(tags.c.key, tags.c.value), literal_column("'{}'::json"))
        return select(agg).where(where).scalar_subquery()
    return select(func.json_group_object(tags.c.key, tags.c.value)).where(where).scalar_subquery()


def _decoded(value: Any) -> list[Any]:
    # psycopg hands back parsed JSON; sqlite3 hands back its text.
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str | bytes) else list(value)


def _by_id(value: Any) -> list[dict[str, Any]]:
    items = sorted(_decoded(value), key=lambda item: item["_id"])
    for item in items:
        del item["_id"]
    return items


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _moments(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _moment(value) if key in _MOMENTS else value for key, value in item.items()}


def _job(item: dict[str, Any]) -> SimpleNamespace:
    fields = _moments(item)
    fields["cancel_requested"] = bool(fields["cancel_requested"])  # SQLite keeps booleans as 0 and 1
    return SimpleNamespace(**fields)
