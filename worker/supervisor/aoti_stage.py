"""The AOTInductor stage of a convert job, on the supervisor's side: after the judge, in a third sandbox.

When the spec asks for `aoti` and the judge proved the exported program, a fresh sandboxed `aoti`
role (worker/judge/aoti.py) compiles that program and proves the package; it sees the model's files
and the model process's outputs read-only and writes only its own directory. Whatever happens there,
the TorchScript verdict stands: the report's `aoti` section says what became of the package, and the
package is kept only when the role proved it and its bytes are the ones it proved.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from regctl.registry.settings import Settings
from regctl.registry.spec import ModelSpec
from regctl.worker.contract import AOTI_RESULT_FILE, PACKAGE_FILE, empty_aoti_section
from regctl.worker.sandbox.client import shared_zygote
from regctl.worker.sandbox.plan import JOB_ROOT, Mount
from regctl.worker.supervisor.files import read_regular, regular
from regctl.worker.supervisor.supervisor import (
    JudgedJob,
    WorkDir,
    plan_for,
    role_failure,
    runner_mounts,
    scrub,
)

MAX_SECTION_BYTES = 16 * 1024 * 1024


def add_aoti(
    settings: Settings,
    spec: ModelSpec,
    work: WorkDir,
    judged: JudgedJob,
    progress: Callable[[str], None],
    check: Callable[[], None],
) -> JudgedJob:
    """The judged conversion with its `aoti` section, and the package when one was proved."""
    if not spec.wants("aoti") or not judged.ok or judged.reference_dir is None:
        return judged
    report = dict(judged.report)
    export = report.get("export") or {}
    proved = report.get("proved") or {}
    if judged.exported_path is None or not export.get("ok"):
        why = export.get("error") or "torch.export produced no program"
        report["aoti"] = empty_aoti_section(True, f"not exportable, so no AOTInductor package: {why}")
        return dataclasses.replace(judged, report=report)
    progress("aoti: starting")
    out = work.output("aoti", "aoti")
    mounts = {
        "model": Mount(str(work.model), f"{JOB_ROOT}/model"),
        "candidates": Mount(str(judged.exported_path.parent), f"{JOB_ROOT}/candidates"),
        "reference": Mount(str(judged.reference_dir), f"{JOB_ROOT}/reference"),
        "out": Mount(str(out), f"{JOB_ROOT}/out", writable=True),
    }
    args: dict[str, Any] = {
        "kind": "aoti",
        "spec": spec.to_dict(),
        "program": judged.exported_path.name,
        "sha256": proved.get("exported"),
        "seed": judged.seed,
    }
    extra_mounts, skip = runner_mounts(settings)
    mounts.update(extra_mounts)
    if skip:
        args["runner_skip"] = skip
    plan = plan_for(settings, spec.device, mounts, work.scratch("aoti"), uid=work.uids.get("aoti"))
    outcome = shared_zygote().run("aoti", plan, args, progress, check)
    report.setdefault("sandbox", {})["aoti"] = outcome.protections
    if not outcome.ok:
        failure = role_failure("the AOTInductor stage", outcome, settings, out)
        report["aoti"] = empty_aoti_section(True, failure)
        return dataclasses.replace(judged, report=report)
    section = _read_section(out)
    report["aoti"] = section
    package = regular(out / PACKAGE_FILE) if section.get("ok") else None
    if section.get("ok") and package is None:
        section.update(ok=False, error="the AOTInductor stage proved a package it did not leave")
    if package is not None:
        report.setdefault("proved", {}).update(aoti=section.get("sha256"), aoti_file=PACKAGE_FILE)
    return dataclasses.replace(judged, report=report, aoti_path=package)


def _read_section(out: Path) -> dict[str, Any]:
    data = read_regular(out / AOTI_RESULT_FILE, MAX_SECTION_BYTES)
    if data is None:
        return empty_aoti_section(True, "the AOTInductor stage wrote no result")
    try:
        section = json.loads(data)
    except ValueError as exc:
        return empty_aoti_section(True, f"the AOTInductor stage's result cannot be read: {exc}")
    if not isinstance(section, dict):
        return empty_aoti_section(True, "the AOTInductor stage's result is not an object")
    base = empty_aoti_section(True)
    merged = {**base, **{k: v for k, v in section.items() if k in base}}
    merged["ok"] = section.get("ok") is True
    if os.path.basename(str(merged.get("file") or PACKAGE_FILE)) != PACKAGE_FILE:
        merged.update(ok=False, error="the AOTInductor stage named an unexpected file")
    return scrub(merged)
