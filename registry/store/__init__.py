"""Content-addressed artifact store: one interface (`ArtifactStore`), a backend per kind of URL.

`open_store(url)` is the one place a backend is chosen, by the URL's scheme (as MLflow keys its
artifact repositories): a plain path, `file://` or `local://` opens a `LocalStore`; any other
scheme (`s3://bucket/prefix`, `memory://…`) a `RemoteStore` over the matching fsspec filesystem,
which says so when that scheme is unknown or its package is not installed.
"""

from __future__ import annotations

import os
import threading

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


# What a remote store's client is built from besides its URL: a change makes a new one.
_CLIENT_ENV = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
)
_opened: dict[tuple[str, ...], ArtifactStore] = {}
_opening = threading.Lock()


def open_store(url: str) -> ArtifactStore:
    """The artifact store at `url` (a local path, `file://…`, `s3://bucket/prefix`, `memory://…`).

    One store object per URL and process, so a server keeps one S3 client (its botocore session,
    connection pool and credentials) for its lifetime: a client built per request cost about 100 ms
    for its first lookup and held its own pool. A forked child opens its own (a client's connections
    must not be shared across a fork), as does a change of the AWS variables it was built from.
    """
    key = (url, str(os.getpid()), *(os.environ.get(name, "") for name in _CLIENT_ENV))
    with _opening:
        store = _opened.get(key)
        if store is None:
            scheme, _ = fsspec.core.split_protocol(os.path.expanduser(url))
            store = _opened[key] = _BACKENDS.get(scheme, RemoteStore)(url)
            for stale in [k for k in _opened if k[1] != key[1]]:  # a parent's, inherited by fork
                del _opened[stale]
        return store
