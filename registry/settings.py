"""One typed settings object, built from the environment with embedded defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where regctl keeps its state and how its jobs run."""

    home: Path
    database_url: str
    artifact_store: str
    broker_url: str | None = None
    job_soft_time_limit: float = 1800.0
    job_time_limit: float = 1900.0
    max_attempts: int = 3
    max_bundle_bytes: int = 512 * 1024 * 1024
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 60.0
    queued_timeout: float = 120.0
    gpu_on_cpu: bool = False

    @property
    def embedded(self) -> bool:
        """True when no broker is configured and jobs run in-process."""
        return not self.broker_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from `REGCTL_*` environment variables; `overrides` win (CLI options)."""
        env = os.environ if env is None else env
        home = Path(env.get("REGCTL_HOME") or Path.home() / ".regctl").expanduser()
        if overrides.get("home"):
            home = Path(str(overrides.pop("home"))).expanduser()
        overrides.pop("home", None)
        settings = cls(
            home=home,
            database_url=env.get("REGCTL_DATABASE_URL") or f"sqlite:///{home / 'registry.db'}",
            artifact_store=env.get("REGCTL_ARTIFACT_STORE") or str(home / "artifacts"),
            broker_url=env.get("REGCTL_BROKER_URL") or None,
            job_soft_time_limit=_float(env, "REGCTL_JOB_SOFT_TIME_LIMIT", cls.job_soft_time_limit),
            job_time_limit=_float(env, "REGCTL_JOB_TIME_LIMIT", cls.job_time_limit),
            max_attempts=int(_float(env, "REGCTL_MAX_ATTEMPTS", cls.max_attempts)),
            max_bundle_bytes=int(_float(env, "REGCTL_MAX_BUNDLE_BYTES", cls.max_bundle_bytes)),
            heartbeat_interval=_float(env, "REGCTL_HEARTBEAT_INTERVAL", cls.heartbeat_interval),
            heartbeat_timeout=_float(env, "REGCTL_HEARTBEAT_TIMEOUT", cls.heartbeat_timeout),
            queued_timeout=_float(env, "REGCTL_QUEUED_TIMEOUT", cls.queued_timeout),
            gpu_on_cpu=env.get("REGCTL_GPU_ON_CPU", "").lower() in {"1", "true", "yes"},
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given) if given else settings


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        from registry.errors import InvalidInput

        raise InvalidInput(
            f"{key}={raw!r} is not a number; set it to a number of seconds or a count"
        ) from None
