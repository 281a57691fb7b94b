"""Promotion requests through the service: who may file, approve and reject them, and their webhooks."""

from __future__ import annotations

from regctl.registry import promotion_requests as requests
from regctl.registry.access import Caller
from regctl.registry.entities import PromotionRequestInfo
from regctl.registry.errors.promotion import UnknownRequest
from regctl.registry.refs import check_alias_name, check_model_name
from regctl.registry.settings import Settings
from regctl.service import dispatch


def file_request(
    settings: Settings,
    caller: Caller,
    name: str,
    alias: str,
    version: int,
    reason: str,
    *,
    force: bool = False,
) -> PromotionRequestInfo:
    """Ask for the protected NAME@ALIAS to move to VERSION (writers and admins); `force` is an admin's."""
    caller.require("request-alias", check_model_name(name))
    if force:
        caller.require("protected-alias", name)
    alias = check_alias_name(alias)
    filed = requests.file_request(settings, caller, name, alias, version, reason, force=force)
    dispatch.send_webhooks(settings)
    return filed


def approve_request(
    settings: Settings, caller: Caller, request_id: int, note: str | None = None
) -> PromotionRequestInfo:
    """Approve a pending request and move its alias: an admin who is not its requester."""
    request = show_request(settings, caller, request_id)
    caller.require("approve-alias", request.model)
    approved = requests.approve_request(settings, caller, request_id, note)
    dispatch.send_webhooks(settings)
    return approved


def reject_request(
    settings: Settings, caller: Caller, request_id: int, note: str | None = None
) -> PromotionRequestInfo:
    """Reject a pending request: an admin, or its requester withdrawing it."""
    request = show_request(settings, caller, request_id)
    if request.requested_by != caller.name[:128]:
        caller.require("approve-alias", request.model)
    rejected = requests.reject_request(settings, caller, request_id, note)
    dispatch.send_webhooks(settings)
    return rejected


def show_request(settings: Settings, caller: Caller, request_id: int) -> PromotionRequestInfo:
    """One request; a request about a model the caller may not see answers like a missing one."""
    request = requests.get_request(settings, request_id)
    if not caller.can("read", request.model):
        raise UnknownRequest(request_id=request_id)
    return request


def list_requests(
    settings: Settings,
    caller: Caller,
    name: str | None = None,
    *,
    pending_only: bool = True,
    limit: int = 100,
) -> list[PromotionRequestInfo]:
    """Requests the caller may see, newest first: pending ones, or all with `pending_only=False`."""
    if name is not None:
        caller.require("read", check_model_name(name))
    found = requests.list_requests(settings, name, pending_only=pending_only, limit=limit)
    return [r for r in found if caller.can("read", r.model)]
