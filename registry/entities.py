"""Small frozen records the registry hands out; ORM rows never leave a session."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


class Record:
    """Mixin: a JSON-safe dict for `--json` output."""

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-safe dict (datetimes in ISO 8601)."""
        return _json(asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class ArtifactInfo(Record):
    """A stored, immutable artifact of a version."""

    kind: str
    sha256: str
    size: int
    uri: str
    torch_version: str | None
    method: str | None
    created_at: datetime


@dataclass(frozen=True)
class JobInfo(Record):
    """A job and where it stands."""

    id: int
    model: str
    version: int
    kind: str
    state: str
    queue: str
    method: str | None
    attempts: int
    max_attempts: int
    worker: str | None
    progress: str
    error: str | None
    result: dict[str, Any] | None
    cancel_requested: bool
    heartbeat_at: datetime | None
    created_at: datetime
    published_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    parent_id: int | None = None
    # The stage timeline, oldest first: {"stage": "trace", "at": ISO 8601 time} per new stage.
    stages: tuple[dict[str, str], ...] = ()

    @property
    def finished(self) -> bool:
        """True once the job can no longer change state by itself."""
        return self.state in ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class VersionInfo(Record):
    """One version of a model with its artifacts and the aliases that point at it."""

    model: str
    version: int
    status: str
    spec: dict[str, Any]
    source_sha256: str
    weights_sha256: str | None
    method: str | None
    summary: dict[str, Any] | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    artifacts: tuple[ArtifactInfo, ...] = ()
    aliases: tuple[str, ...] = ()
    jobs: tuple[JobInfo, ...] = ()
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    git_dirty: bool | None = None  # the bundled files differ from git_commit
    run_url: str | None = None  # the training run that produced it
    archived_at: datetime | None = None  # hidden from NAME and lists; still fetchable by number
    card: str | None = None  # the model card: its README.md, markdown as written (registry/card.py)

    @property
    def ref(self) -> str:
        """`name:version`."""
        return f"{self.model}:{self.version}"


@dataclass(frozen=True)
class RegisteredVersion(VersionInfo):
    """What a registration answers: the new version, or the newest one when nothing changed.

    `unchanged` is True when the code, weights and spec equal the newest version's and no new version
    was asked for: nothing was created, and this is that existing version as it stands.
    """

    unchanged: bool = False

    @classmethod
    def of(cls, info: VersionInfo, *, unchanged: bool) -> RegisteredVersion:
        """`info` as a registration's answer."""
        return cls(**{f.name: getattr(info, f.name) for f in fields(info)}, unchanged=unchanged)


@dataclass(frozen=True)
class VersionRow(Record):
    """A version as listed in `models show` (without spec, artifacts or jobs)."""

    version: int
    status: str
    method: str | None
    created_at: datetime
    archived: bool = False
    created_by: str | None = None
    torch_version: str | None = None  # of its TorchScript artifact, once converted
    model: str | None = None  # named when a listing spans models (`versions list --tag` without NAME)


@dataclass(frozen=True)
class ModelSummary(Record):
    """A model as listed in `models list`."""

    name: str
    description: str
    versions: int
    latest_version: int | None
    latest_ready: int | None
    created_at: datetime


@dataclass(frozen=True)
class ModelDetail(Record):
    """A model with its newest versions and its aliases."""

    name: str
    description: str
    created_at: datetime
    version_count: int
    versions: tuple[VersionRow, ...]
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AliasInfo(Record):
    """An alias and the version it points at."""

    model: str
    name: str
    version: int | None
    previous: int | None
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class PromotionRequestInfo(Record):
    """A request to move a protected alias, and what became of it.

    `state` is pending, approved, rejected or expired; a pending request past `expires_at` reads as
    expired. `previous` is where the alias pointed before an approval moved it.
    """

    id: int
    model: str
    alias: str
    version: int
    reason: str
    force: bool
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    state: str
    decided_by: str | None
    decided_at: datetime | None
    note: str | None
    previous: int | None

    @property
    def target(self) -> str:
        """NAME@ALIAS."""
        return f"{self.model}@{self.alias}"


@dataclass(frozen=True)
class TokenInfo(Record):
    """An API token as listed: never its secret."""

    name: str
    role: str
    model_pattern: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class NewToken(Record):
    """A token just created: the secret is shown this once and never stored."""

    token: TokenInfo
    secret: str


@dataclass(frozen=True)
class AuditEntry(Record):
    """One recorded change: who (a token's name or a local user), what, when and from which address."""

    id: int
    at: datetime
    actor: str
    action: str
    model: str | None
    target: str
    detail: dict[str, Any] | None
    address: str | None


@dataclass(frozen=True)
class Identity(Record):
    """Who a token (or a direct command's user) acts as."""

    name: str
    role: str
    model_pattern: str | None


@dataclass(frozen=True)
class FetchedArtifact(Record):
    """An artifact copied to a file: the version it came from, where it went and what it is."""

    ref: str
    path: str
    artifact: ArtifactInfo


@dataclass(frozen=True)
class WebhookInfo(Record):
    """A webhook as listed: never its secret."""

    id: int
    url: str
    events: tuple[str, ...]
    model_pattern: str | None
    created_by: str
    created_at: datetime
    removed_at: datetime | None = None


@dataclass(frozen=True)
class NewWebhook(Record):
    """A webhook just added: the signing secret is shown this once."""

    webhook: WebhookInfo
    secret: str


@dataclass(frozen=True)
class AttemptInfo(Record):
    """One POST of a delivery: the receiver's status code (None when it never answered) and how long."""

    attempt: int
    at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None


@dataclass(frozen=True)
class DeliveryInfo(Record):
    """One event for one webhook, where it stands, and its attempts (oldest first)."""

    id: int
    webhook_id: int
    event: str
    model: str | None
    version: int | None
    state: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    last_status: int | None
    last_error: str | None
    history: tuple[AttemptInfo, ...] = ()


@dataclass(frozen=True)
class KeyInfo(Record):
    """A public key the registry signs (or signed) attestations with."""

    key_id: str
    public_pem: str
    created_at: datetime
    created_by: str
    retired_at: datetime | None
    current: bool  # the key REGCTL_SIGNING_KEY holds now
