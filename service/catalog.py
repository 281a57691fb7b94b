"""Searching the catalog: models by text (what every front door calls; versions across models are
`service.models.list_versions` with a query that names no model)."""

from __future__ import annotations

from regctl.registry.access import Caller
from regctl.registry.entities import ModelSummary
from regctl.registry.search import ModelSearch
from regctl.registry.search import search_models as query_models
from regctl.registry.settings import Settings


def search_models(settings: Settings, caller: Caller, search: ModelSearch) -> list[ModelSummary]:
    """The models the caller may read whose name, description or tags contain the text (any case)."""
    caller.require("read")
    return query_models(settings, caller, search)
