"""Checking an artifact against its attestation: offline (`regctl verify`) and on fetch.

A deployer trusts one or more public keys (`--key PUB`, or `REGCTL_TRUSTED_KEYS`, PEM files separated
by commas); an artifact's bytes are accepted only when an attestation signed by one of them names
their sha256 (registry/provenance/envelope.py, securesystemslib's DSSE). On fetch, the registry's
key list also says when a key was retired: a key vouches for nothing it signed after that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from regctl.registry.errors import InvalidInput
from regctl.registry.errors.services import AttestationFailed
from regctl.registry.provenance.envelope import AttestationRefused, Verified, verify
from regctl.registry.provenance.keys import KeyFileError, public_from_pem
from regctl.registry.settings import ClientSettings

ATTESTATION_SUFFIX = ".intoto.jsonl"


def trusted_keys(paths: Iterable[str]) -> list:
    """The public keys in the PEM files `paths` (and REGCTL_TRUSTED_KEYS when none are given)."""
    named = [p for p in paths if p] or list(ClientSettings.from_env().trusted_keys)
    keys = []
    for path in named:
        try:
            keys.append(public_from_pem(Path(path).expanduser().read_text()))
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read the public key {path}: {exc}; pass a PEM file") from None
        except KeyFileError as exc:
            raise InvalidInput(f"{path}: {exc}; pass the PEM that 'regctl keys show' prints") from None
    return keys


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check(
    what: str,
    sha256: str,
    attestation: bytes | None,
    keys: list,
    retired: dict[str, datetime] | None = None,
    *,
    consequence: str = "the file was not written",
) -> Verified:
    """The verified statement, or AttestationFailed (exit 6) saying why the bytes are refused."""
    if attestation is None:
        reason = "has no attestation that names these bytes"
        raise AttestationFailed(what=what, reason=reason, consequence=consequence)
    try:
        return verify(attestation, sha256, keys, retired)
    except AttestationRefused as exc:
        raise AttestationFailed(what=what, reason=str(exc), consequence=consequence) from None


def describe(verified: Verified) -> str:
    """One line: what the attestation vouches for."""
    p = verified.predicate
    battery = p.get("battery") or {}
    runtimes = ", ".join(p.get("runtimes") or []) or "unknown runtimes"
    return (
        f"{p.get('model')}:{p.get('version')} {p.get('format')} ({p.get('method')}), proved under torch "
        f"{(p.get('versions') or {}).get('torch')} on a battery of {battery.get('size')} inputs "
        f"(seed {battery.get('seed')}) in {runtimes}; signed by key {verified.key_id[:16]}… "
        f"at {p.get('time')}"
    )
