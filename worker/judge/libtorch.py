"""The LibTorch stage: the accepted artifact must load and run in C++, with no Python interpreter.

An artifact that passes the Python stage can still depend on Python: a custom operator registered
from Python with `torch.library`, a class registered by an imported extension. Deployed to
LibTorch or Triton it would fail to load. This stage runs it where it will be deployed.

The runner (libtorch_runner.cpp) is compiled with g++ (or c++, or $CXX) against the LibTorch that
ships inside the installed torch wheel: its headers under torch/include, its libraries under
torch/lib (rpath'd, so the binary finds them without LD_LIBRARY_PATH). It is built once and
cached under `$REGCTL_LIBTORCH_CACHE` (default `$XDG_CACHE_HOME/regctl/libtorch-runner`, i.e.
~/.cache/regctl/libtorch-runner: a build depends on the machine, not on a registry, so every
REGCTL_HOME on a machine shares it) in `<torch version>-<hash of source, flags, torch/lib>/runner`.
Concurrent workers serialise the build on a lock file next to it and the binary appears by an
atomic rename; a process remembers a failed build and does not retry it.

Data exchange, checked with torch 2.13: the artifact's path is the first line of the runner's
standard input (so a runner can be started before its artifact is known: warm_runner.py), then the
battery's arguments follow as one `torch.save` stream (a list of cases, each a list of tensors and
Python int/float/bool) that C++ reads with `torch::pickle_load`. The runner writes one
`torch::pickle_save` stream to the standard output it started with (anything the artifact prints
goes to stderr instead): a list of (ok, value) tuples, value being forward()'s output (tensors moved
to the CPU; tuples, named tuples, lists, dicts, scalars, strings and None all round-trip) or the
C++ exception message.
Python reads it with `torch.load(weights_only=True)`; the only globals C++'s pickler emits are
torch.jit._pickle's type-tag helpers, which return their argument unchanged and are allowed
explicitly. Outputs are compared with eager exactly as in the Python stage (compare.py).

The report section (`run_libtorch_stage`): ran, ok, skipped (the reason, or None), error, detail,
cases, failures, failed_input, max_abs_error, max_rel_error, build_s (compile time when this call
built the runner), run_s. Skipped is not a failure: with REGCTL_LIBTORCH=0 ("disabled"), with no
C++ compiler, when the build fails (with the compiler's first error lines), or when the runner
cannot exchange data (inputs of dtype uint16/32/64, float8 or complex32, which the C++
unpickler cannot read). `failure(section)` is the one-line error that fails the job when the stage
ran and the artifact did not load, raised, crashed or differed from eager.

The same runner proves AOTInductor packages (`kind="aoti"`, worker/judge/aoti.py): it loads them
with torch::inductor::AOTIModelPackageLoader, passes each case's tensors as a flat list and returns
the outputs flat, which are compared with the tensors of eager's output in pytree order.

`python -m regctl.worker.judge.libtorch` builds the runner ahead of time (for a worker image) and prints
its path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.jit import _pickle as jit_pickle
from torch.utils._pytree import tree_leaves

from regctl.worker.contract import empty_section
from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.devices import SEED
from regctl.worker.engine.runner_location import CACHE_ENV, SWITCH_ENV, default_cache_dir, enabled  # noqa: F401
from regctl.worker.judge.compare import compare_outputs

SOURCE = Path(__file__).with_name("libtorch_runner.cpp")
BUILD_TIMEOUT_S = 900.0
RUN_TIMEOUT_S = 1800.0
ERROR_LINES = 5
DETAIL_CHARS = 4000
# The runner's exit codes (libtorch_runner.cpp).
EXIT_LOAD_FAILED, EXIT_DATA_FAILED = 3, 4
_TYPE_TAG_HELPERS = [
    jit_pickle.restore_type_tag,
    jit_pickle.build_tensorlist,
    jit_pickle.build_intlist,
    jit_pickle.build_doublelist,
    jit_pickle.build_boollist,
]
_INTERPRETER_FAILURE = "The following operation failed in the TorchScript interpreter"
# What torch::pickle_load reads; newer dtypes (uint16-64, float8, complex32) use a rebuild function
# the C++ unpickler does not know, so a battery holding them skips the stage.
EXCHANGE_DTYPES = frozenset(
    [
        "bool",
        "uint8",
        "int8",
        "int16",
        "int32",
        "int64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    ]
)


class RunnerUnavailable(Exception):
    """Raised when the runner cannot be built here; the message is the reason the stage is skipped."""


@dataclass(frozen=True)
class Runner:
    """A built runner binary; `build_s` is the compile time when this call compiled it, else 0."""

    path: Path
    build_s: float = 0.0


_BUILT: dict[Path, Runner | RunnerUnavailable] = {}  # per process: built or failed, by binary path


def find_compiler() -> str | None:
    """The C++ compiler to build with: $CXX when set, else g++ or c++ on PATH."""
    cxx = os.environ.get("CXX")
    if cxx and shutil.which(cxx):
        return shutil.which(cxx)
    return shutil.which("g++") or shutil.which("c++")


def compile_command(compiler: str, source: Path, output: Path) -> list[str]:
    """The g++ command line that builds the runner against the LibTorch inside the torch wheel."""
    root = Path(torch.__file__).resolve().parent
    lib = root / "lib"
    return [
        compiler,
        "-std=c++20",
        "-O1",
        "-w",  # torch's headers warn a lot; only errors matter here
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        f"-I{root / 'include'}",
        f"-I{root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
        str(source),
        "-o",
        str(output),
        f"-L{lib}",
        f"-Wl,-rpath,{lib}",
        "-Wl,--no-as-needed",  # libtorch registers its operators from static initialisers
        "-ltorch",
        "-ltorch_cpu",
        "-lc10",
    ]


def runner_path(cache_dir: Path | None = None) -> Path:
    """The cached binary for this torch, this runner source and this torch/lib location."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(" ".join(compile_command("c++", SOURCE, Path("runner"))).encode())
    key = f"{torch.__version__}-{digest.hexdigest()[:16]}"
    return (cache_dir or default_cache_dir()) / key / "runner"


def build_runner(cache_dir: Path | None = None) -> Runner:
    """The runner binary, compiled on first use; raises RunnerUnavailable saying why it cannot be."""
    if not SOURCE.is_file():
        raise RunnerUnavailable(f"the runner source {SOURCE} is not installed (package data missing)")
    path = runner_path(cache_dir)
    known = _BUILT.get(path)
    if isinstance(known, RunnerUnavailable):
        raise known
    if known is not None and path.is_file():
        return Runner(path)
    try:
        runner = _build_locked(path)
    except RunnerUnavailable as exc:
        _BUILT[path] = exc
        raise
    _BUILT[path] = runner
    return runner


def _build_locked(path: Path) -> Runner:
    if path.is_file():
        return Runner(path)
    headers = Path(torch.__file__).resolve().parent / "include" / "torch" / "script.h"
    if not headers.is_file():
        raise RunnerUnavailable(f"the installed torch wheel has no LibTorch headers ({headers} is missing)")
    compiler = find_compiler()
    if compiler is None:
        raise RunnerUnavailable(
            "no C++ compiler found (looked for $CXX, g++ and c++ on PATH); install g++ to prove that "
            "artifacts run without Python"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunnerUnavailable(f"cannot create the runner cache {path.parent}: {exc}") from None
    with _file_lock(path.parent / "build.lock"):
        if path.is_file():  # another worker built it while we waited
            return Runner(path)
        return _compile(compiler, path)


def _compile(compiler: str, path: Path) -> Runner:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".runner-", suffix=".part")
    os.close(fd)
    started = time.perf_counter()
    try:
        try:
            done = subprocess.run(
                compile_command(compiler, SOURCE, Path(tmp)),
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise RunnerUnavailable(
                f"building the LibTorch runner took more than {BUILD_TIMEOUT_S:g}s"
            ) from None
        if done.returncode != 0:
            raise RunnerUnavailable(
                f"building the LibTorch runner with {compiler} failed: {_compiler_errors(done.stderr)}"
            )
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return Runner(path, time.perf_counter() - started)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compiler_errors(output: str) -> str:
    """The compiler's first error lines, joined on one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()] or lines[-ERROR_LINES:]
    return " | ".join(errors[:ERROR_LINES]) or "no output"


def failure(section: dict[str, Any]) -> str | None:
    """The job's one-line error when LibTorch ran and the artifact failed there; None otherwise."""
    if not section["ran"] or section["ok"]:
        return None
    return f"the artifact runs in Python but not in LibTorch: {section['error']}"


def resolve_runner(choice: Runner | str | None, cache_dir: Path | None = None) -> Runner | str:
    """A built runner, or the reason there is none (disabled, no compiler, a failed build)."""
    if choice is not None:
        return choice
    if not enabled():
        return f"disabled ({SWITCH_ENV}=0)"
    try:
        return build_runner(cache_dir)
    except RunnerUnavailable as exc:
        return str(exc)


@dataclass(frozen=True)
class CaseOutcome:
    """One case run in the C++ runner: its comparison with eager, or the error it raised."""

    case: BatteryCase
    comparison: Any  # compare.Comparison | None when the case raised
    error: str | None = None  # why it failed (raised, or differs from eager), None when it matched


def run_libtorch_stage(
    artifact_path: Path,
    battery: Sequence[BatteryCase],
    reference_outputs: Sequence[Any],
    rtol: float,
    atol: float,
    progress: Callable[[str], None],
    *,
    device: torch.device | str = "cpu",
    cache_dir: Path | None = None,
    runner: Runner | None = None,
    kind: str = "torchscript",
    outcomes: list[CaseOutcome] | None = None,
    process: subprocess.Popen[bytes] | None = None,
) -> dict[str, Any]:
    """Run the artifact at `artifact_path` on the battery in the C++ runner and compare with eager.

    `runner` is one built beforehand (the judge cannot build: the cache is outside its sandbox).
    `kind` is "torchscript" (torch::jit::load) or "aoti" (an AOTInductor package, whose outputs come
    back as a flat list of tensors and are compared with the tensors of eager's output, in order).
    `outcomes`, when given, receives each case's comparison (the judge's per-input record).
    `process` is a runner already started for this device and kind (warm_runner.py), used here: it
    gets the artifact, or is killed when the battery cannot be exchanged.
    """
    if runner is None:
        if not enabled():
            return empty_section(f"disabled ({SWITCH_ENV}=0)")
        progress("libtorch: runner")
        try:
            runner = build_runner(cache_dir)
        except RunnerUnavailable as exc:
            return empty_section(str(exc))
    section = {**empty_section(None), "build_s": round(runner.build_s, 4), "cases": len(battery)}
    progress(f"libtorch: battery of {len(battery)}")
    started = time.perf_counter()
    outcome = _execute(runner, Path(artifact_path), battery, str(device), kind, process)
    section["run_s"] = round(time.perf_counter() - started, 4)
    if isinstance(outcome, _Skip):
        return {**section, "skipped": outcome.reason, "cases": 0}
    section["ran"] = True
    if isinstance(outcome, _Failed):
        return {**section, "error": outcome.error, "detail": outcome.detail}
    if kind == "aoti":
        reference_outputs = [tensor_leaves(expected) for expected in reference_outputs]
    _compare(section, battery, reference_outputs, outcome, rtol, atol, outcomes)
    progress(f"libtorch: battery {len(battery)}/{len(battery)}")
    return section


@dataclass(frozen=True)
class _Skip:
    reason: str


@dataclass(frozen=True)
class _Failed:
    error: str
    detail: str | None = None


def tensor_leaves(value: Any) -> list[torch.Tensor]:
    """The tensors of a (nested) output in pytree order: what an AOTInductor package returns, flat."""
    return [leaf for leaf in tree_leaves(value) if isinstance(leaf, torch.Tensor)]


def start_process(runner: Runner, device: str, kind: str = "torchscript") -> subprocess.Popen[bytes]:
    """The runner started with its artifact to come on its standard input; raises OSError if it cannot.

    Threads as this process has them (the judge's share of the cores), set when it starts.
    """
    command = [str(runner.path), "-", "-", "-", device, str(SEED), kind]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    pipe = subprocess.PIPE
    return subprocess.Popen(command, stdin=pipe, stdout=pipe, stderr=pipe, env=env)


def discard(process: subprocess.Popen[bytes] | None) -> None:
    """Kill a started runner whose run was not collected (none, or cut short), and reap it."""
    if process is None or process.returncode is not None:
        return  # collected: communicate() set its exit code
    process.kill()
    process.communicate()


def _execute(
    runner: Runner,
    artifact: Path,
    battery: Sequence[BatteryCase],
    device: str,
    kind: str,
    process: subprocess.Popen[bytes] | None = None,
) -> list[tuple[bool, Any]] | _Skip | _Failed:
    """Run the runner once over the whole battery; its per-case results, or why there are none.

    `process` is one `start_process` started for this device and kind, still waiting (else one is
    started here).
    """
    dtypes = {
        str(a.dtype).removeprefix("torch.") for c in battery for a in c.args if isinstance(a, torch.Tensor)
    }
    odd = sorted(dtypes - EXCHANGE_DTYPES)
    if odd:
        discard(process)
        return _Skip(f"the LibTorch runner cannot read inputs of dtype {', '.join(odd)}")
    line = os.fsencode(artifact)
    if b"\n" in line:  # the path goes on one line (the judge's own sealed names never hold one)
        discard(process)
        return _Failed(f"the artifact's path {str(artifact)!r} holds a line break")
    if process is None:
        try:
            process = start_process(runner, device, kind)
        except OSError as exc:
            return _Skip(f"the LibTorch runner {runner.path} cannot be started: {exc}")
    cases = io.BytesIO()
    cases.write(line + b"\n")
    # Path and cases in on stdin, results out on stdout: pipes, so a large model's outputs never
    # touch the disk.
    try:
        torch.save([list(case.args) for case in battery], cases)
        stdout, stderr_bytes = process.communicate(cases.getvalue(), timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        discard(process)
        return _Failed(f"the LibTorch runner did not finish the battery within {RUN_TIMEOUT_S:g}s")
    except BaseException:
        discard(process)  # a cancelled job leaves no runner behind
        raise
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr_bytes)
    stderr = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode == EXIT_LOAD_FAILED:
        loader = "AOTIModelPackageLoader" if kind == "aoti" else "torch::jit::load"
        return _Failed(f"{loader} failed: {cpp_error_summary(stderr)}", stderr[:DETAIL_CHARS])
    if done.returncode == EXIT_DATA_FAILED:
        return _Skip(f"the LibTorch runner could not exchange data: {cpp_error_summary(stderr)}")
    if done.returncode != 0:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
        return _Failed(f"the LibTorch runner died with {how}: {cpp_error_summary(stderr)}", stderr or None)
    try:
        with torch.serialization.safe_globals(_TYPE_TAG_HELPERS):
            loaded = torch.load(io.BytesIO(done.stdout), weights_only=True)
    except Exception as exc:
        return _Skip(f"the LibTorch runner's results cannot be read: {type(exc).__name__}: {exc}")
    return [(bool(ok), value) for ok, value in loaded]


def _compare(
    section: dict[str, Any],
    battery: Sequence[BatteryCase],
    reference: Sequence[Any],
    results: list[tuple[bool, Any]],
    rtol: float,
    atol: float,
    outcomes: list[CaseOutcome] | None = None,
) -> None:
    """Fill the section from the per-case results: ok, first failure, failure count, worst errors."""
    max_abs = max_rel = 0.0
    for case, expected, (ran, actual) in zip(battery, reference, results, strict=True):
        if not ran:
            message = f"raised {cpp_error_summary(str(actual))} on input {case.label!r}"
            _fail(section, case.label, message, str(actual)[:DETAIL_CHARS])
            if outcomes is not None:
                outcomes.append(CaseOutcome(case, None, message))
            continue
        comparison = compare_outputs(actual, expected, rtol=rtol, atol=atol)
        max_abs, max_rel = max(max_abs, comparison.max_abs_error), max(max_rel, comparison.max_rel_error)
        differs = None
        if not comparison.ok:
            differs = f"differs from eager on input {case.label!r}: {comparison.reason}"
            _fail(section, case.label, differs)
        if outcomes is not None:
            outcomes.append(CaseOutcome(case, comparison, differs))
    section.update(ok=section["failures"] == 0, max_abs_error=max_abs, max_rel_error=max_rel)


def _fail(section: dict[str, Any], label: str, error: str, detail: str | None = None) -> None:
    if section["failures"] == 0:
        section.update(error=error, failed_input=label, detail=detail)
    section["failures"] += 1


def cpp_error_summary(message: str) -> str:
    """One line from a C++ exception message: the error itself, not TorchScript's traceback."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "no message"
    if lines[0].startswith(_INTERPRETER_FAILURE):
        return lines[-1]  # "RuntimeError: ..." comes after the TorchScript traceback
    return lines[0]


if __name__ == "__main__":
    built = build_runner()
    print(built.path)
