"""Searching the catalog: models by text, versions by tag across models (what every front door calls)."""

from __future__ import annotations

from regctl.registry.access import Caller
from regctl.registry.entities import ModelSummary, VersionRow
from regctl.registry.search import ModelSearch, VersionSearch
from regctl.registry.search import search_models as query_models
from regctl.registry.search import search_versions as query_versions
from regctl.registry.settings import Settings


def search_models(settings: Settings, caller: Caller, search: ModelSearch) -> list[ModelSummary]:
    """The models the caller may read whose name, description or tags contain the text (any case)."""
    caller.require("read")
    return query_models(settings, caller, search)


def search_versions(settings: Settings, caller: Caller, search: VersionSearch) -> list[VersionRow]:
    """The versions of every model the caller may read that carry all the search's tags, newest first."""
    caller.require("read")
    return query_versions(settings, caller, search)
