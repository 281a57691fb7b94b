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
    """Unpack the uploaded tar into `dest`: no links, devices, sparse files, escaping names, oversize content.

    The members are read one header at a time and checked as they come: the first one past a limit
    stops the reading, so a tar of a million members costs no more than one of `MAX_MEMBERS`.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(upload, mode="r:") as tar:
            members = _checked_members(tar, max_bytes)
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise BadUpload(problem=f"is not a readable tar ({exc})") from None
    return dest


def _checked_members(tar: tarfile.TarFile, max_bytes: int) -> list[tarfile.TarInfo]:
    members: list[tarfile.TarInfo] = []
    total = 0
    files: set[PurePosixPath] = set()
    folders: set[PurePosixPath] = set()
    while (member := tar.next()) is not None:
        if len(members) == MAX_MEMBERS:
            raise BadUpload(problem=f"has more than {MAX_MEMBERS} members")
        path = PurePosixPath(member.name)
        # One name, one thing: a name given twice, or as a file and as a folder, would make the
        # unpacked tree depend on the order of the members.
        kind, other = (files, folders) if member.isreg() else (folders, files)
        if path in other or (path in kind and member.isreg()) or any(p in files for p in path.parents):
            raise BadUpload(problem=f"names {member.name!r} twice or as both a file and a folder")
        kind.add(path)
        if path.is_absolute() or ".." in path.parts or not member.name or "\\" in member.name:
            raise BadUpload(problem=f"has a member {member.name!r} outside its directory")
        if member.issparse():
            # a few KB of map that unpack to gigabytes of zeros: 'regctl register' never writes one
            raise BadUpload(problem=f"member {member.name!r} is a sparse file")
        if not (member.isreg() or member.isdir()):
            raise BadUpload(problem=f"member {member.name!r} is not a regular file or directory")
        total += member.size
        if total > max_bytes:
            raise UploadTooBig(limit=max_bytes)
        members.append(member)
    return members
