"""Which protections this machine allows: a sandbox set up once, with nothing run inside it.

`regctl worker` prints the answer at start-up and `regctl sandbox` shows it on demand. The probe
forks the calling process (trusted code only: no model, no torch) and goes through the same
confinement steps as a job's role process, with the plan the supervisor would give it
(`plan_for`), then reports what the sandbox's init said. It lives with the supervisor, so the
sandbox package never imports its user.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from regctl.registry.settings import Settings
from regctl.worker.sandbox.launch import launch
from regctl.worker.sandbox.plan import JOB_ROOT, Mount
from regctl.worker.sandbox.uids import UidLease, job_uids
from regctl.worker.supervisor.supervisor import WorkDir, plan_for


def probe(settings: Settings) -> dict[str, Any]:
    """The protections a job would get here: the report's sandbox entry, plus `refused` in strict mode."""
    # uids leased as a job's are (uids.py), so the probe sees what a job's builder would
    with job_uids(settings.sandbox_uid, settings.sandbox != "off") as lease:
        return _probe(settings, lease)


def _probe(settings: Settings, lease: UidLease | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="regctl-probe-") as tmp:
        root = Path(tmp)
        (root / "model").mkdir()
        work = WorkDir.create(root, root / "model", None, lease.by_role if lease is not None else {})
        out = Mount(str(work.output("probe", "builder")), f"{JOB_ROOT}/out", writable=True)
        plan = plan_for(settings, "cpu", {"out": out}, work.scratch(), uid=work.uids.get("builder"))
        if lease is not None:
            plan = replace(plan, own_uid=True)
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
        f"  leftovers:    {protections.get('leftovers', 'not reported')}",
        f"  seccomp:      {protections.get('seccomp', 'not reported')}",
        f"  tracing:      {protections.get('dumpable', 'not reported')}",
        f"  descriptors:  {protections.get('descriptors', 'not reported')}",
        "  limits:       " + (", ".join(f"{k.replace('_', ' ')} {v}" for k, v in limits.items()) or "none"),
    ]
    lines += [f"  NOT IN FORCE: {m}" for m in protections.get("missing") or []]
    return lines
