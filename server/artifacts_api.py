"""Artifact download: streamed from the store, sha256-verified, with ETag, 304, Range and a digest header."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from regctl.registry.access import Caller
from regctl.registry.errors import CorruptedArtifact
from regctl.registry.formats import FILE_SUFFIX
from regctl.registry.store import open_store
from regctl.server.auth import current_caller, settings_of
from regctl.server.errors import error_response, error_responses
from regctl.server.ranges import Unsatisfiable, byte_range, etag_matches
from regctl.service import artifacts

router = APIRouter(tags=["artifacts"])
Kind = Literal[
    "torchscript",
    "exported",
    "source",
    "weights",
    "conversion-report",
    "validation-report",
    "aoti",
    "executorch",
    "onnx",
]
SUFFIX = FILE_SUFFIX  # the download's file name: <model>-<version><suffix>
# Big enough that per-chunk overhead vanishes, small enough that a slow client holds little memory.
STREAM_CHUNK = 4 << 20
WHOLE_BYTES = 1 << 20  # an artifact this small is read whole and sent in one piece
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@router.get(
    "/versions/{ref}/artifacts/{kind}",
    response_class=Response,
    responses={
        200: {"content": _BINARY, "description": "The artifact's bytes; ETag is its sha256"},
        206: {"content": _BINARY, "description": "The requested byte range"},
        304: {"description": "If-None-Match named the current sha256: nothing changed"},
        307: {"description": "With presign=true on an S3 store: a presigned URL to the bytes"},
        416: {"description": "The byte range lies past the end"},
        **error_responses(400, 401, 403, 404, 422, 503),
    },
)
def download(
    request: Request,
    ref: Annotated[str, Path(description="NAME, NAME:VERSION or NAME@ALIAS", max_length=200)],
    kind: Kind,
    caller: Annotated[Caller, Depends(current_caller)],
    presign: Annotated[bool, Query(description="Redirect to a presigned store URL (S3 stores)")] = False,
) -> Response:
    """Download an artifact of the version REF points at, verified against its sha256.

    The first download of a blob is checked as it streams (a mismatch cuts it short); the server then
    remembers the check for a while (server/verified.py).
    """
    settings = settings_of(request)
    version_ref, artifact = artifacts.find_artifact(settings, caller, ref, kind)
    etag = f'"{artifact.sha256}"'
    digest = base64.b64encode(bytes.fromhex(artifact.sha256)).decode()
    headers = {
        "ETag": etag,
        "Cache-Control": "private, no-cache",
        "Accept-Ranges": "bytes",
        "Digest": f"sha-256={digest}",
        "Repr-Digest": f"sha-256=:{digest}:",
        "X-Regctl-Sha256": artifact.sha256,
        "X-Regctl-Ref": version_ref,
        "Content-Disposition": f'attachment; filename="{version_ref.replace(":", "-")}{SUFFIX[kind]}"',
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    store = open_store(settings.artifact_store)
    if presign:
        url = store.presign(artifact.sha256)
        if url is not None:
            redirect_headers = {k: headers[k] for k in ("ETag", "X-Regctl-Sha256", "X-Regctl-Ref")}
            redirect_headers["X-Regctl-Size"] = str(artifact.size)
            return RedirectResponse(url, status_code=307, headers=redirect_headers)
    try:
        wanted = byte_range(
            request.headers.get("range"), artifact.size, request.headers.get("if-range"), etag
        )
    except Unsatisfiable:
        return error_response(
            416,
            "range_not_satisfiable",
            f"the range lies past the end of the {artifact.size}-byte artifact",
            {"Content-Range": f"bytes */{artifact.size}"},
        )
    if wanted is None and artifact.size <= WHOLE_BYTES:
        # Read whole, verified, in one store request (S3: one GET, not a HEAD, a HEAD and a GET).
        # A damaged blob goes the streaming way below, which cuts it short rather than answer a
        # status a plain `curl -o` would save as the file.
        with contextlib.suppress(CorruptedArtifact):
            identity = store.identity(artifact.sha256)  # a stat on a local store; None on S3
            body = request.app.state.small_blobs.read(artifact.sha256, identity, store.read_small)
            return Response(body, media_type="application/octet-stream", headers=headers)
    if wanted is None:
        headers["Content-Length"] = str(artifact.size)
        verified = request.app.state.verified
        identity = store.identity(artifact.sha256)
        if verified.fresh(artifact.sha256, identity):
            chunks = store.open_range(artifact.sha256, 0, artifact.size, chunk_size=STREAM_CHUNK)
        else:
            checking = store.open_chunks(artifact.sha256, chunk_size=STREAM_CHUNK)
            chunks = held_back(verified.checked(artifact.sha256, identity, checking))
        return StreamingResponse(read_ahead(chunks), media_type="application/octet-stream", headers=headers)
    start, end = wanted
    headers["Content-Length"] = str(end - start + 1)
    headers["Content-Range"] = f"bytes {start}-{end}/{artifact.size}"
    return StreamingResponse(
        read_ahead(store.open_range(artifact.sha256, start, end - start + 1, chunk_size=STREAM_CHUNK)),
        status_code=206,
        media_type="application/octet-stream",
        headers=headers,
    )


def held_back(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Pass chunks on one step late, so the last one goes out only after the sha256 was checked.

    The store checks the digest when its last chunk has been read and raises on a mismatch; holding
    that chunk back means a corrupted blob reaches the client short of its Content-Length, which
    every HTTP client (curl included) reports as an error, instead of as a complete wrong file.
    """
    previous = None
    for chunk in chunks:
        if previous is not None:
            yield previous
        previous = chunk
    if previous is not None:
        yield previous


async def read_ahead(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Read (and hash) the next chunk in a thread while the current one is being sent.

    Starlette would read and send one after the other; overlapping them keeps both the disk and the
    socket busy, since sha256 and file reads release the GIL.
    """
    done = object()
    pending = asyncio.ensure_future(run_in_threadpool(next, chunks, done))
    try:
        while True:
            chunk = await pending
            if chunk is done:
                return
            pending = asyncio.ensure_future(run_in_threadpool(next, chunks, done))
            yield chunk  # type: ignore[misc]
    finally:
        # The client went away or the blob failed its check: let the read in flight finish, then close
        # the store's file (a generator cannot be closed while another thread runs it).
        with contextlib.suppress(BaseException):
            await asyncio.shield(pending)
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
