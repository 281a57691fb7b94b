"""Starting jobs and following them (for --wait and the embedded in-process mode)."""

from __future__ import annotations

from registry.entities import JobInfo
from registry.settings import Settings


def start_and_follow(settings: Settings, jobs: list[JobInfo], *, wait: bool, quiet: bool = False) -> int:
    """Hand the jobs to the worker layer; with --wait (or embedded), follow them and return the exit code."""
    return 0
