"""Turn ORM rows into the frozen records of `registry.entities` (inside the session that loaded them).

Anything with the same attribute names serves as a row too: a table row from a Core select, or an
object decoded from `registry.version_query`'s JSON.
"""

from __future__ import annotations

from regctl.registry.entities import ArtifactInfo, JobInfo, PromotionRequestInfo, VersionInfo
from regctl.registry.schema import Artifact, Job, ModelVersion, PromotionRequest, utcnow


def artifact_info(row: Artifact) -> ArtifactInfo:
    """The record of an artifact row."""
    return ArtifactInfo(
        kind=row.kind,
        sha256=row.sha256,
        size=row.size,
        uri=row.uri,
        torch_version=row.torch_version,
        method=row.method,
        created_at=row.created_at,
    )


def job_info(row: Job, model: str, version: int) -> JobInfo:
    """The record of a job row; `model` and `version` name the version it works on."""
    return JobInfo(
        id=row.id,
        model=model,
        version=version,
        kind=row.kind,
        parent_id=row.parent_id,
        state=row.state,
        queue=row.queue,
        method=row.method,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        worker=row.worker,
        progress=row.progress,
        error=row.error,
        result=row.result,
        cancel_requested=row.cancel_requested,
        heartbeat_at=row.heartbeat_at,
        created_at=row.created_at,
        published_at=row.published_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        stages=tuple(e for e in row.stages or () if isinstance(e, dict)),
    )


def version_info(
    row: ModelVersion,
    model: str,
    artifacts: list[Artifact] | None = None,
    aliases: list[str] | None = None,
    jobs: list[Job] | None = None,
    tags: dict[str, str] | None = None,
) -> VersionInfo:
    """The record of a version row with whatever related rows the caller loaded."""
    return VersionInfo(
        model=model,
        version=row.version,
        status=row.status,
        spec=row.spec,
        source_sha256=row.source_sha256,
        weights_sha256=row.weights_sha256,
        method=row.method,
        summary=row.summary,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        artifacts=tuple(artifact_info(a) for a in artifacts or ()),
        aliases=tuple(sorted(aliases or ())),
        jobs=tuple(job_info(j, model, row.version) for j in jobs or ()),
        description=row.description,
        tags=dict(sorted((tags or {}).items())),
        git_commit=row.git_commit,
        git_dirty=row.git_dirty,
        run_url=row.run_url,
        archived_at=row.archived_at,
        card=row.card,
    )


def request_info(row: PromotionRequest, model: str, version: int) -> PromotionRequestInfo:
    """The record of a promotion request row; a pending one past its time reads as expired."""
    expired = row.state == "pending" and row.expires_at <= utcnow()
    return PromotionRequestInfo(
        id=row.id,
        model=model,
        alias=row.alias,
        version=version,
        reason=row.reason,
        force=row.force,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        expires_at=row.expires_at,
        state="expired" if expired else row.state,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        note=row.note,
        previous=row.previous,
    )
