"""The supervisor's side of a job: lay out a private work directory, run the model process and the
judge in their sandboxes, and read back what the judge decided.

This module holds credentials (it runs in the pool child or the embedded job process) and never
imports torch or model code. What it hands the sandboxes is a plan of paths and limits; what it
takes back is the judge's `result.json` and the artifact files the judge wrote, opened without
following links.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import signal
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from regctl.registry.settings import Settings
from regctl.registry.spec import ModelSpec
from regctl.registry.text import visible
from regctl.worker.embedded import describe_exit
from regctl.worker.engine.runner_location import SWITCH_ENV, default_cache_dir, enabled
from regctl.worker.sandbox.client import RoleOutcome, allowlisted_env, shared_zygote
from regctl.worker.sandbox.launch import EXIT_ROLE_ERROR
from regctl.worker.sandbox.plan import JOB_ROOT, Limits, Mount, SandboxPlan

logger = logging.getLogger(__name__)
RESULT_FILE = "result.json"
MAX_RESULT_BYTES = 64 * 1024 * 1024
_ARTIFACT_INSIDE = f"{JOB_ROOT}/artifact/model.pt"


@dataclass(frozen=True)
class JudgedJob:
    """The outcome of a sandboxed convert or validate: the judge's verdict and its files."""

    ok: bool
    error: str | None
    method: str | None
    report: dict[str, Any]
    torchscript_path: Path | None = None
    exported_path: Path | None = None
    retry: dict[str, Any] | None = None  # the lean round found nothing: the full round's `first_round`
    aoti_path: Path | None = None  # the AOTInductor package the aoti stage proved (worker/aoti_stage.py)


@dataclass(frozen=True)
class WorkDir:
    """The job's private directory tree on the host."""

    root: Path
    model: Path  # the extracted source: read-only for both roles
    side: Path  # the model process's output, read-only for the judge
    judge: Path  # the judge's output
    artifact: Path | None  # the stored artifact a validate job proves

    @classmethod
    def create(cls, root: Path, model: Path, artifact: Path | None, uid: int | None) -> WorkDir:
        """Make the output and scratch directories; as root, hand the outputs to the sandbox uid."""
        work = cls(root, model, root / "side", root / "judge", artifact)
        for path in (work.side, work.judge):
            (path / "tmp").mkdir(parents=True)
        for name in ("root-model", "root-judge"):
            (root / name).mkdir()
        if uid is not None:
            # the sandbox uid must reach its directories even when no private root can be built
            os.chmod(root, 0o711)
            _readable_tree(model)
            for path in (work.side, work.judge):
                for item in (path, path / "tmp"):
                    os.chown(item, uid, uid)
            if artifact is not None and stat.S_IMODE(os.stat(artifact).st_mode) != 0o444:
                os.chmod(artifact, 0o444)
        return work


def prepare_output(path: Path, settings: Settings, *, tmp: bool = True) -> Path:
    """A new directory for one more role's output (with its /tmp), owned by the sandbox uid."""
    path.mkdir()
    if tmp:
        (path / "tmp").mkdir()
        uid = sandbox_uid(settings)
        if uid is not None:
            for item in (path, path / "tmp"):
                os.chown(item, uid, uid)
    return path


def sandbox_uid(settings: Settings) -> int | None:
    """The uid sandboxed processes run as when the worker is root (one per supervisor), else None."""
    if os.getuid() != 0 or settings.sandbox == "off":
        return None
    return settings.sandbox_uid + os.getpid() % 1000


def run_conversion(
    settings: Settings,
    spec: ModelSpec,
    work: WorkDir,
    method: str,
    progress: Callable[[str], None],
    check: Callable[[], None],
) -> JudgedJob:
    """Convert: the model process compiles the candidates, the judge proves them.

    A lean round first (each artifact saved once, in its final form); only when the judge accepts
    none of what it offered does the full round run, in a fresh work directory (model_side.py).
    """
    lean = _run(settings, spec, work, {"kind": "convert", "method": method, "lean": True}, progress, check)
    if lean.retry is None:
        return lean
    progress("full round: every candidate as compiled")
    full = WorkDir.create(work.root / "full", work.model, None, sandbox_uid(settings))
    args = {"kind": "convert", "method": method, "lean": False, "first_round": lean.retry}
    return _run(settings, spec, full, args, progress, check)


def run_validation(
    settings: Settings,
    spec: ModelSpec,
    work: WorkDir,
    progress: Callable[[str], None],
    check: Callable[[], None],
) -> JudgedJob:
    """Validate: the model process recomputes eager, the judge proves the stored artifact again."""
    return _run(settings, spec, work, {"kind": "validate"}, progress, check)


def _run(
    settings: Settings,
    spec: ModelSpec,
    work: WorkDir,
    args: dict[str, Any],
    progress: Callable[[str], None],
    check: Callable[[], None],
) -> JudgedJob:
    zygote = shared_zygote()
    args = {**args, "spec": spec.to_dict()}
    model_mounts = {
        "model": Mount(str(work.model), f"{JOB_ROOT}/model"),
        "out": Mount(str(work.side), f"{JOB_ROOT}/out", writable=True),
    }
    model = zygote.run(
        "model", _plan(settings, spec, work, "root-model", model_mounts), args, progress, check
    )
    sandbox = {"model": model.protections}
    if not model.ok:
        return _failed(role_failure("the model process", model, settings, work.side), sandbox)
    judge_mounts = {
        "model": Mount(str(work.model), f"{JOB_ROOT}/model"),
        "candidates": Mount(str(work.side), f"{JOB_ROOT}/candidates"),
        "out": Mount(str(work.judge), f"{JOB_ROOT}/out", writable=True),
    }
    runner, skip = runner_mounts()
    judge_mounts.update(runner)
    if skip:
        args["runner_skip"] = skip
    if work.artifact is not None:
        judge_mounts["artifact"] = Mount(str(work.artifact), _ARTIFACT_INSIDE)
    plan = _plan(settings, spec, work, "root-judge", judge_mounts)
    judge = zygote.run("judge", plan, args, progress, check)
    sandbox["judge"] = judge.protections
    if not judge.ok:
        return _failed(role_failure("the judge", judge, settings, work.judge), sandbox)
    return _verdict(work.judge, work.side, sandbox)


def runner_mounts() -> tuple[dict[str, Mount], str | None]:
    """The LibTorch runner's mount for a role, built here (its cache is outside every sandbox); or why not."""
    if not enabled():
        return {}, f"disabled ({SWITCH_ENV}=0)"
    runner = shared_zygote().runner(str(default_cache_dir()), True)
    if runner.get("runner"):
        return {"runner": Mount(runner["runner"], f"{JOB_ROOT}/runner/runner")}, None
    return {}, runner.get("skip") or "not attempted"


def _plan(
    settings: Settings, spec: ModelSpec, work: WorkDir, scratch: str, mounts: dict[str, Mount]
) -> SandboxPlan:
    return plan_for(settings, spec.device, mounts, work.root / scratch)


def plan_for(settings: Settings, device: str, mounts: dict[str, Mount], scratch: Path) -> SandboxPlan:
    """The sandbox plan for one role process: mounts by name, secret paths, limits, uid, devices."""
    threads = torch_threads()
    uid = sandbox_uid(settings)
    return SandboxPlan(
        mode=settings.sandbox,
        mounts=mounts,
        masks=secret_paths(settings),
        limits=Limits(
            memory_bytes=memory_limit(settings),
            cpu_seconds=int(settings.job_time_limit * threads + 60),
            file_bytes=settings.sandbox_file_mb * 1024 * 1024,
            processes=settings.sandbox_processes,
        ),
        uid=uid if uid is not None else os.getuid(),
        threads=threads,
        devices=gpu_device_nodes() if device == "cuda" else [],
        env=allowlisted_env(),
        scratch=str(scratch),
    )


def torch_threads() -> int:
    """Intra-op threads per job: the machine's cores shared among the pool's processes."""
    from regctl.worker.runtime import CONCURRENCY_ENV

    concurrency = int(os.environ.get(CONCURRENCY_ENV) or 1)
    return max(1, (os.cpu_count() or 1) // max(1, concurrency))


def memory_limit(settings: Settings) -> int:
    """REGCTL_SANDBOX_MEMORY_MB in bytes; 0 means three quarters of the machine's memory."""
    if settings.sandbox_memory_mb > 0:
        return settings.sandbox_memory_mb * 1024 * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 3 // 4


def secret_paths(settings: Settings) -> list[str]:
    """Host paths a sandbox must never see: registry home, database, store, LibTorch cache, homes."""
    paths = [str(settings.home), str(default_cache_dir()), os.path.expanduser("~"), "/root", "/home"]
    store = settings.artifact_store
    if "://" not in store or store.startswith("file://"):
        paths.append(store.removeprefix("file://"))
    url = settings.database_url
    if url.startswith("sqlite:///"):
        paths.append(os.path.dirname(os.path.abspath(url.removeprefix("sqlite:///"))))
    import tempfile

    paths.append(tempfile.gettempdir())  # other jobs' work directories
    return sorted({os.path.abspath(p) for p in paths if p})


def gpu_device_nodes() -> list[str]:
    """The NVIDIA device nodes a cuda job needs, and nothing more."""
    return sorted(glob.glob("/dev/nvidia*") + glob.glob("/dev/nvidia-caps/*"))


def role_failure(who: str, outcome: RoleOutcome, settings: Settings, out: Path) -> str:
    if outcome.refused:
        return (
            f"the sandbox could not be set up ({outcome.refused}); REGCTL_SANDBOX=strict refuses to run "
            "model code without it: fix the machine (see README, Trust model) or set REGCTL_SANDBOX=auto"
        )
    status = outcome.status
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"{who} died with {describe_exit(-sig)}{_signal_hint(sig, settings)}"
    code = os.WEXITSTATUS(status)
    if code == EXIT_ROLE_ERROR:
        tail = _log_tail(out / "role.log")
        logger.error("%s failed with an internal error; the end of its log:\n%s", who, tail)
        last = one_line(tail.strip().splitlines()[-1] if tail.strip() else "no output")
        return f"{who} failed with an internal error ({last}); the worker's log has its traceback"
    return f"{who} exited with code {code} before it finished (the model's code ended the process)"


def _log_tail(path: Path, size: int = 8192) -> str:
    """The last `size` bytes of a sandboxed process's log, fit for the worker's log and a terminal.

    Opened like every file a sandbox left (`_open_regular`: no link, no FIFO that would block), and
    the model's escape sequences, bidi overrides and other hidden characters come back as visible
    escapes (registry/text.py); line breaks stay.
    """
    handle = _open_regular(path)
    if handle is None:
        return ""
    with handle:
        handle.seek(max(0, os.fstat(handle.fileno()).st_size - size))
        return visible(handle.read(size).decode("utf-8", "replace"))


def _signal_hint(sig: int, settings: Settings) -> str:
    if sig == signal.SIGXFSZ:
        limit = settings.sandbox_file_mb
        return f": it wrote a file larger than the limit of {limit} MB (REGCTL_SANDBOX_FILE_MB)"
    if sig in (signal.SIGXCPU, signal.SIGKILL):
        return ": it ran out of CPU time or memory, or was killed"
    return ""


def _failed(error: str, sandbox: dict[str, Any]) -> JudgedJob:
    return JudgedJob(False, error, None, {"ok": False, "error": error, "why": error, "sandbox": sandbox})


MAX_ERROR_CHARS = 2000


def one_line(text: str | None) -> str | None:
    """A job error fit for the database and a terminal: one line, bounded, every hidden character
    (escape sequences, NUL, bidi overrides, zero-width) a visible escape (registry/text.py)."""
    if text is None:
        return None
    head = text[: 16 * MAX_ERROR_CHARS]  # a judge's error of megabytes is not flattened whole
    flat = visible(" ".join(head.split()), multiline=False)
    if len(flat) <= MAX_ERROR_CHARS and len(head) == len(text):
        return flat
    return flat[: MAX_ERROR_CHARS - 1] + "…"


def scrub(value: Any) -> Any:
    """A copy of a report whose every string shows its hidden characters as visible escapes.

    NUL too, which PostgreSQL refuses in text; line breaks and tabs stay (tracebacks, details).
    """
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {visible(str(k), multiline=False): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def _verdict(judge_dir: Path, side_dir: Path, sandbox: dict[str, Any]) -> JudgedJob:
    """Read the judge's result.json and locate the artifact files it proved.

    The artifacts stay where the model process wrote them; the judge proved them there and named
    them. The pipeline keeps the exported program only if its sha256 is the one the judge proved,
    and queues a validate job when the TorchScript artifact's is not.
    """
    data = read_regular(judge_dir / RESULT_FILE, MAX_RESULT_BYTES)
    if data is None:
        return _failed("the judge wrote no result", sandbox)
    try:
        result = json.loads(data)
        report = dict(result["report"])
    except (ValueError, KeyError, TypeError) as exc:
        return _failed(f"the judge's result cannot be read: {exc}", sandbox)
    report = scrub(report)
    report["sandbox"] = sandbox
    ok = bool(result.get("ok"))
    torchscript = _proved_file(side_dir, report, "torchscript_file") if ok else None
    exported = (
        _proved_file(side_dir, report, "exported_file")
        if ok and (report.get("export") or {}).get("ok")
        else None
    )
    if ok and torchscript is None and result.get("method"):
        return _failed("the judge accepted an artifact the model process did not leave", sandbox)
    retry = scrub(result["retry"]) if not ok and isinstance(result.get("retry"), dict) else None
    error = one_line(result.get("error")) if not ok else None
    if not ok:
        report["error"] = error
        if "why" in report:
            report["why"] = error
    return JudgedJob(
        ok,
        error or (None if ok else "the judge gave no reason"),
        result.get("method"),
        report,
        torchscript,
        exported,
        retry,
    )


def _proved_file(side_dir: Path, report: dict[str, Any], key: str) -> Path | None:
    """A file the judge proved, in the model process's output; never a path or a link."""
    name = (report.get("proved") or {}).get(key)
    if not isinstance(name, str) or os.path.basename(name) != name or name.startswith("."):
        return None
    return regular(side_dir / name)


def regular(path: Path) -> Path | None:
    try:
        return path if stat.S_ISREG(os.lstat(path).st_mode) else None
    except OSError:
        return None


def read_regular(path: Path, limit: int) -> bytes | None:
    """The bytes of the regular file `path`, or None: missing, a link, not a file, or over `limit`."""
    handle = _open_regular(path)
    if handle is None:
        return None
    with handle:
        data = handle.read(limit + 1)
    return data if len(data) <= limit else None


def _open_regular(path: Path) -> BinaryIO | None:
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


def _readable_tree(directory: Path) -> None:
    for dirpath, _, filenames in os.walk(directory):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            # Only add read bits: the weights are a hard link to a store blob, which stays read-only.
            if stat.S_ISREG(mode) and stat.S_IMODE(mode) & 0o444 != 0o444:
                os.chmod(path, stat.S_IMODE(mode) | 0o444)
