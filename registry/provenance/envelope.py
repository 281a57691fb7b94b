"""In-toto Statements (v1) in DSSE envelopes: what the registry signs for each proved artifact, and
the check a deployer runs offline with the public key alone.

The envelope is securesystemslib's DSSE implementation (its pre-authentication encoding and
signature handling), never hand-rolled; the file is one JSON envelope per line
(`model.pt.intoto.jsonl`), as the in-toto attestation bundle format has it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://regctl.dev/attestation/proof/v1"
MAX_ENVELOPE_BYTES = 4 * 1024 * 1024


class AttestationRefused(Exception):
    """The attestation does not vouch for these bytes under these keys; the message says why."""


@dataclass(frozen=True)
class Verified:
    """A statement whose signature verified, and the key that signed it."""

    statement: dict[str, Any]
    key_id: str

    @property
    def predicate(self) -> dict[str, Any]:
        """What the registry said it proved."""
        return self.statement.get("predicate") or {}


def statement(name: str, sha256: str, predicate: dict[str, Any]) -> dict[str, Any]:
    """An in-toto Statement v1 about one file."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def sign(payload: dict[str, Any], signer: CryptoSigner) -> bytes:
    """The statement signed in a DSSE envelope, as one JSON line."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    envelope = Envelope(body, PAYLOAD_TYPE, {})
    envelope.sign(signer)
    return json.dumps(envelope.to_dict(), sort_keys=True).encode() + b"\n"


def verify(
    data: bytes, sha256: str, keys: list[SSlibKey], retired: dict[str, datetime] | None = None
) -> Verified:
    """The statement in `data` when a key in `keys` signed it and its subject is `sha256`.

    A key in `retired` (key id -> when it was retired) vouches only for statements signed before then.
    """
    if len(data) > MAX_ENVELOPE_BYTES:
        raise AttestationRefused("the attestation is larger than any the registry writes")
    lines = [line for line in data.splitlines() if line.strip()]
    if not lines:
        raise AttestationRefused("the attestation file is empty")
    problems = []
    for line in lines:
        try:
            return _verify_one(line, sha256, keys, retired or {})
        except AttestationRefused as exc:
            problems.append(str(exc))
    raise AttestationRefused(problems[0])


def _verify_one(line: bytes, sha256: str, keys: list[SSlibKey], retired: dict[str, datetime]) -> Verified:
    try:
        envelope = Envelope.from_dict(json.loads(line))
    except (ValueError, KeyError, TypeError) as exc:
        raise AttestationRefused(f"the attestation is not a DSSE envelope: {exc}") from None
    if envelope.payload_type != PAYLOAD_TYPE:
        raise AttestationRefused(
            f"the envelope's payloadType is {envelope.payload_type!r}, not {PAYLOAD_TYPE}"
        )
    try:
        signed_by = envelope.verify(keys, 1)
    except VerificationError:
        raise AttestationRefused(
            "no trusted key signed this attestation, or it was changed after signing"
        ) from None
    try:
        payload = json.loads(envelope.payload)
    except ValueError as exc:
        raise AttestationRefused(f"the signed statement is not JSON: {exc}") from None
    if not isinstance(payload, dict) or payload.get("_type") != STATEMENT_TYPE:
        raise AttestationRefused("the signed payload is not an in-toto Statement v1")
    digests = [s.get("digest", {}).get("sha256") for s in payload.get("subject") or [] if isinstance(s, dict)]
    if sha256 not in digests:
        raise AttestationRefused(
            f"the attestation is about sha256 {', '.join(map(str, digests))[:80]}, "
            f"not these bytes ({sha256[:16]}…)"
        )
    key_id = next(iter(signed_by))
    if key_id in retired:
        signed_at = _when(payload)
        if signed_at is None or signed_at >= retired[key_id]:
            raise AttestationRefused(f"key {key_id[:16]}… was retired before this attestation was signed")
    return Verified(payload, key_id)


def _when(payload: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str((payload.get("predicate") or {}).get("time")))
    except ValueError:
        return None


def payload_of(line: bytes) -> dict[str, Any]:
    """The statement of an envelope without checking it (for showing what a file claims)."""
    envelope = json.loads(line)
    return json.loads(base64.b64decode(envelope["payload"]))
