"""`regctl export`: one self-describing archive of a model's versions, for another registry.

The archive is an uncompressed tar (its blobs are weights and TorchScript, which do not compress):
- `manifest.json` first: the format, the models, their versions (spec, status, method, summary,
  description, tags, lineage), each version's artifacts (kind, sha256, size) and the aliases;
- `blobs/<sha256>`, each blob once, named by its sha256, verified against it as it is written.
`regctl.registry.ops.importer` reads it back.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from regctl.registry.chunks import ChunkReader
from regctl.registry.db import session_scope
from regctl.registry.errors.services import BlobLargerThanRecorded
from regctl.registry.lookup import find_model, find_version, tags_of
from regctl.registry.refs import Ref
from regctl.registry.schema import (
    Alias,
    Artifact,
    ModelVersion,
)
from regctl.registry.settings import Settings
from regctl.registry.store import open_store

FORMAT = "regctl-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def export_models(settings: Settings, ref: Ref, dest: Path) -> dict:
    """Write the archive of `ref` (NAME: every version; NAME:VERSION or NAME@ALIAS: that one) to `dest`.

    Written to a temporary file beside `dest` and renamed into place once every blob was read and
    verified; returns the manifest.
    """
    store = open_store(settings.artifact_store)
    manifest = _manifest(settings, ref)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with (
            os.fdopen(fd, "wb") as out,
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            body = json.dumps(manifest, indent=1, sort_keys=True).encode()
            _add(tar, MANIFEST, len(body), iter([body]))
            for sha256, size in sorted(manifest["blobs"].items()):
                _add(tar, f"blobs/{sha256}", size, store.open_chunks(sha256))  # verified as it streams
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


def _manifest(settings: Settings, ref: Ref) -> dict:
    with session_scope(settings.database_url) as session:
        if ref.version is None and ref.alias is None:
            model = find_model(session, ref.name)
            rows = session.scalars(
                select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.version)
            ).all()
        else:
            model, row = find_version(session, ref)
            rows = [row]
        versions = [_version_entry(session, row) for row in rows]
        numbers = {v["version"] for v in versions}
        aliases = {
            name: number
            for name, number in session.execute(
                select(Alias.name, ModelVersion.version)
                .join(ModelVersion, ModelVersion.id == Alias.version_id)
                .where(Alias.model_id == model.id)
            )
            if number in numbers
        }
        blobs = {a["sha256"]: a["size"] for v in versions for a in v["artifacts"]}
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "exported_at": datetime.now(UTC).isoformat(),
            "models": [
                {
                    "name": model.name,
                    "description": model.description,
                    "aliases": aliases,
                    "versions": versions,
                }
            ],
            "blobs": blobs,
        }


def _version_entry(session: Session, row: ModelVersion) -> dict:
    artifacts = session.scalars(
        select(Artifact).where(Artifact.version_id == row.id).order_by(Artifact.id)
    ).all()
    tags = tags_of(session, row.id)
    return {
        "version": row.version,
        "status": row.status,
        "method": row.method,
        "spec": row.spec,
        "summary": row.summary,
        "source_sha256": row.source_sha256,
        "weights_sha256": row.weights_sha256,
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
        "description": row.description,
        "tags": tags,
        "git_commit": row.git_commit,
        "git_dirty": row.git_dirty,
        "run_url": row.run_url,
        "card": row.card,
        "archived_at": row.archived_at.isoformat() if row.archived_at else None,
        "artifacts": [
            {
                "kind": a.kind,
                "sha256": a.sha256,
                "size": a.size,
                "torch_version": a.torch_version,
                "method": a.method,
            }
            for a in artifacts
        ],
    }


def _add(tar: tarfile.TarFile, name: str, size: int, chunks: Iterator[bytes]) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    reader = ChunkReader(chunks)
    tar.addfile(info, reader)  # type: ignore[arg-type]
    # Read to the end: a verifying stream raises on a mismatch only after its last chunk.
    if reader.read():
        raise BlobLargerThanRecorded(name=name)
