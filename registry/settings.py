"""One typed settings object, built from the environment with embedded defaults."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

from regctl.registry.errors.inputs import (
    BadFlag,
    BadSandboxMode,
    BadSetting,
    HeartbeatTooSlow,
    HomeIsFile,
    WorkDirMissing,
)
from regctl.registry.formats import parse_formats
from regctl.registry.refs import check_alias_name


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
    max_bundle_bytes: int = 512 * 1024 * 1024  # code and small data: the source bundle
    max_weights_bytes: int = 20 * 1024**3  # the weights file, stored as its own blob
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 60.0
    queued_timeout: float = 120.0
    gpu_on_cpu: bool = False
    cancel_grace: float = 30.0
    reconcile_interval: float = 30.0
    worker_max_memory_kb: int = 4 * 1024 * 1024
    sandbox: str = "auto"  # auto | strict | off: how model code and the judge are confined
    sandbox_memory_mb: int = 0  # per sandboxed process; 0: three quarters of the machine's memory
    sandbox_file_mb: int = 16 * 1024  # the largest file a sandboxed process may write
    sandbox_processes: int = 512  # processes and threads of the sandbox's uid
    sandbox_uid: int = 64000  # start of the 1000 unprivileged uids leased to jobs in blocks of 6 (as root)
    protected_aliases: tuple[str, ...] = ("prod",)  # aliases only an admin token may set or remove
    promotion_torch: tuple[str, ...] = ()  # torch versions a protected alias may move to (empty: any)
    promotion_approvals: int = 1  # 2: a protected alias moves only through a request a second admin approves
    promotion_request_ttl: float = 3 * 24 * 3600.0  # seconds a promotion request waits for its approval
    work_dir: str | None = None  # where jobs unpack and convert; None: the system's temp directory
    signing_key: str | None = None  # the attestation key file; None: <home>/keys/signing.pem
    webhook_retry_base: float = 30.0  # seconds before a failed webhook delivery's first retry; doubles
    # receivers on loopback, link-local or private addresses a webhook may reach (hosts, addresses, networks)
    webhook_allow_private: tuple[str, ...] = ()
    formats: tuple[str, ...] = ("torchscript",)  # what a registration converts to unless told otherwise
    # An API server's guards against hostile clients (server/throttle.py, server/protocol.py)
    header_timeout: float = 10.0  # a connection must send a request's headers within this
    body_timeout: float = 30.0  # an upload that sends nothing for this long is closed
    uploads_per_token: int = 2  # uploads one token may send at once
    rate_limit: str = "1200/minute"  # requests per token ("off": none)
    address_rate_limit: str = "2400/minute"  # requests per client address, with or without a token
    # This machine's own settings (see LIBTORCH_ENV): never written by to_env, so each worker keeps its own.
    libtorch: bool = True  # off skips the LibTorch stage (no C++ compiler here)
    libtorch_cache: Path | None = None  # where built LibTorch runners are kept; None: the user's cache
    worker_concurrency: int = 1  # processes of this worker's pool, which share the machine's cores
    worker_gpus: tuple[str, ...] = ()  # GPU ids the pool's children take round robin

    @property
    def signing_key_path(self) -> Path:
        """The file holding the registry's attestation signing key (REGCTL_SIGNING_KEY)."""
        return Path(self.signing_key).expanduser() if self.signing_key else self.home / "keys" / "signing.pem"

    def to_env(self) -> dict[str, str]:
        """The environment variables that rebuild these settings in another process (a worker)."""
        env = {
            "REGCTL_HOME": str(self.home),
            "REGCTL_DATABASE_URL": self.database_url,
            "REGCTL_ARTIFACT_STORE": self.artifact_store,
            "REGCTL_BROKER_URL": self.broker_url or "",
            "REGCTL_GPU_ON_CPU": "1" if self.gpu_on_cpu else "",
            "REGCTL_SANDBOX": self.sandbox,
            "REGCTL_PROTECTED_ALIASES": ",".join(self.protected_aliases),
            "REGCTL_PROMOTION_TORCH": ",".join(self.promotion_torch),
            "REGCTL_WORK_DIR": self.work_dir or "",
            "REGCTL_SIGNING_KEY": self.signing_key or "",
            "REGCTL_FORMATS": ",".join(self.formats),
            "REGCTL_WEBHOOK_ALLOW_PRIVATE": ",".join(self.webhook_allow_private),
            "REGCTL_RATE_LIMIT": self.rate_limit,
            "REGCTL_ADDRESS_RATE_LIMIT": self.address_rate_limit,
        }
        for key, field in _NUMERIC.items():
            env[key] = repr(getattr(self, field))
        return env

    @property
    def embedded(self) -> bool:
        """True when no broker is configured and jobs run in-process."""
        return not self.broker_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from `REGCTL_*` environment variables; `overrides` win (CLI options)."""
        env = os.environ if env is None else env
        local = {**os.environ, **env}  # machine settings come from this process when `env` lacks them
        home = Path(env.get("REGCTL_HOME") or Path.home() / ".regctl").expanduser()
        if overrides.get("home"):
            home = Path(str(overrides.pop("home"))).expanduser()
        overrides.pop("home", None)
        _check_home(home)
        numbers = {
            field: _number(env, key, getattr(cls, field), _MINIMUM.get(field, 1))
            for key, field in _NUMERIC.items()
        }
        settings = cls(
            home=home,
            database_url=env.get("REGCTL_DATABASE_URL") or f"sqlite:///{home / 'registry.db'}",
            artifact_store=env.get("REGCTL_ARTIFACT_STORE") or str(home / "artifacts"),
            broker_url=env.get("REGCTL_BROKER_URL") or None,
            gpu_on_cpu=parse_flag("REGCTL_GPU_ON_CPU", env.get("REGCTL_GPU_ON_CPU"), default=False),
            sandbox=_sandbox_mode(env.get("REGCTL_SANDBOX") or "auto"),
            protected_aliases=_aliases(env.get("REGCTL_PROTECTED_ALIASES", "prod")),
            promotion_torch=tuple(
                v.strip() for v in env.get("REGCTL_PROMOTION_TORCH", "").split(",") if v.strip()
            ),
            work_dir=_work_dir(env.get("REGCTL_WORK_DIR") or None),
            signing_key=env.get("REGCTL_SIGNING_KEY") or None,
            formats=_formats(env.get("REGCTL_FORMATS") or "torchscript"),
            webhook_allow_private=_allowed_targets(env.get("REGCTL_WEBHOOK_ALLOW_PRIVATE") or ""),
            rate_limit=_rate("REGCTL_RATE_LIMIT", env.get("REGCTL_RATE_LIMIT") or cls.rate_limit),
            address_rate_limit=_rate(
                "REGCTL_ADDRESS_RATE_LIMIT", env.get("REGCTL_ADDRESS_RATE_LIMIT") or cls.address_rate_limit
            ),
            libtorch=parse_flag(LIBTORCH_ENV, local.get(LIBTORCH_ENV), default=True),
            libtorch_cache=_runner_cache(local),
            worker_concurrency=int(_number(local, CONCURRENCY_ENV, 1, 1)),
            worker_gpus=tuple(g.strip() for g in local.get(GPUS_ENV, "").split(",") if g.strip()),
            **numbers,  # type: ignore[arg-type]
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = replace(settings, **given) if given else settings
        _check_pairs(settings)
        return settings


@dataclass(frozen=True)
class ClientSettings:
    """What a client of `regctl serve` reads from its environment: the server, its token, the login file."""

    config: Path  # REGCTL_CONFIG: where `regctl login` keeps the URL and token
    url: str | None = None  # REGCTL_URL
    token: str | None = None  # REGCTL_TOKEN
    trusted_keys: tuple[str, ...] = ()  # REGCTL_TRUSTED_KEYS: public-key PEM files fetch and verify trust

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSettings:
        """Build them from REGCTL_URL, REGCTL_TOKEN and REGCTL_CONFIG (default: ~/.config/regctl)."""
        env = os.environ if env is None else env
        if env.get("REGCTL_CONFIG"):
            config = Path(env["REGCTL_CONFIG"]).expanduser()
        else:
            config = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "regctl" / "login.json"
        trusted = tuple(p.strip() for p in env.get("REGCTL_TRUSTED_KEYS", "").split(",") if p.strip())
        return cls(
            url=env.get("REGCTL_URL") or None,
            token=env.get("REGCTL_TOKEN") or None,
            config=config,
            trusted_keys=trusted,
        )


_NUMERIC = {
    "REGCTL_JOB_SOFT_TIME_LIMIT": "job_soft_time_limit",
    "REGCTL_JOB_TIME_LIMIT": "job_time_limit",
    "REGCTL_MAX_ATTEMPTS": "max_attempts",
    "REGCTL_MAX_BUNDLE_BYTES": "max_bundle_bytes",
    "REGCTL_MAX_WEIGHTS_BYTES": "max_weights_bytes",
    "REGCTL_HEARTBEAT_INTERVAL": "heartbeat_interval",
    "REGCTL_HEARTBEAT_TIMEOUT": "heartbeat_timeout",
    "REGCTL_QUEUED_TIMEOUT": "queued_timeout",
    "REGCTL_CANCEL_GRACE": "cancel_grace",
    "REGCTL_RECONCILE_INTERVAL": "reconcile_interval",
    "REGCTL_WORKER_MAX_MEMORY_KB": "worker_max_memory_kb",
    "REGCTL_SANDBOX_MEMORY_MB": "sandbox_memory_mb",
    "REGCTL_SANDBOX_FILE_MB": "sandbox_file_mb",
    "REGCTL_SANDBOX_PROCESSES": "sandbox_processes",
    "REGCTL_SANDBOX_UID": "sandbox_uid",
    "REGCTL_WEBHOOK_RETRY_BASE_S": "webhook_retry_base",
    "REGCTL_HEADER_TIMEOUT_S": "header_timeout",
    "REGCTL_BODY_TIMEOUT_S": "body_timeout",
    "REGCTL_UPLOADS_PER_TOKEN": "uploads_per_token",
    "REGCTL_PROMOTION_APPROVALS": "promotion_approvals",
    "REGCTL_PROMOTION_REQUEST_TTL_S": "promotion_request_ttl",
}
SANDBOX_MODES = ("auto", "strict", "off")
# Settings of this machine and process rather than of the registry: an embedded child or a worker
# rebuilt from a registry's mapping still reads them from its own environment, because they name
# this machine's compiler, runner cache and pool.
LIBTORCH_ENV = "REGCTL_LIBTORCH"
LIBTORCH_CACHE_ENV = "REGCTL_LIBTORCH_CACHE"
QUEUES_ENV = "REGCTL_WORKER_QUEUES"  # written for a worker's children and logs; nothing reads it back
CONCURRENCY_ENV = "REGCTL_WORKER_CONCURRENCY"
GPUS_ENV = "REGCTL_WORKER_GPUS"


def user_runner_cache() -> Path:
    """The LibTorch runner cache when REGCTL_LIBTORCH_CACHE is unset: the user's cache directory."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "regctl" / "libtorch-runner"


def _runner_cache(env: Mapping[str, str]) -> Path:
    raw = env.get(LIBTORCH_CACHE_ENV)
    return Path(raw).expanduser() if raw else user_runner_cache()


def _sandbox_mode(raw: str) -> str:
    mode = raw.strip().lower()
    if mode not in SANDBOX_MODES:
        raise BadSandboxMode(raw=raw)
    return mode


def _work_dir(raw: str | None) -> str | None:
    if raw is None:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise WorkDirMissing(raw=raw)
    return str(path.resolve())


def _formats(raw: str) -> tuple[str, ...]:
    return parse_formats(raw, "REGCTL_FORMATS=")


_RATE = re.compile(r"[1-9][0-9]{0,8}/(second|minute|hour|day)")


def _rate(key: str, raw: str) -> str:
    """A rate limit as `limits` reads it ("1200/minute"), or "off"."""
    rate = raw.strip().lower()
    if rate != "off" and not _RATE.fullmatch(rate):
        raise BadSetting(
            key=key, raw=raw, wanted='a rate such as "1200/minute" (or "off")', default='"600/minute"'
        )
    return rate


_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def _allowed_targets(raw: str) -> tuple[str, ...]:
    """REGCTL_WEBHOOK_ALLOW_PRIVATE: host names, addresses and networks (10.0.0.0/8), comma-separated."""
    allowed = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        try:
            allowed.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            if not _HOST.fullmatch(entry):
                wanted = "a comma-separated list of host names, addresses and networks"
                raise BadSetting(
                    key="REGCTL_WEBHOOK_ALLOW_PRIVATE", raw=raw, wanted=wanted, default="10.0.0.0/8,hooks.lan"
                ) from None
            allowed.append(entry.lower())
    return tuple(allowed)


def _aliases(raw: str) -> tuple[str, ...]:
    return tuple(check_alias_name(a.strip()) for a in raw.split(",") if a.strip())


# The smallest value each numeric setting takes (1 where absent); floats must be above 0.
_MINIMUM = {"sandbox_memory_mb": 0, "sandbox_uid": 1000}


def _number(env: Mapping[str, str], key: str, default: int | float, minimum: int) -> int | float:
    """One numeric setting, parsed strictly: a whole number for counts and sizes, no silent coercion."""
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    # Here, not at the top: pydantic costs 40–60 ms (measured with -X importtime) to every process
    # reading settings, the Python client's `import regctl` included, and only a numeric variable
    # that is set needs it.
    from pydantic import Field, TypeAdapter, ValidationError

    if isinstance(default, int):
        kind: Any = Annotated[int, Field(ge=minimum, strict=False)]
        wanted = f"a whole number of at least {minimum}"
    else:
        kind = Annotated[float, Field(gt=0, allow_inf_nan=False)]
        wanted = "a number of seconds above 0"
    try:
        return TypeAdapter(kind).validate_python(raw.strip())
    except ValidationError:
        raise BadSetting(key=key, raw=raw, wanted=wanted, default=default) from None


def parse_flag(key: str, raw: str | None, *, default: bool) -> bool:
    """An on/off setting, one rule for all: unset or empty is `default`; anything unknown is an error."""
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise BadFlag(key=key, raw=raw)


def _check_home(home: Path) -> None:
    if home.exists() and not home.is_dir():
        raise HomeIsFile(home=str(home))


def _check_pairs(settings: Settings) -> None:
    """Settings that only make sense against each other."""
    if settings.promotion_approvals > 2:
        approvals = str(settings.promotion_approvals)
        raise BadSetting(key="REGCTL_PROMOTION_APPROVALS", raw=approvals, wanted="1 or 2", default=1)
    if settings.heartbeat_interval >= settings.heartbeat_timeout:
        raise HeartbeatTooSlow(interval=settings.heartbeat_interval, timeout=settings.heartbeat_timeout)
