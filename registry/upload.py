"""Bundles that arrive over the network: unpacked only when every member is a plain file or directory.

The server then rebuilds the bundle from the unpacked directory with `build_bundle`, so an upload
passes exactly the checks a local `regctl register` does and gets the same canonical bytes.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

from regctl.registry.errors.files import BadUpload, UploadTooBig

MAX_MEMBERS = 10_000


def unpack_upload(upload: Path, dest: Path, max_bytes: int) -> Path:
    """Unpack the uploaded tar into `dest`, refusing links, devices, escaping names and oversize content."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(upload, mode="r:") as tar:
            members = tar.getmembers()
            _check_members(members, max_bytes)
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise BadUpload(problem=f"is not a readable tar ({exc})") from None
    return dest


def _check_members(members: list[tarfile.TarInfo], max_bytes: int) -> None:
    if len(members) > MAX_MEMBERS:
        raise BadUpload(problem=f"has {len(members)} members, more than {MAX_MEMBERS}")
    total = 0
    files: set[PurePosixPath] = set()
    folders: set[PurePosixPath] = set()
    for member in members:
        path = PurePosixPath(member.name)
        # One name, one thing: a name given twice, or as a file and as a folder, would make the
        # unpacked tree depend on the order of the members.
        kind, other = (files, folders) if member.isreg() else (folders, files)
        if path in other or (path in kind and member.isreg()) or any(p in files for p in path.parents):
            raise BadUpload(problem=f"names {member.name!r} twice or as both a file and a folder")
        kind.add(path)
        if path.is_absolute() or ".." in path.parts or not member.name or "\\" in member.name:
            raise BadUpload(problem=f"has a member {member.name!r} outside its directory")
        if not (member.isreg() or member.isdir()):
            raise BadUpload(problem=f"member {member.name!r} is not a regular file or directory")
        total += member.size
        if total > max_bytes:
            raise UploadTooBig(limit=max_bytes)
