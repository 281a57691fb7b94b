"""Tokens and the audit trail: admin-only operations."""

from __future__ import annotations

from regctl.registry import audit as registry_audit
from regctl.registry import tokens as registry_tokens
from regctl.registry.access import Caller
from regctl.registry.entities import AuditEntry, NewToken, TokenInfo
from regctl.registry.refs import check_model_name
from regctl.registry.requests import TokenRequest
from regctl.registry.settings import Settings


def create_token(settings: Settings, caller: Caller, request: TokenRequest) -> NewToken:
    """Create a token; its secret is in the result and nowhere else."""
    caller.require("tokens")
    return registry_tokens.create_token(settings, caller, request)


def list_tokens(settings: Settings, caller: Caller) -> list[TokenInfo]:
    """Every token (never a secret)."""
    caller.require("tokens")
    return registry_tokens.list_tokens(settings)


def revoke_token(settings: Settings, caller: Caller, name: str) -> TokenInfo:
    """Revoke a token by name."""
    caller.require("tokens")
    return registry_tokens.revoke_token(settings, caller, name)


def list_audit(
    settings: Settings, caller: Caller, *, model: str | None = None, limit: int = 100
) -> list[AuditEntry]:
    """The newest audit entries first, optionally only those about `model`."""
    caller.require("audit")
    if model is not None:
        check_model_name(model)
    return registry_audit.list_audit(settings, model=model, limit=limit)
