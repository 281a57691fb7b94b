"""The format stages of a convert job, on the supervisor's side: after the judge, one sandbox each.

For each format the spec asks for that is built from the exported program (`aoti`, `executorch`,
`onnx`; registry/formats.py BUILT_FORMATS), and only when the judge proved that program, a fresh
sandboxed role of that name compiles or lowers it and proves the result in its own runtime
(worker/judge/aoti.py, worker/judge/format_role.py). The role sees the model's files and the
reference runner's outputs read-only, never imports model code, and writes only its own directory.

Whatever happens there, the TorchScript verdict stands: the report's section for the format says
what became of it, and the file is kept only when the role proved it and its bytes are the ones it
proved (checked again when the pipeline stores it). A worker without a format's extra install
records why the format was not built (extras.py) and starts no role for it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from regctl.registry.formats import BUILT_FORMATS
from regctl.registry.settings import Settings
from regctl.registry.spec import ModelSpec
from regctl.worker.contract import FORMAT_FILES, FORMAT_NAMES, empty_format_section, format_result_file
from regctl.worker.sandbox.client import shared_zygote
from regctl.worker.sandbox.plan import JOB_ROOT, Mount
from regctl.worker.supervisor.extras import missing_extra
from regctl.worker.supervisor.files import handed_outputs, read_regular, regular
from regctl.worker.supervisor.supervisor import (
    JudgedJob,
    WorkDir,
    plan_for,
    role_failure,
    runner_mounts,
    scrub,
)

logger = logging.getLogger(__name__)
MAX_SECTION_BYTES = 16 * 1024 * 1024
STAGE_NAMES = {
    "aoti": "the AOTInductor stage",
    "executorch": "the ExecuTorch stage",
    "onnx": "the ONNX stage",
}


def add_formats(
    settings: Settings,
    spec: ModelSpec,
    work: WorkDir,
    judged: JudgedJob,
    progress: Callable[[str], None],
    check: Callable[[], None],
) -> JudgedJob:
    """The judged conversion with a section for each built format it asked for, and the files proved."""
    for fmt in BUILT_FORMATS:
        if spec.wants(fmt) and judged.ok and judged.reference_dir is not None:
            judged = add_format(fmt, settings, spec, work, judged, progress, check)
    return judged


def add_format(
    fmt: str,
    settings: Settings,
    spec: ModelSpec,
    work: WorkDir,
    judged: JudgedJob,
    progress: Callable[[str], None],
    check: Callable[[], None],
) -> JudgedJob:
    """One format's stage: its section in the report, and its file when it was proved."""
    assert judged.reference_dir is not None
    report = dict(judged.report)
    export = report.get("export") or {}
    proved = report.get("proved") or {}
    if judged.exported_path is None or not export.get("ok"):
        why = one_line(export.get("error") or "torch.export produced no program")
        report[fmt] = empty_format_section(fmt, True, f"not exportable, so no {FORMAT_NAMES[fmt]}: {why}")
        logger.info("%s: %s", fmt, report[fmt]["error"])
        return dataclasses.replace(judged, report=report)
    lacking = missing_extra(fmt) or _not_on_device(fmt, spec)
    if lacking:
        report[fmt] = empty_format_section(fmt, True, f"not built: {lacking}")
        logger.warning("%s: %s", fmt, report[fmt]["error"])
        return dataclasses.replace(judged, report=report)
    progress(f"{fmt}: starting")
    out = work.output(fmt, fmt)
    mounts = {
        "model": Mount(str(work.model), f"{JOB_ROOT}/model"),
        "candidates": Mount(str(judged.exported_path.parent), f"{JOB_ROOT}/candidates"),
        "reference": Mount(str(judged.reference_dir), f"{JOB_ROOT}/reference"),
        "out": Mount(str(out), f"{JOB_ROOT}/out", writable=True),
    }
    args: dict[str, Any] = {
        "kind": fmt,
        "spec": spec.to_dict(),
        "program": judged.exported_path.name,
        "sha256": proved.get("exported"),
        "seed": judged.seed,
    }
    if fmt == "aoti":  # the package is proved in C++ too
        extra_mounts, skip = runner_mounts(settings)
        mounts.update(extra_mounts)
        if skip:
            args["runner_skip"] = skip
    plan = plan_for(settings, spec.device, mounts, work.scratch(), uid=work.uids.get(fmt))
    outcome = shared_zygote().run(fmt, plan, args, progress, check, handed_outputs(judged.outputs))
    report.setdefault("sandbox", {})[fmt] = outcome.protections
    if not outcome.ok:
        report[fmt] = empty_format_section(fmt, True, role_failure(STAGE_NAMES[fmt], outcome, settings, out))
        logger.warning("%s: %s", fmt, report[fmt]["error"])
        return dataclasses.replace(judged, report=report)
    section = _read_section(fmt, out)
    report[fmt] = section
    built = regular(out / FORMAT_FILES[fmt]) if section.get("ok") else None
    if section.get("ok") and built is None:
        section.update(ok=False, error=f"{STAGE_NAMES[fmt]} proved a file it did not leave")
    logger.info("%s: %s", fmt, _log_line(fmt, section))
    if built is None:
        return dataclasses.replace(judged, report=report)
    report.setdefault("proved", {}).update({fmt: section.get("sha256"), f"{fmt}_file": FORMAT_FILES[fmt]})
    return dataclasses.replace(judged, report=report, built={**judged.built, fmt: built})


def _not_on_device(fmt: str, spec: ModelSpec) -> str | None:
    if fmt in ("executorch", "onnx") and spec.device != "cpu":
        name = FORMAT_NAMES[fmt]
        return f"the {name} is proved on the CPU, and this spec's program was exported on {spec.device}"
    return None


def _log_line(fmt: str, section: dict[str, Any]) -> str:
    if not section.get("ok"):
        return f"not kept: {section.get('error')}"
    build = section.get("build_s") if fmt != "aoti" else section.get("compile_s")
    return (
        f"proved on {len(section.get('cases') or [])} inputs in {section.get('runtime')}; "
        f"built in {build} s, {section.get('size_bytes')} bytes, {section.get('latency_ms')} ms"
    )


def one_line(text: str) -> str:
    """The first line of an error (the export's can carry torch's explanation below it)."""
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else str(text)


def _read_section(fmt: str, out: Path) -> dict[str, Any]:
    stage = STAGE_NAMES[fmt]
    data = read_regular(out / format_result_file(fmt), MAX_SECTION_BYTES)
    if data is None:
        return empty_format_section(fmt, True, f"{stage} wrote no result")
    try:
        section = json.loads(data)
    except ValueError as exc:
        return empty_format_section(fmt, True, f"{stage}'s result cannot be read: {exc}")
    if not isinstance(section, dict):
        return empty_format_section(fmt, True, f"{stage}'s result is not an object")
    base = empty_format_section(fmt, True)
    merged = {**base, **{k: v for k, v in section.items() if k in base}}
    merged["ok"] = section.get("ok") is True
    if os.path.basename(str(merged.get("file") or FORMAT_FILES[fmt])) != FORMAT_FILES[fmt]:
        merged.update(ok=False, error=f"{stage} named an unexpected file")
    return scrub(merged)
