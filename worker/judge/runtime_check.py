"""A TorchScript candidate proven once, in the runtime that deploys it.

Python's `torch.jit.load` and the LibTorch runner execute the same serialized graph on the same C++
interpreter, so running the whole battery through both proves little the second time. Where the
runner exists, a candidate runs its inputs there (libtorch.py), and each output is compared with
eager here; Python then only loads the file and runs one input, to confirm the two runtimes agree:
the smallest (BERT-base: batch 1, seq 8, where the first input, at the opt shape, took 0.2 s).
Where there is no runner (no compiler, REGCTL_LIBTORCH=0, inputs it cannot exchange), the candidate
runs its inputs in Python instead, and the result says why.

The C++ run comes first, before Python loads the file, so the weights are never in memory twice.
The file is hashed (what the report says was proved) in a thread while the runner, another process,
runs it: the supervisor sealed it, so nothing changes it meanwhile (0.26 s of BERT-base's 438 MB).
A file under `HASH_INLINE_BYTES` is hashed at once instead: a thread's start and join cost a small
candidate 0.6 ms, against 17 us for hashing its 3 KB (measured).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from regctl.registry.digests import sha256_file
from regctl.registry.spec import ModelSpec
from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.capture import describe_exception
from regctl.worker.judge.evaluate import CandidateCheck, CaseResult, check_candidate
from regctl.worker.judge.libtorch import CaseOutcome, Runner, run_libtorch_stage

HASH_INLINE_BYTES = 4 << 20  # hashed in about a millisecond: not worth a thread


class ArtifactLoadError(Exception):
    """Raised when torch.jit.load cannot load a candidate's file in Python."""


def _load(path: Path, device: torch.device) -> Any:
    try:
        return torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        raise ArtifactLoadError(describe_exception(exc)) from exc


@dataclass(frozen=True)
class RuntimeCheck:
    """A candidate's check, the runtime that ran its inputs, and the loaded module."""

    check: CandidateCheck
    runtime: str  # "libtorch" or "python"
    loaded: Any  # the module torch.jit.load returned
    sha256: str  # of the file it ran
    section: dict[str, Any] | None = None  # the LibTorch run's section, when it ran
    note: str | None = None  # why Python ran the inputs, when it did


def check_in_runtime(
    path: Path,
    name: str,
    cases: list[BatteryCase],
    expected: list[Any],
    spec: ModelSpec,
    device: torch.device,
    runner: Runner | str,
    progress: Callable[[str], None],
    *,
    process: subprocess.Popen[bytes] | None = None,
) -> RuntimeCheck:
    """Run `cases` in LibTorch when `runner` is one (else in Python, saying why) and compare with eager.

    `process`: `runner` already started and waiting for its artifact (warm_runner.py, whose pool ends
    it if this does not); only ever given with a runner. Raises ArtifactLoadError when the file
    cannot be read or does not load in Python; what `progress` raises propagates.
    """
    with _hashing(path) as digest:
        if isinstance(runner, str):
            why = f"LibTorch runner unavailable: {runner}"
            return _in_python(path, name, cases, expected, spec, device, progress, why, digest)
        v = spec.validation
        outcomes: list[CaseOutcome] = []
        progress(f"{name}: battery 0/{len(cases)} in LibTorch")
        section = run_libtorch_stage(
            path,
            cases,
            expected,
            v.rtol,
            v.atol,
            progress,
            device=device,
            runner=runner,
            outcomes=outcomes,
            process=process,
        )
        if section.get("skipped"):
            why = f"LibTorch skipped: {section['skipped']}"
            return _in_python(path, name, cases, expected, spec, device, progress, why, digest)
        progress(f"{name}: battery {len(cases)}/{len(cases)}")
        check = _from_outcomes(outcomes, section)
        loaded = _load(path, device)
        if check.ok and cases:
            # one input in Python: the runtime a Python deployment uses must agree with C++
            i = smallest(cases)
            one, want = cases[i : i + 1], expected[i : i + 1]
            once = check_candidate(
                loaded, one, want, device, rtol=v.rtol, atol=v.atol, name=name, progress=_quiet
            )
            if not once.ok:
                check.fail(str(once.failed_input), f"{once.error} (in Python)")
        return RuntimeCheck(check, "libtorch", loaded, _sha256(digest), section=section)


def smallest(cases: list[BatteryCase]) -> int:
    """The index of the case whose tensors hold the fewest elements (the first of those)."""
    return min(range(len(cases)), key=lambda i: sum(a.numel() for a in cases[i].args if torch.is_tensor(a)))


@contextmanager
def _hashing(path: Path) -> Iterator[Future[str]]:
    """The file's sha256, computed beside the block in a thread, or before it when the file is small."""
    try:
        small = path.stat().st_size < HASH_INLINE_BYTES
    except OSError:
        small = True  # hashing it raises the same error, which _sha256 reports
    if not small:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="regctl-hash") as pool:
            yield pool.submit(sha256_file, path)
        return
    done: Future[str] = Future()
    try:
        done.set_result(sha256_file(path))
    except OSError as exc:
        done.set_exception(exc)
    yield done


def _sha256(digest: Future[str]) -> str:
    """The hash of the file run, once computed; ArtifactLoadError when the file could not be read."""
    try:
        return digest.result()
    except OSError as exc:
        raise ArtifactLoadError(describe_exception(exc)) from exc


def _in_python(
    path: Path,
    name: str,
    cases: list[BatteryCase],
    expected: list[Any],
    spec: ModelSpec,
    device: torch.device,
    progress: Callable[[str], None],
    why: str,
    digest: Future[str],
) -> RuntimeCheck:
    """Every input in Python, where LibTorch cannot run them; `why` goes into the report."""
    loaded = _load(path, device)
    v = spec.validation
    check = check_candidate(
        loaded, cases, expected, device, rtol=v.rtol, atol=v.atol, name=name, progress=progress
    )
    return RuntimeCheck(check, "python", loaded, _sha256(digest), note=why)


def _quiet(message: str) -> None:
    return None


def _from_outcomes(outcomes: list[CaseOutcome], section: dict[str, Any]) -> CandidateCheck:
    check = CandidateCheck()
    if not outcomes and not section.get("ok"):
        check.ok, check.error = False, f"does not run in LibTorch: {section.get('error')}"
        return check
    for outcome in outcomes:
        if outcome.comparison is None:
            check.fail(outcome.case.label, f"{outcome.error} (in LibTorch)")
            continue
        check.results.append(CaseResult(outcome.case, outcome.comparison))
        if outcome.error is not None:
            check.fail(outcome.case.label, outcome.error)
    return check
