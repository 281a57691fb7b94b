"""What the roles of a job hand each other, as plain data: file names and report sections. No torch.

The supervisor (worker/supervisor/), the model side (worker/model/) and the judge
(worker/judge/) each read these names here, so none imports another to learn them. The supervisor
fills in the empty sections when a stage could not start (its process died, the program was not
exportable); the judge fills them in as the stages run (libtorch.py, aoti.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The candidate builder's and the reference runner's outputs (worker/model/model_side.py).
BUILDER_FILE = "builder.json"  # the candidate builder's ModelSide
REFERENCE_FILE = "reference.pt"  # the reference runner's eager outputs
# The eager outputs in memory: the supervisor hands the reference runner, then the judge and each
# format stage, one sealed file under this name (worker/sandbox/launch.py), so they never touch the
# disk; a role without it (in-process conversion) uses REFERENCE_FILE in the reference directory.
OUTPUTS = "outputs"
HANDED_DIR = Path("/proc/self/fd")  # where a role finds each file handed to it, by its descriptor
REFERENCE_SIDE_FILE = "reference.json"  # the reference runner's ModelSide
COVERAGE_FILE = "coverage.json"  # the reference runner's coverage and decision points (recorder.py)
EXPORTED_FILE = "model.pt2"  # the candidate builder's exported program

# The judge's verdict, and the log every role writes beside its outputs (never sealed).
RESULT_FILE = "result.json"
ROLE_LOG = "role.log"

PACKAGE_FILE = "model.aoti.pt2"  # what the aoti role compiles into its output directory

# What each format stage (aoti, executorch, onnx) leaves in its output directory: the built file,
# and its verdict in `<format>.json`.
FORMAT_FILES = {"aoti": PACKAGE_FILE, "executorch": "model.pte", "onnx": "model.onnx"}
# The runtime that proves each format, as the report names it.
FORMAT_RUNTIMES = {
    "aoti": "torch._inductor (Python) and AOTIModelPackageLoader (C++)",
    "executorch": "executorch.runtime (XNNPACK, portable kernels for the rest)",
    "onnx": "onnxruntime.InferenceSession (CPUExecutionProvider)",
}
FORMAT_NAMES = {"aoti": "AOTInductor package", "executorch": "ExecuTorch program", "onnx": "ONNX model"}


def format_result_file(fmt: str) -> str:
    """The name of a format stage's verdict file."""
    return f"{fmt}.json"


# The candidates `--method auto` tries, preferred first.
PREFERENCE = ("script", "trace")
# In a job's first round a candidate after the preferred one is saved and judged (on the deciding
# inputs) only for weights up to this size: beyond it, another copy of the weights on disk and in
# LibTorch, and compiling it (0.3 s on BERT-base, up to 1.7 s on BERT-large), costs more than knowing
# how a candidate that is not kept would have done. It is held back, neither compiled nor saved, and
# compiled, saved and judged in full in the round that runs should the preferred candidate fail.
UNKEPT_MAX_BYTES = 100_000_000


def candidate_order(requested: str) -> tuple[str, ...]:
    """The candidates tried for a requested method, preferred first."""
    return PREFERENCE if requested == "auto" else (requested,)


def empty_section(skipped: str | None = "not attempted") -> dict[str, Any]:
    """The LibTorch stage's report section when it did not run (or has not run yet)."""
    return {
        "ran": False,
        "ok": False,
        "skipped": skipped,
        "error": None,
        "detail": None,
        "cases": 0,
        "failures": 0,
        "failed_input": None,
        "max_abs_error": None,
        "max_rel_error": None,
        "build_s": 0.0,
        "run_s": 0.0,
    }


def empty_format_section(fmt: str, requested: bool, error: str | None = None) -> dict[str, Any]:
    """A format's report section before (or without) its build: `aoti`'s has the LibTorch stage too.

    requested, ok, error, failed_input, detail, notes, build_s (compile_s for aoti), battery_s,
    max_abs_error, max_rel_error, cases (per input, as for candidates), runtime (what proved it),
    latency_ms (median, on the input eager and TorchScript were timed on), size_bytes, io (the
    file's inputs and outputs, onnx only), sha256, file and warnings (what the builder warned,
    de-duplicated).
    """
    if fmt == "aoti":
        return empty_aoti_section(requested, error)
    # the file's own inputs and outputs as its runtime reports them: {"inputs": [{name, dtype,
    # shape}], "outputs": [...]}; shape entries are ints or dim names (export-triton reads them)
    return _section(fmt, requested, error, build_s=None, io=None)


def empty_aoti_section(requested: bool, error: str | None = None) -> dict[str, Any]:
    """The `aoti` report section before (or without) a compile: not requested, or why it did not run."""
    return _section("aoti", requested, error, compile_s=None, libtorch=empty_section())


def _section(fmt: str, requested: bool, error: str | None, **own: Any) -> dict[str, Any]:
    return {
        "requested": requested,
        "ok": False,
        "error": error if requested else None,
        "failed_input": None,
        "detail": None,
        "notes": [],
        "battery_s": None,
        "max_abs_error": None,
        "max_rel_error": None,
        "cases": [],
        "runtime": FORMAT_RUNTIMES[fmt],
        "latency_ms": None,
        "size_bytes": None,
        "sha256": None,
        "file": None,
        "warnings": [],
        **own,
    }


def handed_path(fd: int) -> str:
    """How a role names the file it was handed as descriptor `fd` (worker/sandbox/launch.py)."""
    return str(HANDED_DIR / str(fd))


def handed_file(paths: dict[str, str], name: str) -> Path | None:
    """The file handed to this role as `name` (a `handed_path` in its paths), or None."""
    return Path(paths[name]) if name in paths else None
