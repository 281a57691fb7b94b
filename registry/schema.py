"""SQLAlchemy 2.0 ORM tables. Rows never leave the registry: functions return `registry.entities`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from regctl.registry.access import ROLE_RANK
from regctl.registry.states import JOB_KINDS, JOB_STATES, VERSION_STATUSES

# A convert job stores the conversion report, a validate job the validation report; archives and
# databases from before the split call both `report` (registry/ops/importer.py and 0007 map them).
REPORT_KINDS = ("conversion-report", "validation-report")
# An `attestation` is a DSSE envelope the registry signed about another artifact of the version (whose
# kind its `method` column names, e.g. "torchscript"); one is added per proof, none is ever rewritten.
ARTIFACT_KINDS = (
    "source",
    "weights",
    "torchscript",
    "exported",
    *REPORT_KINDS,
    "aoti",
    "executorch",
    "onnx",
    "attestation",
)
ROLES = tuple(ROLE_RANK)
DELIVERY_STATES = ("pending", "sending", "succeeded", "failed")

# Alembic revision the ORM matches; checked cheaply at start-up so commands never import alembic.
HEAD_REVISION = "0012_promotion_requests"

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def _enum(values: tuple[str, ...], name: str, length: int = 16) -> Enum:
    # A CHECK constraint rather than a native type, so SQLite and PostgreSQL both refuse bad values.
    return Enum(*values, name=name, native_enum=False, create_constraint=True, length=length)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that reads back aware on every backend.

    SQLite stores no offset and hands back naive datetimes; every value regctl writes is UTC, so a
    naive value read back is UTC too. Without this, API responses would carry timestamps without an
    offset, which are not RFC 3339 date-times.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Mark a naive value read back from SQLite as the UTC it was written in."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints predictably."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Model(Base):
    """A named model; versions hang off it."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    # names.name_key(name): no two models whose names a reader could take for each other
    name_key: Mapped[str] = mapped_column(String(128), index=True, unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # The highest version number ever handed out; bumped under a row lock so numbers are never reused.
    last_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    """One registered version of a model."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
        CheckConstraint("version >= 1", name="version_positive"),
        Index("ix_model_versions_model_status_version", "model_id", "status", "version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(_enum(VERSION_STATUSES, "version_status"), default="registered")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    source_sha256: Mapped[str] = mapped_column(String(64))
    weights_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    method: Mapped[str | None] = mapped_column(String(16), nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    git_dirty: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    run_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Archived versions are hidden from NAME resolution and lists, and still fetchable by number.
    archived_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The model card: the directory's README.md as written (markdown, at most 256 KB; registry/card.py).
    card: Mapped[str | None] = mapped_column(Text, nullable=True)


class VersionTag(Base):
    """One `key=value` tag of a version (a table, so `versions list --tag` filters in SQL)."""

    __tablename__ = "version_tags"
    __table_args__ = (Index("ix_version_tags_key_value", "key", "value"),)

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Artifact(Base):
    """An immutable, content-addressed file belonging to a version."""

    __tablename__ = "artifacts"
    __table_args__ = (Index("ix_artifacts_version_kind", "version_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(_enum(ARTIFACT_KINDS, "artifact_kind", length=32))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    uri: Mapped[str] = mapped_column(Text)
    torch_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    method: Mapped[str | None] = mapped_column(String(16), nullable=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A unit of work on a version; the database, not the broker, holds its state."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_version_id", "version_id"),
        Index("ix_jobs_state_queue", "state", "queue"),
        Index("ix_jobs_parent_id", "parent_id"),
        CheckConstraint("attempts >= 0 AND attempts <= max_attempts", name="attempts_within_cap"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(_enum(JOB_KINDS, "job_kind"))
    # The job whose success created this one (a convert's validate job); followers walk this link only.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True, default=None
    )
    state: Mapped[str] = mapped_column(_enum(JOB_STATES, "job_state"), default="queued")
    queue: Mapped[str] = mapped_column(String(32), default="cpu")
    method: Mapped[str | None] = mapped_column(String(16), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    progress: Mapped[str] = mapped_column(Text, default="")
    # The stage timeline: [{"stage": ..., "at": ISO time}], one entry per new stage, bounded (jobs.py).
    stages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    heartbeat_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Alias(Base):
    """A movable name (`prod`, `staging`) pointing at one version of a model."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_aliases_model_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    updated_by: Mapped[str] = mapped_column(String(128), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasEvent(Base):
    """The history of an alias: every set and removal, who did it and when."""

    __tablename__ = "alias_history"
    __table_args__ = (Index("ix_alias_history_model_name", "model_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(_enum(("set", "remove"), "alias_action"))
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(128), default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Token(Base):
    """An API token: a name, a role and an optional model pattern; only a hash of its secret is kept."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(_enum(ROLES, "token_role"))
    model_pattern: Mapped[str | None] = mapped_column(String(128), nullable=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class AuditEvent(Base):
    """One change made through the service: who, what, to which model, when and from where."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_model", "model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    target: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Webhook(Base):
    """A URL that receives signed JSON POSTs for some events, optionally only for matching models."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON)
    model_pattern: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Kept as given, not hashed: every delivery is signed with it.
    secret: Mapped[str] = mapped_column(String(128))
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Removed webhooks stay, so their deliveries can still be listed; they get no new ones.
    removed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class WebhookDelivery(Base):
    """One event for one webhook: the outbox row, written in the transaction that made the event."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook_id", "webhook_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    body: Mapped[str] = mapped_column(Text)  # exactly the bytes every attempt sends (UTF-8 JSON)
    state: Mapped[str] = mapped_column(_enum(DELIVERY_STATES, "delivery_state"), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # While `sending`, the sender's lease; a sender that died leaves one that expires.
    claimed_until: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class WebhookAttempt(Base):
    """One POST of a delivery: when, the receiver's status code (if it answered), how long, what failed."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (
        UniqueConstraint("delivery_id", "attempt", name="uq_webhook_attempts_delivery_attempt"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class SigningKey(Base):
    """A public key the registry signed attestations with; the private half stays in its key file."""

    __tablename__ = "signing_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    retired_at: Mapped[datetime | None] = mapped_column(nullable=True)


REQUEST_STATES = ("pending", "approved", "rejected", "expired")


class PromotionRequest(Base):
    """A request to move a protected alias, waiting for a second person's approval (two-person rule)."""

    __tablename__ = "promotion_requests"
    __table_args__ = (
        # At most one open request per alias: a second one waits until the first is decided or expires.
        Index(
            "uq_promotion_requests_open",
            "model_id",
            "alias",
            unique=True,
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text)
    # An admin's request may override the promotion policy; the approver sees that before approving.
    force: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_by: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    state: Mapped[str] = mapped_column(_enum(REQUEST_STATES, "request_state"), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)  # the approver's or rejecter's words
    previous: Mapped[int | None] = mapped_column(Integer, nullable=True)  # where the alias was, once moved
