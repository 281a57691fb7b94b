"""The services regctl stands on (database, broker, server, store): unreachable, misnamed or damaged."""

from __future__ import annotations

from regctl.registry.errors import (
    AlreadyExists,
    CorruptedArtifact,
    InvalidInput,
    RegistryNeedsAttention,
    ServiceUnavailable,
    TooManyRequests,
)

DATABASE_URL_HINT = "use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
_RESTORE = "restore it from a backup"
_DOCTOR_LISTS = "('regctl doctor' lists every damaged blob)"


class DatabaseUnreachable(ServiceUnavailable):
    """Raised when the database cannot be connected to."""

    template = (
        "cannot reach the database at {url} ({reason}); check REGCTL_DATABASE_URL and that the server "
        "is running"
    )


class BrokerUnreachable(ServiceUnavailable):
    """Raised when the Celery broker (Redis) cannot be connected to."""

    template = (
        "cannot reach the broker at {url} ({reason}); check REGCTL_BROKER_URL and that Redis is running"
    )


class ServerUnreachable(ServiceUnavailable):
    """Raised when the regctl server a client talks to cannot be connected to."""

    template = (
        "cannot reach the regctl server at {url} ({reason}); check REGCTL_URL and that 'regctl serve' "
        "runs there"
    )


class StoreUnreachable(ServiceUnavailable):
    """Raised when a remote filesystem (the artifact store, a Triton repository) cannot be reached."""

    template = "{where} is unreachable ({reason}); check the URL, the network and the credentials"


class StoreNeedsPackage(ServiceUnavailable):
    """Raised when a store URL's scheme needs an fsspec package that is not installed."""

    template = (
        "{where} needs a filesystem package that is not installed ({reason}); "
        "install it (for s3:// that is `pip install s3fs`)"
    )


class StoreUrlNotUnderstood(InvalidInput):
    """Raised when fsspec cannot make sense of a store URL."""

    template = (
        "{what} {url!r} is not understood: {reason}; give a local path or a URL such as s3://bucket/prefix"
    )


class DatabaseUrlUnparsed(InvalidInput):
    """Raised when REGCTL_DATABASE_URL is not a URL."""

    template = "REGCTL_DATABASE_URL {url!r} does not parse as a URL; " + DATABASE_URL_HINT


class UnsupportedDatabase(InvalidInput):
    """Raised when REGCTL_DATABASE_URL names a database regctl does not run on."""

    template = (
        "REGCTL_DATABASE_URL names the database {backend!r}, which regctl does not run on; "
        + DATABASE_URL_HINT
    )


class Conflict(AlreadyExists):
    """Raised when a change breaks a uniqueness rule of the database (a race lost to another writer)."""

    template = "that change conflicts with existing data: {detail}; look at the current state and try again"


class SchemaOutdated(RegistryNeedsAttention):
    """Raised when the database's schema is not the one this regctl runs on."""

    template = "database {url} is at {found}, this regctl needs {head}; run 'regctl db upgrade'"


class DatabaseEmpty(RegistryNeedsAttention):
    """Raised when the SQLite registry file exists but holds nothing (its data was lost)."""

    template = (
        "the registry database {url} is an empty file: its data was lost; " + _RESTORE + ", "
        "or delete it to start a new, empty registry"
    )


class DatabaseDamaged(RegistryNeedsAttention):
    """Raised when the registry database file is not a database any more."""

    template = (
        "the registry database {url} is damaged ({reason}); "
        + _RESTORE
        + " ('regctl doctor' checks the whole registry)"
    )


class BlobMismatch(CorruptedArtifact):
    """Raised when a stored blob's bytes no longer hash to its name."""

    template = (
        "artifact blob sha256:{sha256} at {uri} does not match its checksum (read sha256:{read}…); "
        + _RESTORE
        + ", or re-register the model or re-run the convert job "
        + _DOCTOR_LISTS
    )


class BytesNotAsAnnounced(CorruptedArtifact):
    """Raised when bytes handed to the store as a known blob hash or measure otherwise."""

    template = (
        "the bytes given as blob sha256:{sha256} ({size} bytes) are sha256:{read}… ({read_size} bytes); "
        "nothing was stored; read them again from their source"
    )


class BlobLargerThanRecorded(CorruptedArtifact):
    """Raised when a blob being exported is larger than the size its row records."""

    template = "{name} is larger than its recorded size; run 'regctl doctor'"


class BundleDamaged(CorruptedArtifact):
    """Raised when a stored source bundle cannot be unpacked safely."""

    template = "source bundle {name} cannot be unpacked safely: {reason}; run 'regctl doctor'"


class DownloadCutShort(CorruptedArtifact):
    """Raised when a server kept cutting an artifact's download short (it does so on a failed check)."""

    template = (
        "the download of {ref} {kind} was cut short {cuts} time(s), at {done} bytes; the stored artifact "
        "may be damaged (see the server's log)"
    )


class DownloadMismatch(CorruptedArtifact):
    """Raised when a downloaded artifact's bytes do not hash to the sha256 its source announced."""

    template = "{ref} {kind} {source} has sha256 {got}…, not the announced {announced}…; fetch it again"


class PresignedRefused(ServiceUnavailable):
    """Raised when the artifact store answers a presigned URL with anything but the bytes."""

    template = "the store answered {status} to the presigned URL for {ref}; fetch without --presign"


class PresignedUnreachable(ServiceUnavailable):
    """Raised when the artifact store behind a presigned URL cannot be reached."""

    template = "cannot reach the artifact store's presigned URL ({reason}); fetch without --presign"


class NotARegctlServer(InvalidInput):
    """Raised when an artifact download answers without the sha256 and size a regctl server sends."""

    template = (
        "the server at {url} sent an artifact without its sha256 or size; is REGCTL_URL a regctl server?"
    )


class ChangedWhileDownloaded(CorruptedArtifact):
    """Raised when a resumed download finds the artifact replaced since its first bytes."""

    template = "the artifact changed while it was being downloaded; fetch it again"


class RateLimited(TooManyRequests):
    """Raised when a token or an address sends more requests than the server's rate limit."""

    template = (
        "more than {limit} requests from this {who}; wait {retry_after}s and try again, "
        "or ask the server's admin to raise {setting}"
    )


class UploadsBusy(TooManyRequests):
    """Raised when a token starts more uploads at once than the server allows."""

    template = (
        "this token is already sending {count} uploads, the most REGCTL_UPLOADS_PER_TOKEN allows; "
        "wait {retry_after}s for one to finish and try again"
    )


class UploadStalled(InvalidInput):
    """Raised when an upload sends nothing for longer than the server waits (HTTP 408)."""

    http_status = 408
    code = "upload_stalled"
    template = (
        "the upload sent nothing for {seconds:g}s (REGCTL_BODY_TIMEOUT_S) and was closed; "
        "check the connection and register again"
    )


class AttestationFailed(RegistryNeedsAttention):
    """Raised when an artifact's attestation does not vouch for its bytes under the trusted keys."""

    template = "{what}: {reason}; {consequence}, and check it against the key 'regctl keys show' prints"
