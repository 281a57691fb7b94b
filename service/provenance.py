"""Signing keys and attestations: who may make and retire keys (admins), and the attestations a
reader of a version may fetch beside its artifacts. The public keys are public: anyone may list them.
"""

from __future__ import annotations

from regctl.registry.access import Caller
from regctl.registry.entities import ArtifactInfo, KeyInfo
from regctl.registry.errors.lookup import MissingArtifact
from regctl.registry.provenance import signing_keys
from regctl.registry.provenance.lookup import attestations_about
from regctl.registry.settings import Settings
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
    found = attestations_about(settings, version_ref, kind, artifact.sha256)
    if found is None:
        raise MissingArtifact(
            ref=version_ref,
            kind=f"attestation of its {kind}",
            hint="it was not signed ('regctl versions show' says why under attestation)",
        )
    return version_ref, artifact, found
