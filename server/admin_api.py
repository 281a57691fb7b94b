"""Tokens and the audit trail (admin tokens only)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from regctl.registry import requests
from regctl.registry.access import Caller
from regctl.registry.entities import AuditEntry, NewToken, TokenInfo
from regctl.server.auth import current_caller, settings_of
from regctl.server.errors import error_responses
from regctl.service import admin

router = APIRouter(responses=error_responses(400, 401, 403, 404, 409, 422, 503))
CallerDep = Annotated[Caller, Depends(current_caller)]


class TokenRequest(BaseModel):
    """A token to create."""

    name: str = Field(max_length=128, description="Who or what holds it, e.g. ci-deploy")
    role: Literal["reader", "writer", "admin"]
    model_pattern: str | None = Field(default=None, max_length=128, description="A model name or glob")
    expires: str | None = Field(default=None, max_length=16, description="12h, 90d, 2w or never")


@router.post("/tokens", response_model=NewToken, status_code=201, tags=["tokens"])
def create_token(request: Request, body: TokenRequest, caller: CallerDep) -> NewToken:
    """Create a token. Its secret is in this response and nowhere else."""
    token = requests.TokenRequest(
        body.name, body.role, model_pattern=body.model_pattern, expires=body.expires
    )
    return admin.create_token(settings_of(request), caller, token)


@router.get("/tokens", response_model=list[TokenInfo], tags=["tokens"])
def list_tokens(request: Request, caller: CallerDep) -> list[TokenInfo]:
    """Every token, newest first (never a secret)."""
    return admin.list_tokens(settings_of(request), caller)


@router.delete("/tokens/{name}", response_model=TokenInfo, tags=["tokens"])
def revoke_token(
    request: Request, name: Annotated[str, Path(max_length=128)], caller: CallerDep
) -> TokenInfo:
    """Revoke a token; this server refuses it from the next request on, others within seconds."""
    revoked = admin.revoke_token(settings_of(request), caller, name)
    request.app.state.tokens.forget_all()
    return revoked


@router.get("/audit", response_model=list[AuditEntry], tags=["audit"])
def list_audit(
    request: Request,
    caller: CallerDep,
    model: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntry]:
    """The newest changes first: who, what, when and from which address."""
    return admin.list_audit(settings_of(request), caller, model=model, limit=limit)
