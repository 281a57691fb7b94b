"""Which protections this machine allows: a sandbox set up once, with nothing run inside it.

`regctl worker` prints the answer at start-up and `regctl sandbox` shows it on demand. The probe
forks the calling process (trusted code only: no model, no torch) and goes through the same
confinement steps as a job's role process, then reports what the sandbox's init said.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from regctl.registry.settings import Settings
from regctl.worker.sandbox.launch import launch
from regctl.worker.sandbox.plan import JOB_ROOT, Mount


def probe(settings: Settings) -> dict[str, Any]:
    """The protections a job would get here: the report's sandbox entry, plus `refused` in strict mode."""
    from regctl.worker.supervisor import WorkDir, plan_for, sandbox_uid

    with tempfile.TemporaryDirectory(prefix="regctl-probe-") as tmp:
        root = Path(tmp)
        (root / "model").mkdir()
        work = WorkDir.create(root, root / "model", None, sandbox_uid(settings))
        out = Mount(str(work.side), f"{JOB_ROOT}/out", writable=True)
        plan = plan_for(settings, "cpu", {"out": out}, root / "root-model")
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            launch(plan, "probe", {}, write_end)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            first = pipe.readline().decode("utf-8", "replace").strip()
        os.waitpid(pid, 0)
    if first.startswith("S "):
        return json.loads(first[2:])
    reason = first[2:] if first.startswith("E ") else "the sandbox's init said nothing"
    return {"mode": settings.sandbox, "refused": reason, "missing": [reason]}


def describe(protections: dict[str, Any]) -> list[str]:
    """Lines for a terminal: one per protection, then what is missing."""
    if protections.get("refused"):
        return [f"sandbox {protections['mode']}: refused: {protections['refused']}"]
    limits = protections.get("limits") or {}
    lines = [
        f"sandbox: {protections['mode']}",
        f"  network:      {protections['network']}",
        f"  file system:  {protections['filesystem']}",
        f"  uid:          {protections['uid']}",
        f"  environment:  {protections['environment']}",
        f"  processes:    {protections['process_tree']}",
        "  limits:       " + (", ".join(f"{k.replace('_', ' ')} {v}" for k, v in limits.items()) or "none"),
    ]
    lines += [f"  NOT IN FORCE: {m}" for m in protections.get("missing") or []]
    return lines
