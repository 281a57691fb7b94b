"""The artifact store on a local file system (a plain path or `file://`).

Writes are fsync'd and moved into place with an atomic `os.replace` inside the root, so a blob
appears whole or not at all, even across a power failure. Blobs are read-only files owned by the
store's user; reading one out is a hard link where the file systems allow it, else a kernel copy
(copy_file_range) hashed on the way.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

from regctl.registry.chunks import CHUNK_SIZE
from regctl.registry.errors.files import CannotStore, ChangedWhileStored, NotOwnFile
from regctl.registry.store.base import ArtifactStore
from regctl.registry.store.blobs import BlobRef, SealedFile, check_sha, file_identity, remove_quietly
from regctl.registry.store.checks import BlobCheck, LinkedBlob

# link() fails with these where a copy still works: another file system, links not supported or not allowed.
_CANNOT_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES}


def _sealed_sha(sealed: SealedFile | None, info: os.stat_result) -> str | None:
    """The seal's sha256 when it still vouches for the inode `info` describes, else None (hash it)."""
    if sealed is None or sealed.identity is None or file_identity(info) != sealed.identity:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o222:  # someone else could have written it
        return None
    return check_sha(sealed.sha256)


def _linked(source: str | Path, dest: str | Path) -> bool:
    """Hard-link `source` (never following a link) at `dest`; False where only a copy can work."""
    try:
        os.link(source, dest, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _CANNOT_LINK:
            raise
        return False
    return True


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


class LocalStore(ArtifactStore):
    """Blobs as read-only files under a local directory."""

    def __init__(self, root: str) -> None:
        """Bind the store to the directory `root` (a path or `file://…`); nothing is created yet."""
        super().__init__(root)
        self.root = self._base

    def _reachable(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()  # a local file system's errors are reported as they are

    def exists(self, sha256: str) -> bool:
        """Return True when the blob `sha256` is in the store (its content is not checked)."""
        return os.path.isfile(self._key(check_sha(sha256)))

    def _new_temp(self) -> str:
        # Under the root, so the final os.replace never crosses a filesystem boundary.
        tmp_dir = os.path.join(self._base, "tmp")
        os.makedirs(tmp_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="put-", suffix=".part")
        os.close(fd)
        return tmp

    def _open_temp(self, tmp: str) -> BinaryIO:
        return open(tmp, "wb")  # closed by _close_temp, or by _spool on failure

    def _close_temp(self, f: BinaryIO) -> None:
        f.flush()
        os.fsync(f.fileno())
        f.close()

    def _discard(self, tmp: str) -> None:
        remove_quietly(tmp)

    def _move_into_place(self, tmp: str, key: str) -> None:
        key_dir = os.path.dirname(key)
        if not os.path.isdir(key_dir):
            os.makedirs(key_dir, exist_ok=True)
            _fsync_dir(os.path.dirname(key_dir))
        os.chmod(tmp, 0o444)  # blobs are immutable; make an accidental in-place edit fail loudly
        os.replace(tmp, key)
        _fsync_dir(key_dir)

    def _copy_into(self, sha256: str, f: BinaryIO, progress: Callable[[int], None] | None) -> int:
        """Copy in the kernel (copy_file_range) while this thread hashes the same page-cached blob."""
        key = self._key(check_sha(sha256))
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

    def _remove(self, path: str) -> None:
        os.remove(path)

    def set_aside(self, path: str) -> str:
        """Move a file the listing returned into the store's trash/ (gc's first step); its new path."""
        trash = self._trash_key(path)
        os.makedirs(os.path.dirname(trash), exist_ok=True)
        os.rename(path, trash)
        return trash

    def put_back(self, trash: str, path: str) -> None:
        """Undo `set_aside`: a row came to name the blob while gc was deciding."""
        os.replace(trash, path)  # a registration may have stored the same bytes again meanwhile

    def identity(self, sha256: str) -> tuple[int, ...] | None:
        """What changes when the blob's file is replaced or rewritten (`file_identity`); None if absent."""
        try:
            return file_identity(os.stat(self._key(check_sha(sha256))))
        except FileNotFoundError:
            return None

    def _refresh(self, sha256: str) -> None:
        """Make a reused blob as young as its newest use, so `regctl gc`'s grace period covers it."""
        with contextlib.suppress(OSError):  # a read-only store still serves the blob
            os.utime(self._key(sha256))

    def link_to(self, sha256: str, dest: Path) -> BlobRef:
        """Make blob `sha256` appear at `dest`, checked: a hard link to the blob where one can be made.

        A blob is read-only and owned by the store's user, so a link gives readers (the sandboxed
        model process sees it on a read-only mount) the bytes without a copy. Across file systems
        this is `copy_to`. A blob that fails its check is not left at `dest`.
        """
        linked = self.link_checking(sha256, dest)
        try:
            linked.check.wait()
        except BaseException:
            remove_quietly(str(dest))
            raise
        return linked.ref

    def link_checking(self, sha256: str, dest: Path) -> LinkedBlob:
        """Link blob `sha256` at `dest` now and hash the inode linked in a thread (`check.wait()`).

        A job's model process starts reading its weights while they are hashed (0.3 s of BERT-base's
        438 MB, 0.9 s of BERT-large's 1.3 GB, measured), and the job waits for the check before it
        records anything. Where no link can be made, or the blob was replaced between opening and
        linking it, this is a checked `copy_to`, done before it returns.
        """
        key = self._key(check_sha(sha256))
        try:
            fd = os.open(key, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise self._not_found(sha256) from None
        try:
            info = os.fstat(fd)
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            if _linked(key, dest):
                linked = os.lstat(dest)
                if (linked.st_dev, linked.st_ino) == (info.st_dev, info.st_ino):
                    ref = BlobRef(sha256, info.st_size, self.uri_for(sha256))
                    check, fd = BlobCheck(self._checker(fd, sha256, info.st_size)), -1  # the thread's now
                    return LinkedBlob(ref, check)
                os.unlink(dest)
        finally:
            if fd >= 0:
                os.close(fd)
        return LinkedBlob(self.copy_to(sha256, dest), BlobCheck())

    def _checker(self, fd: int, sha256: str, size: int) -> Callable[[], None]:
        """Hash the open blob `fd` (closing it) and raise CorruptedArtifact when it is not `sha256`."""

        def check() -> None:
            try:
                digest = _hash_fd(fd, size, None)
            finally:
                os.close(fd)
            if digest != sha256:
                raise self._corrupted(sha256, digest)

        return check

    def adopt_file(self, path: Path, sealed: SealedFile | None = None) -> BlobRef:
        """Store the file at `path` by taking its inode where possible, else by copying it (`put_file`).

        For job outputs: the file must be complete and nothing may write to it any more (the
        sandboxed processes that wrote it have exited). The inode hashed is the one linked, then it
        becomes the store's: owned by this process's user, read-only. The job directory's own name
        for it goes when the directory does.

        With `sealed`, the seal's sha256 stands for the file while the inode opened is the one
        sealed, unchanged since (`file_identity`), this user's and writable by no one: the file is
        not read a second time. Anything else is hashed as usual.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise CannotStore(path=path, reason=exc.strerror) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise NotOwnFile(path=path)
            sha = _sealed_sha(sealed, info) or _hash_fd(fd, info.st_size, None)
            if self.exists(sha):
                return BlobRef(sha, info.st_size, self.uri_for(sha))
            tmp = self._new_temp()
            os.unlink(tmp)
            if not _linked(path, tmp):
                return self.put_file(path)
            try:
                self._make_ours(fd, path, info, tmp)
            except BaseException:
                self._discard(tmp)
                raise
            self._commit(tmp, sha)
            return BlobRef(sha, info.st_size, self.uri_for(sha))
        finally:
            os.close(fd)

    @staticmethod
    def _make_ours(fd: int, path: Path, info: os.stat_result, tmp: str) -> None:
        """Check that `tmp` links the inode hashed, then make it the store's: this user's, read-only."""
        linked = os.lstat(tmp)
        if (linked.st_dev, linked.st_ino) != (info.st_dev, info.st_ino):
            raise ChangedWhileStored(path=path, change="was replaced")
        if info.st_uid != os.getuid() or info.st_gid != os.getgid():
            os.fchown(fd, os.getuid(), os.getgid())
        os.fchmod(fd, 0o444)
        os.fsync(fd)
