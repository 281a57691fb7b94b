"""Setting, removing and listing aliases; protected aliases (`prod`) need an admin."""

from __future__ import annotations

from regctl.registry import aliases as registry_aliases
from regctl.registry.access import Caller, alias_action
from regctl.registry.entities import AliasInfo
from regctl.registry.refs import check_alias_name, check_model_name
from regctl.registry.settings import Settings
from regctl.service import dispatch


def set_alias(
    settings: Settings, caller: Caller, name: str, alias: str, version: int, *, force: bool = False
) -> AliasInfo:
    """Point NAME@ALIAS at VERSION; recorded in the alias history and the audit trail.

    The promotion policy may refuse the version (registry/promotion.py); only an admin may `force`
    past it, and the audit trail records what was overridden.
    """
    check_model_name(name)
    alias = check_alias_name(alias)
    caller.require(alias_action(alias, settings.protected_aliases), name)
    if force:
        caller.require("protected-alias", name)
    moved = registry_aliases.set_alias(settings, name, alias, version, caller, force=force)
    dispatch.send_webhooks(settings)
    return moved


def remove_alias(settings: Settings, caller: Caller, name: str, alias: str) -> AliasInfo:
    """Remove NAME@ALIAS; recorded like a move."""
    check_model_name(name)
    alias = check_alias_name(alias)
    caller.require(alias_action(alias, settings.protected_aliases), name)
    removed = registry_aliases.remove_alias(settings, name, alias, caller)
    dispatch.send_webhooks(settings)
    return removed


def alias_history(settings: Settings, caller: Caller, name: str, alias: str | None = None) -> list[AliasInfo]:
    """Every change to a model's aliases (or one alias), oldest first."""
    caller.require("read", check_model_name(name))
    if alias is not None:
        alias = check_alias_name(alias)
    return registry_aliases.alias_history(settings, name, alias)
