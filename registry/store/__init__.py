"""Content-addressed artifact store: one interface (`ArtifactStore`), a backend per kind of URL.

`open_store(url)` is the one place a backend is chosen, by the URL's scheme (as MLflow keys its
artifact repositories): a plain path, `file://` or `local://` opens a `LocalStore`; any other
scheme (`s3://bucket/prefix`, `memory://…`) a `RemoteStore` over the matching fsspec filesystem,
which says so when that scheme is unknown or its package is not installed.
"""

from __future__ import annotations

import os

import fsspec

from regctl.registry.chunks import CHUNK_SIZE
from regctl.registry.digests import sha256_file
from regctl.registry.store.base import ArtifactStore
from regctl.registry.store.blobs import BlobRef, StoredFile
from regctl.registry.store.local import LocalStore
from regctl.registry.store.remote import RemoteStore

__all__ = [
    "CHUNK_SIZE",
    "ArtifactStore",
    "BlobRef",
    "LocalStore",
    "RemoteStore",
    "StoredFile",
    "open_store",
    "sha256_file",
]

_BACKENDS: dict[str | None, type[ArtifactStore]] = {None: LocalStore, "file": LocalStore, "local": LocalStore}


def open_store(url: str) -> ArtifactStore:
    """Open the artifact store at `url` (a local path, `file://…`, `s3://bucket/prefix`, `memory://…`)."""
    scheme, _ = fsspec.core.split_protocol(os.path.expanduser(url))
    return _BACKENDS.get(scheme, RemoteStore)(url)
