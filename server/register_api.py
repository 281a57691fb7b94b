"""Register: the client uploads the bundle it built; the server checks it exactly as a local register does."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path as FilePath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from regctl.registry.access import Caller
from regctl.registry.entities import RegisteredVersion
from regctl.registry.errors.files import BadUpload, UploadTooLarge
from regctl.registry.errors.services import UploadStalled
from regctl.registry.lineage import Lineage, parse_tags
from regctl.registry.ops.owned import UPLOAD_PREFIX
from regctl.registry.requests import RegisterRequest
from regctl.registry.settings import Settings
from regctl.server.auth import current_caller, settings_of
from regctl.server.errors import error_responses
from regctl.server.responses import public_version
from regctl.service import models
from regctl.worker.supervisor.scratch import locked_folder

router = APIRouter(tags=["versions"])
# A tar adds a 512-byte header and padding per member to the files' own bytes.
TAR_OVERHEAD = 16 * 1024 * 1024


def upload_limit(settings: Settings) -> int:
    """The largest request body a register accepts."""
    return settings.max_bundle_bytes + settings.max_weights_bytes + TAR_OVERHEAD


@router.post(
    "/models/{name}/versions",
    response_model=RegisteredVersion,
    status_code=201,
    responses={
        200: {
            "model": RegisteredVersion,
            "description": "Unchanged: the code, weights and spec equal the newest version's, so nothing "
            "was created; this is that version, with unchanged=true",
        },
        **error_responses(400, 401, 403, 408, 409, 413, 422, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The bundle 'regctl register' builds: an uncompressed tar of the model "
            "directory's code, regctl.toml and the data files the spec names",
            "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def register(
    request: Request,
    response: Response,
    name: Annotated[str, Path(description="The model's name; created on first use", max_length=128)],
    caller: Annotated[Caller, Depends(current_caller)],
    method: Literal["auto", "trace", "script"] | None = None,
    device: Literal["cpu", "cuda"] | None = None,
    description: Annotated[str | None, Query(max_length=4000)] = None,
    convert: bool = True,
    new_version: Annotated[
        bool, Query(description="Register a new version even when nothing changed since the newest one")
    ] = False,
    tag: Annotated[list[str] | None, Query(max_length=330, description="KEY=VALUE, repeatable")] = None,
    run_url: Annotated[str | None, Query(max_length=2048)] = None,
    git_commit: Annotated[str | None, Query(max_length=64, description="read by the client")] = None,
    git_dirty: bool | None = None,
    formats: Annotated[
        list[Literal["torchscript", "exported", "aoti", "executorch", "onnx"]] | None,
        Query(
            alias="format",
            max_length=5,
            description="What to produce besides TorchScript: exported, aoti, executorch, onnx",
        ),
    ] = None,
) -> RegisteredVersion:
    """Register the uploaded bundle as NAME's next version; conversion starts unless convert=false.

    Content equal to the newest version's answers 200 with that version and `unchanged: true`,
    creating nothing (new_version=true registers it again); a new version answers 201.
    """
    settings = settings_of(request)
    registration = RegisterRequest(
        name,
        method=method,
        device=device,
        lineage=Lineage(description, parse_tags(tag or []), run_url, git_commit, git_dirty),
        formats=tuple(formats) if formats else None,
        convert=convert,
        new_version=new_version,
    )
    models.authorize_register(caller, registration)  # before a refused caller's upload is read
    limit = upload_limit(settings)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(settings)
    throttle = request.app.state.throttle
    # A locked folder in the work dir: a server killed mid-upload leaves it for the next start's sweep
    # (app.py) and for `regctl doctor` to name, never an anonymous temp file.
    with throttle.upload_slot(caller.name), locked_folder(UPLOAD_PREFIX, settings.work_dir) as folder:
        upload = folder / "bundle.tar"
        await _receive(request, upload, limit, settings)
        info = await run_in_threadpool(models.register_upload, settings, caller, registration, upload)
    if info.unchanged:
        response.status_code = 200
    return public_version(info)  # artifact uris as download paths, never the store's


async def _receive(request: Request, dest: FilePath, limit: int, settings: Settings) -> None:
    """Write the body to `dest`, stopping as soon as it passes `limit` (the temp dir is then removed).

    A client that sends nothing for REGCTL_BODY_TIMEOUT_S is answered 408 (UploadStalled) and the
    connection closed: a stalled upload would otherwise hold its temp file and its slot for ever.
    """
    received = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    chunks = request.stream().__aiter__()
    with os.fdopen(fd, "wb") as out:
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), settings.body_timeout)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise UploadStalled(seconds=settings.body_timeout) from None
            received += len(chunk)
            if received > limit:
                raise _too_large(settings)
            out.write(chunk)
    if received == 0:
        raise BadUpload(problem="is empty: the request has no body")


def _too_large(settings: Settings) -> UploadTooLarge:
    return UploadTooLarge(bundle_bytes=settings.max_bundle_bytes, weights_bytes=settings.max_weights_bytes)
