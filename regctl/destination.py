"""Where `fetch` may write: the same rules as `cp` and `curl -o`, minus their surprises.

- a new file, or an existing regular file, which is replaced whole once the download is verified
  (like `cp` and `curl -o`; the old file stays until then);
- never a directory, a symbolic link, a named pipe, a device or a socket: replacing one would
  silently swap a special node (as root, `-o /dev/stdout` would replace a system entry) for a plain
  file; use `-o -` to write to stdout, or name the link's target;
- the directory must exist, unless `create_dirs` (curl's `--create-dirs`) asks for it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from regctl.registry.errors.files import (
    CannotCreateDirectory,
    CannotWrite,
    DestinationIsDirectory,
    DestinationIsLink,
    DestinationNotRegular,
    MissingDirectory,
    ParentNotDirectory,
)

_KINDS = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def check_destination(path: Path, *, create_dirs: bool = False) -> Path:
    """`path` when an artifact may be written there; InvalidInput saying why not and what to do."""
    path = Path(path)
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        found = None
    except OSError as exc:
        raise CannotWrite(path=path, reason=exc.strerror) from None
    if found is not None:
        _check_existing(path, found.st_mode)
    parent = path.absolute().parent
    if parent.is_dir():
        return path
    if parent.exists():
        raise ParentNotDirectory(parent=parent)
    if not create_dirs:
        raise MissingDirectory(parent=parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CannotCreateDirectory(parent=parent, reason=exc.strerror) from None
    return path


def _check_existing(path: Path, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise DestinationIsDirectory(path=path, example=path / "model.pt")
    if stat.S_ISLNK(mode):
        raise DestinationIsLink(path=path, real=os.path.realpath(path))
    what = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    raise DestinationNotRegular(path=path, what=what)
