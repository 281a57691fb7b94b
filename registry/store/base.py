"""Content-addressed artifact store behind fsspec.

Blobs live at `<root>/sha256/ab/cdef…` (first two hex digits as a directory, the other 62 as the
name), so equal content is stored once and a key names its own checksum. Every write goes to a
temporary key first and is moved into place only when complete, and every read is verified, so a
torn or rotten blob is never handed out.

A local root (a plain path or `file://`) uses os-level fsync and an atomic `os.replace`. Any other
fsspec URL (`s3://bucket/prefix` through s3fs, `memory://` in tests) uploads to `<root>/tmp/<uuid>`
and then moves it with `fs.mv`; on S3 that is a server-side copy, and an object only becomes
visible to readers once its PUT or copy completes, so readers never see a partial blob there either.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from regctl.registry.digests import sha256_file
from regctl.registry.errors import (
    CorruptedArtifact,
    InvalidInput,
    MissingBlob,
    RegctlError,
    ServiceUnavailable,
)

CHUNK_SIZE = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class BlobRef:
    """A stored blob: its checksum, its size in bytes and the full URI it lives at."""

    sha256: str
    size: int
    uri: str


def open_store(url: str) -> ArtifactStore:
    """Open the artifact store at `url` (a local path, `file://…`, `s3://bucket/prefix`, `memory://…`)."""
    return ArtifactStore(url)


def _storage_options(root: str) -> dict:
    """Options for remote filesystems: S3 fails fast when unreachable and honours a custom endpoint.

    Credentials and region come from the usual AWS variables; `AWS_ENDPOINT_URL_S3` (or
    `AWS_ENDPOINT_URL`) points at MinIO or another S3-compatible store.
    """
    if not root.startswith(("s3://", "s3a://")):
        return {}
    options: dict = {
        "config_kwargs": {"connect_timeout": 3, "read_timeout": 60, "retries": {"max_attempts": 2}},
        "skip_instance_cache": True,
        # s3fs buffers 50 MB per open file by default; 8 MB parts keep memory flat and uploads multipart.
        "default_block_size": 8 << 20,
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_url"] = endpoint
    return options


# link() fails with these where a copy still works: another file system, links not supported or not allowed.
_CANNOT_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES}


def _linked(source: str | Path, dest: str | Path) -> bool:
    """Hard-link `source` (never following a link) at `dest`; False where only a copy can work."""
    try:
        os.link(source, dest, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _CANNOT_LINK:
            raise
        return False
    return True


def _check_sha(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise InvalidInput(f"{sha256!r} is not a sha256 digest; expected 64 lowercase hex characters")
    return sha256


def _read_chunks(f: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    while chunk := f.read(chunk_size):
        yield chunk


def _kernel_copy(src_fd: int, dst_fd: int, size: int) -> None:
    """Copy `size` bytes between file descriptors inside the kernel, from offset 0 of each."""
    offset = 0
    while offset < size:
        sent = os.copy_file_range(
            src_fd, dst_fd, min(size - offset, 1 << 30), offset_src=offset, offset_dst=offset
        )
        if sent == 0:
            raise OSError(f"copy stopped at byte {offset} of {size}")
        offset += sent


def _hash_fd(fd: int, size: int, progress: Callable[[int], None] | None) -> str:
    """sha256 of a file read with pread into one reused buffer (hashlib releases the GIL while hashing)."""
    digest, buffer, offset = hashlib.sha256(), bytearray(CHUNK_SIZE * 4), 0
    view = memoryview(buffer)
    while offset < size:
        got = os.preadv(fd, [view], offset)
        if got == 0:
            break
        digest.update(view[:got])
        offset += got
        if progress is not None:
            progress(offset)
    return digest.hexdigest()


def _fsync_dir(path: str) -> None:
    # Without this the rename itself may be lost on power failure even though the data was synced.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@dataclass(frozen=True)
class StoredFile:
    """One file found under the store's root: a blob (with its sha256) or an upload temp (sha256 None)."""

    path: str
    sha256: str | None
    size: int
    modified: float  # seconds since the epoch
    area: str = "sha256"  # sha256 (blobs), tmp (uploads in flight or abandoned) or trash (set aside by gc)


def _facts(info: dict) -> tuple[int, float]:
    """(size, mtime) from an fsspec info dict, local (`mtime`) or S3 (`LastModified`)."""
    modified = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or 0
    if hasattr(modified, "timestamp"):
        modified = modified.timestamp()
    return int(info.get("size") or 0), float(modified)


class ArtifactStore:
    """Immutable blobs addressed by sha256 under one fsspec root."""

    def __init__(self, root: str) -> None:
        """Bind the store to `root`; nothing is created until the first write."""
        try:
            fs, base = fsspec.core.url_to_fs(os.path.expanduser(root), **_storage_options(root))
        except ImportError as exc:
            raise ServiceUnavailable(
                f"artifact store {root} needs a filesystem package that is not installed ({exc}); "
                "install it (for s3:// that is `pip install s3fs`)"
            ) from None
        except ValueError as exc:
            raise InvalidInput(f"artifact store URL {root!r} is not understood: {exc}") from None
        self.fs: fsspec.AbstractFileSystem = fs
        self.local = isinstance(fs, LocalFileSystem)
        self._base = base.rstrip("/") or base
        self.root: str = self._base if self.local else root.rstrip("/")

    def _key(self, sha256: str) -> str:
        return f"{self._base}/sha256/{sha256[:2]}/{sha256[2:]}"

    def uri_for(self, sha256: str) -> str:
        """Return the full URI at which the blob `sha256` is (or would be) stored."""
        sha256 = _check_sha(sha256)
        return f"{self.root}/sha256/{sha256[:2]}/{sha256[2:]}"

    @contextlib.contextmanager
    def _reachable(self) -> Iterator[None]:
        """Turn a remote filesystem's transport failures into ServiceUnavailable naming the store."""
        try:
            yield
        except (FileNotFoundError, IsADirectoryError, FileExistsError):
            raise
        except Exception as exc:  # ConnectionError, TimeoutError and botocore's own errors
            if self.local or isinstance(exc, RegctlError):
                raise
            raise ServiceUnavailable(
                f"artifact store {self.root} is unreachable ({exc}); "
                "check the URL, the network and the credentials"
            ) from exc

    def _not_found(self, sha256: str) -> MissingBlob:
        return MissingBlob(
            f"artifact blob sha256:{sha256} is missing from the store {self.root}; restore it from a backup, "
            "or check that REGCTL_ARTIFACT_STORE names the store this registry was written with "
            "('regctl doctor' lists every damaged blob)"
        )

    def exists(self, sha256: str) -> bool:
        """Return True when the blob `sha256` is in the store (its content is not checked)."""
        key = self._key(_check_sha(sha256))
        if self.local:
            return os.path.isfile(key)
        # Not fs.isfile: s3fs answers False when the endpoint is down, which would read as "missing".
        try:
            with self._reachable():
                self.fs.info(key)
        except FileNotFoundError:
            return False
        return True

    def size(self, sha256: str) -> int:
        """Return the stored size in bytes of blob `sha256`; raise MissingBlob when it is absent."""
        key = self._key(_check_sha(sha256))
        try:
            with self._reachable():
                return int(self.fs.size(key))
        except FileNotFoundError:
            raise self._not_found(sha256) from None

    def put_bytes(self, data: bytes) -> BlobRef:
        """Store `data` (a small blob held in memory) and return its reference."""
        sha = hashlib.sha256(data).hexdigest()
        if not self.exists(sha):
            self._commit(self._spool([data])[0], sha)
        return BlobRef(sha, len(data), self.uri_for(sha))

    def put_file(self, path: Path) -> BlobRef:
        """Store the file at `path`, streaming it: one pass to hash (and dedup), one to copy."""
        sha, size = sha256_file(path), os.path.getsize(path)
        if self.exists(sha):
            self._refresh(sha)
            return BlobRef(sha, size, self.uri_for(sha))
        with open(path, "rb") as f:
            tmp, copied_sha, size = self._spool(_read_chunks(f))
        if copied_sha != sha:
            self._discard(tmp)
            raise InvalidInput(
                f"{path} changed while it was being stored; try again once nothing writes to it"
            )
        self._commit(tmp, sha)
        return BlobRef(sha, size, self.uri_for(sha))

    def put_stream(self, stream: BinaryIO, *, expect: tuple[str, int] | None = None) -> BlobRef:
        """Store everything read from `stream`, hashing while spooling it to a temporary key.

        With `expect` (sha256, size), bytes that differ are discarded before they get a name, and
        CorruptedArtifact says so: nothing is stored.
        """
        tmp, sha, size = self._spool(_read_chunks(stream))
        if expect is not None and (sha, size) != expect:
            self._discard(tmp)
            raise CorruptedArtifact(
                f"the bytes given as blob sha256:{expect[0]} ({expect[1]} bytes) are sha256:{sha[:12]}… "
                f"({size} bytes); nothing was stored"
            )
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
            if self.local:
                f.flush()
                os.fsync(f.fileno())
            f.close()  # on a remote store this is where the upload completes
        return digest.hexdigest(), size

    def _new_temp(self) -> str:
        if not self.local:
            return f"{self._base}/tmp/{uuid.uuid4().hex}"
        # Under the root, so the final os.replace never crosses a filesystem boundary.
        tmp_dir = os.path.join(self._base, "tmp")
        os.makedirs(tmp_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="put-", suffix=".part")
        os.close(fd)
        return tmp

    def _open_temp(self, tmp: str) -> BinaryIO:
        return open(tmp, "wb") if self.local else self.fs.open(tmp, "wb")

    def _discard(self, tmp: str) -> None:
        if self.local:
            _remove_quietly(tmp)
            return
        with contextlib.suppress(Exception):  # best effort: the original error matters more
            self.fs.rm(tmp)

    def _commit(self, tmp: str, sha256: str) -> None:
        """Move a complete temporary blob to its final key, or drop it when that key already exists."""
        try:
            if self.exists(sha256):
                self._discard(tmp)
            elif self.local:
                self._commit_local(tmp, self._key(sha256))
            else:
                with self._reachable():
                    self.fs.mv(tmp, self._key(sha256))
        except BaseException:
            self._discard(tmp)
            raise

    @staticmethod
    def _commit_local(tmp: str, key: str) -> None:
        key_dir = os.path.dirname(key)
        if not os.path.isdir(key_dir):
            os.makedirs(key_dir, exist_ok=True)
            _fsync_dir(os.path.dirname(key_dir))
        os.chmod(tmp, 0o444)  # blobs are immutable; make an accidental in-place edit fail loudly
        os.replace(tmp, key)
        _fsync_dir(key_dir)

    def _copy_remote(self, sha256: str, f: BinaryIO, progress: Callable[[int], None] | None) -> int:
        copied = 0
        for chunk in self.open_chunks(sha256):
            f.write(chunk)
            copied += len(chunk)
            if progress is not None:
                progress(copied)
        return copied

    def _copy_local(self, sha256: str, f: BinaryIO, progress: Callable[[int], None] | None) -> int:
        """Copy in the kernel (copy_file_range) while this thread hashes the same page-cached blob."""
        key = self._key(_check_sha(sha256))
        try:
            src = open(key, "rb")  # noqa: SIM115  (closed below, after both readers finish)
        except FileNotFoundError:
            raise self._not_found(sha256) from None
        with src, ThreadPoolExecutor(max_workers=1, thread_name_prefix="regctl-copy") as pool:
            size = os.fstat(src.fileno()).st_size
            copying = pool.submit(_kernel_copy, src.fileno(), f.fileno(), size)
            digest = _hash_fd(src.fileno(), size, progress)
            copying.result()
        if digest != sha256:
            raise self._corrupted(sha256, digest)
        return size

    def _corrupted(self, sha256: str, digest: str) -> CorruptedArtifact:
        return CorruptedArtifact(
            f"artifact blob sha256:{sha256} at {self.uri_for(sha256)} does not match its checksum "
            f"(read sha256:{digest[:12]}…); restore it from a backup, or re-register the model or re-run "
            "the convert job ('regctl doctor' lists every damaged blob)"
        )

    def open_chunks(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield blob `sha256` in chunks, raising CorruptedArtifact after the last one on mismatch.

        The checksum is only known once every chunk was read, so a caller streaming to a
        destination must not publish it before this generator finishes; `copy_to` does that safely.
        MissingBlob and InvalidInput are raised at call time, before any chunk.
        """
        sha256 = _check_sha(sha256)
        if not self.exists(sha256):
            raise self._not_found(sha256)
        return self._verified_chunks(sha256, chunk_size)

    def _verified_chunks(self, sha256: str, chunk_size: int) -> Iterator[bytes]:
        digest = hashlib.sha256()
        try:
            with self._reachable(), self.fs.open(self._key(sha256), "rb") as f:
                for chunk in _read_chunks(f, chunk_size):
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
        sha256 = _check_sha(sha256)
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

    def identity(self, sha256: str) -> tuple[int, ...] | None:
        """For a local blob, what changes whenever its file is replaced or rewritten; None otherwise.

        (device, inode, size, mtime, ctime): a chmod or write to the file changes ctime.
        """
        if not self.local:
            return None
        try:
            st = os.stat(self._key(_check_sha(sha256)))
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _refresh(self, sha256: str) -> None:
        """Make a reused local blob as young as its newest use, so `regctl gc`'s grace period covers it."""
        if self.local:
            with contextlib.suppress(OSError):  # a read-only store still serves the blob
                os.utime(self._key(sha256))

    def set_aside(self, path: str) -> str:
        """Move a file the listing returned into the store's trash/ (gc's first step); its new path."""
        trash = f"{self._base}/trash/{uuid.uuid4().hex}-{path.rsplit('/', 1)[-1]}"
        with self._reachable():
            if self.local:
                os.makedirs(os.path.dirname(trash), exist_ok=True)
                os.rename(path, trash)
            else:
                self.fs.mv(path, trash)
        return trash

    def put_back(self, trash: str, path: str) -> None:
        """Undo `set_aside`: a row came to name the blob while gc was deciding."""
        with self._reachable():
            if self.local:
                os.replace(trash, path)  # a registration may have stored the same bytes again meanwhile
            else:
                self.fs.mv(trash, path)

    def delete_blob(self, sha256: str) -> None:
        """Delete blob `sha256` (an import undoing itself); one already gone is not an error."""
        self.delete_file(self._key(_check_sha(sha256)))

    def delete_file(self, path: str) -> None:
        """Delete one file the listing returned (`regctl gc`); one already gone is not an error."""
        with self._reachable(), contextlib.suppress(FileNotFoundError):
            if self.local:
                os.remove(path)
            else:
                self.fs.rm(path)

    def listing(self) -> Iterator[StoredFile]:
        """Every blob and every leftover upload temp in the store, with its size and modification time."""
        with self._reachable():
            for prefix in ("sha256", "tmp", "trash"):
                found = self.fs.find(f"{self._base}/{prefix}", detail=True) if self._has(prefix) else {}
                for path, info in sorted(found.items()):
                    sha = self._sha_of(path) if prefix == "sha256" else None
                    yield StoredFile(path, sha, *_facts(info), area=prefix)

    def _has(self, prefix: str) -> bool:
        return bool(self.fs.exists(f"{self._base}/{prefix}"))

    def _sha_of(self, path: str) -> str | None:
        # sha256/ab/cdef… -> abcdef…; anything else under sha256/ is not a blob of ours
        head, _, tail = path.rpartition("/")
        candidate = head.rpartition("/")[2] + tail
        return candidate if _SHA256.fullmatch(candidate) else None

    def presign(self, sha256: str, expires_s: int = 300) -> str | None:
        """A time-limited URL that serves blob `sha256` without credentials, or None for a local store."""
        if self.local or not hasattr(self.fs, "sign"):
            return None
        with self._reachable():
            return str(self.fs.sign(self._key(_check_sha(sha256)), expiration=expires_s))

    def read_bytes(self, sha256: str) -> bytes:
        """Return the whole of blob `sha256`, verified; meant for small blobs such as reports."""
        return b"".join(self.open_chunks(sha256))

    def verify(self, sha256: str) -> None:
        """Read blob `sha256` through; raise CorruptedArtifact on mismatch and MissingBlob when absent."""
        for _ in self.open_chunks(sha256):
            pass

    def link_to(self, sha256: str, dest: Path) -> BlobRef:
        """Make blob `sha256` appear at `dest`, checked: a hard link to a local blob where one can be made.

        A blob is read-only and owned by the store's user, so a link gives readers (the sandboxed
        model process sees it on a read-only mount) the bytes without a copy. Across file systems, or
        on a remote store, this is `copy_to`.
        """
        if self.local:
            key = self._key(_check_sha(sha256))
            try:
                with open(key, "rb") as blob:
                    size = os.fstat(blob.fileno()).st_size
                    digest = _hash_fd(blob.fileno(), size, None)
            except FileNotFoundError:
                raise self._not_found(sha256) from None
            if digest != sha256:
                raise self._corrupted(sha256, digest)
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            if _linked(key, dest):
                return BlobRef(sha256, size, self.uri_for(sha256))
        return self.copy_to(sha256, dest)

    def adopt_file(self, path: Path) -> BlobRef:
        """Store the file at `path` by taking its inode where possible, else by copying it (`put_file`).

        For job outputs: the file must be complete and nothing may write to it any more (the
        sandboxed processes that wrote it have exited). The inode hashed is the one linked, then it
        becomes the store's: owned by this process's user, read-only. The job directory's own name
        for it goes when the directory does.
        """
        if not self.local:
            return self.put_file(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise InvalidInput(f"{path} cannot be stored: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise InvalidInput(f"{path} is not a plain file of its own; it cannot be stored")
            sha = _hash_fd(fd, info.st_size, None)
            if self.exists(sha):
                return BlobRef(sha, info.st_size, self.uri_for(sha))
            tmp = self._new_temp()
            os.unlink(tmp)
            if not _linked(path, tmp):
                return self.put_file(path)
            try:
                linked = os.lstat(tmp)
                if (linked.st_dev, linked.st_ino) != (info.st_dev, info.st_ino):
                    raise InvalidInput(f"{path} was replaced while it was being stored; it cannot be stored")
                if info.st_uid != os.getuid() or info.st_gid != os.getgid():
                    os.fchown(fd, os.getuid(), os.getgid())
                os.fchmod(fd, 0o444)
                os.fsync(fd)
            except BaseException:
                self._discard(tmp)
                raise
            self._commit(tmp, sha)
            return BlobRef(sha, info.st_size, self.uri_for(sha))
        finally:
            os.close(fd)

    def copy_to(self, sha256: str, dest: Path, progress: Callable[[int], None] | None = None) -> BlobRef:
        """Copy blob `sha256` to `dest`, which appears only once its content has been verified.

        `progress`, when given, is called after each chunk with the total bytes copied so far.
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                if self.local:
                    copied = self._copy_local(sha256, f, progress)
                else:
                    copied = self._copy_remote(sha256, f, progress)
                # No fsync: this is a deployment copy of a blob the store keeps durably, and forcing
                # a gigabyte to disk would triple the fetch time (cp, curl and aws s3 cp don't either).
                f.flush()
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; a fetched artifact is an ordinary file
            os.replace(tmp, dest)
        except BaseException:
            _remove_quietly(tmp)
            raise
        return BlobRef(sha256, copied, self.uri_for(sha256))
