"""What a caller asks for, as one frozen value: built once at the front door, passed on whole.

A front door (a click command, an HTTP handler, a Python call) turns what it received into one of
these requests; the client, the service and the registry hand it on unchanged, so each option of an
operation is named here and nowhere else. Building one checks it: a request that exists is
well-formed, and no layer below checks its name or its lineage again. What a request cannot know
(whether the model exists, whether the caller may act on it) is for the service to decide.

Imports nothing beyond the registry's pure modules (no SQLAlchemy), so a client builds them cheaply.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from regctl.registry.access import ROLE_RANK, check_model_pattern
from regctl.registry.errors import InvalidInput
from regctl.registry.errors.access import AdminTokenWithModel, BadDuration, InvalidTokenName
from regctl.registry.errors.inputs import (
    BadLimit,
    BadWebhookEvents,
    BadWebhookUrl,
    NamesGivenAsString,
    WebhookUrlTooLong,
)
from regctl.registry.errors.lookup import NotAChoice
from regctl.registry.lineage import Lineage, check_tags
from regctl.registry.refs import Ref, check_model_name, parse_version_ref
from regctl.registry.states import VERSION_STATUSES

# The events registry/outbox.py records, which a webhook may ask for.
EVENTS = (
    "version.ready",
    "version.failed",
    "alias.moved",
    "job.failed",
    "alias.requested",
    "alias.approved",
    "alias.rejected",
)
MAX_URL_CHARS = 2048
# The most rows one list answers, whatever the front door.
MAX_LIMIT = 1000
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}\Z")
_DURATION = re.compile(r"^([1-9][0-9]{0,5})([hdw])\Z")
_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


@dataclass(frozen=True, kw_only=True)
class RegisterRequest:
    """Register a model directory as the next version of `name` (the directory travels beside it).

    `method` and `device` override the spec's (the device picks the queue); `formats` overrides the
    spec's `formats`, e.g. ("torchscript", "aoti"). `description` is the version's (the model keeps
    the newest one too); it is the lineage's description, which may be given either way. Unless
    `convert` is False a conversion starts. When the code, weights and spec equal the newest
    version's nothing is created, unless `new_version` asks for a new version anyway.
    """

    name: str = field(kw_only=False)
    method: str | None = None
    device: str | None = None
    description: str | None = None
    lineage: Lineage = field(default_factory=Lineage)
    formats: tuple[str, ...] | None = None
    convert: bool = True
    new_version: bool = False

    def __post_init__(self) -> None:
        check_model_name(self.name)
        lineage = self.lineage
        if self.description is not None:
            if lineage.description not in (None, self.description):
                raise InvalidInput("the description is given twice, differently; give it once")
            lineage = dataclasses.replace(lineage, description=self.description)
        lineage = lineage.checked()
        object.__setattr__(self, "lineage", lineage)
        object.__setattr__(self, "description", lineage.description)
        if self.formats is not None:
            object.__setattr__(self, "formats", _names(self.formats, "formats"))


@dataclass(frozen=True, kw_only=True)
class SubmitRequest:
    """Queue a job of `kind` (convert or validate) for the exact version `ref`, NAME:VERSION.

    `method` and `device` override the version's spec for this job. `ref` is kept in its canonical
    form; `version` is the parsed reference.
    """

    ref: str = field(kw_only=False)
    kind: str = field(kw_only=False)
    method: str | None = None
    device: str | None = None
    version: Ref = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        version = parse_version_ref(self.ref)
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "ref", str(version))


@dataclass(frozen=True, kw_only=True)
class TokenRequest:
    """Create an API token `name` with `role` (reader, writer or admin).

    `model_pattern` (a model name or a glob such as `resnet*`) limits a reader or writer token to the
    models it matches; `expires` (12h, 90d, 2w, or never) is its lifetime from creation, parsed into
    `lifetime` (None: it never expires).
    """

    name: str = field(kw_only=False)
    role: str = field(kw_only=False)
    model_pattern: str | None = None
    expires: str | None = None
    lifetime: timedelta | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _TOKEN_NAME.match(self.name or ""):
            raise InvalidTokenName(name=self.name)
        if self.role not in ROLE_RANK:
            raise NotAChoice(what="role", value=self.role, choices=tuple(ROLE_RANK))
        if self.model_pattern is not None:
            if self.role == "admin":
                raise AdminTokenWithModel()
            check_model_pattern(self.model_pattern)
        object.__setattr__(self, "lifetime", _lifetime(self.expires))


@dataclass(frozen=True, kw_only=True)
class WebhookRequest:
    """Add a webhook: signed POSTs to `url` on `events` (of EVENTS), for models matching `model_pattern`.

    Deliveries go only to a plain http or https URL of a host, with no user or password in it. The
    events are kept in the order given, without repeats or blanks (`--events a,,b` names two).
    """

    url: str = field(kw_only=False)
    events: tuple[str, ...] = field(kw_only=False)
    model_pattern: str | None = None

    def __post_init__(self) -> None:
        _check_webhook_url(self.url)
        object.__setattr__(self, "events", _events(self.events))
        if self.model_pattern is not None:
            check_model_pattern(self.model_pattern)


@dataclass(frozen=True, kw_only=True)
class VersionQuery:
    """The newest versions of model `name` (of every model when None), at most `limit` of them.

    Only those in `status` and carrying every one of `tags` (KEY: VALUE); archived ones too when
    `archived`.
    """

    name: str | None = field(kw_only=False)
    status: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    archived: bool = False
    limit: int = 100

    def __post_init__(self) -> None:
        if self.name is not None:
            check_model_name(self.name)
        if self.status is not None and self.status not in VERSION_STATUSES:
            raise NotAChoice(what="version status", value=self.status, choices=VERSION_STATUSES)
        object.__setattr__(self, "tags", check_tags(dict(self.tags or {})))
        check_limit(self.limit)


def check_limit(limit: int) -> int:
    """`limit` when it is a whole number from 1 to MAX_LIMIT; BadLimit otherwise."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise BadLimit(limit=limit, most=MAX_LIMIT)
    return limit


def _lifetime(expires: str | None) -> timedelta | None:
    """`90d`, `12h` or `2w`; None for None or `never`. When it starts is the registry's to say."""
    if expires is None or expires.strip().lower() == "never":
        return None
    match = _DURATION.match(expires.strip().lower())
    if match is None:
        raise BadDuration(text=expires)
    return int(match.group(1)) * _UNIT[match.group(2)]


def _check_webhook_url(url: str) -> None:
    """InvalidInput in one line unless deliveries may go to `url` (never echoing a password)."""
    if len(url) > MAX_URL_CHARS:
        raise WebhookUrlTooLong(length=len(url), limit=MAX_URL_CHARS)
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise BadWebhookUrl(problem="the webhook URL has spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    except ValueError:
        raise BadWebhookUrl(problem="the webhook URL does not parse") from None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = parts.scheme or "none"
        raise BadWebhookUrl(problem=f"webhook URLs must be http or https, not {scheme!r}")
    if "@" in parts.netloc:
        raise BadWebhookUrl(problem="the webhook URL carries a user or password")
    if not parts.hostname:
        raise BadWebhookUrl(problem="the webhook URL names no host")


def _events(events: Iterable[str]) -> tuple[str, ...]:
    """The events in the order given, without repeats; InvalidInput for none or an unknown one."""
    chosen = tuple(dict.fromkeys(e.strip() for e in events if e.strip()))
    unknown = [e for e in chosen if e not in EVENTS]
    if not chosen or unknown:
        problem = f"unknown events {', '.join(unknown)}" if unknown else "no events"
        raise BadWebhookEvents(problem=problem, events=EVENTS)
    return chosen


def _names(value: Iterable[str], what: str) -> tuple[str, ...]:
    """A tuple of names; a lone string is refused (it would read as its letters)."""
    if isinstance(value, str):
        raise NamesGivenAsString(what=what, value=value)
    return tuple(value)
