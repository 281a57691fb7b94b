"""The registry's signing key: an Ed25519 private key in a PEM file only the service user reads.

`REGCTL_SIGNING_KEY` names the file (default `<REGCTL_HOME>/keys/signing.pem`, inside the registry
home every sandbox has masked). Its public half, with securesystemslib's key id (the sha256 of the
key's canonical form), is what a deployer trusts; the registry records every public key it ever
signed with, so attestations made before a rotation keep verifying against the old key id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.signer import CryptoSigner, SSlibKey


class KeyFileError(Exception):
    """The key file is missing, unreadable, or not an Ed25519 private key; the message says which."""


@dataclass(frozen=True)
class PublicKey:
    """A public key as a deployer gets it: its id and its PEM text."""

    key_id: str
    pem: str

    def sslib(self) -> SSlibKey:
        """The key as securesystemslib verifies with it."""
        return public_from_pem(self.pem)


def create_key_file(path: Path) -> PublicKey:
    """Write a new Ed25519 private key to `path` (mode 0600, never over an existing file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return public_of(private.public_key())


def load_signer(path: Path) -> CryptoSigner:
    """The signer of the key file at `path`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the signing key {path}: {exc.strerror or exc}") from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))


def public_of(public: Ed25519PublicKey) -> PublicKey:
    """The id and PEM of a public key."""
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PublicKey(SSlibKey.from_crypto(public).keyid, pem.decode())


def signer_public(signer: CryptoSigner) -> PublicKey:
    """The public half of a signer."""
    return PublicKey(signer.public_key.keyid, public_pem_of(signer.public_key))


def public_pem_of(key: SSlibKey) -> str:
    """An SSlibKey's PEM text."""
    raw = bytes.fromhex(key.keyval["public"])
    public = Ed25519PublicKey.from_public_bytes(raw)
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def public_from_pem(pem: str) -> SSlibKey:
    """A public key from its PEM text (KeyFileError when it is not an Ed25519 public key)."""
    try:
        public = serialization.load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise KeyFileError(f"not a PEM public key: {exc}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise KeyFileError("not an Ed25519 public key")
    return SSlibKey.from_crypto(public)
