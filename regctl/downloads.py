"""Downloading an artifact from a regctl server: verified against the sha256 the server announces,
resumed with `Range` after a dropped connection, or taken straight from the store through a presigned URL.

The remote client (`regctl/remote.py`) owns the connection and the error mapping; a `Downloader` is
given both and does the transfer.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO
from urllib.parse import quote

import httpx

from regctl.client import Progress
from regctl.registry.entities import ArtifactInfo, FetchedArtifact
from regctl.registry.errors import RegctlError, ServiceUnavailable
from regctl.registry.errors.services import (
    ChangedWhileDownloaded,
    DownloadCutShort,
    DownloadMismatch,
    NotARegctlServer,
    PresignedRefused,
    PresignedUnreachable,
)
from regctl.registry.refs import parse_ref
from regctl.retries import resuming


@dataclass(frozen=True)
class Downloader:
    """Artifact downloads over the client's connection, with its error mapping."""

    http: httpx.Client
    error: Callable[[httpx.Response], RegctlError]
    unreachable: Callable[[Exception], ServiceUnavailable]

    def download(self, ref: str, kind: str, out: BinaryIO, progress: Progress | None) -> FetchedArtifact:
        path = artifact_path(ref, kind)
        with Sink(out) as sink:
            # A dropped connection resumes with a Range once the artifact is known.
            tries = resuming(lambda exc: isinstance(exc, httpx.TransportError) and sink.meta is not None)
            try:
                tries(self._receive, path, kind, sink, progress)
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.RemoteProtocolError):
                    # The server also cuts a download short on purpose when the blob fails its check.
                    cuts = tries.statistics["attempt_number"]
                    raise DownloadCutShort(ref=ref, kind=kind, cuts=cuts, done=sink.done) from exc
                raise self.unreachable(exc) from exc
            digest = sink.hexdigest()
        meta = sink.meta
        if meta is None or digest != meta.artifact.sha256:
            announced = meta.artifact.sha256[:16] if meta else "?"
            raise DownloadMismatch(ref=ref, kind=kind, source="arrived", got=digest[:16], announced=announced)
        return meta

    def presigned(
        self, ref: str, kind: str, out: BinaryIO, progress: Progress | None
    ) -> FetchedArtifact | None:
        """Follow the server's redirect to the store; None when the store cannot presign (a local one)."""
        with self.http.stream("GET", artifact_path(ref, kind), params={"presign": "true"}) as answer:
            if answer.status_code >= 400:
                answer.read()
                raise self.error(answer)
            if answer.status_code != 307:
                return None  # the server streams instead; the caller downloads it the usual way
            location, expected = answer.headers["location"], answer.headers.get("x-regctl-sha256", "")
            version_ref, size = answer.headers.get("x-regctl-ref", ref), answer.headers.get("x-regctl-size")
        with Sink(out) as sink:
            try:
                # A fresh request without our token: the presigned URL is its own credential.
                with httpx.stream("GET", location, timeout=httpx.Timeout(30.0)) as stored:
                    if stored.status_code != 200:
                        raise PresignedRefused(status=stored.status_code, ref=ref)
                    for piece in stored.iter_raw():
                        sink.feed(piece)
                        if progress is not None and size and size.isascii() and size.isdigit():
                            progress(sink.done, int(size))
            except httpx.TransportError as exc:
                raise PresignedUnreachable(reason=exc) from exc
            digest = sink.hexdigest()
        if digest != expected:
            raise DownloadMismatch(
                ref=ref, kind=kind, source="from the store", got=digest[:16], announced=expected[:16]
            )
        return _announced(version_ref, kind, digest, sink.done)

    def _receive(self, path: str, kind: str, sink: Sink, progress: Progress | None) -> bool:
        """One request for the rest of the artifact: all of it, or a Range resuming after `sink.done`.

        True when the whole artifact has arrived.
        """
        meta = sink.meta
        headers = {}
        if meta is not None and sink.done > 0:
            headers = {"Range": f"bytes={sink.done}-", "If-Range": f'"{meta.artifact.sha256}"'}
        with self.http.stream("GET", path, headers=headers, timeout=httpx.Timeout(30.0)) as response:
            if response.status_code >= 400:
                response.read()
                raise self.error(response)
            if response.status_code == 200 and headers:
                raise ChangedWhileDownloaded()
            meta = sink.meta = meta or _artifact_meta(response, kind)
            for piece in response.iter_raw():
                sink.feed(piece)
                if progress is not None:
                    progress(sink.done, meta.artifact.size)
        return sink.done == meta.artifact.size


def artifact_path(ref: str, kind: str) -> str:
    return f"/versions/{segment(str(parse_ref(ref)))}/artifacts/{segment(kind)}"


def _announced(ref: str, kind: str, sha256: str, size: int) -> FetchedArtifact:
    """What a download's headers say it is; the client's `_recorded` fetches the registry's full record."""
    return FetchedArtifact(ref, "-", ArtifactInfo(kind, sha256, size, "", None, None, datetime.now(UTC)))


def _artifact_meta(response: httpx.Response, kind: str) -> FetchedArtifact:
    sha256 = response.headers.get("x-regctl-sha256", "")
    total = response.headers.get("content-range", "").rpartition("/")[2] or response.headers.get(
        "content-length"
    )
    if len(sha256) != 64 or not total or not (total.isascii() and total.isdigit()):
        raise NotARegctlServer(url=f"{response.url.scheme}://{response.url.netloc.decode()}")
    return _announced(response.headers.get("x-regctl-ref", ""), kind, sha256, int(total))


def segment(text: str) -> str:
    """One URL path segment; `:` and `@` stay readable, everything else unsafe is escaped."""
    return quote(text, safe=":@")


class Sink:
    """Where downloaded pieces go: written as they arrive and hashed on a second thread; `done` counts bytes.

    sha256 costs about as much as receiving and writing together, and hashlib releases the GIL, so
    hashing beside the receiving loop keeps a download close to the speed of a local copy.
    """

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.done = out, 0
        self.meta: FetchedArtifact | None = None  # known once the first response's headers arrived
        self._digest = hashlib.sha256()
        self._pending: queue.Queue[bytes | None] = queue.Queue(maxsize=16)  # bounds memory to 16 pieces
        self._hasher = threading.Thread(target=self._hash, name="regctl-sha256", daemon=True)
        self._hasher.start()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()
        self.out.flush()

    def _hash(self) -> None:
        while (piece := self._pending.get()) is not None:
            self._digest.update(piece)

    def _finish(self) -> None:
        if self._hasher.is_alive():
            self._pending.put(None)
            self._hasher.join()

    def feed(self, piece: bytes) -> None:
        """Take the next piece of the body."""
        self.out.write(piece)
        self._pending.put(piece)
        self.done += len(piece)

    def hexdigest(self) -> str:
        """The sha256 of everything fed so far (all of it written); no piece may be fed after this."""
        self._finish()
        self.out.flush()
        return self._digest.hexdigest()
