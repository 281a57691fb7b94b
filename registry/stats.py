"""Counts the metrics endpoint exposes, computed in SQL at scrape time (no model names: labels stay few).

The database holds every job's state and times, so a scrape of any API server sees the whole
fleet's jobs, whichever process ran them; the numbers survive restarts like the rows do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, case, func, literal, select

from regctl.registry.db import session_scope
from regctl.registry.schema import VERSION_STATUSES, Job, ModelVersion
from regctl.registry.settings import Settings

DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass
class Durations:
    """A cumulative histogram of finished jobs' run times, for one job kind."""

    buckets: list[tuple[float, int]] = field(default_factory=list)  # (upper bound, jobs at or below)
    count: int = 0
    total: float = 0.0


@dataclass
class RegistryStats:
    """One scrape's worth of numbers."""

    jobs: dict[tuple[str, str], int]  # (kind, state) -> jobs
    queued: dict[str, int]  # queue -> jobs waiting
    conversions: dict[tuple[str, str], int]  # (method, outcome) -> finished convert jobs
    durations: dict[str, Durations]  # kind -> histogram
    versions: dict[str, int] = field(default_factory=dict)  # status -> versions (cancelled included)


def _seconds(dialect: str) -> ColumnElement:
    if dialect == "postgresql":
        return func.extract("epoch", Job.finished_at - Job.started_at)
    return (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0


def registry_stats(settings: Settings) -> RegistryStats:
    """Jobs by kind and state, queue depths, conversion outcomes by method, job durations and versions
    by status."""
    with session_scope(settings.database_url) as session:
        dialect = session.get_bind().dialect.name
        jobs = {
            (k, s): n
            for k, s, n in session.execute(
                select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
            )
        }
        queued = dict(
            session.execute(
                select(Job.queue, func.count()).where(Job.state == "queued").group_by(Job.queue)
            ).all()
        )
        method = func.coalesce(ModelVersion.method, literal("none"))
        conversions = {
            (m, outcome): n
            for m, outcome, n in session.execute(
                select(method, Job.state, func.count())
                .join(ModelVersion, ModelVersion.id == Job.version_id)
                .where(Job.kind == "convert", Job.state.in_(("succeeded", "failed")))
                .group_by(method, Job.state)
            )
        }
        seconds = _seconds(dialect)
        finished = (Job.started_at.is_not(None)) & (Job.finished_at.is_not(None))
        columns = [func.count(), func.coalesce(func.sum(seconds), 0.0)]
        columns += [func.sum(case((seconds <= bound, 1), else_=0)) for bound in DURATION_BUCKETS]
        durations = {}
        for kind, count, total, *cumulative in session.execute(
            select(Job.kind, *columns).where(finished).group_by(Job.kind)
        ):
            durations[kind] = Durations(
                [(bound, int(n or 0)) for bound, n in zip(DURATION_BUCKETS, cumulative, strict=True)],
                int(count),
                float(total or 0.0),
            )
        versions = {status: 0 for status in VERSION_STATUSES} | {
            status: n
            for status, n in session.execute(
                select(ModelVersion.status, func.count()).group_by(ModelVersion.status)
            )
        }
    return RegistryStats(jobs, queued, conversions, durations, versions)
