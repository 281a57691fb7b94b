"""What the store's backends share beneath the interface: blob references and key checks.

Chunked reads live in registry/chunks.py, which the remote client uses without the store.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

from regctl.registry.errors.files import BadDigest

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class BlobRef:
    """A stored blob: its checksum, its size in bytes and the full URI it lives at."""

    sha256: str
    size: int
    uri: str


@dataclass(frozen=True)
class StoredFile:
    """One file found under the store's root: a blob (with its sha256) or an upload temp (sha256 None)."""

    path: str
    sha256: str | None
    size: int
    modified: float  # seconds since the epoch
    area: str = "sha256"  # sha256 (blobs), tmp (uploads in flight or abandoned) or trash (set aside by gc)


@dataclass(frozen=True)
class IncompleteUpload:
    """An object store's multipart upload that was started and never completed (a writer killed)."""

    key: str
    upload_id: str
    started: float  # seconds since the epoch


def check_sha(sha256: str) -> str:
    """Return `sha256` when it is a digest; raise InvalidInput otherwise (it becomes part of a key)."""
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise BadDigest(sha256=sha256)
    return sha256


def remove_quietly(path: str) -> None:
    """Remove the local file at `path`; one already gone is not an error."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@dataclass(frozen=True)
class SealedFile:
    """A file's sha256 as a trusted process took it, once no one else could write it.

    `identity` is the file's `file_identity` around that hash (None when it could not be pinned:
    the writer's processes ran as this user). A store may take the sha256 instead of hashing the
    file again while the file's identity is unchanged and it is still this user's and read-only.
    """

    sha256: str
    identity: tuple[int, ...] | None


def file_identity(st: os.stat_result) -> tuple[int, ...]:
    """What changes whenever a file is replaced or written: (device, inode, size, mtime, ctime).

    A chmod or a write changes ctime.
    """
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def facts(info: dict) -> tuple[int, float]:
    """(size, mtime) from an fsspec info dict, local (`mtime`) or S3 (`LastModified`)."""
    modified = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or 0
    if hasattr(modified, "timestamp"):
        modified = modified.timestamp()
    return int(info.get("size") or 0), float(modified)


def is_sha(candidate: str) -> bool:
    """True when `candidate` is a sha256 digest as the store spells it (64 lowercase hex characters)."""
    return bool(_SHA256.fullmatch(candidate))
