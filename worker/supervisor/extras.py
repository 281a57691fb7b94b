"""Which optional formats this worker can build: looked up without importing them.

The supervisor never imports torch, and a runtime's import costs seconds; `importlib.util.find_spec`
only asks where a module would come from. A worker without an extra says so at start-up, and a job
asking for that format records why it was not built (format_stage.py) and stays ready.
"""

from __future__ import annotations

import importlib.util

from regctl.registry.formats import EXTRAS, FORMATS


def missing_extra(fmt: str) -> str | None:
    """Why this worker cannot build `fmt` ("this worker lacks onnxruntime (pip install ...)"), or None."""
    modules, extra = EXTRAS.get(fmt, ((), ""))
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken install, or a finder that refuses the name
            found = False
        if not found:
            return f"this worker lacks {module} (pip install '{extra}')"
    return None


def format_lines() -> list[str]:
    """Lines for a worker's start-up, after the sandbox's: the formats it builds, then each it cannot."""
    built = [fmt for fmt in FORMATS if missing_extra(fmt) is None]
    lines = ["formats: " + ", ".join(built)]
    lines += [f"  NOT BUILT: {fmt}: {missing_extra(fmt)}" for fmt in FORMATS if fmt not in built]
    return lines
