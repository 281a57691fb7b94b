"""The exceptions regctl raises, each with a message a user can act on.

Every error carries the CLI exit code that DESIGN.md documents:
1 a job or validation failed, 2 bad usage or input, 3 not found, 4 service unreachable,
5 not allowed (no valid token, or the token's role or model pattern does not cover the action),
6 the registry's data cannot be used as it is: a schema this regctl does not run on, a damaged
  database file, or a stored blob that is missing or no longer matches its sha256.

The named errors, each with its message written once as a template, live beside this module by
subject: lookup (names, refs, what is not found), access (tokens), inputs (settings, tags, search,
webhooks, job and version moves), files (model directories, uploads, stores, destinations) and
services (database, broker, server, store, damaged data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

# A field holding several values renders as "a, b, c" (choices, names), so no raise site joins them.
_LISTS = (list, tuple)


class RegctlError(Exception):
    """Raised for any failure regctl can explain to its user in one line.

    A named error writes its message once, as `template` (str.format fields), and is raised with the
    fields: `UnknownModel(name="resnet")`. The fields stay on the error as `fields`. A plain message
    (`InvalidInput("...")`) still works, for one-off texts and for errors rebuilt from a server's reply.
    """

    exit_code = 1
    http_status = 500
    code = "error"
    template: ClassVar[str] = ""

    def __init__(self, message: str | None = None, /, **fields: Any) -> None:
        if message is None:
            message = self.render(**fields)
        super().__init__(message)
        self.message = message
        self.fields: Mapping[str, Any] = fields

    @classmethod
    def render(cls, **fields: Any) -> str:
        """The class's template filled with `fields`; a missing field is a bug at the raise site."""
        if not cls.template:
            raise TypeError(f"{cls.__name__} has no template; give it a message")
        shown = {k: ", ".join(map(str, v)) if isinstance(v, _LISTS) else v for k, v in fields.items()}
        return cls.template.format(**shown)

    def with_fields(self, **changes: Any) -> RegctlError:
        """A new error of this class, its message rendered again from its fields with `changes` made.

        A layer that must not show a field as it was raised (a server's own path) restates the error
        rather than editing its text.
        """
        return type(self)(**{**self.fields, **changes})

    def __str__(self) -> str:
        return self.message


class InvalidInput(RegctlError):
    """Raised when an argument given by the user is malformed (a name, a REF, an option)."""

    exit_code = 2
    http_status = 400
    code = "invalid_input"


class InvalidSpec(InvalidInput):
    """Raised when a model directory or its regctl.toml is wrong."""

    http_status = 400
    code = "invalid_spec"


class AlreadyExists(InvalidInput):
    """Raised when creating something whose name is already taken."""

    http_status = 409
    code = "already_exists"


class InvalidTransition(InvalidInput):
    """Raised when a job or version is asked to move to a state it cannot reach from its current one."""

    http_status = 409
    code = "invalid_transition"


class NotFound(RegctlError):
    """Raised when a model, version, alias, job or artifact does not exist."""

    exit_code = 3
    http_status = 404
    code = "not_found"


class ConversionFailed(RegctlError):
    """Raised when a conversion or validation job fails for a reason of the model, not of regctl.

    The supervisor raises it from a stage and records `fields["reason"]` (with the report artifacts
    and summary the stage passes as `artifacts` and `summary`) on the job; its message is the line a
    user reads about the failed job.
    """

    exit_code = 1
    http_status = 409
    code = "conversion_failed"
    template = "{kind} job {job_id} for {ref} failed: {reason}; details: regctl versions show {ref} --json"

    @classmethod
    def of_job(cls, job: Any) -> ConversionFailed:
        """The line about a failed job (a JobInfo) wherever it is followed: the CLI, the Python client."""
        # A recorded reason may span lines (a traceback's tail); the line a user reads may not.
        reason = " ".join((job.error or "no reason recorded").split())[:600]
        return cls(kind=job.kind, job_id=job.id, ref=f"{job.model}:{job.version}", reason=reason)


class ServiceUnavailable(RegctlError):
    """Raised when the database, the broker or the artifact store cannot be reached."""

    exit_code = 4
    http_status = 503
    code = "service_unavailable"


class TooManyRequests(ServiceUnavailable):
    """Raised when a client asks more of a server than its limits allow (HTTP 429, with Retry-After)."""

    http_status = 429
    code = "too_many_requests"

    @property
    def retry_after(self) -> int | None:
        """Seconds to wait before trying again, when the server said (its Retry-After)."""
        value = self.fields.get("retry_after")
        return int(value) if value is not None else None


class RegistryNeedsAttention(RegctlError):
    """Raised when the registry's own data cannot be used as it is (outdated schema, damaged database)."""

    exit_code = 6
    http_status = 503
    code = "registry_needs_attention"


class CorruptedArtifact(RegistryNeedsAttention):
    """Raised when a stored blob no longer matches its sha256 and must not be handed out."""

    http_status = 500
    code = "corrupted_artifact"


class MissingBlob(CorruptedArtifact):
    """Raised when a blob a row references is absent from the artifact store."""

    code = "missing_blob"
    template = (
        "artifact blob sha256:{sha256} is missing from the store {root}; restore it from a backup, "
        "or check that REGCTL_ARTIFACT_STORE names the store this registry was written with "
        "('regctl doctor' lists every damaged blob)"
    )


class NotAllowed(RegctlError):
    """Raised when the caller's token does not allow the action (HTTP 403)."""

    exit_code = 5
    http_status = 403
    code = "not_allowed"


class Unauthenticated(NotAllowed):
    """Raised when a request carries no token, or one that is unknown, expired or revoked (HTTP 401)."""

    http_status = 401
    code = "unauthenticated"


class TooLarge(InvalidInput):
    """Raised when an upload is bigger than the registry accepts (REGCTL_MAX_BUNDLE_BYTES)."""

    http_status = 413
    code = "too_large"


def error_classes() -> dict[str, type[RegctlError]]:
    """Every error class by its `code`, so a client rebuilds the server's error with the same exit code."""
    found: dict[str, type[RegctlError]] = {}
    pending: list[type[RegctlError]] = [RegctlError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found
