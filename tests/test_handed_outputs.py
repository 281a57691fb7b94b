"""Issue 25: the eager outputs never touch the disk. The supervisor hands the reference runner an
anonymous in-memory file (memfd), seals it once the runner is gone, and hands it to the judge and the
format stages to read; no role can change a sealed byte, through any path or descriptor.

The sandbox checks fork launch() from this process as the zygote would (tests/test_sandbox.py); the
last test runs a real sandboxed conversion through the supervisor.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regctl.registry.settings import Settings
from regctl.registry.spec import load_spec
from regctl.worker.contract import OUTPUTS, REFERENCE_FILE
from regctl.worker.sandbox.client import Zygote
from regctl.worker.sandbox.plan import SandboxPlan
from regctl.worker.sandbox.protocol import MAX_HANDED
from regctl.worker.sandbox.uids import job_uids
from regctl.worker.supervisor.files import HandedFile, SealRefused, handed_outputs
from regctl.worker.supervisor.supervisor import WorkDir, run_conversion
from tests.test_sandbox import Job, _launch, _plan, _settings, job  # noqa: F401 (a fixture)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _report(progress_fd: int, value: dict[str, Any]) -> None:
    os.write(progress_fd, b"P " + json.dumps(value).encode() + b"\n")


def _writer(args: dict, paths: dict, progress_fd: int) -> None:
    with open(paths[OUTPUTS], "wb") as f:
        f.write(b"eager outputs")
    _report(progress_fd, {"path": paths[OUTPUTS]})


def _tamperer(args: dict, paths: dict, progress_fd: int) -> None:
    """A later role trying every way to change the sealed bytes it was handed to read."""
    attempts = {}
    with open(paths[OUTPUTS], "rb") as f:
        attempts["read"] = f.read().decode()
    for how, attempt in {
        "open and write": lambda: os.write(os.open(paths[OUTPUTS], os.O_WRONLY), b"forged"),
        "open truncating": lambda: open(paths[OUTPUTS], "wb").close(),
        "truncate": lambda: os.truncate(paths[OUTPUTS], 0),
        "write the handed descriptor": lambda: os.write(int(paths[OUTPUTS].rsplit("/", 1)[1]), b"forged"),
        "map it writable": lambda: mmap.mmap(int(paths[OUTPUTS].rsplit("/", 1)[1]), 0),
    }.items():
        try:
            attempt()
            attempts[how] = "done"
        except OSError as exc:
            attempts[how] = f"refused ({exc.errno})"
    _report(progress_fd, attempts)


def _fresh_out(laid_out: Job) -> None:
    """What WorkDir.output gives each role: its own empty folder (the last role's log is its uid's)."""
    shutil.rmtree(laid_out.out)
    (laid_out.out / "tmp").mkdir(parents=True)


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_the_reference_runner_writes_a_handed_file_that_the_next_role_can_read_but_never_change(
    job: Job,  # noqa: F811 (the fixture)
    mode: str,
) -> None:
    settings = _settings(job.root / "home", mode)
    outputs = HandedFile.create("regctl-test-outputs")
    assert outputs is not None, "this Linux has memfd_create: the eager outputs must stay in memory"
    wrote = _launch(_plan(settings, job, role="reference"), job, _writer, handed={OUTPUTS: outputs.fd})
    assert wrote.exit_code == 0, wrote.log
    assert wrote.reported()["path"].startswith("/proc/self/fd/")
    assert sorted(p.name for p in job.out.iterdir()) == ["role.log", "tmp"]  # nothing on the disk
    assert outputs.size() == len(b"eager outputs")
    with pytest.raises(RuntimeError, match="before they were sealed"):
        handed_outputs(outputs)  # never handed on while it can still change
    outputs.seal()
    _fresh_out(job)
    read = _launch(_plan(settings, job, role="judge"), job, _tamperer, handed=handed_outputs(outputs))
    assert read.exit_code == 0, read.log
    attempts = read.reported()
    assert attempts.pop("read") == "eager outputs"
    assert all(v.startswith("refused") for v in attempts.values()), attempts
    assert os.pread(outputs.fd, 64, 0) == b"eager outputs"


def test_a_handed_file_is_not_sealed_while_a_process_maps_it_writable() -> None:
    outputs = HandedFile.create("regctl-test-outputs")
    assert outputs is not None
    os.ftruncate(outputs.fd, mmap.PAGESIZE)
    mapping = mmap.mmap(outputs.fd, mmap.PAGESIZE)  # what a process the role left behind could hold
    try:
        with pytest.raises(SealRefused, match="could not be sealed"):
            outputs.seal()
        assert not outputs.sealed
    finally:
        mapping.close()
    outputs.seal()
    assert outputs.sealed


def test_a_closed_handed_file_gives_its_descriptor_back() -> None:
    outputs = HandedFile.create("regctl-test-outputs")
    assert outputs is not None
    fd = outputs.fd
    outputs.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    outputs.close()  # twice is harmless


def test_a_run_request_hands_at_most_a_few_files() -> None:
    plan = SandboxPlan(mode="off", mounts={}, masks=[], limits=None, uid=os.getuid(), threads=1)  # type: ignore[arg-type]
    too_many = {f"file{i}": 0 for i in range(MAX_HANDED + 1)}
    with pytest.raises(ValueError, match=f"at most {MAX_HANDED} files"):
        Zygote().run("probe", plan, {}, lambda s: None, lambda: None, too_many)


@pytest.fixture
def work() -> Iterator[tuple[Settings, Path]]:
    root = Path(tempfile.mkdtemp(prefix="regctl-test-handed-"))
    shutil.copytree(EXAMPLES / "linear", root / "model")
    try:
        yield Settings.from_env({}, home=root / "home"), root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_sandboxed_conversion_keeps_its_eager_outputs_in_memory_only(work: tuple[Settings, Path]) -> None:
    settings, root = work
    spec = load_spec(root / "model")
    with job_uids(settings.sandbox_uid, settings.sandbox != "off") as lease:
        uids = lease.by_role if lease is not None else {}
        judged = run_conversion(
            settings, spec, WorkDir.create(root, root / "model", None, uids), spec.method, print, lambda: None
        )
    assert judged.ok, judged.error
    assert judged.reference_dir is not None and judged.outputs is not None
    assert not (judged.reference_dir / REFERENCE_FILE).exists()  # the judge read them from memory
    assert judged.outputs.sealed and judged.outputs.size() > 0
    assert judged.report["battery_size"] > 0 and not judged.report.get("failed_inputs")
