"""AOTInductor packages: the exported program compiled to native code, proved like a TorchScript file.

Runs in its own sandboxed role process (worker/supervisor/format_stage.py starts it after the
judge), which never imports model code: it loads the exported program the judge already proved
(`model.pt2` from the model process, only if its sha256 is the proved one and program_check.py
passes it again, tensors and plain data only), compiles it
with `torch._inductor.aoti_compile_and_package`, then loads the package with
`torch._inductor.aoti_load_package` and runs the whole battery against the eager outputs, then runs
it again in C++ (libtorch_runner.cpp with `aoti`, through torch::inductor::AOTIModelPackageLoader).
The compiler writes only under this process's /tmp (the job's own scratch), so no job can leave a
compiled kernel behind for another.

Compiling here and not in the model process is deliberate: a package is native code that the
checks load and run, and code the model process could have chosen must never run where verdicts are
written. What the model process contributes is the exported program, which is data.

The report section (`aoti`): requested, ok, error, failed_input, detail, notes, compile_s,
battery_s, max_abs_error, max_rel_error, cases (per input, as for candidates), libtorch (the C++
section, as libtorch.py writes it), latency_ms (median, on the same input as eager and TorchScript),
sha256, file and warnings (what the compiler warned, de-duplicated). A failure here never fails the
job: the TorchScript artifact stands on its own.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from regctl.registry.digests import sha256_file
from regctl.registry.spec import ModelSpec
from regctl.worker.contract import PACKAGE_FILE, empty_aoti_section, empty_section
from regctl.worker.engine.battery import BatteryCase
from regctl.worker.engine.capture import describe_exception, one_line
from regctl.worker.engine.exported import quiet_torch
from regctl.worker.judge.format_battery import prove_on_battery
from regctl.worker.judge.libtorch import Runner, run_libtorch_stage
from regctl.worker.judge.proved_program import NotProved, load_proved_program

MAX_WARNINGS = 20


def compile_and_judge(
    program: Path,
    expected_sha256: str,
    spec: ModelSpec,
    battery: list[BatteryCase],
    reference: list[Any],
    out_dir: Path,
    device: torch.device,
    runner: Runner | str,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Compile the proved exported program into a package in out_dir and judge it; the report section."""
    section = empty_aoti_section(True)
    try:
        exported = load_proved_program(program, expected_sha256, built="compiled")
    except NotProved as exc:
        section["error"] = str(exc)
        return section
    progress("aoti: compiling")
    started = time.perf_counter()
    package = out_dir / PACKAGE_FILE
    try:
        with quiet_torch(), warnings.catch_warnings(record=True) as caught:
            # torch's own deprecation notices from inside the compiler are noise, never an error here.
            warnings.simplefilter("always")
            _compile(exported, package)
        section["warnings"] = sorted({one_line(str(w.message)) for w in caught})[:MAX_WARNINGS]
    except Exception as exc:
        section["error"] = f"AOTInductor compilation failed: {describe_exception(exc)}"
        section["detail"] = str(exc)[:4000]
        return section
    finally:
        section["compile_s"] = round(time.perf_counter() - started, 4)
    section.update(sha256=sha256_file(package), file=package.name, size_bytes=package.stat().st_size)
    return judge_package(section, package, spec, battery, reference, device, runner, progress)


def _compile(exported: Any, package: Path) -> None:
    # lazy: Inductor costs ~1.9 s to import (measured, after torch), only the aoti role uses it, and
    # the zygote, which imports this module, would pay it and hand it to every role it forks
    import torch._inductor
    import torch._inductor.config

    # One compile thread: a pool of compile workers would be more processes than the sandbox allows.
    torch._inductor.config.compile_threads = 1
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "inductor"))
    torch._inductor.aoti_compile_and_package(exported, package_path=str(package))


def judge_package(
    section: dict[str, Any],
    package: Path,
    spec: ModelSpec,
    battery: list[BatteryCase],
    reference: list[Any],
    device: torch.device,
    runner: Runner | str,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Load the package, run the battery in Python and then in C++; fills and returns `section`."""
    import torch._inductor  # lazy: see _compile

    try:
        loaded = torch._inductor.aoti_load_package(str(package))
    except Exception as exc:
        section["error"] = f"the package does not load: {describe_exception(exc)}"
        return section
    what = "the AOTInductor package"
    if not prove_on_battery(section, loaded, what, spec, battery, reference, device, progress, stage="aoti"):
        return section
    del loaded
    v = spec.validation
    if isinstance(runner, str):
        section["libtorch"] = empty_section(runner)
    else:
        section["libtorch"] = run_libtorch_stage(
            package, battery, reference, v.rtol, v.atol, progress, device=device, runner=runner, kind="aoti"
        )
    libtorch = section["libtorch"]
    if libtorch["ran"] and not libtorch["ok"]:
        section["error"] = f"the package runs in Python but not in LibTorch: {libtorch['error']}"
        return section
    section["ok"] = True
    return section
