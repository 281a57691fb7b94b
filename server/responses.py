"""Typed JSON responses serialised straight from the service's records by pydantic-core, and what a
client may see of them.

FastAPI would validate a returned record against its response model and then serialise it again;
the records are already typed and immutable, so one `dump_json` does the same job at a fraction of
the cost on the requests a fleet repeats (`versions show`, artifact metadata).

Clients never learn where the server keeps things: an artifact's `uri` (the store's own location, a
path on the server's disk for a local store) becomes its download path on this API, and error
messages name the registry's folders by their setting instead of by their path.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any
from urllib.parse import quote

from fastapi.responses import Response
from pydantic import TypeAdapter

from regctl.registry.entities import JobInfo, VersionInfo
from regctl.registry.settings import Settings

API_PREFIX = "/api/v1"


@cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def typed_json(kind: Any, value: Any, status_code: int = 200) -> Response:
    """`value` (of type `kind`, the endpoint's response model) as a JSON response."""
    return Response(_adapter(kind).dump_json(value), status_code=status_code, media_type="application/json")


def download_path(ref: str, kind: str) -> str:
    """Where this API serves the `kind` artifact of version `ref` (NAME:VERSION)."""
    return f"{API_PREFIX}/versions/{quote(ref, safe=':@')}/artifacts/{quote(kind, safe='')}"


def public_version(info: VersionInfo) -> VersionInfo:
    """`info` as a client may see it: each artifact's `uri` is its download path on this API."""
    artifacts = tuple(replace(a, uri=download_path(info.ref, a.kind)) for a in info.artifacts)
    return replace(info, artifacts=artifacts)


def public_job(settings: Settings, job: JobInfo) -> JobInfo:
    """`job` as a client may see it: its error and progress without the registry's own paths (a job that
    met a damaged blob records the store's message)."""
    error = redact_paths(settings, job.error) if job.error else job.error
    return replace(job, error=error, progress=redact_paths(settings, job.progress))


def redact_paths(settings: Settings, text: str) -> str:
    """`text` with the registry's own locations (artifact store, database file, REGCTL_HOME) named by
    their setting instead of their path; longest first, so a store inside the home reads as the store."""
    places = {
        _local(settings.artifact_store): "REGCTL_ARTIFACT_STORE",
        _local(settings.database_url.removeprefix("sqlite:///")): "the database file",
        str(settings.home): "REGCTL_HOME",
    }
    for path in sorted((p for p in places if p and p.startswith("/")), key=len, reverse=True):
        text = text.replace(path, places[path])
    return text


def _local(location: str) -> str:
    # Only a local path is secret in this sense; an s3:// or postgresql:// URL is not a disk path.
    return location.rstrip("/") if location.startswith("/") else ""
