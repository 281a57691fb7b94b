"""Webhooks and their deliveries (admin tokens only)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from regctl.registry import requests
from regctl.registry.access import Caller
from regctl.registry.entities import DeliveryInfo, NewWebhook, WebhookInfo
from regctl.server.auth import current_caller, settings_of
from regctl.server.errors import error_responses
from regctl.service import webhooks

router = APIRouter(responses=error_responses(400, 401, 403, 404, 409, 422, 503), tags=["webhooks"])
CallerDep = Annotated[Caller, Depends(current_caller)]
Event = Literal[requests.EVENTS]  # type: ignore[valid-type]
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


class WebhookRequest(BaseModel):
    """A webhook to add."""

    url: str = Field(max_length=2048, description="http:// or https://, no user or password")
    events: list[Event] = Field(min_length=1, max_length=8)
    model_pattern: str | None = Field(default=None, max_length=128, description="A model name or glob")


@router.post("/webhooks", response_model=NewWebhook, status_code=201)
def add_webhook(request: Request, body: WebhookRequest, caller: CallerDep) -> NewWebhook:
    """Add a webhook. Its signing secret is in this response and nowhere else."""
    hook = requests.WebhookRequest(body.url, body.events, model_pattern=body.model_pattern)
    return webhooks.add_webhook(settings_of(request), caller, hook)


@router.get("/webhooks", response_model=list[WebhookInfo])
def list_webhooks(
    request: Request, caller: CallerDep, removed: Annotated[bool, Query()] = False
) -> list[WebhookInfo]:
    """The webhooks, newest first (never a secret); removed ones with `removed=true`."""
    return webhooks.list_webhooks(settings_of(request), caller, removed=removed)


@router.delete("/webhooks/{webhook_id}", response_model=WebhookInfo)
def remove_webhook(request: Request, webhook_id: Id, caller: CallerDep) -> WebhookInfo:
    """Remove a webhook; its unsent deliveries fail and its history stays."""
    return webhooks.remove_webhook(settings_of(request), caller, webhook_id)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=list[DeliveryInfo])
def list_deliveries(
    request: Request,
    webhook_id: Id,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[DeliveryInfo]:
    """A webhook's newest deliveries, each with its attempts (status code, duration, error)."""
    return webhooks.list_deliveries(settings_of(request), caller, webhook_id, limit=limit)


@router.post("/webhooks/deliveries/{delivery_id}/redeliver", response_model=DeliveryInfo, status_code=202)
def redeliver(request: Request, delivery_id: Id, caller: CallerDep) -> DeliveryInfo:
    """Send a delivery again now (a worker, or this server without a broker, makes the attempt)."""
    return webhooks.redeliver(settings_of(request), caller, delivery_id)
