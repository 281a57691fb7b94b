"""Recording what a job produced: version status, artifacts, the follow-up validate job.

Each function runs in one transaction and first checks that the calling worker still owns the job,
so a duplicate or taken-over delivery can never record a second set of artifacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from regctl.registry import outbox
from regctl.registry.db import session_scope
from regctl.registry.entities import JobInfo, VersionInfo
from regctl.registry.errors.inputs import JobNotOwned
from regctl.registry.jobs import add_stages, finish_job, settle_cancelled
from regctl.registry.records import job_info, version_info
from regctl.registry.schema import Artifact, Job, Model, ModelVersion
from regctl.registry.settings import Settings
from regctl.registry.store import BlobRef


@dataclass(frozen=True)
class NewArtifact:
    """A blob already in the store, to be recorded as an artifact of the job's version."""

    kind: str
    blob: BlobRef
    torch_version: str | None = None
    method: str | None = None


def _owned(session: Session, job_id: int, worker: str) -> tuple[Job, ModelVersion, str]:
    row = session.execute(
        select(Job, ModelVersion, Model.name)
        .join(ModelVersion, Job.version_id == ModelVersion.id)
        .join(Model, ModelVersion.model_id == Model.id)
        .where(Job.id == job_id)
        .with_for_update(of=Job)
    ).one()
    job, version, name = row
    if job.state != "running" or job.worker != worker:
        raise JobNotOwned(job_id=job_id, state=job.state, owner=job.worker, worker=worker)
    return job, version, name


def _add_artifacts(session: Session, job: Job, version: ModelVersion, artifacts: list[NewArtifact]) -> None:
    for new in artifacts:
        blob = new.blob
        session.add(
            Artifact(
                version_id=version.id,
                kind=new.kind,
                sha256=blob.sha256,
                size=blob.size,
                uri=blob.uri,
                torch_version=new.torch_version,
                method=new.method,
                job_id=job.id,
            )
        )


def start_stage(settings: Settings, job_id: int, worker: str) -> VersionInfo:
    """Mark the version converting or validating for the job that now runs; return it with artifacts."""
    with session_scope(settings.database_url) as session:
        job, version, name = _owned(session, job_id, worker)
        version.status = "converting" if job.kind == "convert" else "validating"
        artifacts = session.scalars(select(Artifact).where(Artifact.version_id == version.id)).all()
        return version_info(version, name, list(artifacts))


def record_success(
    settings: Settings,
    job_id: int,
    worker: str,
    artifacts: list[NewArtifact],
    summary: dict[str, Any],
    result: dict[str, Any],
    method: str | None = None,
    *,
    proved: bool = False,
    began: Sequence[tuple[str, datetime]] = (),
) -> list[JobInfo]:
    """Record a finished job: its artifacts, the version summary and status, and any follow-up job.

    A validate job makes the version `ready`. So does a convert job whose stored artifact is
    `proved`: its bytes are exactly those the judge ran the battery and LibTorch on. Any other
    convert job queues its validate job in the same transaction (so the two can never part).
    `began`: stages the job began since its last progress write, for its timeline. Returns the jobs
    to publish.
    """
    with session_scope(settings.database_url) as session:
        job, version, name = _owned(session, job_id, worker)
        add_stages(job, began)
        _add_artifacts(session, job, version, artifacts)
        version.summary = {**(version.summary or {}), **summary}
        if method:
            version.method = method
        follow_ups = []
        if job.kind == "convert" and not proved:
            version.status = "validating"
            follow_ups.append(
                Job(
                    version_id=version.id,
                    parent_id=job.id,
                    kind="validate",
                    state="queued",
                    queue=job.queue,
                    method=version.method,
                    attempts=0,
                    max_attempts=job.max_attempts,
                )
            )
            session.add_all(follow_ups)
        else:
            version.status = "ready"
        finish_job(settings, job_id, "succeeded", worker=worker, result=result, session=session)
        outbox.version_settled(session, version, name, job, None)
        session.flush()
        return [job_info(j, name, version.version) for j in follow_ups]


def record_failure(
    settings: Settings,
    job_id: int,
    worker: str | None,
    error: str,
    *,
    artifacts: list[NewArtifact] | None = None,
    summary: dict[str, Any] | None = None,
    state: str = "failed",
    keep_version: bool = False,
    began: Sequence[tuple[str, datetime]] = (),
) -> JobInfo:
    """Fail (or cancel) a job and its version, keeping any report it produced; `worker=None` forces it.

    A cancelled job leaves its version `cancelled`, or as it stood if a validation ever passed.

    `keep_version` fails only the job and leaves the version as it stood before the job (for a
    validate job that met a damaged blob: the failure is the store's, not the version's). `began`: as
    for record_success.
    """
    with session_scope(settings.database_url) as session:
        if worker is None:
            job = session.get_one(Job, job_id)
            version = session.get_one(ModelVersion, job.version_id)
            name = session.get_one(Model, version.model_id).name
        else:
            job, version, name = _owned(session, job_id, worker)
        add_stages(job, began)
        _add_artifacts(session, job, version, artifacts or [])
        if summary is not None:
            version.summary = {**(version.summary or {}), **summary}
        if state == "failed" and not keep_version:
            version.status = "failed"
        elif state != "cancelled":
            version.status = _status_before_job(session, version)
        finished = finish_job(settings, job_id, state, error=error, session=session)
        if state == "cancelled":
            settle_cancelled(session, job)
        if version.status == "failed":
            outbox.version_settled(session, version, name, job, error)
        return finished


def _status_before_job(session: Session, version: ModelVersion) -> str:
    # A job that met a damaged blob leaves the version as it stood: ready if a validation ever passed.
    if (version.summary or {}).get("validated") is True:
        return "ready"
    validated = session.scalar(
        select(Job.id)
        .where(Job.version_id == version.id, Job.kind == "validate", Job.state == "succeeded")
        .limit(1)
    )
    return "ready" if validated else "registered"
