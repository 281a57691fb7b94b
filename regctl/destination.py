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

from regctl.registry.errors import InvalidInput

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
        raise InvalidInput(f"cannot write to {path}: {exc.strerror}") from None
    if found is not None:
        _check_existing(path, found.st_mode)
    parent = path.absolute().parent
    if parent.is_dir():
        return path
    if parent.exists():
        raise InvalidInput(f"{parent} is not a directory; name a file inside a directory")
    if not create_dirs:
        raise InvalidInput(f"directory {parent} does not exist; create it, or pass --create-dirs")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot create directory {parent}: {exc.strerror}") from None
    return path


def _check_existing(path: Path, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise InvalidInput(f"{path} is a directory; name the file to write, e.g. {path / 'model.pt'}")
    if stat.S_ISLNK(mode):
        raise InvalidInput(
            f"{path} is a symbolic link; name the file it points at ({os.path.realpath(path)}) "
            "or remove the link"
        )
    what = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    raise InvalidInput(f"{path} is {what}; fetch to a regular file, or use '-o -' to write to stdout")
