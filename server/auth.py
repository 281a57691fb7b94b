"""Who is calling: the bearer token, checked against its hash; the caller's address for the audit trail."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from registry.access import Caller
from registry.settings import Settings

bearer = HTTPBearer(
    auto_error=False,
    description="A token from 'regctl tokens create', sent as 'Authorization: Bearer <token>'",
)


def settings_of(request: Request) -> Settings:
    """The server's settings."""
    return request.app.state.settings


def current_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """The caller the request's token stands for; 401 when there is no valid token."""
    from registry.tokens import authenticate

    address = request.client.host if request.client else None
    return authenticate(settings_of(request), credentials.credentials if credentials else None, address)
