"""The attestations a version holds about one of its artifacts (the registry's own envelopes)."""

from __future__ import annotations

from sqlalchemy import select

from regctl.registry.db import session_scope
from regctl.registry.provenance.envelope import payload_of
from regctl.registry.schema import Artifact, Model, ModelVersion
from regctl.registry.settings import Settings
from regctl.registry.store import open_store


def attestations_about(settings: Settings, version_ref: str, kind: str, sha256: str) -> bytes | None:
    """Every attestation of NAME:VERSION whose subject is `sha256` (its `kind` artifact), one per line."""
    name, _, number = version_ref.partition(":")
    with session_scope(settings.database_url) as session:
        rows = session.scalars(
            select(Artifact.sha256)
            .join(ModelVersion, ModelVersion.id == Artifact.version_id)
            .join(Model, Model.id == ModelVersion.model_id)
            .where(
                Model.name == name,
                ModelVersion.version == int(number),
                Artifact.kind == "attestation",
                Artifact.method == kind,
            )
            .order_by(Artifact.id)
        ).all()
    store = open_store(settings.artifact_store)
    lines = [line for line in (store.read_small(sha) for sha in rows) if names(line, sha256)]
    return b"".join(lines) or None


def names(line: bytes, sha256: str) -> bool:
    """True when the envelope's statement names `sha256` among its subjects.

    The registry's own envelopes, written by its supervisor: read to match the subject, never trusted
    further (a deployer verifies the signature with the public key).
    """
    try:
        subjects = payload_of(line).get("subject") or []
    except (ValueError, KeyError, TypeError):
        return False
    return any(isinstance(s, dict) and (s.get("digest") or {}).get("sha256") == sha256 for s in subjects)
