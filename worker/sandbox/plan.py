"""What a sandboxed process may see and use: the plan the supervisor hands to the zygote.

Plain data only (it crosses a process boundary as JSON). The supervisor, which knows the registry's
settings, decides which host paths are secret (`masks`), which job directories the process gets
(`mounts`, by name) and the resource limits; the zygote adds the paths the Python interpreter
itself needs (`interpreter_paths`).
"""

from __future__ import annotations

import importlib.util
import os
import site
import sys
import sysconfig
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
    # True when `uid` is this role's alone, leased for the job (uids.py): the zygote then kills every
    # process of that uid when the role ends, and strict mode requires it when the worker is root.
    own_uid: bool = False

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
            own_uid=bool(data.get("own_uid", False)),
        )


SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc", "/sys")
DEVICE_NODES = ("null", "zero", "full", "random", "urandom")


def interpreter_paths() -> list[str]:
    """Host directories this Python needs to keep importing: prefixes, sys.path, our own packages.

    With an editable install (pip install -e) the packages are folders of a checkout that holds much
    more (a demo registry, .git, the tests): only the package folders themselves are mounted, and a
    sys.path entry or prefix that would bring in the whole checkout is left out. The editable
    install's finder maps each `regctl.*` name to its folder, so imports resolve the same inside.
    """
    packages = package_dirs()
    installed = _site_dirs()
    editable = [p for p in packages if not any(_inside(p, s) for s in installed)]
    checkouts = {os.path.dirname(p) for p in editable}
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    candidates = set(prefixes)
    for entry in filter(None, sys.path):
        if not any(_inside(checkout, entry) for checkout in checkouts):  # a checkout, or a folder above one
            candidates.add(entry)
    candidates.update(packages)
    real = {os.path.realpath(p) for p in candidates if os.path.isdir(p)}
    return outermost(real)


PACKAGES = (
    "regctl",
    *(f"regctl.{name}" for name in ("registry", "worker", "cli", "server", "service", "migrations")),
)


def package_dirs() -> list[str]:
    """The folders regctl's packages are imported from (several, with setuptools' package-dir)."""
    names = set(PACKAGES)
    for finder in sys.meta_path:  # setuptools' editable finder knows every mapped name
        mapping = getattr(sys.modules.get(getattr(finder, "__module__", "")), "MAPPING", None)
        if isinstance(mapping, dict):
            names.update(n for n in mapping if isinstance(n, str) and n.split(".")[0] == "regctl")
    found: set[str] = set()
    for name in sorted(names):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            found.update(os.path.abspath(p) for p in spec.submodule_search_locations if os.path.isdir(p))
    return sorted(found)


def _site_dirs() -> list[str]:
    """Where installed (not editable) packages live."""
    dirs = set(site.getsitepackages()) | {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        dirs.add(site.getusersitepackages())
    return sorted(os.path.realpath(d) for d in dirs if d)


def _inside(path: str, folder: str) -> bool:
    """True when `path` is `folder` or lies below it."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def outermost(paths: set[str] | list[str]) -> list[str]:
    """The paths that are not inside another one of them, sorted."""
    chosen: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(path == c or path.startswith(c.rstrip("/") + "/") for c in chosen):
            chosen.append(path)
    return sorted(chosen)
