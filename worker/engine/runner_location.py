"""Where the LibTorch runner is cached and whether the stage is on: read from Settings, without torch.

The supervisor, which never imports torch, decides both from its Settings and hands them to the
zygote. The runner's own build script and the engine's tests, which hold no Settings, use this
process's (`Settings.from_env()`).
"""

from __future__ import annotations

from pathlib import Path

from regctl.registry.settings import LIBTORCH_CACHE_ENV, LIBTORCH_ENV, Settings, user_runner_cache

SWITCH_ENV = LIBTORCH_ENV
CACHE_ENV = LIBTORCH_CACHE_ENV


def enabled(settings: Settings | None = None) -> bool:
    """False when the LibTorch stage is off (REGCTL_LIBTORCH=0) in `settings` (default: this process's)."""
    return (settings or Settings.from_env()).libtorch


def default_cache_dir(settings: Settings | None = None) -> Path:
    """Where built runners are kept (REGCTL_LIBTORCH_CACHE, else the user's cache directory)."""
    return (settings or Settings.from_env()).libtorch_cache or user_runner_cache()
