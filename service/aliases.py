"""Setting, removing and listing aliases; protected aliases (`prod`) need an admin."""

from __future__ import annotations

from regctl.registry.access import Caller, alias_action
from regctl.registry.entities import AliasInfo
from regctl.registry.refs import check_alias_name, check_model_name
from regctl.registry.settings import Settings
from regctl.service import dispatch


def set_alias(settings: Settings, caller: Caller, name: str, alias: str, version: int) -> AliasInfo:
    """Point NAME@ALIAS at VERSION; recorded in the alias history and the audit trail."""
    from regctl.registry.aliases import set_alias as change

    check_model_name(name)
    check_alias_name(alias)
    caller.require(alias_action(alias, settings.protected_aliases), name)
    moved = change(settings, name, alias, version, caller)
    dispatch.send_webhooks(settings)
    return moved


def remove_alias(settings: Settings, caller: Caller, name: str, alias: str) -> AliasInfo:
    """Remove NAME@ALIAS; recorded like a move."""
    from regctl.registry.aliases import remove_alias as change

    check_model_name(name)
    check_alias_name(alias)
    caller.require(alias_action(alias, settings.protected_aliases), name)
    removed = change(settings, name, alias, caller)
    dispatch.send_webhooks(settings)
    return removed


def alias_history(settings: Settings, caller: Caller, name: str, alias: str | None = None) -> list[AliasInfo]:
    """Every change to a model's aliases (or one alias), oldest first."""
    from regctl.registry.aliases import alias_history as query

    caller.require("read", check_model_name(name))
    if alias is not None:
        check_alias_name(alias)
    return query(settings, name, alias)
