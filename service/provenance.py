"""Signing keys and attestations: who may make and retire keys (admins), and the attestations a
reader of a version may fetch beside its artifacts. The public keys are public: anyone may list them.
"""

from __future__ import annotations

from sqlalchemy import select

from regctl.registry.access import Caller
from regctl.registry.db import session_scope
from regctl.registry.entities import ArtifactInfo, KeyInfo
from regctl.registry.errors.lookup import MissingArtifact
from regctl.registry.provenance import signing_keys
from regctl.registry.provenance.envelope import payload_of
from regctl.registry.schema import Artifact, Model, ModelVersion
from regctl.registry.settings import Settings
from regctl.registry.store import open_store
from regctl.service.artifacts import find_artifact


def init_key(settings: Settings, caller: Caller, *, rotate: bool = False) -> KeyInfo:
    """Create (or, with `rotate`, replace) the registry's signing key; admins only."""
    caller.require("keys")
    return signing_keys.init_key(settings, caller, rotate=rotate)


def retire_key(settings: Settings, caller: Caller, key_id: str) -> KeyInfo:
    """Retire a signing key for new signatures; admins only."""
    caller.require("keys")
    return signing_keys.retire_key(settings, caller, key_id)


def list_keys(settings: Settings) -> list[KeyInfo]:
    """Every public key the registry has signed with (no token needed: they are public)."""
    return signing_keys.list_keys(settings)


def attestation_of(
    settings: Settings, caller: Caller, ref: str, kind: str
) -> tuple[str, ArtifactInfo, bytes]:
    """The version's attestations about its newest artifact of `kind`, one DSSE envelope per line."""
    version_ref, artifact = find_artifact(settings, caller, ref, kind)
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
    lines = [line for line in (store.read_small(sha) for sha in rows) if _about(line, artifact.sha256)]
    if not lines:
        raise MissingArtifact(
            ref=version_ref,
            kind=f"attestation of its {kind}",
            hint="it was not signed ('regctl versions show' says why under attestation)",
        )
    return version_ref, artifact, b"".join(lines)


def _about(line: bytes, sha256: str) -> bool:
    # The registry's own envelopes, written by its supervisor: read to match the subject, never trusted
    # further (a deployer verifies the signature with the public key).
    try:
        subjects = payload_of(line).get("subject") or []
    except (ValueError, KeyError, TypeError):
        return False
    return any(isinstance(s, dict) and (s.get("digest") or {}).get("sha256") == sha256 for s in subjects)
