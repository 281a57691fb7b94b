"""What the trusted supervisor signs when a version becomes ready: one in-toto statement per proved
artifact, in a DSSE envelope, stored as an `attestation` artifact of the version.

Called by the job pipeline (worker/supervisor/pipeline.py), in the worker's own process and never
in a sandbox, with the bytes the judge proved and the report it wrote: the statement names the
artifact's sha256 and says what proved it (method, torch and regctl versions, the battery's size
and seed, the coverage summary, the runtimes, the report's sha256, the sandbox's protections, the
time). The envelopes are recorded in the same transaction that makes the version ready, so a
ready version's attestations exist from its first moment. Without a usable key nothing is signed
and the summary says why (`attestation.why`); the version's proof stands either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from sqlalchemy import select

from regctl.registry.db import session_scope
from regctl.registry.formats import FILE_SUFFIX, FORMATS
from regctl.registry.provenance.envelope import sign, statement
from regctl.registry.provenance.keys import KeyFileError, load_signer
from regctl.registry.schema import SigningKey, utcnow
from regctl.registry.settings import Settings
from regctl.registry.store import ArtifactStore, BlobRef

SIGNED_KINDS = FORMATS  # every format, once proved, gets its statement


@dataclass(frozen=True)
class Subject:
    """A stored artifact the judge proved: its kind, its sha256 and the runtimes that proved it."""

    kind: str
    sha256: str
    method: str | None
    runtimes: tuple[str, ...]


@dataclass(frozen=True)
class Signed:
    """The envelopes made (subject kind, stored blob) and the summary the version keeps."""

    envelopes: list[tuple[str, BlobRef]]
    summary: dict[str, Any]


def sign_proofs(
    settings: Settings,
    store: ArtifactStore,
    ref: str,
    subjects: list[Subject],
    report: dict[str, Any],
    report_sha256: str,
    *,
    job: str,
) -> Signed:
    """Sign one statement per subject with the registry's key; nothing signed (and why) without one."""
    try:
        signer = load_signer(settings.signing_key_path)
    except KeyFileError as exc:
        why = "no signing key: run 'regctl keys init'" if not settings.signing_key_path.exists() else str(exc)
        return Signed([], {"signed": False, "why": why})
    key_id = signer.public_key.keyid
    refusal = _key_refusal(settings, key_id)
    if refusal:
        return Signed([], {"signed": False, "why": refusal, "key_id": key_id})
    model, _, number = ref.partition(":")
    when = utcnow()
    envelopes = []
    for subject in subjects:
        name = f"{model}-{number}{FILE_SUFFIX[subject.kind]}"
        payload = statement(name, subject.sha256, predicate(ref, subject, report, report_sha256, job, when))
        envelopes.append((subject.kind, store.put_bytes(sign(payload, signer))))
    summary = {"signed": True, "key_id": key_id, "kinds": [s.kind for s in subjects], "at": when.isoformat()}
    return Signed(envelopes, summary)


def _key_refusal(settings: Settings, key_id: str) -> str | None:
    with session_scope(settings.database_url) as session:
        row = session.scalar(select(SigningKey).where(SigningKey.key_id == key_id))
        if row is None:
            return (
                f"the key in {settings.signing_key_path} is not one this registry made ('regctl keys init')"
            )
        if row.retired_at is not None:
            return f"signing key {key_id[:16]}… is retired: run 'regctl keys rotate' for a new one"
    return None


def predicate(
    ref: str, subject: Subject, report: dict[str, Any], report_sha256: str, job: str, when: datetime
) -> dict[str, Any]:
    """What the registry vouches for about one artifact (the statement's predicate)."""
    model, _, number = ref.partition(":")
    coverage = report.get("coverage") or {}
    return {
        "model": model,
        "version": int(number) if number.isdigit() else number,
        "format": subject.kind,
        "method": subject.method,
        "job": job,
        "versions": {"torch": (report.get("versions") or {}).get("torch"), "regctl": _regctl_version()},
        "battery": {"size": report.get("battery_size"), "seed": report.get("battery_seed")},
        "coverage": {
            k: coverage.get(k) for k in ("recorded", "lines_run", "lines", "branches_run", "branches")
        },
        "runtimes": list(subject.runtimes),
        "report": {"sha256": report_sha256},
        "sandbox": _protections(report.get("sandbox") or {}),
        "time": when.isoformat(),
    }


def _protections(sandbox: dict[str, Any]) -> dict[str, Any]:
    return {
        role: {"mode": entry.get("mode"), "missing": list(entry.get("missing") or [])}
        for role, entry in sandbox.items()
        if isinstance(entry, dict)
    }


def _regctl_version() -> str:
    try:
        return version("regctl")
    except PackageNotFoundError:
        return "unknown"
