"""Job scratch directories: removed when the job ends, swept once the process that owned them is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regctl.worker.scratch import LOCK_NAME, PREFIX, UNLOCKED_GRACE_S, job_scratch, sweep_abandoned

HOLDER = """
import sys, time
from regctl.worker.scratch import job_scratch
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
