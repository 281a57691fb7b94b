"""Tokens and the audit trail: admin-only operations."""

from __future__ import annotations

from regctl.registry.access import Caller
from regctl.registry.entities import AuditEntry, NewToken, TokenInfo
from regctl.registry.refs import check_model_name
from regctl.registry.settings import Settings


def create_token(
    settings: Settings,
    caller: Caller,
    name: str,
    role: str,
    *,
    model_pattern: str | None = None,
    expires: str | None = None,
) -> NewToken:
    """Create a token; its secret is in the result and nowhere else."""
    from regctl.registry.tokens import create_token as create

    caller.require("tokens")
    return create(settings, caller, name, role, model_pattern=model_pattern, expires=expires)


def list_tokens(settings: Settings, caller: Caller) -> list[TokenInfo]:
    """Every token (never a secret)."""
    from regctl.registry.tokens import list_tokens as query

    caller.require("tokens")
    return query(settings)


def revoke_token(settings: Settings, caller: Caller, name: str) -> TokenInfo:
    """Revoke a token by name."""
    from regctl.registry.tokens import revoke_token as revoke

    caller.require("tokens")
    return revoke(settings, caller, name)


def list_audit(
    settings: Settings, caller: Caller, *, model: str | None = None, limit: int = 100
) -> list[AuditEntry]:
    """The newest audit entries first, optionally only those about `model`."""
    from regctl.registry.audit import list_audit as query

    caller.require("audit")
    if model is not None:
        check_model_name(model)
    return query(settings, model=model, limit=limit)
