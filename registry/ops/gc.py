"""`regctl gc`: delete the blobs no row names, safely beside registrations that are uploading.

A registration stores its blobs before it writes the rows that name them, and a blob it reuses is
touched (local stores) so it looks as young as its newest use. gc therefore deletes only what is
older than a grace period (an hour by default) and, just before deleting, reads the references
again: a registration that committed meanwhile keeps its blob. A registration also checks, after
its commit, that its blobs are still there, and stores them again if not. What gc deleted (or, with
`dry_run`, would delete) is returned and written to the audit trail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from regctl.registry import audit
from regctl.registry.access import Caller, local_caller
from regctl.registry.db import session_scope
from regctl.registry.ops.doctor import GRACE_S, referenced_blobs, stale_uploads, unreferenced
from regctl.registry.settings import Settings
from regctl.registry.store import open_store

AUDITED_SHAS = 100  # the audit row names at most this many blobs (the count and bytes are exact)


@dataclass
class Collection:
    """What one gc pass found and did."""

    dry_run: bool
    deleted: list[str] = field(default_factory=list)  # sha256 of blobs, or paths of upload temps
    bytes: int = 0
    kept_recent: int = 0  # unreferenced, but younger than the grace period
    kept_referenced: int = 0  # named by a row that committed during the pass
    # S3 multipart uploads a killed writer never completed, older than the grace period: "key (upload id)"
    aborted_uploads: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The pass as data (`regctl gc --json`)."""
        return asdict(self)


def collect_garbage(
    settings: Settings, *, dry_run: bool = False, grace_s: float = GRACE_S, caller: Caller | None = None
) -> Collection:
    """Delete (or list, with `dry_run`) unreferenced blobs and upload temps older than `grace_s`."""
    caller = caller or local_caller()
    store = open_store(settings.artifact_store)
    referenced = referenced_blobs(settings)
    result = Collection(dry_run)
    doomed, result.kept_recent = unreferenced(store.listing(), referenced, grace_s)
    stale = stale_uploads(store, grace_s)
    result.aborted_uploads = [f"{u.key} ({u.upload_id})" for u in stale]
    if not dry_run:
        for upload in stale:
            store.abort_upload(upload)
    if dry_run:
        result.deleted = [f.sha256 or f.path for f in doomed]
        result.bytes = sum(f.size for f in doomed)
        return result
    # Set the blobs aside first, then read the references again: a registration that reused one
    # and committed meanwhile gets it back; one that commits later finds it missing and stores it again.
    aside = [(found, store.set_aside(found.path)) for found in doomed]
    referenced = referenced_blobs(settings)
    for found, moved in aside:
        if found.sha256 is not None and found.sha256 in referenced:
            store.put_back(moved, found.path)
            result.kept_referenced += 1
            continue
        store.delete_file(moved)
        result.deleted.append(found.sha256 or found.path)
        result.bytes += found.size
    with session_scope(settings.database_url) as session:
        detail = {
            "deleted": len(result.deleted),
            "bytes": result.bytes,
            "blobs": result.deleted[:AUDITED_SHAS],
            "aborted_uploads": result.aborted_uploads[:AUDITED_SHAS],
        }
        audit.record(session, caller, "gc", store.root, detail=detail)
    return result
