"""What a sandboxed process may see and use: the plan the supervisor hands to the zygote.

Plain data only (it crosses a process boundary as JSON). The supervisor, which knows the registry's
settings, decides which host paths are secret (`masks`), which job directories the process gets
(`mounts`, by name) and the resource limits; the zygote adds the paths the Python interpreter
itself needs (`interpreter_paths`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

MODES = ("auto", "strict", "off")
JOB_ROOT = "/job"  # where the job's directories appear inside the private root


@dataclass(frozen=True)
class Mount:
    """A host path made visible inside the sandbox at `inside`, read-only unless `writable`."""

    host: str
    inside: str
    writable: bool = False


@dataclass(frozen=True)
class Limits:
    """Resource limits (setrlimit) on the sandboxed process tree."""

    memory_bytes: int  # RLIMIT_DATA: heap and anonymous mappings
    cpu_seconds: int  # RLIMIT_CPU: a backstop behind the job's wall-clock limits
    file_bytes: int  # RLIMIT_FSIZE: the largest file it may write
    processes: int  # RLIMIT_NPROC: processes and threads of its uid
    open_files: int = 4096


@dataclass(frozen=True)
class SandboxPlan:
    """Everything the zygote needs to start one sandboxed role process."""

    mode: str  # auto | strict | off
    mounts: dict[str, Mount]  # by name: "model", "out", "candidates", "artifact", "runner"
    masks: list[str]  # host paths that must stay hidden even when they lie inside a visible tree
    limits: Limits
    uid: int  # the unprivileged uid used when the worker runs as root
    threads: int  # torch intra-op threads
    devices: list[str] = field(default_factory=list)  # extra device nodes (GPUs)
    env: dict[str, str] = field(default_factory=dict)  # allowlisted variables passed through
    scratch: str = ""  # an empty host directory the private root is built on

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (the inverse of `from_json`)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxPlan:
        """Rebuild a plan sent as JSON."""
        return cls(
            mode=data["mode"],
            mounts={k: Mount(**v) for k, v in data["mounts"].items()},
            masks=list(data["masks"]),
            limits=Limits(**data["limits"]),
            uid=int(data["uid"]),
            threads=int(data["threads"]),
            devices=list(data.get("devices", [])),
            env=dict(data.get("env", {})),
            scratch=data.get("scratch", ""),
        )


SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc", "/sys")
DEVICE_NODES = ("null", "zero", "full", "random", "urandom")


def interpreter_paths() -> list[str]:
    """Host directories this Python needs to keep importing: prefixes, sys.path, our own packages."""
    from regctl import registry, worker

    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    candidates.update(p for p in sys.path if p)
    for package in (registry, worker):
        candidates.add(os.path.dirname(os.path.dirname(os.path.abspath(package.__file__ or ""))))
    real = {os.path.realpath(p) for p in candidates if os.path.isdir(p)}
    return outermost(real)


def outermost(paths: set[str] | list[str]) -> list[str]:
    """The paths that are not inside another one of them, sorted."""
    chosen: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(path == c or path.startswith(c.rstrip("/") + "/") for c in chosen):
            chosen.append(path)
    return sorted(chosen)
