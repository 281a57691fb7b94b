"""The registry's signing keys as records: create (and rotate), list, retire.

The private key lives only in its file (REGCTL_SIGNING_KEY); the database keeps every public key
the registry has signed with, so a deployer can fetch the whole set (`GET /api/v1/keys`) and old
attestations keep verifying after a rotation. A retired key signs nothing more; what it signed
before its retirement still verifies.
"""

from __future__ import annotations

import os

from sqlalchemy import select

from regctl.registry import audit
from regctl.registry.access import Caller
from regctl.registry.db import session_scope
from regctl.registry.entities import KeyInfo
from regctl.registry.errors import InvalidInput, NotFound
from regctl.registry.provenance.keys import (
    KeyFileError,
    PublicKey,
    create_key_file,
    load_signer,
    signer_public,
)
from regctl.registry.schema import SigningKey, utcnow
from regctl.registry.settings import Settings


def init_key(settings: Settings, caller: Caller, *, rotate: bool = False) -> KeyInfo:
    """Create the signing key file and record its public key; `rotate` replaces an existing key file."""
    path = settings.signing_key_path
    if path.exists() and not rotate:
        raise InvalidInput(
            f"{path} already holds a signing key; 'regctl keys rotate' makes a new one (old attestations "
            "keep verifying)"
        )
    fresh = path.with_name(f".{path.name}.new")
    fresh.unlink(missing_ok=True)
    public = create_key_file(fresh)
    with session_scope(settings.database_url) as session:
        session.add(SigningKey(key_id=public.key_id, public_pem=public.pem, created_by=caller.name[:128]))
        audit.record(session, caller, "key.create", f"key {public.key_id}", detail={"rotate": rotate})
        session.flush()
        os.replace(fresh, path)  # the file moves into place only once its public key is recorded
    return next(k for k in list_keys(settings) if k.key_id == public.key_id)


def current_key(settings: Settings) -> PublicKey | None:
    """The public half of the key file, or None when there is none."""
    path = settings.signing_key_path
    if not path.exists():
        return None
    return signer_public(load_signer(path))


def list_keys(settings: Settings) -> list[KeyInfo]:
    """Every key the registry has signed with, oldest first, the current one marked."""
    try:
        current = current_key(settings)
    except KeyFileError:
        current = None
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(SigningKey).order_by(SigningKey.created_at)).all()
        return [
            KeyInfo(
                key_id=r.key_id,
                public_pem=r.public_pem,
                created_at=r.created_at,
                created_by=r.created_by,
                retired_at=r.retired_at,
                current=current is not None and current.key_id == r.key_id,
            )
            for r in rows
        ]


def retire_key(settings: Settings, caller: Caller, key_id: str) -> KeyInfo:
    """Mark a key as trusted no more for new signatures (a prefix of its id is enough)."""
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(SigningKey).where(SigningKey.key_id.startswith(key_id))).all()
        if len(rows) != 1 or not key_id:
            raise NotFound(
                f"no single signing key has an id starting {key_id!r}; 'regctl keys show' lists them"
            )
        row = rows[0]
        if row.retired_at is None:
            row.retired_at = utcnow()
            audit.record(session, caller, "key.retire", f"key {row.key_id}")
        found = row.key_id
    return next(k for k in list_keys(settings) if k.key_id == found)


def signing_line(settings: Settings) -> str:
    """One line for a worker's start-up: the key it signs attestations with, or why it signs nothing."""
    try:
        current = current_key(settings)
    except KeyFileError as exc:
        return f"signing: NOT SIGNING: {exc}"
    if current is None:
        return f"signing: NOT SIGNING: no key at {settings.signing_key_path} (run 'regctl keys init')"
    return f"signing: attestations signed with key {current.key_id[:16]}… ({settings.signing_key_path})"
