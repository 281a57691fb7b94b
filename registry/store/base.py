"""The artifact store's interface, and everything its backends share.

Blobs live at `<root>/sha256/ab/cdef…` (first two hex digits as a directory, the other 62 as the
name), so equal content is stored once and a key names its own checksum. Every write goes to a
temporary key first and is moved into place only when complete, and every read is verified, so a
torn or rotten blob is never handed out.

`ArtifactStore` holds the naming, the hashing, the verification and the errors a reader meets
(MissingBlob, CorruptedArtifact); a backend says only how its filesystem writes, moves and
removes: `local.LocalStore` (a plain path or `file://`) and `remote.RemoteStore` (`s3://` through
s3fs, `memory://` in tests). `open_store` in this package's `__init__` picks one by URL scheme.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO

import fsspec

from regctl.registry.chunks import CHUNK_SIZE, read_chunks
from regctl.registry.digests import sha256_file
from regctl.registry.errors import CorruptedArtifact, MissingBlob
from regctl.registry.errors.files import ChangedWhileStored
from regctl.registry.errors.services import (
    BlobMismatch,
    BytesNotAsAnnounced,
    StoreNeedsPackage,
    StoreUrlNotUnderstood,
)
from regctl.registry.store.blobs import (
    BlobRef,
    IncompleteUpload,
    SealedFile,
    StoredFile,
    check_sha,
    facts,
    file_identity,
    is_sha,
    remove_quietly,
)
from regctl.registry.store.checks import BlobCheck, LinkedBlob


class ArtifactStore(ABC):
    """Immutable blobs addressed by sha256 under one fsspec root."""

    fs: fsspec.AbstractFileSystem
    root: str  # what URIs start with: the local path, or the URL as given (`s3://bucket/prefix`)

    def __init__(self, root: str, **storage_options: Any) -> None:
        """Bind the store to `root`; nothing is created until the first write."""
        try:
            fs, base = fsspec.core.url_to_fs(os.path.expanduser(root), **storage_options)
        except ImportError as exc:
            raise StoreNeedsPackage(where=f"artifact store {root}", reason=exc) from None
        except ValueError as exc:
            raise StoreUrlNotUnderstood(what="artifact store URL", url=root, reason=exc) from None
        self.fs = fs
        self._base = base.rstrip("/") or base

    # What a backend provides -------------------------------------------------------------------

    @abstractmethod
    def _reachable(self) -> AbstractContextManager[None]:
        """Guard the store's own I/O: how this backend reports its filesystem failing."""

    @abstractmethod
    def exists(self, sha256: str) -> bool:
        """Return True when the blob `sha256` is in the store (its content is not checked)."""

    @abstractmethod
    def _new_temp(self) -> str:
        """A fresh temporary key under the root for one upload."""

    @abstractmethod
    def _open_temp(self, tmp: str) -> BinaryIO:
        """Open the temporary key `tmp` for writing."""

    @abstractmethod
    def _close_temp(self, f: BinaryIO) -> None:
        """Finish writing a temporary blob: once this returns its bytes are complete and durable."""

    @abstractmethod
    def _discard(self, tmp: str) -> None:
        """Remove the temporary key `tmp`, best effort (the error that led here matters more)."""

    @abstractmethod
    def _move_into_place(self, tmp: str, key: str) -> None:
        """Move a complete temporary blob to its final key."""

    @abstractmethod
    def _copy_into(self, sha256: str, f: BinaryIO, progress: Callable[[int], None] | None) -> int:
        """Write blob `sha256` into the open file `f`, verified; return the bytes copied."""

    @abstractmethod
    def _remove(self, path: str) -> None:
        """Delete one file under the root; FileNotFoundError when it is already gone."""

    @abstractmethod
    def set_aside(self, path: str) -> str:
        """Move a file the listing returned into the store's trash/ (gc's first step); its new path."""

    @abstractmethod
    def put_back(self, trash: str, path: str) -> None:
        """Undo `set_aside`: a row came to name the blob while gc was deciding."""

    @abstractmethod
    def _refresh(self, sha256: str) -> None:
        """Make a reused blob as young as its newest use, where the backend can (see `regctl gc`)."""

    # What a backend may refine -----------------------------------------------------------------

    def identity(self, sha256: str) -> tuple[int, ...] | None:
        """What changes whenever the blob's file is replaced or rewritten, where a backend can tell."""
        return None

    def presign(self, sha256: str, expires_s: int = 300) -> str | None:
        """A time-limited URL that serves blob `sha256` without credentials; None where none can be made."""
        return None

    def link_to(self, sha256: str, dest: Path) -> BlobRef:
        """Make blob `sha256` appear at `dest`, checked; a backend that cannot link copies (`copy_to`)."""
        return self.copy_to(sha256, dest)

    def link_checking(self, sha256: str, dest: Path) -> LinkedBlob:
        """Make blob `sha256` appear at `dest` now, its check running beside the caller's work.

        A backend that cannot link copies, checked, before it returns: its check is already done.
        """
        return LinkedBlob(self.copy_to(sha256, dest), BlobCheck())

    def adopt_file(self, path: Path, sealed: SealedFile | None = None) -> BlobRef:
        """Store the job output at `path`; a backend that cannot take its inode copies it (`put_file`).

        `sealed` is what a trusted seal found (registry/store/blobs.py); an upload hashes what it
        sends either way, so this backend does not use it.
        """
        return self.put_file(path)

    # Naming and errors -------------------------------------------------------------------------

    def _key(self, sha256: str) -> str:
        return f"{self._base}/sha256/{sha256[:2]}/{sha256[2:]}"

    def _trash_key(self, path: str) -> str:
        return f"{self._base}/trash/{uuid.uuid4().hex}-{path.rsplit('/', 1)[-1]}"

    def uri_for(self, sha256: str) -> str:
        """Return the full URI at which the blob `sha256` is (or would be) stored."""
        sha256 = check_sha(sha256)
        return f"{self.root}/sha256/{sha256[:2]}/{sha256[2:]}"

    def _not_found(self, sha256: str) -> MissingBlob:
        return MissingBlob(sha256=sha256, root=self.root)

    def _corrupted(self, sha256: str, digest: str) -> CorruptedArtifact:
        return BlobMismatch(sha256=sha256, uri=self.uri_for(sha256), read=digest[:12])

    def size(self, sha256: str) -> int:
        """Return the stored size in bytes of blob `sha256`; raise MissingBlob when it is absent."""
        key = self._key(check_sha(sha256))
        try:
            with self._reachable():
                return int(self.fs.size(key))
        except FileNotFoundError:
            raise self._not_found(sha256) from None

    # Writing -----------------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> BlobRef:
        """Store `data` (a small blob held in memory) and return its reference."""
        sha = hashlib.sha256(data).hexdigest()
        if not self.exists(sha):
            self._commit(self._spool([data])[0], sha)
        return BlobRef(sha, len(data), self.uri_for(sha))

    def put_file(self, path: Path, *, maybe_stored: bool = True) -> BlobRef:
        """Store the file at `path`, streaming it; a file that changes meanwhile is refused.

        `maybe_stored` (the default): one pass to hash, and a second to copy only when the blob is
        not stored yet. False where the caller knows no stored blob can hold these bytes (none has
        their size): one pass that hashes while it copies (0.46 s less on BERT-base's 438 MB,
        measured), the change caught by the file's identity (inode, size, times) before and after.
        """
        if not maybe_stored:
            return self._put_new_file(path)
        sha, size = sha256_file(path), os.path.getsize(path)
        if self.exists(sha):
            self._refresh(sha)
            return BlobRef(sha, size, self.uri_for(sha))
        with open(path, "rb") as f:
            tmp, copied_sha, size = self._spool(read_chunks(f))
        if copied_sha != sha:
            self._discard(tmp)
            raise ChangedWhileStored(path=path, change="changed")
        self._commit(tmp, sha)
        return BlobRef(sha, size, self.uri_for(sha))

    def _put_new_file(self, path: Path) -> BlobRef:
        with open(path, "rb") as f:
            before = file_identity(os.fstat(f.fileno()))
            tmp, sha, size = self._spool(read_chunks(f))
            after = file_identity(os.fstat(f.fileno()))
        try:
            replaced = file_identity(os.stat(path)) != after
        except OSError:
            replaced = True
        if before != after or replaced or size != before[2]:
            self._discard(tmp)
            raise ChangedWhileStored(path=path, change="changed")
        self._commit(tmp, sha)  # an equal blob stored meanwhile wins; this copy is dropped
        return BlobRef(sha, size, self.uri_for(sha))

    def put_stream(self, stream: BinaryIO, *, expect: tuple[str, int] | None = None) -> BlobRef:
        """Store everything read from `stream`, hashing while spooling it to a temporary key.

        With `expect` (sha256, size), bytes that differ are discarded before they get a name, and
        CorruptedArtifact says so: nothing is stored.
        """
        tmp, sha, size = self._spool(read_chunks(stream))
        if expect is not None and (sha, size) != expect:
            self._discard(tmp)
            raise BytesNotAsAnnounced(sha256=expect[0], size=expect[1], read=sha[:12], read_size=size)
        self._commit(tmp, sha)
        return BlobRef(sha, size, self.uri_for(sha))

    def _spool(self, chunks: Iterable[bytes]) -> tuple[str, str, int]:
        """Write `chunks` to a fresh temporary key; return (key, sha256, size). No temp survives a failure."""
        tmp = self._new_temp()
        try:
            with self._reachable():
                f = self._open_temp(tmp)
            try:
                sha, size = self._write_chunks(f, chunks)
            except BaseException:
                with contextlib.suppress(Exception):  # the original error is the one worth reporting
                    f.close()
                raise
        except BaseException:
            self._discard(tmp)
            raise
        return tmp, sha, size

    def _write_chunks(self, f: BinaryIO, chunks: Iterable[bytes]) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0
        # Only the store's own I/O is guarded: a failing source stream must surface as itself,
        # not as an unreachable store.
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            with self._reachable():
                f.write(chunk)
        with self._reachable():
            self._close_temp(f)
        return digest.hexdigest(), size

    def _commit(self, tmp: str, sha256: str) -> None:
        """Move a complete temporary blob to its final key, or drop it when that key already exists."""
        try:
            if self.exists(sha256):
                self._discard(tmp)
            else:
                self._move_into_place(tmp, self._key(sha256))
        except BaseException:
            self._discard(tmp)
            raise

    # Reading -----------------------------------------------------------------------------------

    def open_chunks(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield blob `sha256` in chunks, raising CorruptedArtifact after the last one on mismatch.

        The checksum is only known once every chunk was read, so a caller streaming to a
        destination must not publish it before this generator finishes; `copy_to` does that safely.
        MissingBlob and InvalidInput are raised at call time, before any chunk.
        """
        sha256 = check_sha(sha256)
        if not self.exists(sha256):
            raise self._not_found(sha256)
        return self._verified_chunks(sha256, chunk_size)

    def _verified_chunks(self, sha256: str, chunk_size: int) -> Iterator[bytes]:
        digest = hashlib.sha256()
        try:
            with self._reachable(), self.fs.open(self._key(sha256), "rb") as f:
                for chunk in read_chunks(f, chunk_size):
                    digest.update(chunk)
                    yield chunk
        except FileNotFoundError:  # removed between the existence check and the open
            raise self._not_found(sha256) from None
        if digest.hexdigest() != sha256:
            raise self._corrupted(sha256, digest.hexdigest())

    def open_range(
        self, sha256: str, start: int, length: int, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Yield `length` bytes of blob `sha256` from offset `start`, unverified (a part cannot be checked).

        Serves HTTP Range requests; the client checks the whole file against the sha256 once assembled.
        """
        sha256 = check_sha(sha256)
        if not self.exists(sha256):
            raise self._not_found(sha256)
        return self._range_chunks(sha256, start, length, chunk_size)

    def _range_chunks(self, sha256: str, start: int, length: int, chunk_size: int) -> Iterator[bytes]:
        try:
            with self._reachable(), self.fs.open(self._key(sha256), "rb") as f:
                f.seek(start)
                while length > 0:
                    chunk = f.read(min(chunk_size, length))
                    if not chunk:
                        return
                    length -= len(chunk)
                    yield chunk
        except FileNotFoundError:
            raise self._not_found(sha256) from None

    def read_bytes(self, sha256: str) -> bytes:
        """Return the whole of blob `sha256`, verified; meant for small blobs such as reports."""
        return b"".join(self.open_chunks(sha256))

    def read_small(self, sha256: str) -> bytes:
        """Blob `sha256` whole, in one read and verified: one GET on S3, where `read_bytes` asks first.

        For blobs known to be small (a server answering a download of a few KB); MissingBlob when absent.
        """
        key = self._key(check_sha(sha256))
        try:
            with self._reachable():
                data = bytes(self.fs.cat_file(key))
        except FileNotFoundError:
            raise self._not_found(sha256) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise self._corrupted(sha256, digest)
        return data

    def verify(self, sha256: str) -> None:
        """Read blob `sha256` through; raise CorruptedArtifact on mismatch and MissingBlob when absent."""
        for _ in self.open_chunks(sha256):
            pass

    def copy_to(self, sha256: str, dest: Path, progress: Callable[[int], None] | None = None) -> BlobRef:
        """Copy blob `sha256` to `dest`, which appears only once its content has been verified.

        `progress`, when given, is called after each chunk with the total bytes copied so far.
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                copied = self._copy_into(sha256, f, progress)
                # No fsync: this is a deployment copy of a blob the store keeps durably, and forcing
                # a gigabyte to disk would triple the fetch time (cp, curl and aws s3 cp don't either).
                f.flush()
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; a fetched artifact is an ordinary file
            os.replace(tmp, dest)
        except BaseException:
            remove_quietly(tmp)
            raise
        return BlobRef(sha256, copied, self.uri_for(sha256))

    # Housekeeping (regctl gc, doctor, import) --------------------------------------------------

    def delete_blob(self, sha256: str) -> None:
        """Delete blob `sha256` (an import undoing itself); one already gone is not an error."""
        self.delete_file(self._key(check_sha(sha256)))

    def delete_file(self, path: str) -> None:
        """Delete one file the listing returned (`regctl gc`); one already gone is not an error."""
        with self._reachable(), contextlib.suppress(FileNotFoundError):
            self._remove(path)

    def incomplete_uploads(self) -> list[IncompleteUpload]:
        """Multipart uploads under the store's root that were never completed (object stores only)."""
        return []

    def abort_upload(self, upload: IncompleteUpload) -> None:
        """Abort one incomplete multipart upload, freeing the parts it holds (`regctl gc`)."""
        raise NotImplementedError(f"{type(self).__name__} has no multipart uploads")

    def listing(self) -> Iterator[StoredFile]:
        """Every blob and every leftover upload temp in the store, with its size and modification time."""
        with self._reachable():
            for prefix in ("sha256", "tmp", "trash"):
                found = self.fs.find(f"{self._base}/{prefix}", detail=True) if self._has(prefix) else {}
                for path, info in sorted(found.items()):
                    sha = self._sha_of(path) if prefix == "sha256" else None
                    yield StoredFile(path, sha, *facts(info), area=prefix)

    def _has(self, prefix: str) -> bool:
        return bool(self.fs.exists(f"{self._base}/{prefix}"))

    def _sha_of(self, path: str) -> str | None:
        # sha256/ab/cdef… -> abcdef…; anything else under sha256/ is not a blob of ours
        head, _, tail = path.rpartition("/")
        candidate = head.rpartition("/")[2] + tail
        return candidate if is_sha(candidate) else None
