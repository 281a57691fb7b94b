"""The seal of a role's folder: taken over at once, hashed beside the next roles only where no role
can change a byte any more (worker/supervisor/files.py: Seal)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from regctl.worker.contract import ROLE_LOG
from regctl.worker.supervisor.files import Seal

needs_root = pytest.mark.skipif(os.getuid() != 0, reason="taking the files over makes them root's")


def _role_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "builder"
    folder.mkdir()
    (folder / "script.pt").write_bytes(b"candidate" * 1000)
    (folder / "builder.json").write_text("{}")
    (folder / ROLE_LOG).write_text("the role's own log")
    (folder / "nested").mkdir()
    (folder / "link.pt").symlink_to(folder / "script.pt")
    return folder


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_root
def test_a_taken_over_folder_is_read_only_at_once_and_hashed_in_the_background(tmp_path: Path) -> None:
    folder = _role_folder(tmp_path)
    os.chown(folder, 65534, 65534)  # as a role's uid leaves it
    sealed = Seal(folder, take_over=True)
    # Before `files` is asked for, nothing the role's uid could use to change a byte is left.
    for path in (folder, folder / "script.pt", folder / "builder.json"):
        info = os.lstat(path)
        assert (info.st_uid, info.st_gid) == (0, 0)
        assert stat.S_IMODE(info.st_mode) & 0o222 == (0o200 if path == folder else 0)
    files = sealed.files
    assert sorted(files) == ["builder.json", "script.pt"]  # no log, folder or link
    assert files["script.pt"].sha256 == _digest(folder / "script.pt")
    assert files["script.pt"].identity is not None  # pinned: the store may take the sha256 as is


def test_a_folder_the_roles_can_still_write_is_hashed_before_the_seal_returns(tmp_path: Path) -> None:
    folder = _role_folder(tmp_path)
    before = _digest(folder / "script.pt")
    sealed = Seal(folder, take_over=False)
    (folder / "script.pt").write_bytes(b"written after the seal")  # what a later role of that uid could do
    assert sealed.files["script.pt"].sha256 == before
    assert sealed.files["script.pt"].identity is None  # not pinned: the store reads it again
