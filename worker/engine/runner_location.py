"""Where the LibTorch runner is cached and whether the stage is on: settings read without torch.

The supervisor, which never imports torch, decides both and hands them to the zygote.
"""

from __future__ import annotations

import os
from pathlib import Path

SWITCH_ENV = "REGCTL_LIBTORCH"
CACHE_ENV = "REGCTL_LIBTORCH_CACHE"


def enabled() -> bool:
    """False when REGCTL_LIBTORCH is 0, false, no or off; InvalidInput for anything but an on/off word."""
    from regctl.registry.settings import parse_flag

    return parse_flag(SWITCH_ENV, os.environ.get(SWITCH_ENV), default=True)


def default_cache_dir() -> Path:
    """Where built runners are kept ($REGCTL_LIBTORCH_CACHE, else the user's cache directory)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "regctl" / "libtorch-runner"
