"""Jobs: creation, atomic claiming, progress and heartbeats, outcomes, cancel and retry.

The database is the source of truth for job state; a broker message only says "look at job N".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from regctl.registry import audit, outbox
from regctl.registry.access import Caller, local_caller
from regctl.registry.db import session_scope
from regctl.registry.entities import JobInfo
from regctl.registry.errors.inputs import JobFinished, JobNotOwned, JobNotRetryable, NothingToValidate
from regctl.registry.errors.lookup import NotAChoice, UnknownJob
from regctl.registry.lookup import find_model, find_version
from regctl.registry.records import job_info
from regctl.registry.refs import Ref
from regctl.registry.schema import JOB_KINDS, JOB_STATES, Artifact, Job, Model, ModelVersion, utcnow
from regctl.registry.settings import Settings

FINISHED = ("succeeded", "failed", "cancelled")
MAX_STAGES = 40  # a job's timeline: a convert job names about a dozen stages
MAX_STAGE_CHARS = 80
_COUNT = re.compile(r"\d+/\d+")


@dataclass(frozen=True)
class Claim:
    """What a worker got when it tried to claim a job.

    `outcome` is `claimed` (run it), `finished` (already done: a duplicate delivery), `busy` (another
    live worker runs it), `cancelled` (skipped) or `exhausted` (attempt cap reached: marked failed).
    """

    outcome: str
    job: JobInfo

    @property
    def should_run(self) -> bool:
        """True only when this worker now owns the job."""
        return self.outcome == "claimed"


def _with_version() -> Select:
    """Jobs joined to their version number and model name."""
    return (
        select(Job, Model.name, ModelVersion.version)
        .join(ModelVersion, Job.version_id == ModelVersion.id)
        .join(Model, ModelVersion.model_id == Model.id)
    )


def _load(session: Session, job_id: int, lock: bool = False) -> tuple[Job, str, int]:
    query = _with_version().where(Job.id == job_id)
    if lock:
        query = query.with_for_update(of=Job)
    row = session.execute(query).one_or_none()
    if row is None:
        raise UnknownJob(job_id=job_id)
    return row[0], row[1], row[2]


def queue_for(device: str) -> str:
    """The queue a job for `device` goes to."""
    return "gpu" if device == "cuda" else "cpu"


def create_job(
    settings: Settings,
    ref: Ref,
    kind: str,
    *,
    method: str | None = None,
    device: str | None = None,
    caller: Caller | None = None,
) -> JobInfo:
    """Queue a `convert` or `validate` job for an existing version (committed before any message is sent)."""
    if kind not in JOB_KINDS:
        raise NotAChoice(what="job kind", value=kind, choices=JOB_KINDS)
    with session_scope(settings.database_url) as session:
        model, version = find_version(session, ref)
        if kind == "validate" and not _has_torchscript(session, version.id):
            raise NothingToValidate(ref=ref)
        job = Job(
            version_id=version.id,
            kind=kind,
            state="queued",
            queue=queue_for(device or version.spec.get("device", "cpu")),
            method=method or version.spec.get("method", "auto"),
            attempts=0,
            max_attempts=settings.max_attempts,
        )
        session.add(job)
        _requeued(session, version.id)
        session.flush()
        target = f"job {job.id}"
        detail = {"kind": kind, "version": version.version, "method": job.method, "queue": job.queue}
        audit.record(session, caller or local_caller(), "job.submit", target, model=model.name, detail=detail)
        return job_info(job, model.name, version.version)


def _requeued(session: Session, version_id: int) -> None:
    # A cancelled version waits for its new job as a registered one does; it moves on to converting
    # (or validating) when the job starts.
    version = session.get_one(ModelVersion, version_id)
    if version.status == "cancelled":
        version.status = "registered"


def _has_torchscript(session: Session, version_id: int) -> bool:
    query = select(Artifact.id).where(Artifact.version_id == version_id, Artifact.kind == "torchscript")
    return session.scalar(query.limit(1)) is not None


def get_job(settings: Settings, job_id: int) -> JobInfo:
    """One job by id."""
    with session_scope(settings.database_url) as session:
        job, name, version = _load(session, job_id)
        return job_info(job, name, version)


def list_jobs(
    settings: Settings, *, state: str | None = None, model: str | None = None, limit: int = 100
) -> list[JobInfo]:
    """The newest jobs first, optionally only those in `state` or of `model`."""
    if state is not None and state not in JOB_STATES:
        raise NotAChoice(what="job state", value=state, choices=JOB_STATES)
    query = _with_version()
    with session_scope(settings.database_url) as session:
        if model is not None:
            query = query.where(Model.id == find_model(session, model).id)
        if state is not None:
            query = query.where(Job.state == state)
        rows = session.execute(query.order_by(Job.id.desc()).limit(limit)).all()
        return [job_info(job, name, version) for job, name, version in rows]


def claim_job(
    settings: Settings,
    job_id: int,
    worker: str,
    *,
    owner_is_dead: Callable[[str], bool] = lambda worker: False,
) -> Claim:
    """Atomically take a job for `worker`, counting the attempt.

    A queued job is taken; a running job is taken over only if its heartbeat expired or
    `owner_is_dead(job.worker)` says its process is gone. Past the attempt cap the job is failed.
    """
    with session_scope(settings.database_url) as session:
        job, name, version = _load(session, job_id, lock=True)
        now = utcnow()
        if job.state in FINISHED:
            return Claim("finished", job_info(job, name, version))
        if job.cancel_requested:
            _finish(job, "cancelled", now, error="cancelled before it started")
            settle_cancelled(session, job)
            return Claim("cancelled", job_info(job, name, version))
        if job.state == "running" and not _owner_gone(job, now, settings, owner_is_dead):
            return Claim("busy", job_info(job, name, version))
        if job.attempts >= job.max_attempts:
            last = job.error or "the worker running it stopped"
            _give_up(session, job, name, now, f"gave up after {job.attempts} attempts: {last}")
            return Claim("exhausted", job_info(job, name, version))
        job.state, job.worker, job.attempts = "running", worker, job.attempts + 1
        job.started_at = job.heartbeat_at = now
        job.progress = f"attempt {job.attempts} started"
        _add_stage(job, job.progress, now)
        return Claim("claimed", job_info(job, name, version))


def _owner_gone(job: Job, now: datetime, settings: Settings, owner_is_dead: Callable[[str], bool]) -> bool:
    beat = job.heartbeat_at
    expired = beat is None or now - beat > timedelta(seconds=settings.heartbeat_timeout)
    return expired or (job.worker is not None and owner_is_dead(job.worker))


def record_progress(
    settings: Settings,
    job_id: int,
    worker: str,
    progress: str | None = None,
    *,
    began: Sequence[tuple[str, datetime]] | None = None,
) -> bool:
    """Write a heartbeat (and progress text) for a running job; return True if cancel was requested.

    `began` are the lines that started a stage since the last write, each with its own time (a
    reporter writes several at once); without it, `progress` starts a stage now if it names one.
    Nothing is written when the job is no longer this worker's (taken over or finished). Committed
    without waiting for the disk: a power cut that loses the newest line also ended the job's process.
    """
    with session_scope(settings.database_url, durable=False) as session:
        job, _, _ = _load(session, job_id)
        if job.state != "running" or job.worker != worker:
            return True
        job.heartbeat_at = utcnow()
        if progress is not None:
            job.progress = progress[:2000]
        if began is None:
            began = [(progress, job.heartbeat_at)] if progress is not None else []
        add_stages(job, began)
        return job.cancel_requested


def add_stages(job: Job, began: Sequence[tuple[str, datetime]]) -> None:
    """Add to the job's timeline each line that began a stage, at the time it began."""
    for line, at in began:
        _add_stage(job, line[:2000], at)


def stage_of(progress: str) -> str:
    """The stage a progress line names: the text before its first colon or count ("trace: battery 3/9")."""
    head = progress.split(":", 1)[0]
    match = _COUNT.search(head)
    return (head[: match.start()] if match else head).strip()[:MAX_STAGE_CHARS]


def _add_stage(job: Job, progress: str, at: datetime) -> None:
    """Append to the job's timeline when the progress line names a new stage (bounded: MAX_STAGES)."""
    stage = stage_of(progress)
    stages = list(job.stages or [])
    if not stage or (stages and stages[-1].get("stage") == stage):
        return
    if len(stages) >= MAX_STAGES:
        # Keep the first stages and the newest: the timeline still starts and ends where the job did.
        stages = stages[: MAX_STAGES // 2] + stages[-(MAX_STAGES // 2 - 1) :]
    stages.append({"stage": stage, "at": at.isoformat()})
    job.stages = stages  # a new list, so the JSON column is seen as changed


def note_attempt_error(settings: Settings, job_id: int, error: str) -> None:
    """Remember why an attempt ended (a worker loss) without finishing the job, for the final message."""
    with session_scope(settings.database_url) as session:
        job, _, _ = _load(session, job_id, lock=True)
        if job.state not in FINISHED:
            job.error = error[:4000]


def finish_job(
    settings: Settings,
    job_id: int,
    state: str,
    *,
    worker: str | None = None,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    session: Session | None = None,
) -> JobInfo:
    """Record a job's outcome; with `worker`, only if that worker still owns it (else InvalidTransition)."""
    if state not in FINISHED:
        raise NotAChoice(what="final job state", value=state, choices=FINISHED)
    if session is not None:
        return _finish_in(session, job_id, state, worker, error, result)
    with session_scope(settings.database_url) as own:
        return _finish_in(own, job_id, state, worker, error, result)


def _finish_in(
    session: Session, job_id: int, state: str, worker: str | None, error: str | None, result: dict | None
) -> JobInfo:
    job, name, version = _load(session, job_id, lock=True)
    if job.state in FINISHED or (worker is not None and job.worker != worker):
        raise JobNotOwned(job_id=job_id, state=job.state, owner=job.worker, worker=worker)
    _finish(job, state, utcnow(), error=error, result=result)
    if state == "failed":
        outbox.job_failed(session, job, name, version, job.error)
    return job_info(job, name, version)


def _finish(
    job: Job, state: str, now: datetime, *, error: str | None = None, result: dict | None = None
) -> None:
    job.state, job.finished_at = state, now
    job.error = error[:4000] if error else None
    if result is not None:
        job.result = result
    job.progress = {"succeeded": "done", "failed": "failed", "cancelled": "cancelled"}[state]
    _add_stage(job, job.progress, now)


def settle_cancelled(session: Session, job: Job) -> None:
    """The version of a job just cancelled: as it stood if it was ever proved, else `cancelled`.

    A cancelled re-validation leaves a ready version ready; a version that never got that far shows
    that its job was cancelled, rather than looking freshly `registered`.
    """
    version = session.get_one(ModelVersion, job.version_id)
    if version.status in ("ready", "failed"):
        return
    validated = (version.summary or {}).get("validated") is True or session.scalar(
        select(Job.id)
        .where(Job.version_id == version.id, Job.kind == "validate", Job.state == "succeeded")
        .limit(1)
    )
    version.status = "ready" if validated else "cancelled"


def _give_up(session: Session, job: Job, name: str, now: datetime, error: str) -> None:
    _finish(job, "failed", now, error=error)
    version = session.get_one(ModelVersion, job.version_id)
    version.status = "failed"
    outbox.job_failed(session, job, name, version.version, job.error)
    outbox.version_settled(session, version, name, job, job.error)


def request_cancel(settings: Settings, job_id: int, caller: Caller | None = None) -> JobInfo:
    """Cancel a job: a queued one at once; a running one is flagged and stops at its next stage."""
    with session_scope(settings.database_url) as session:
        job, name, version = _load(session, job_id, lock=True)
        if job.state in FINISHED:
            raise JobFinished(job_id=job_id, state=job.state)
        job.cancel_requested = True
        if job.state == "queued":
            _finish(job, "cancelled", utcnow(), error="cancelled by the user")
            settle_cancelled(session, job)
        else:
            job.progress = "cancel requested"
        audit.record(session, caller or local_caller(), "job.cancel", f"job {job_id}", model=name)
        return job_info(job, name, version)


def retry_job(settings: Settings, job_id: int, caller: Caller | None = None) -> JobInfo:
    """Re-queue a failed or cancelled job as a new attempt (its attempt count starts again)."""
    with session_scope(settings.database_url) as session:
        job, name, version = _load(session, job_id, lock=True)
        if job.state not in ("failed", "cancelled"):
            raise JobNotRetryable(job_id=job_id, state=job.state)
        job.state, job.attempts, job.cancel_requested = "queued", 0, False
        job.error = job.worker = job.started_at = job.finished_at = job.heartbeat_at = None
        job.published_at = None
        job.progress = "queued again"
        job.stages = None  # a new run, a new timeline
        _requeued(session, job.version_id)
        audit.record(session, caller or local_caller(), "job.retry", f"job {job_id}", model=name)
        return job_info(job, name, version)


def mark_published(settings: Settings, job_ids: list[int]) -> None:
    """Record that messages for these jobs were handed to the broker."""
    if not job_ids:
        return
    with session_scope(settings.database_url) as session:
        for job in session.scalars(select(Job).where(Job.id.in_(job_ids))):
            job.published_at = utcnow()


def jobs_to_republish(settings: Settings, older_than: float) -> list[JobInfo]:
    """Queued jobs whose message was never sent or was sent more than `older_than` seconds ago."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    query = (
        _with_version()
        .where(Job.state == "queued")
        .where((Job.published_at.is_(None)) | (Job.published_at < cutoff))
        .order_by(Job.id)
    )
    with session_scope(settings.database_url) as session:
        return [job_info(job, name, version) for job, name, version in session.execute(query)]


def stale_running_jobs(settings: Settings) -> list[JobInfo]:
    """Running jobs whose heartbeat is older than the heartbeat timeout (their worker stopped)."""
    cutoff = utcnow() - timedelta(seconds=settings.heartbeat_timeout)
    query = _with_version().where(Job.state == "running", Job.heartbeat_at < cutoff).order_by(Job.id)
    with session_scope(settings.database_url) as session:
        return [job_info(job, name, version) for job, name, version in session.execute(query)]


def requeue_stale(settings: Settings, job_id: int, reason: str) -> JobInfo:
    """Put a running job whose worker stopped back to queued (or fail it past the attempt cap)."""
    with session_scope(settings.database_url) as session:
        job, name, version = _load(session, job_id, lock=True)
        if job.state != "running":
            return job_info(job, name, version)
        if job.attempts >= job.max_attempts:
            _give_up(session, job, name, utcnow(), f"gave up after {job.attempts} attempts: {reason}")
        else:
            job.state, job.error, job.published_at = "queued", reason, None
            job.progress = f"re-queued: {reason}"
        return job_info(job, name, version)


def following_job(settings: Settings, job_id: int) -> JobInfo | None:
    """The job this one's success created (a convert's validate job), if any; never an unrelated job."""
    with session_scope(settings.database_url) as session:
        _, name, version = _load(session, job_id)
        later = session.scalars(
            select(Job).where(Job.parent_id == job_id).order_by(Job.id).limit(1)
        ).one_or_none()
        return job_info(later, name, version) if later is not None else None


def jobs_by_id(settings: Settings, job_ids: list[int]) -> list[JobInfo]:
    """The jobs with these ids (missing ones are left out), in one query."""
    if not job_ids:
        return []
    query = _with_version().where(Job.id.in_(job_ids))
    with session_scope(settings.database_url) as session:
        return [job_info(job, name, version) for job, name, version in session.execute(query)]
