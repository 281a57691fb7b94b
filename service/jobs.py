"""Submitting, cancelling, retrying, listing and following jobs."""

from __future__ import annotations

from collections.abc import Iterator

from regctl.registry import jobs as registry_jobs
from regctl.registry.access import Caller
from regctl.registry.entities import JobInfo
from regctl.registry.errors.lookup import UnknownJob
from regctl.registry.refs import check_model_name
from regctl.registry.requests import SubmitRequest
from regctl.registry.settings import Settings
from regctl.service import dispatch
from regctl.worker.dispatch import dispatcher_for

# A token limited to some models may list jobs; fetch more than asked so filtering leaves enough.
_OVERFETCH = 5


def submit(settings: Settings, caller: Caller, request: SubmitRequest) -> JobInfo:
    """Queue a convert or validate job for the exact version NAME:VERSION."""
    caller.require("submit", request.version.name)
    dispatch.preflight(settings)
    job = registry_jobs.create_job(
        settings, request.version, request.kind, method=request.method, device=request.device, caller=caller
    )
    dispatch.start(settings, [job])
    return job


def show_job(settings: Settings, caller: Caller, job_id: int) -> JobInfo:
    """One job by id; a job of a model the caller may not see is answered exactly as a missing one.

    A 403 naming the model would tell a caller walking the ids which models exist.
    """
    job = registry_jobs.get_job(settings, job_id)
    if not caller.may_see(job.model):
        raise UnknownJob(job_id=job_id)
    caller.require("read", job.model)
    return job


def list_jobs(
    settings: Settings,
    caller: Caller,
    *,
    state: str | None = None,
    model: str | None = None,
    limit: int = 50,
) -> list[JobInfo]:
    """The newest jobs first that the caller may see, optionally only in `state` or of `model`."""
    if model is not None:
        check_model_name(model)
    caller.require("read", model)
    if caller.model_pattern is None or caller.role == "admin" or model is not None:
        return registry_jobs.list_jobs(settings, state=state, model=model, limit=limit)
    found = registry_jobs.list_jobs(settings, state=state, model=model, limit=limit * _OVERFETCH)
    return [job for job in found if caller.may_see(job.model)][:limit]


def cancel(settings: Settings, caller: Caller, job_id: int) -> JobInfo:
    """Cancel a job: a queued one at once, a running one at its next stage boundary."""
    caller.require("cancel", show_job(settings, caller, job_id).model)
    return registry_jobs.request_cancel(settings, job_id, caller)


def retry(settings: Settings, caller: Caller, job_id: int) -> JobInfo:
    """Queue a failed or cancelled job again as a new attempt."""
    caller.require("retry", show_job(settings, caller, job_id).model)
    dispatch.preflight(settings)
    job = registry_jobs.retry_job(settings, job_id, caller)
    dispatch.start(settings, [job])
    return job


def follow(settings: Settings, caller: Caller, job: JobInfo) -> Iterator[JobInfo]:
    """Yield the job, then the job its success created, at each change until the chain ends.

    On the embedded default outside an API server, the jobs run here while they are followed.
    """
    caller.require("read", job.model)
    return dispatcher_for(settings).follow(job)
