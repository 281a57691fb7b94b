"""Tags, archive, delete and garbage collection."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from regctl.registry.access import Caller
from regctl.server.auth import current_caller, settings_of
from regctl.server.errors import error_responses
from regctl.service import lifecycle

router = APIRouter(responses=error_responses(400, 401, 403, 404, 409, 422, 503))
Ref = Annotated[str, Path(description="NAME, NAME:VERSION or NAME@ALIAS", max_length=200)]
VersionRef = Annotated[str, Path(description="NAME:VERSION", max_length=200)]
CallerDep = Annotated[Caller, Depends(current_caller)]


class TagChange(BaseModel):
    """Tags to set (key to value) and keys to remove."""

    set: dict[str, str] = Field(default_factory=dict, max_length=50)
    remove: list[str] = Field(default_factory=list, max_length=50)


class Archived(BaseModel):
    """The version archived or unarchived."""

    ref: str
    archived: bool


class Deleted(BaseModel):
    """What a delete removed: the version, the aliases that pointed at it, the blobs it named."""

    ref: str
    aliases: list[str]
    blobs: list[str]


class Collection(BaseModel):
    """One gc pass."""

    dry_run: bool
    deleted: list[str]
    bytes: int
    kept_recent: int
    kept_referenced: int


@router.patch("/versions/{ref}/tags", response_model=dict[str, str], tags=["versions"])
def tag_version(request: Request, ref: Ref, change: TagChange, caller: CallerDep) -> dict[str, str]:
    """Set and remove a version's tags; the tags afterwards."""
    return lifecycle.tag_version(settings_of(request), caller, ref, change.set, tuple(change.remove))


@router.post("/versions/{ref}/archive", response_model=Archived, tags=["versions"])
def archive_version(request: Request, ref: VersionRef, caller: CallerDep) -> Archived:
    """Hide NAME:VERSION from NAME resolution and lists; it stays fetchable by number."""
    return Archived(ref=lifecycle.archive_version(settings_of(request), caller, ref, True), archived=True)


@router.delete("/versions/{ref}/archive", response_model=Archived, tags=["versions"])
def unarchive_version(request: Request, ref: VersionRef, caller: CallerDep) -> Archived:
    """Show an archived version again."""
    return Archived(ref=lifecycle.archive_version(settings_of(request), caller, ref, False), archived=False)


@router.delete("/versions/{ref}", response_model=Deleted, tags=["versions"])
def delete_version(request: Request, ref: VersionRef, caller: CallerDep, force: bool = False) -> Deleted:
    """Delete NAME:VERSION (admin). Refused while an alias points at it, unless force=true."""
    return Deleted(**lifecycle.delete_version(settings_of(request), caller, ref, force=force))


@router.post("/gc", response_model=Collection, tags=["admin"])
def collect_garbage(
    request: Request, caller: CallerDep, dry_run: Annotated[bool, Query()] = False
) -> Collection:
    """Delete the blobs no row names, older than an hour (admin)."""
    return Collection(**lifecycle.collect_garbage(settings_of(request), caller, dry_run=dry_run))
