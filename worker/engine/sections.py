"""Report sections of stages that did not run, and the AOTInductor role's file names: no torch here.

The supervisor fills these in when a stage could not start (its process died, the program was not
exportable), and it must never import torch (worker/supervisor/aoti_stage.py); the engine fills them in as the
stages run (libtorch.py, aoti.py).
"""

from __future__ import annotations

from typing import Any

PACKAGE_FILE = "model.aoti.pt2"  # what the aoti role compiles into its output directory
RESULT_FILE = "aoti.json"  # and its verdict beside it


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


def empty_aoti_section(requested: bool, error: str | None = None) -> dict[str, Any]:
    """The `aoti` report section before (or without) a compile: not requested, or why it did not run."""
    return {
        "requested": requested,
        "ok": False,
        "error": error if requested else None,
        "failed_input": None,
        "detail": None,
        "notes": [],
        "compile_s": None,
        "battery_s": None,
        "max_abs_error": None,
        "max_rel_error": None,
        "cases": [],
        "libtorch": empty_section(),
        "latency_ms": None,
        "sha256": None,
        "file": None,
        "warnings": [],
    }
