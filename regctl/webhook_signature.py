"""Signing and verifying regctl webhook deliveries (standard library only, so any receiver can import it).

Every delivery is a JSON POST with these headers:

    X-Regctl-Event: version.ready
    X-Regctl-Delivery: 42                     # the same id as the body's "id"; retries repeat it
    X-Regctl-Timestamp: 1767225600            # unix seconds when this attempt was signed
    X-Regctl-Signature: sha256=<hex HMAC-SHA256(secret, b"<timestamp>." + body)>

A receiver checks the signature over the exact bytes it received, before parsing them:

    from regctl.webhook_signature import verify_signature

    ok = verify_signature(secret, body, headers["X-Regctl-Timestamp"], headers["X-Regctl-Signature"])

The timestamp is inside the signed bytes, so a captured delivery replayed later fails the
`tolerance_s` window; within the window, receivers dedupe on X-Regctl-Delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import time

EVENT_HEADER = "X-Regctl-Event"
DELIVERY_HEADER = "X-Regctl-Delivery"
TIMESTAMP_HEADER = "X-Regctl-Timestamp"
SIGNATURE_HEADER = "X-Regctl-Signature"
SCHEME = "sha256="
DEFAULT_TOLERANCE_S = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The X-Regctl-Signature value for `body` sent at `timestamp`: `sha256=<hex>`."""
    signed = f"{int(timestamp)}.".encode() + body
    return SCHEME + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str | int,
    signature: str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """True when `signature` signs `body` at `timestamp` with `secret` and the timestamp is fresh.

    Compares in constant time; refuses a timestamp more than `tolerance_s` seconds from `now`
    (either way), a malformed timestamp and a signature of any other scheme.
    """
    text = str(timestamp).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        return False
    moment = int(text)
    current = time.time() if now is None else now
    if abs(current - moment) > tolerance_s:
        return False
    expected = sign(secret, body, moment)
    return hmac.compare_digest(expected.encode(), (signature or "").strip().encode("ascii", "replace"))
