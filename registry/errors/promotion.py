"""Errors of promotion requests, the two-person rule for protected aliases (promotion_requests.py)."""

from __future__ import annotations

from regctl.registry.errors import AlreadyExists, InvalidInput, InvalidTransition, NotAllowed, NotFound
from regctl.registry.errors.inputs import PromotionRefused


class ApprovalRequired(PromotionRefused):
    """Raised when a protected alias is set directly while REGCTL_PROMOTION_APPROVALS asks for two people."""

    template = (
        "{target} moves only through an approved request (REGCTL_PROMOTION_APPROVALS=2), even for an "
        "admin; file one with 'regctl alias request {target} {version} --reason TEXT'"
    )


class NotProtected(InvalidInput):
    """Raised when a request is filed for an alias anyone with write access may set directly."""

    template = (
        "{alias} is not a protected alias (REGCTL_PROTECTED_ALIASES: {protected}), so it needs no "
        "approval; set it with 'regctl alias set {target} {version}'"
    )


class UnknownRequest(NotFound):
    """Raised when a promotion request id names nothing the caller may see."""

    template = "promotion request {request_id} does not exist; 'regctl alias requests' lists the pending ones"


class RequestPending(AlreadyExists):
    """Raised when an alias already has an open request: one decision at a time."""

    template = (
        "{target} already has a pending request ({request_id}, by {requested_by}, to version {version}, "
        "expires {expires}); approve or reject it first ('regctl alias reject {request_id}')"
    )


class RequestDecided(InvalidTransition):
    """Raised when approving or rejecting a request that was already decided."""

    template = (
        "promotion request {request_id} was already {state} by {decided_by}; file a new one to ask again"
    )


class RequestExpired(InvalidTransition):
    """Raised when approving a request after its time ran out (REGCTL_PROMOTION_REQUEST_TTL_S)."""

    template = (
        "promotion request {request_id} expired at {expires}; file a new one with "
        "'regctl alias request {target} {version} --reason TEXT'"
    )


class OwnRequest(NotAllowed):
    """Raised when the person who filed a request tries to approve it: two people, not one."""

    template = (
        "{caller!r} filed promotion request {request_id}; ask another admin to approve it (two-person rule)"
    )


class EmptyReason(InvalidInput):
    """Raised when a request comes without a reason, or with one too long to read."""

    template = "a request needs a reason of 1 to {limit} characters; give one with --reason TEXT"
