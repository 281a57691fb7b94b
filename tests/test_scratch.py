"""Job scratch directories: removed when the job ends, swept once the process that owned them is killed.

Removal is tried on real trees a hostile model could leave: deep, wide, unreadable, full of special
files and links out; what cannot go is reported once, set aside and listed by doctor.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from regctl.registry.ops.doctor import UNDELETABLE_PREFIX, undeletable_scratch
from regctl.worker.supervisor.scratch import (
    LOCK_NAME,
    PREFIX,
    UNLOCKED_GRACE_S,
    discard,
    job_prefix,
    job_scratch,
    remove_tree,
    sweep_abandoned,
)

HOLDER = """
import sys, time
from regctl.worker.supervisor.scratch import job_scratch
with job_scratch(7, sys.argv[1]) as path:
    (path / "candidate.pt").write_bytes(b"x" * 4096)
    print(path, flush=True)
    time.sleep(600)
"""


def test_a_scratch_directory_is_gone_when_the_job_ends_even_by_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), job_scratch(1, str(tmp_path)) as path:
        assert path.name.startswith(f"{PREFIX}1-") and (path / LOCK_NAME).exists()
        (path / "model").mkdir()
        raise RuntimeError("the job failed")
    assert list(tmp_path.iterdir()) == []


def test_a_live_jobs_directory_is_kept_and_a_killed_ones_is_swept(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    ) as holder:
        assert holder.stdout is not None
        path = Path(holder.stdout.readline().strip())
        assert path.is_dir()
        assert sweep_abandoned(str(tmp_path)) == []  # its owner holds the lock
        assert (path / "candidate.pt").exists()
        holder.send_signal(signal.SIGKILL)  # no cleanup runs, as at Celery's hard time limit
        holder.wait()
    assert path.is_dir()
    assert sweep_abandoned(str(tmp_path)) == [path]
    assert not path.exists()


def test_a_sweep_racing_a_job_that_is_starting_never_takes_its_folder(tmp_path: Path) -> None:
    # Many sweeps while many jobs start: each job must find its folder whole until it ends.
    import threading

    stop = threading.Event()
    removed: list[Path] = []

    def sweeping() -> None:
        while not stop.is_set():
            removed.extend(sweep_abandoned(str(tmp_path)))

    sweeper = threading.Thread(target=sweeping)
    sweeper.start()
    try:
        for job in range(300):
            with job_scratch(job, str(tmp_path)) as path:
                (path / "model").mkdir()
                (path / "model" / "weights").write_bytes(b"w")
                assert (path / "model" / "weights").read_bytes() == b"w"
    finally:
        stop.set()
        sweeper.join()
    assert removed == []


def test_a_sweep_for_one_job_takes_only_that_jobs_abandoned_folders(tmp_path: Path) -> None:
    then = time.time() - UNLOCKED_GRACE_S - 10
    folders = [tmp_path / f"{job_prefix(job)}x" for job in (7, 70, 8)]
    for folder in folders:
        folder.mkdir()
        os.utime(folder, (then, then))
    assert sweep_abandoned(str(tmp_path), job_prefix(7)) == [folders[0]]
    assert [f.is_dir() for f in folders] == [False, True, True]  # job 70's and job 8's are not its own


def test_the_sweep_leaves_what_is_not_a_scratch_directory_it_owns(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("precious")
    (tmp_path / f"{PREFIX}link").symlink_to(elsewhere)  # a link planted to lure the sweep out
    lock_link = tmp_path / f"{PREFIX}locklink"
    lock_link.mkdir()
    (lock_link / LOCK_NAME).symlink_to(elsewhere / "keep")
    (tmp_path / "other-dir").mkdir()
    young = tmp_path / f"{PREFIX}9-young"  # created, its lock not yet taken
    young.mkdir()
    old = tmp_path / f"{PREFIX}9-old"
    old.mkdir()
    then = time.time() - UNLOCKED_GRACE_S - 10
    os.utime(old, (then, then))

    assert sweep_abandoned(str(tmp_path)) == [old]
    assert (elsewhere / "keep").read_text() == "precious"
    assert (tmp_path / f"{PREFIX}link").is_symlink() and lock_link.is_dir() and young.is_dir()
    assert (tmp_path / "other-dir").is_dir()


@pytest.fixture(autouse=True)
def _no_deep_tree_outlives_a_test(tmp_path: Path) -> Iterator[None]:
    """pytest removes old temp folders with shutil.rmtree: a deep tree left here would break it."""
    yield
    remove_tree(tmp_path)


def nest(top: Path, depth: int, mode: int | None = None) -> None:
    """`depth` nested directories under `top`, made fd-relative (their path is far past PATH_MAX)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "w") as leaf:
            leaf.write("bottom")
        if mode is not None:
            os.chmod(fd, mode)
    finally:
        os.close(fd)


@pytest.mark.parametrize("depth", [3_000, 20_000])
def test_a_deeply_nested_tree_is_removed_without_recursion(tmp_path: Path, depth: int) -> None:
    top = tmp_path / f"{PREFIX}1-deep"
    top.mkdir()
    nest(top, depth, mode=0)
    with pytest.raises(RecursionError):  # what a job's cleanup used to die of
        shutil.rmtree(top, onerror=lambda *args: None)
    assert remove_tree(top) is None
    assert list(tmp_path.iterdir()) == []


def test_unreadable_directories_special_files_and_links_out_are_handled(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("precious")
    (outside / "shared").write_text("linked")
    top = tmp_path / f"{PREFIX}2-mixed"
    top.mkdir()
    for mode in (0o000, 0o500, 0o100, 0o200):
        locked = top / f"mode-{mode:o}"
        (locked / "inner").mkdir(parents=True)
        (locked / "inner" / "file").write_text("x")
        (locked / "file").write_text("x")
        locked.chmod(mode)
    os.mkfifo(top / "fifo")
    os.mknod(top / "socket", stat.S_IFSOCK | 0o600)
    if os.geteuid() == 0:
        os.mknod(top / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (top / "to-outside").symlink_to(outside)
    (top / "to-file").symlink_to(outside / "keep")
    (top / "loop").symlink_to(top / "loop")
    (top / "dangling").symlink_to(tmp_path / "nothing")
    farm = top / "farm"
    farm.mkdir()
    for i in range(500):
        (farm / f"up-{i}").symlink_to("..")
    os.link(outside / "shared", top / "hardlink")
    wide = top / "wide"
    wide.mkdir()
    for i in range(5_000):
        (wide / f"f{i}").touch()
    for i in range(300):
        (wide / f"d{i}").mkdir()
    (top / "unreadable-file").write_text("x")
    (top / "unreadable-file").chmod(0)

    assert remove_tree(top) is None
    assert not top.exists() and not os.path.lexists(top)
    assert (outside / "keep").read_text() == "precious"
    assert (outside / "shared").read_text() == "linked" and os.stat(outside / "shared").st_nlink == 1
    if os.geteuid() == 0:
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_symlink_given_as_the_folder_is_removed_and_its_target_kept(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_text("precious")
    link = tmp_path / f"{PREFIX}3-link"
    link.symlink_to(target)
    assert remove_tree(link) is None
    assert not os.path.lexists(link) and (target / "keep").read_text() == "precious"
    assert remove_tree(tmp_path / "never-existed") is None


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs mounted inside a scratch folder, as a bind mount left by a sandbox would be."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    top = tmp_path / "work" / f"{PREFIX}4-mount"
    point = top / "inner" / "mnt"
    point.mkdir(parents=True)
    (top / "inner" / "removable").write_text("x")
    if subprocess.run(["mount", "-t", "tmpfs", "none", str(point)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    (point / "other-filesystem").write_text("must survive")
    try:
        yield top
    finally:
        for found in (tmp_path / "work").rglob("mnt"):
            subprocess.run(["umount", str(found)], capture_output=True)


def test_a_folder_that_cannot_be_removed_is_reported_once_set_aside_and_listed_by_doctor(
    mounted: Path, caplog: pytest.LogCaptureFixture
) -> None:
    work = mounted.parent
    with caplog.at_level(logging.WARNING, logger="regctl.worker.supervisor.scratch"):
        assert discard(mounted) is False
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert str(mounted) in warnings[0] and "another filesystem is mounted here" in warnings[0]
    kept = work / f"{UNDELETABLE_PREFIX}{mounted.name}"
    assert not mounted.exists() and kept.is_dir()
    assert (kept / "inner" / "mnt" / "other-filesystem").read_text() == "must survive"
    assert not (kept / "inner" / "removable").exists()  # everything else went

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="regctl.worker.supervisor.scratch"):
        assert sweep_abandoned(str(work)) == []  # never tried again
        with job_scratch(5, str(work)) as path:  # and the next job runs and cleans up as ever
            (path / "model").mkdir()
    assert caplog.records == []
    assert sorted(p.name for p in work.iterdir()) == [kept.name]

    problems = undeletable_scratch(str(work))
    assert [(p.kind, p.subject) for p in problems] == [("undeletable_scratch", str(kept))]
    assert "could not be removed" in problems[0].message and "\n" not in problems[0].message


def test_an_immutable_file_is_reported_and_never_fails_the_job(tmp_path: Path) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("no chattr here")
    with job_scratch(6, str(tmp_path)) as path:
        (path / "model").mkdir()
        stuck = path / "model" / "stuck"
        stuck.write_text("x")
        if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True).returncode:
            pytest.skip("this filesystem has no immutable flag")
        (path / "out").mkdir()  # comes after "model": still removed, whatever "model" did
        nest(path / "out", 100, mode=0)
    try:
        kept = tmp_path / f"{UNDELETABLE_PREFIX}{path.name}"
        assert kept.is_dir() and not path.exists()
        assert sorted(p.name for p in kept.iterdir()) == ["model"]
        assert [p.subject for p in undeletable_scratch(str(tmp_path))] == [str(kept)]
    finally:
        subprocess.run(
            ["chattr", "-i", str(tmp_path / f"{UNDELETABLE_PREFIX}{path.name}" / "model" / "stuck")]
        )


def test_a_job_whose_model_left_a_deep_tree_ends_cleanly(tmp_path: Path) -> None:
    with job_scratch(8, str(tmp_path)) as path:
        (path / "out").mkdir()
        nest(path / "out", 3_000, mode=0)
    assert list(tmp_path.iterdir()) == []


def test_a_job_killed_while_removing_its_tree_is_swept_at_once(tmp_path: Path) -> None:
    # job_scratch removes its lock last: a cleanup cut short leaves a free lock, not a lockless
    # folder that the sweep would have to leave alone for the grace period.
    with job_scratch(9, str(tmp_path)) as path:
        pass
    left = tmp_path / f"{PREFIX}9-cut-short"
    left.mkdir()
    (left / LOCK_NAME).touch()
    nest(left, 3_000, mode=0)
    assert sweep_abandoned(str(tmp_path)) == [left]
    assert list(tmp_path.iterdir()) == [] and not path.exists()


NOBODY = 65534
# Everything is imported first: the interpreter's own files may be closed to uid 65534.
AS_NOBODY = """
import logging, os, sys
from pathlib import Path
from regctl.worker.supervisor.scratch import discard
logging.basicConfig()
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
print(discard(Path(sys.argv[1])))
"""


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A folder under /tmp that uid 65534 owns (tmp_path's parents are closed to other uids)."""
    if os.geteuid() != 0:
        pytest.skip("changing uid needs root")
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="regctl-test-nobody-", dir="/tmp"))
    os.chmod(base, 0o755)
    os.chown(base, NOBODY, NOBODY)
    yield base
    remove_tree(base)


def _as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", AS_NOBODY, str(path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )


def _chown_tree(top: Path, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames]:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)
    os.chown(top, uid, uid)


def test_without_root_the_owner_still_removes_its_unreadable_folders(nobody_dir: Path) -> None:
    top = nobody_dir / f"{PREFIX}10-own"
    for mode in (0o000, 0o500, 0o100):
        (top / f"mode-{mode:o}" / "inner").mkdir(parents=True)
        (top / f"mode-{mode:o}" / "inner" / "file").write_text("x")
    os.mkfifo(top / "fifo")
    _chown_tree(top, NOBODY)
    for mode in (0o000, 0o500, 0o100):
        os.chmod(top / f"mode-{mode:o}", mode)
    done = _as_nobody(top)
    assert done.stdout.strip() == "True", done.stderr
    assert list(nobody_dir.iterdir()) == []


def test_without_root_another_uids_locked_folder_is_reported_and_set_aside(nobody_dir: Path) -> None:
    top = nobody_dir / f"{PREFIX}11-foreign"
    (top / "theirs" / "inner").mkdir(parents=True)
    (top / "mine").write_text("x")
    _chown_tree(top, NOBODY)
    os.chown(top / "theirs", 0, 0)  # another uid's folder, closed to us: we may not open or chmod it
    os.chmod(top / "theirs", 0o000)
    done = _as_nobody(top)
    assert done.stdout.strip() == "False", done.stderr
    assert done.stderr.count("could not be removed") == 1, done.stderr
    assert "theirs: Permission denied" in done.stderr
    kept = nobody_dir / f"{UNDELETABLE_PREFIX}{top.name}"
    assert kept.is_dir() and not (kept / "mine").exists()
    assert [p.subject for p in undeletable_scratch(str(nobody_dir))] == [str(kept)]
