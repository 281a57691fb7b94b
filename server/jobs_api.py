"""Jobs: submit, list, show, cancel, retry, and follow as server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from regctl.registry.access import Caller
from regctl.registry.entities import JobInfo
from regctl.registry.requests import SubmitRequest
from regctl.registry.settings import Settings
from regctl.server.auth import current_caller, settings_of
from regctl.server.errors import error_responses
from regctl.server.responses import public_job, redact_paths, typed_json
from regctl.service import jobs

router = APIRouter(tags=["jobs"], responses=error_responses())
CallerDep = Annotated[Caller, Depends(current_caller)]
JobId = Annotated[int, Path(ge=1, le=2**31 - 1)]
State = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobRequest(BaseModel):
    """A job to queue for a version."""

    kind: Literal["convert", "validate"]
    method: Literal["auto", "trace", "script"] | None = None
    device: Literal["cpu", "cuda"] | None = None


@router.post(
    "/versions/{ref}/jobs",
    response_model=JobInfo,
    status_code=201,
    responses=error_responses(400, 401, 403, 404, 409, 422, 503),
)
def submit(
    request: Request,
    ref: Annotated[str, Path(description="NAME:VERSION", max_length=200)],
    body: JobRequest,
    caller: CallerDep,
) -> JobInfo:
    """Queue a convert or validate job for an existing version."""
    submission = SubmitRequest(ref, body.kind, method=body.method, device=body.device)
    return jobs.submit(settings_of(request), caller, submission)


@router.get("/jobs", response_model=list[JobInfo])
def list_jobs(
    request: Request,
    caller: CallerDep,
    state: State | None = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Response:
    """The newest jobs first."""
    settings = settings_of(request)
    found = jobs.list_jobs(settings, caller, state=state, model=model, limit=limit)
    return typed_json(list[JobInfo], [public_job(settings, job) for job in found])


@router.get("/jobs/{job_id}", response_model=JobInfo)
def show_job(request: Request, job_id: JobId, caller: CallerDep) -> Response:
    """One job: state, attempts, worker, progress, timings and error."""
    settings = settings_of(request)
    return typed_json(JobInfo, public_job(settings, jobs.show_job(settings, caller, job_id)))


@router.post(
    "/jobs/{job_id}/cancel", response_model=JobInfo, responses=error_responses(401, 403, 404, 409, 422, 503)
)
def cancel(request: Request, job_id: JobId, caller: CallerDep) -> JobInfo:
    """Cancel a job: a queued one at once, a running one at its next stage boundary."""
    return jobs.cancel(settings_of(request), caller, job_id)


@router.post(
    "/jobs/{job_id}/retry", response_model=JobInfo, responses=error_responses(401, 403, 404, 409, 422, 503)
)
def retry(request: Request, job_id: JobId, caller: CallerDep) -> JobInfo:
    """Queue a failed or cancelled job again as a new attempt."""
    return jobs.retry(settings_of(request), caller, job_id)


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": (
                "`event: job` with the job as JSON at every change of state or progress, following a convert "
                "into the validate job it queued; `event: end` when the chain is over"
            ),
        }
    },
)
async def events(request: Request, job_id: JobId, caller: CallerDep) -> StreamingResponse:
    """Follow a job and the job its success created, as server-sent events."""
    settings = settings_of(request)
    job = await run_in_threadpool(jobs.show_job, settings, caller, job_id)
    hub = request.app.state.hub
    return StreamingResponse(
        _redacted(settings, hub.stream(job, request.is_disconnected)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _redacted(settings: Settings, events: AsyncIterator[str]) -> AsyncIterator[str]:
    """The events as `public_job` shows a job: an error or progress line never names the registry's paths."""
    async for event in events:
        yield redact_paths(settings, event)
