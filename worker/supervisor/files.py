"""Files a sandboxed role left behind, as the supervisor handles them: sealed (sha256, made root's
and read-only) before the next role starts, and read only when they are regular files, never
through a link or a FIFO a sandbox planted.
"""

from __future__ import annotations

import fcntl
import os
import stat
import weakref
from pathlib import Path
from typing import BinaryIO

from regctl.registry.digests import sha256_file
from regctl.registry.store.blobs import SealedFile, file_identity
from regctl.registry.store.checks import BlobCheck
from regctl.worker.contract import OUTPUTS, ROLE_LOG

MAX_SEALED_FILES = 64
MAX_LISTED = 4096


class Seal:
    """The sha256 of every regular file a role left at the top of a directory (`files`).

    With `take_over` (the worker is root) the directory and its files become root's and read-only
    first, so no later role can change a sealed byte; each file's identity around its hash is kept,
    and the store may then take the sha256 without reading the file again. As nothing can change
    them any more, the files are hashed in a thread while the next roles run (`files` waits for it):
    0.26 s off BERT-base's job, 0.8 s off BERT-large's. Without it every role shares the worker's
    uid, so the hash is taken at once, before the next role (and the battery's seed) exists. Links,
    folders and the role's own log are skipped.
    """

    def __init__(self, directory: Path, *, take_over: bool) -> None:
        with os.scandir(directory) as entries:
            # bounded: a role that floods its folder gets no more sealed than it could name
            listed = sorted(e.name for e, _ in zip(entries, range(MAX_LISTED), strict=False))
        names = [n for n in listed if n != ROLE_LOG and regular(directory / n) is not None]
        names = names[:MAX_SEALED_FILES]
        self._files: dict[str, SealedFile] = {}

        def hash_all() -> None:
            self._files.update(_hash_files(directory, names, pinned=take_over))

        if not take_over:
            hash_all()
            self._hashing = BlobCheck()  # already done
            return
        for name in names:
            os.chown(directory / name, 0, 0, follow_symlinks=False)
            os.chmod(directory / name, 0o444, follow_symlinks=False)
        os.chown(directory, 0, 0)
        os.chmod(directory, 0o755)
        self._hashing = BlobCheck(hash_all)  # a daemon thread; what it raises, `files` raises

    @property
    def files(self) -> dict[str, SealedFile]:
        """Each sealed file's name -> its sha256 (and identity, where the seal could pin it)."""
        self._hashing.wait()
        return self._files


def _hash_files(directory: Path, names: list[str], *, pinned: bool) -> dict[str, SealedFile]:
    sealed: dict[str, SealedFile] = {}
    for name in names:
        path = directory / name
        before = file_identity(os.lstat(path))
        sha256 = sha256_file(path)
        same = pinned and file_identity(os.lstat(path)) == before
        sealed[name] = SealedFile(sha256, before if same else None)
    return sealed


def regular(path: Path) -> Path | None:
    try:
        return path if stat.S_ISREG(os.lstat(path).st_mode) else None
    except OSError:
        return None


def read_regular(path: Path, limit: int) -> bytes | None:
    """The bytes of the regular file `path`, or None: missing, a link, not a file, or over `limit`."""
    handle = open_regular(path)
    if handle is None:
        return None
    with handle:
        data = handle.read(limit + 1)
    return data if len(data) <= limit else None


def open_regular(path: Path) -> BinaryIO | None:
    """`path` opened for reading if it is a regular file; never through a link a sandbox planted.

    O_NONBLOCK: a FIFO planted in its place opens at once (a blocking open would wait for a writer
    for ever, and the soft time limit with it); fstat then turns it away. On a regular file the flag
    changes nothing.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        return None
    return handle


def readable_tree(directory: Path) -> None:
    """Add read bits where the roles need them; an explicit stack, so no nesting depth can stop it."""
    pending = [str(directory)]
    while pending:
        current = pending.pop()
        os.chmod(current, 0o755)
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                    continue
                mode = entry.stat(follow_symlinks=False).st_mode
                # Only add read bits: the weights are a hard link to a store blob, which stays read-only.
                if stat.S_ISREG(mode) and stat.S_IMODE(mode) & 0o444 != 0o444:
                    os.chmod(entry.path, stat.S_IMODE(mode) | 0o444)


class HandedFile:
    """An anonymous in-memory file (memfd) the supervisor hands to one role to write, then seals
    and hands read-only to the roles after it: the eager outputs, which must never touch the disk.

    Sealing (F_SEAL_WRITE, SHRINK, GROW, then SEAL) makes every byte final for every process,
    whatever descriptor or uid it holds: stronger than making a file root's, and undone by no one.
    It fails while a writable shared mapping of the file exists, i.e. while a process the role left
    could still change it. The descriptor is closed by `close`, or when the object is collected.
    """

    def __init__(self, name: str) -> None:
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        self._finalizer = weakref.finalize(self, os.close, self.fd)

    @classmethod
    def create(cls, name: str) -> HandedFile | None:
        """A new empty one, or None where this kernel or platform has no sealable memfd."""
        if not hasattr(os, "memfd_create"):
            return None
        try:
            return cls(name)
        except OSError:
            return None

    def seal(self) -> None:
        """Make it read-only for good; raises SealRefused while a writable mapping of it remains."""
        seals = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
        try:
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, seals)
        except OSError as exc:
            raise SealRefused(f"the eager outputs could not be sealed: {exc.strerror}") from None

    @property
    def sealed(self) -> bool:
        """Whether `seal` took: no byte can change any more."""
        return bool(fcntl.fcntl(self.fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_WRITE)

    def size(self) -> int:
        """Its length in bytes."""
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        """Release it (and its memory, once no role holds it)."""
        self._finalizer()


class SealRefused(Exception):
    """Raised when a handed file cannot be sealed: a process still maps it writable."""


def handed_outputs(outputs: HandedFile | None) -> dict[str, int]:
    """The sealed eager outputs as a role is handed them (`OUTPUTS`), or nothing: then the role reads
    the reference directory's file."""
    if outputs is None:
        return {}
    if not outputs.sealed:  # only ever handed on for reading once no one can write it
        raise RuntimeError("the eager outputs were handed on before they were sealed")
    return {OUTPUTS: outputs.fd}
