"""What this server accepts, so a client refuses an over-cap upload before it sends a byte."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from regctl.server.auth import settings_of

router = APIRouter(tags=["health"])


class Limits(BaseModel):
    """The server's upload caps (its REGCTL_MAX_BUNDLE_BYTES and REGCTL_MAX_WEIGHTS_BYTES)."""

    max_bundle_bytes: int = Field(description="The largest source bundle (code and small data), in bytes")
    max_weights_bytes: int = Field(description="The largest weights file, in bytes")


@router.get("/limits", response_model=Limits)
def limits(request: Request) -> Limits:
    """The upload caps a registration must fit. No token needed: they are no secret."""
    settings = settings_of(request)
    return Limits(max_bundle_bytes=settings.max_bundle_bytes, max_weights_bytes=settings.max_weights_bytes)
