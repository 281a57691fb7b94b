"""The supervisor's side of a job: lay out private work directories, run the sandboxed roles in turn,
seal what each hands over, and read back what the judge decided.

A convert job runs three roles, each a fresh fork of the zygote with its own uid and directory:

    builder    imports the model, compiles the candidates on the spec's public examples
    (seal)     the supervisor hashes every file the builder left and takes them over (root-owned,
               read-only) before the battery exists; then it draws the battery's secret seed
    reference  imports the model, runs eager on the battery of that seed; never sees the candidates
    judge      never imports model code: proves the sealed candidates against the eager outputs

A validate job runs the reference runner and the judge on the stored artifact. The reference runner
sees that artifact too, read-only, to time it beside eager in one process (the latency section,
advisory); it is already proven, and the judge proves it again without asking the runner anything.

This module holds credentials (it runs in the pool child or the embedded job process) and never
imports torch or model code. What it hands the sandboxes is a plan of paths and limits; what it
takes back is the judge's `result.json` and the artifact files the judge proved, opened without
following links and checked against the seal.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import signal
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regctl.registry.seeds import draw_seed
from regctl.registry.settings import Settings
from regctl.registry.spec import ModelSpec
from regctl.registry.store.blobs import SealedFile
from regctl.registry.text import visible
from regctl.worker.contract import OUTPUTS, RESULT_FILE
from regctl.worker.engine.bounds import trim_report
from regctl.worker.engine.runner_location import SWITCH_ENV, default_cache_dir, enabled
from regctl.worker.sandbox.client import RoleOutcome, allowlisted_env, shared_zygote
from regctl.worker.sandbox.launch import EXIT_ROLE_ERROR
from regctl.worker.sandbox.plan import JOB_ROOT, Limits, Mount, SandboxPlan
from regctl.worker.supervisor.exits import describe_exit
from regctl.worker.supervisor.files import (
    HandedFile,
    Seal,
    SealRefused,
    handed_outputs,
    open_regular,
    read_regular,
    readable_tree,
    regular,
)

logger = logging.getLogger(__name__)
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
    # each built format's file its stage proved (worker/supervisor/format_stage.py), by format
    built: dict[str, Path] = dataclasses.field(default_factory=dict)
    # what the seal found for the proved files above (the store then need not hash them again)
    seals: dict[Path, SealedFile] = dataclasses.field(default_factory=dict)
    reference_dir: Path | None = None  # the reference runner's directory (its side, its coverage)
    seed: int | None = None  # the battery's secret seed
    outputs: HandedFile | None = None  # the eager outputs, sealed in memory (None: in reference_dir)


RoleUids = Mapping[str, int]  # role name -> uid it runs as; empty when the worker is not root


@dataclass(frozen=True)
class WorkDir:
    """The job's private directory tree on the host: the model's files and one directory per role."""

    root: Path
    model: Path  # the extracted source: read-only for every role
    artifact: Path | None  # the stored artifact a validate job proves
    uids: RoleUids  # each role's own uid for this job (empty: every role runs as the worker)

    @classmethod
    def create(cls, root: Path, model: Path, artifact: Path | None, uids: RoleUids) -> WorkDir:
        """The job's tree under `root`; as root, readable by the roles' uids and nothing more."""
        if uids:
            # the role uids must reach their directories even when no private root can be built
            os.chmod(root, 0o711)
            readable_tree(model)
            if artifact is not None and stat.S_IMODE(os.stat(artifact).st_mode) != 0o444:
                os.chmod(artifact, 0o444)
        return cls(root, model, artifact, dict(uids))

    def output(self, name: str, role: str) -> Path:
        """A new directory `name` for `role`'s output, with its /tmp, owned by that role's uid."""
        path = self.root / name
        (path / "tmp").mkdir(parents=True)
        uid = self.uids.get(role)
        if uid is not None:
            for item in (path, path / "tmp"):
                os.chown(item, uid, uid)
        return path

    def scratch(self) -> Path:
        """The empty directory a role's private root is built on: one for every role of the job.

        Each role mounts its root over it in a mount namespace of its own, so roles running at once
        never see each other's; one directory is one inode and block fewer written per role.
        """
        path = self.root / "private-root"
        path.mkdir(exist_ok=True)
        return path


def sandbox_uid(settings: Settings) -> int | None:
    """The first uid of this supervisor's block when the worker is root, else None."""
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
    """Convert: the builder compiles the candidates, the reference runner runs eager, the judge proves.

    A lean round first (each artifact saved once, in its final form); only when the judge accepts
    none of what it offered does the full round run: a fresh build judged on the same battery
    (model_side.py).
    """
    job = _Job(settings, spec, work, progress, check)
    sealed = job.build("builder", {"method": method, "lean": True})
    if isinstance(sealed, JudgedJob):
        return sealed
    reference = job.reference()
    if isinstance(reference, JudgedJob):
        return reference
    lean = job.judge("judge", {"kind": "convert", "method": method}, sealed, reference)
    if lean.retry is None:
        return lean
    progress("full round: every candidate as compiled")
    sealed = job.build("builder-full", {"method": method, "lean": False})
    if isinstance(sealed, JudgedJob):
        return sealed
    args = {"kind": "convert", "method": method, "first_round": lean.retry}
    return job.judge("judge-full", args, sealed, reference)


def run_validation(
    settings: Settings,
    spec: ModelSpec,
    work: WorkDir,
    progress: Callable[[str], None],
    check: Callable[[], None],
) -> JudgedJob:
    """Validate: the reference runner recomputes eager on a fresh battery, the judge proves the artifact."""
    job = _Job(settings, spec, work, progress, check)
    reference = job.reference()
    if isinstance(reference, JudgedJob):
        return reference
    return job.judge("judge", {"kind": "validate"}, None, reference)


@dataclass(frozen=True)
class _Sealed:
    """The builder's directory after the seal: no file can change from before the battery existed."""

    directory: Path
    seal: Seal

    @property
    def files(self) -> dict[str, SealedFile]:
        """Each file's name -> its sha256 (and identity, where the seal could pin it)."""
        return self.seal.files


@dataclass(frozen=True)
class _Reference:
    """The reference runner's directory and the secret seed of the battery it ran."""

    directory: Path
    seed: int
    outputs: HandedFile | None  # the eager outputs, sealed; None where no memfd could be made


class _Job:
    """One job's roles, run in turn through the zygote; records each role's protections."""

    def __init__(
        self,
        settings: Settings,
        spec: ModelSpec,
        work: WorkDir,
        progress: Callable[[str], None],
        check: Callable[[], None],
    ) -> None:
        self.settings, self.spec, self.work = settings, spec, work
        self.progress, self.check = progress, check
        self.sandbox: dict[str, Any] = {}
        self.spec_json = spec.to_dict()

    def build(self, name: str, args: dict[str, Any]) -> _Sealed | JudgedJob:
        """Run the candidate builder into directory `name`, then seal what it left."""
        out = self.work.output(name, "builder")
        outcome = self._role("builder", name, {"model": self._model(), "out": self._out(out)}, args)
        if not outcome.ok:
            return _failed(role_failure("the model process", outcome, self.settings, out), self.sandbox)
        return _Sealed(out, Seal(out, take_over=bool(self.work.uids)))

    def reference(self) -> _Reference | JudgedJob:
        """Draw the battery's seed and run eager on it in the reference runner."""
        seed = draw_seed()
        out = self.work.output("reference", "reference")
        mounts = {"model": self._model(), "out": self._out(out)}
        if self.work.artifact is not None:  # a validate job: timed beside eager (module docstring)
            mounts["artifact"] = Mount(str(self.work.artifact), _ARTIFACT_INSIDE)
        # In memory: the eager outputs are as large as a battery pass's outputs (15 MB on BERT-base),
        # needed only until the last stage of this job has read them.
        outputs = HandedFile.create("regctl-eager-outputs")
        handed = {OUTPUTS: outputs.fd} if outputs is not None else {}
        outcome = self._role("reference", "reference", mounts, {"seed": seed}, handed)
        if not outcome.ok:
            return _failed(role_failure("the model process", outcome, self.settings, out), self.sandbox)
        if outputs is not None:
            try:
                outputs.seal()  # the role and everything it started are gone: no byte may change now
            except SealRefused as exc:
                return _failed(f"the model process left a process behind: {exc}", self.sandbox)
        return _Reference(out, seed, outputs)

    def judge(
        self, name: str, args: dict[str, Any], sealed: _Sealed | None, reference: _Reference
    ) -> JudgedJob:
        """Run the judge on the sealed candidates (or the stored artifact) and the eager outputs."""
        out = self.work.output(name, "judge")
        mounts = {
            "model": self._model(),
            "reference": Mount(str(reference.directory), f"{JOB_ROOT}/reference"),
            "out": self._out(out),
        }
        if sealed is not None:
            mounts["candidates"] = Mount(str(sealed.directory), f"{JOB_ROOT}/candidates")
        # The first job on a machine compiles the LibTorch runner (15-30 s on 2 cores): a stage of its
        # own, so the wait is not charged to whatever the last role said it was doing.
        self.progress("libtorch runner: compiled by a machine's first job, then cached")
        runner, skip = runner_mounts(self.settings)
        mounts.update(runner)
        args = {**args, "seed": reference.seed}
        if skip:
            args["runner_skip"] = skip
        if self.work.artifact is not None:
            mounts["artifact"] = Mount(str(self.work.artifact), _ARTIFACT_INSIDE)
        outcome = self._role("judge", name, mounts, args, handed_outputs(reference.outputs))
        if not outcome.ok:
            return _failed(role_failure("the judge", outcome, self.settings, out), self.sandbox)
        judged = _verdict(out, sealed, self.sandbox)
        judged.report["battery_seed"] = reference.seed
        return dataclasses.replace(
            judged, reference_dir=reference.directory, seed=reference.seed, outputs=reference.outputs
        )

    def _role(
        self,
        role: str,
        name: str,
        mounts: dict[str, Mount],
        args: dict[str, Any],
        handed: dict[str, int] | None = None,
    ) -> RoleOutcome:
        plan = plan_for(
            self.settings, self.spec.device, mounts, self.work.scratch(), uid=self.work.uids.get(role)
        )
        args = {**args, "spec": self.spec_json}
        outcome = shared_zygote().run(role, plan, args, self.progress, self.check, handed)
        self.sandbox[role] = outcome.protections
        return outcome

    def _model(self) -> Mount:
        return Mount(str(self.work.model), f"{JOB_ROOT}/model")

    @staticmethod
    def _out(path: Path) -> Mount:
        return Mount(str(path), f"{JOB_ROOT}/out", writable=True)


def runner_mounts(settings: Settings) -> tuple[dict[str, Mount], str | None]:
    """The LibTorch runner's mount for a role, built here (its cache is outside every sandbox); or why not."""
    if not enabled(settings):
        return {}, f"disabled ({SWITCH_ENV}=0)"
    runner = shared_zygote().runner(str(default_cache_dir(settings)), True)
    if runner.get("runner"):
        return {"runner": Mount(runner["runner"], f"{JOB_ROOT}/runner/runner")}, None
    return {}, runner.get("skip") or "not attempted"


def plan_for(
    settings: Settings, device: str, mounts: dict[str, Mount], scratch: Path, *, uid: int | None = None
) -> SandboxPlan:
    """The sandbox plan for one role process: mounts by name, secret paths, limits, uid, devices."""
    threads = torch_threads(settings)
    leased = uid is not None  # a uid of this job's lease: the zygote sweeps it when the role ends
    uid = sandbox_uid(settings) if uid is None else uid
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
        own_uid=leased and settings.sandbox != "off",
    )


def torch_threads(settings: Settings) -> int:
    """Intra-op threads per job: the machine's cores shared among the pool's processes."""
    return max(1, (os.cpu_count() or 1) // max(1, settings.worker_concurrency))


def memory_limit(settings: Settings) -> int:
    """REGCTL_SANDBOX_MEMORY_MB in bytes; 0 means three quarters of the machine's memory."""
    if settings.sandbox_memory_mb > 0:
        return settings.sandbox_memory_mb * 1024 * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 3 // 4


def secret_paths(settings: Settings) -> list[str]:
    """Host paths a sandbox must never see: registry home, database, store, signing key, LibTorch cache,
    homes."""
    paths = [str(settings.home), str(default_cache_dir(settings)), os.path.expanduser("~"), "/root", "/home"]
    paths.append(str(settings.signing_key_path.parent))  # the attestation key, wherever it lives
    store = settings.artifact_store
    if "://" not in store or store.startswith("file://"):
        paths.append(store.removeprefix("file://"))
    url = settings.database_url
    if url.startswith("sqlite:///"):
        paths.append(os.path.dirname(os.path.abspath(url.removeprefix("sqlite:///"))))
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

    Opened like every file a sandbox left (`open_regular`: no link, no FIFO that would block), and
    the model's escape sequences, bidi overrides and other hidden characters come back as visible
    escapes (registry/text.py); line breaks stay.
    """
    handle = open_regular(path)
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


def _verdict(judge_dir: Path, sealed: _Sealed | None, sandbox: dict[str, Any]) -> JudgedJob:
    """Read the judge's result.json and locate the artifact files it proved.

    The artifacts stay where the builder wrote them; the judge proved them there and named them,
    and a file counts as proved only if the sha256 the judge ran is the one sealed before the
    battery existed. The pipeline keeps the exported program only if its stored sha256 is the one
    proved, and queues a validate job when the TorchScript artifact's is not.
    """
    data = read_regular(judge_dir / RESULT_FILE, MAX_RESULT_BYTES)
    if data is None:
        return _failed("the judge wrote no result", sandbox)
    try:
        result = json.loads(data)
        report = dict(result["report"])
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        return _failed(f"the judge's result cannot be read: {exc}", sandbox)
    report = trim_report(scrub(report))
    report["sandbox"] = sandbox
    ok = bool(result.get("ok"))
    torchscript = _proved_file(sealed, report, "torchscript") if ok else None
    exported = (
        _proved_file(sealed, report, "exported") if ok and (report.get("export") or {}).get("ok") else None
    )
    if ok and torchscript is None and result.get("method"):
        return _failed("the judge accepted an artifact the builder did not seal", sandbox)
    if exported is None and (report.get("export") or {}).get("ok"):
        report["export"].update(ok=False, error="the exported program the judge ran is not the one sealed")
    retry = trim_report(scrub(result["retry"])) if not ok and isinstance(result.get("retry"), dict) else None
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
        seals=_seals(sealed, torchscript, exported),
    )


def _proved_file(sealed: _Sealed | None, report: dict[str, Any], key: str) -> Path | None:
    """The sealed file the judge proved as `key`, if its sha256 is the sealed one; never a path or link."""
    proved = report.get("proved") or {}
    name, sha256 = proved.get(f"{key}_file"), proved.get(key)
    found = sealed.files.get(name) if sealed is not None and isinstance(name, str) else None
    if sealed is None or found is None or found.sha256 != sha256:
        return None
    return regular(sealed.directory / name)


def _seals(sealed: _Sealed | None, *paths: Path | None) -> dict[Path, SealedFile]:
    """What the seal found for each of these proved files."""
    if sealed is None:
        return {}
    return {p: sealed.files[p.name] for p in paths if p is not None and p.parent == sealed.directory}
