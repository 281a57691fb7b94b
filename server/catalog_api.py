"""Reading: models, versions, aliases and their history, and who the token is."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from regctl.registry.access import Caller
from regctl.registry.entities import AliasInfo, Identity, ModelDetail, ModelSummary, VersionInfo, VersionRow
from regctl.registry.lineage import parse_tags
from regctl.registry.refs import MAX_VERSION
from regctl.registry.requests import MAX_LIMIT, VersionQuery
from regctl.registry.search import MAX_SEARCH_CHARS, ModelSearch
from regctl.server.auth import current_caller, settings_of
from regctl.server.errors import error_responses
from regctl.server.responses import public_version, typed_json
from regctl.service import aliases, catalog, models

router = APIRouter(responses=error_responses())
Name = Annotated[str, Path(description="A model name, e.g. resnet", max_length=128)]
AliasName = Annotated[str, Path(description="An alias, e.g. prod", max_length=64)]
Ref = Annotated[str, Path(description="NAME, NAME:VERSION or NAME@ALIAS", max_length=200)]
CallerDep = Annotated[Caller, Depends(current_caller)]
Status = Literal["registered", "converting", "validating", "ready", "failed", "cancelled"]


class AliasTarget(BaseModel):
    """Where an alias should point."""

    version: int = Field(ge=1, le=MAX_VERSION)
    force: bool = Field(
        default=False, description="Override the promotion policy (admins only); the audit trail records it"
    )


@router.get("/whoami", response_model=Identity, tags=["tokens"])
def whoami(caller: CallerDep) -> Identity:
    """The token's name, role and model pattern."""
    return Identity(caller.name, caller.role, caller.model_pattern)


@router.get("/models", response_model=list[ModelSummary], tags=["models"])
def list_models(
    request: Request,
    caller: CallerDep,
    q: Annotated[
        str | None,
        Query(
            max_length=MAX_SEARCH_CHARS,
            description="Only models whose name, description, or a version's description or tag "
            "(KEY=VALUE) contains this text, ignoring case; % and _ match themselves",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many (with q)")] = 100,
) -> Response:
    """Every model the token may see, with version counts and the newest ready version; `q` searches."""
    settings = settings_of(request)
    if q is not None and q.strip():
        found = catalog.search_models(settings, caller, ModelSearch(q, limit))
    else:
        found = models.list_models(settings, caller)
    return typed_json(list[ModelSummary], found)


@router.get("/models/{name}", response_model=ModelDetail, tags=["models"])
def show_model(request: Request, name: Name, caller: CallerDep) -> Response:
    """A model with its newest versions and its aliases."""
    return typed_json(ModelDetail, models.show_model(settings_of(request), caller, name))


@router.get("/models/{name}/versions", response_model=list[VersionRow], tags=["versions"])
def list_versions(
    request: Request,
    name: Name,
    caller: CallerDep,
    status: Status | None = None,
    tag: Annotated[list[str] | None, Query(max_length=330, description="KEY=VALUE; all must match")] = None,
    archived: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """The newest versions of a model, filtered by status and tags (archived ones with archived=true)."""
    query = VersionQuery(name, status=status, tags=parse_tags(tag or []), archived=archived, limit=limit)
    return typed_json(list[VersionRow], models.list_versions(settings_of(request), caller, query))


@router.get("/versions", response_model=list[VersionRow], tags=["versions"])
def search_versions(
    request: Request,
    caller: CallerDep,
    status: Status | None = None,
    tag: Annotated[list[str] | None, Query(max_length=330, description="KEY=VALUE; all must match")] = None,
    archived: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> Response:
    """The newest versions of every model the token may see, filtered by status and tags; each names its
    model."""
    query = VersionQuery(None, status=status, tags=parse_tags(tag or []), archived=archived, limit=limit)
    return typed_json(list[VersionRow], models.list_versions(settings_of(request), caller, query))


@router.get("/versions/{ref}", response_model=VersionInfo, tags=["versions"])
def show_version(request: Request, ref: Ref, caller: CallerDep) -> Response:
    """A version with its spec, model card, artifacts (`uri`: the download path), aliases, jobs and
    validation summary."""
    info = models.show_version(settings_of(request), caller, ref)
    return typed_json(VersionInfo, public_version(info))


@router.get("/models/{name}/alias-history", response_model=list[AliasInfo], tags=["aliases"])
def alias_history(request: Request, name: Name, caller: CallerDep) -> list[AliasInfo]:
    """Every change to the model's aliases, oldest first."""
    return aliases.alias_history(settings_of(request), caller, name)


@router.put(
    "/models/{name}/aliases/{alias}",
    response_model=AliasInfo,
    tags=["aliases"],
    responses=error_responses(400, 401, 403, 404, 409, 422, 503),
)
def set_alias(
    request: Request, name: Name, alias: AliasName, target: Annotated[AliasTarget, Body()], caller: CallerDep
) -> AliasInfo:
    """Point NAME@ALIAS at a version. Protected aliases (REGCTL_PROTECTED_ALIASES, `prod`) need an admin.

    Any alias moves only to a ready version; a protected one only to a ready, signed version proved
    under a torch REGCTL_PROMOTION_TORCH lists (409 otherwise, with the reason). `force` overrides.
    """
    return aliases.set_alias(settings_of(request), caller, name, alias, target.version, force=target.force)


@router.delete("/models/{name}/aliases/{alias}", response_model=AliasInfo, tags=["aliases"])
def remove_alias(request: Request, name: Name, alias: AliasName, caller: CallerDep) -> AliasInfo:
    """Remove NAME@ALIAS; recorded in its history."""
    return aliases.remove_alias(settings_of(request), caller, name, alias)
