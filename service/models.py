"""Reading models and versions, and registering new versions."""

from __future__ import annotations

import tempfile
from pathlib import Path

from regctl.registry.access import Caller
from regctl.registry.entities import ModelDetail, ModelSummary, RegisteredVersion, VersionInfo, VersionRow
from regctl.registry.errors import RegctlError
from regctl.registry.lineage import Lineage
from regctl.registry.refs import check_model_name, parse_ref
from regctl.registry.settings import Settings
from regctl.service import dispatch


def list_models(settings: Settings, caller: Caller) -> list[ModelSummary]:
    """Every model the caller may see, by name."""
    from regctl.registry.models import list_models as query

    caller.require("read")
    return [m for m in query(settings) if caller.may_see(m.name)]


def show_model(settings: Settings, caller: Caller, name: str) -> ModelDetail:
    """A model with its newest versions and its aliases."""
    from regctl.registry.models import show_model as query

    caller.require("read", check_model_name(name))
    return query(settings, name)


def list_versions(
    settings: Settings,
    caller: Caller,
    name: str,
    *,
    status: str | None = None,
    tags: dict[str, str] | None = None,
    archived: bool = False,
    limit: int = 100,
) -> list[VersionRow]:
    """The newest versions of a model, filtered by status and tags; archived ones on request."""
    from regctl.registry.versions import list_versions as query

    caller.require("read", check_model_name(name))
    return query(settings, name, status=status, tags=tags, archived=archived, limit=limit)


def show_version(settings: Settings, caller: Caller, ref: str) -> VersionInfo:
    """The version REF points at, with its artifacts, aliases and jobs."""
    from regctl.registry.versions import get_version

    parsed = parse_ref(ref)
    caller.require("read", parsed.name)
    return get_version(settings, parsed)


def register_directory(
    settings: Settings,
    caller: Caller,
    name: str,
    directory: Path,
    *,
    method: str | None = None,
    device: str | None = None,
    description: str | None = None,
    convert: bool = True,
    lineage: Lineage | None = None,
    formats: tuple[str, ...] | None = None,
    new_version: bool = False,
) -> RegisteredVersion:
    """Register a model directory on this machine as the next version of `name`; start its conversion.

    Content equal to the newest version's (code, weights and spec) creates nothing and answers that
    version with `unchanged=True`, unless `new_version` asks for a new one anyway.
    """
    from regctl.registry.versions import register_version

    caller.require("register", check_model_name(name))
    jobs = ("convert",) if convert else ()
    if jobs:
        dispatch.preflight(settings)
    info = register_version(
        settings,
        name,
        directory,
        method=method,
        device=device,
        description=description,
        jobs=jobs,
        caller=caller,
        lineage=lineage,
        formats=formats,
        skip_unchanged=not new_version,
    )
    if not info.unchanged:  # an unchanged version's jobs were handed out when it was registered
        dispatch.start(settings, info.jobs)
    return info


def register_upload(
    settings: Settings,
    caller: Caller,
    name: str,
    upload: Path,
    *,
    method: str | None = None,
    device: str | None = None,
    description: str | None = None,
    convert: bool = True,
    lineage: Lineage | None = None,
    formats: tuple[str, ...] | None = None,
    new_version: bool = False,
) -> RegisteredVersion:
    """Register an uploaded bundle: unpacked safely, then checked and rebuilt exactly like a local directory.

    Messages about the unpacked files name them relative to the upload, never the server's paths.
    """
    from regctl.registry.upload import unpack_upload

    caller.require("register", check_model_name(name))
    with tempfile.TemporaryDirectory(prefix="regctl-upload-") as tmp:
        # The upload carries the weights too; register_directory holds each part to its own cap.
        cap = settings.max_bundle_bytes + settings.max_weights_bytes
        directory = unpack_upload(upload, Path(tmp) / "bundle", cap)
        try:
            return register_directory(
                settings,
                caller,
                name,
                directory,
                method=method,
                device=device,
                description=description,
                convert=convert,
                lineage=lineage,
                formats=formats,
                new_version=new_version,
            )
        except RegctlError as exc:
            exc.message = exc.message.replace(f"{directory}/", "").replace(str(directory), "the bundle")
            raise
