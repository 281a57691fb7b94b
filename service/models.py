"""Reading models and versions, and registering new versions.

`regctl.registry.versions` is imported where a version is read or written, not at the top: it loads
the artifact store, fsspec and the PostgreSQL dialect, which made `regctl models list` (and `models
show`), which need none of them, about 70 ms slower to start (measured with python -X importtime).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from regctl.registry import models as registry_models
from regctl.registry.access import Caller
from regctl.registry.entities import ModelDetail, ModelSummary, RegisteredVersion, VersionInfo, VersionRow
from regctl.registry.errors import RegctlError
from regctl.registry.refs import check_model_name, parse_ref
from regctl.registry.requests import RegisterRequest, VersionQuery
from regctl.registry.search import search_versions
from regctl.registry.settings import Settings
from regctl.registry.upload import unpack_upload
from regctl.service import dispatch


def list_models(settings: Settings, caller: Caller) -> list[ModelSummary]:
    """Every model the caller may see, by name."""
    caller.require("read")
    return [m for m in registry_models.list_models(settings) if caller.may_see(m.name)]


def show_model(settings: Settings, caller: Caller, name: str) -> ModelDetail:
    """A model with its newest versions and its aliases."""
    caller.require("read", check_model_name(name))
    return registry_models.show_model(settings, name)


def list_versions(settings: Settings, caller: Caller, query: VersionQuery) -> list[VersionRow]:
    """The newest versions of the query's model, or of every model the caller may read when it names
    none, filtered by status and tags; archived ones on request."""
    from regctl.registry import versions as registry_versions  # measured: see the module's docstring

    if query.name is None:
        caller.require("read")
        return search_versions(settings, caller, query)
    caller.require("read", query.name)
    return registry_versions.list_versions(settings, query)


def show_version(settings: Settings, caller: Caller, ref: str) -> VersionInfo:
    """The version REF points at, with its artifacts, aliases and jobs."""
    from regctl.registry import versions as registry_versions  # measured: see the module's docstring

    parsed = parse_ref(ref)
    caller.require("read", parsed.name)
    return registry_versions.get_version(settings, parsed)


def authorize_register(caller: Caller, request: RegisterRequest) -> None:
    """Raise NotAllowed unless the caller may register versions of the request's model.

    Both register functions check it; the HTTP handler asks first too, so that a refused caller's
    upload is never read.
    """
    caller.require("register", request.name)


def register_directory(
    settings: Settings, caller: Caller, request: RegisterRequest, directory: Path
) -> RegisteredVersion:
    """Register a model directory on this machine as the next version; start its conversion.

    Content equal to the newest version's (code, weights and spec) creates nothing and answers that
    version with `unchanged=True`, unless the request asks for a `new_version` anyway.
    """
    authorize_register(caller, request)
    return _register(settings, caller, request, directory)


def register_upload(
    settings: Settings, caller: Caller, request: RegisterRequest, upload: Path
) -> RegisteredVersion:
    """Register an uploaded bundle: unpacked safely, then checked and rebuilt exactly like a local directory.

    Messages about the unpacked files name them relative to the upload, never the server's paths.
    """
    authorize_register(caller, request)
    # Unpacked beside the upload, in the server's locked upload folder (server/register_api.py).
    with tempfile.TemporaryDirectory(prefix="unpacked-", dir=upload.parent) as tmp:
        # The upload carries the weights too; the registry holds each part to its own cap.
        cap = settings.max_bundle_bytes + settings.max_weights_bytes
        directory = unpack_upload(upload, Path(tmp) / "bundle", cap)
        try:
            return _register(settings, caller, request, directory)
        except RegctlError as exc:
            # from None: the original, chained, would print the server's paths with the traceback.
            raise _within_upload(exc, directory).with_traceback(exc.__traceback__) from None


def _within_upload(exc: RegctlError, directory: Path) -> RegctlError:
    """The error restated with each path inside the unpacked upload named relative to it."""

    def relative(text: str) -> str:
        return text.replace(f"{directory}/", "").replace(str(directory), "the bundle")

    def shown(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [shown(item) for item in value]
        return relative(str(value)) if str(directory) in str(value) else value

    if type(exc).template and exc.fields:
        return exc.with_fields(**{key: shown(value) for key, value in exc.fields.items()})
    return type(exc)(relative(exc.message))  # a plain message: its text is all there is


def _register(
    settings: Settings, caller: Caller, request: RegisterRequest, directory: Path
) -> RegisteredVersion:
    """Record the version (its convert job queued with it, unless told not to), then hand the job out."""
    from regctl.registry import versions as registry_versions  # measured: see the module's docstring

    jobs = ("convert",) if request.convert else ()
    if jobs:
        dispatch.preflight(settings)
    info = registry_versions.register_version(
        settings, request, directory, jobs=jobs, caller=caller, skip_unchanged=not request.new_version
    )
    if not info.unchanged:  # an unchanged version's jobs were handed out when it was registered
        dispatch.start(settings, info.jobs)
    return info
