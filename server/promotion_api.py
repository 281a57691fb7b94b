"""Promotion requests over HTTP: a protected alias moved by two people (REGCTL_PROMOTION_APPROVALS=2)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from regctl.registry.access import Caller
from regctl.registry.entities import PromotionRequestInfo
from regctl.registry.promotion_requests import MAX_REASON_CHARS
from regctl.registry.refs import MAX_VERSION
from regctl.registry.requests import MAX_LIMIT
from regctl.server.auth import current_caller, settings_of
from regctl.server.errors import error_responses
from regctl.service import promotion_requests

router = APIRouter(tags=["aliases"], responses=error_responses(400, 401, 403, 404, 409, 422, 503))
Name = Annotated[str, Path(description="A model name, e.g. resnet", max_length=128)]
AliasName = Annotated[str, Path(description="A protected alias, e.g. prod", max_length=64)]
RequestId = Annotated[int, Path(ge=1, le=2**62, description="The request's id")]
CallerDep = Annotated[Caller, Depends(current_caller)]


class RequestBody(BaseModel):
    """What a promotion request asks for, and why."""

    version: int = Field(ge=1, le=MAX_VERSION)
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS, description="What changes, and why now")
    force: bool = Field(
        default=False,
        description="Ask to override the promotion policy (admins only); the approver sees it, the audit "
        "trail records it",
    )


class Decision(BaseModel):
    """An approval or rejection, with an optional note."""

    note: str | None = Field(default=None, max_length=MAX_REASON_CHARS)


DecisionBody = Annotated[Decision | None, Body()]


@router.post("/models/{name}/aliases/{alias}/requests", response_model=PromotionRequestInfo, status_code=201)
def file_request(
    request: Request, name: Name, alias: AliasName, body: Annotated[RequestBody, Body()], caller: CallerDep
) -> PromotionRequestInfo:
    """Ask for the protected NAME@ALIAS to move to a version (writers and admins).

    A different admin approves it (then the alias moves) or rejects it; it expires after
    REGCTL_PROMOTION_REQUEST_TTL_S. 409 when the alias already has a pending request, or when the
    promotion policy refuses the version (unless an admin asks with force).
    """
    settings = settings_of(request)
    return promotion_requests.file_request(
        settings, caller, name, alias, body.version, body.reason, force=body.force
    )


@router.get("/alias-requests", response_model=list[PromotionRequestInfo])
def list_requests(
    request: Request,
    caller: CallerDep,
    model: Annotated[str | None, Query(max_length=128, description="Only this model's requests")] = None,
    state: Annotated[Literal["pending", "all"], Query(description="pending (default), or all")] = "pending",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> list[PromotionRequestInfo]:
    """Promotion requests the token may see, newest first: pending ones unless state=all."""
    settings = settings_of(request)
    pending_only = state == "pending"
    return promotion_requests.list_requests(settings, caller, model, pending_only=pending_only, limit=limit)


@router.get("/alias-requests/{request_id}", response_model=PromotionRequestInfo)
def show_request(request: Request, request_id: RequestId, caller: CallerDep) -> PromotionRequestInfo:
    """One promotion request and what became of it."""
    return promotion_requests.show_request(settings_of(request), caller, request_id)


@router.post("/alias-requests/{request_id}/approve", response_model=PromotionRequestInfo)
def approve_request(
    request: Request, request_id: RequestId, caller: CallerDep, body: DecisionBody = None
) -> PromotionRequestInfo:
    """Approve a pending request: the alias moves. An admin who did not file it (403 otherwise); 409
    when it was already decided, has expired, or the promotion policy now refuses its version."""
    note = body.note if body else None
    return promotion_requests.approve_request(settings_of(request), caller, request_id, note)


@router.post("/alias-requests/{request_id}/reject", response_model=PromotionRequestInfo)
def reject_request(
    request: Request, request_id: RequestId, caller: CallerDep, body: DecisionBody = None
) -> PromotionRequestInfo:
    """Reject a pending request (an admin, or its requester withdrawing it); the alias stays where it is."""
    note = body.note if body else None
    return promotion_requests.reject_request(settings_of(request), caller, request_id, note)
