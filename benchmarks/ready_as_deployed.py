"""What a deployed regctl already has before anything is timed, and the environment every side starts from."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

from benchmarks.end_to_end_support import REPO


def base_env() -> dict[str, str]:
    """This environment without regctl's settings, unbuffered so logs are whole when a side fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGCTL_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def build_libtorch_runner() -> None:
    """Build (or find cached) the engine's LibTorch runner, as a worker image does, before any timing."""
    done = subprocess.run(
        [sys.executable, "-m", "regctl.worker.judge.libtorch"], cwd=REPO, env=base_env(), capture_output=True
    )
    if done.returncode != 0:  # not fatal: the engine then skips that stage, and the report says so
        tail = done.stderr.decode(errors="replace")[-2000:]
        print(f"LibTorch runner build failed:\n{tail}", file=sys.stderr)


def compile_bytecode() -> None:
    """Byte-compile regctl's source, as installing its wheel does, before any timing.

    An editable install compiles a module on its first import: the first regctl side measured would
    write regctl's .pyc files (0.9 MB, measured), which a deployed regctl never writes.
    """
    folders = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    top = sorted({folder.split("/")[0] for folder in folders.values()})
    argv = [sys.executable, "-m", "compileall", "-q", *(str(REPO / folder) for folder in top)]
    subprocess.run(argv, cwd=REPO, env=base_env(), capture_output=True, check=True)
