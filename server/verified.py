"""Blobs this server read through and found matching their sha256, remembered for a while.

A deployment fleet fetching the same gigabyte artifact again and again should not make the server
hash it each time: the first download after start (or after VERIFIED_TTL_S) is checked as it
streams, with its last chunk held back until the digest matches; later ones stream the same file
unhashed as long as its identity (device, inode, size, mtime, ctime) is unchanged. The regctl
client checks every download end to end either way, and curl users check the Digest header.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

VERIFIED_TTL_S = 600.0
_LIMIT = 100_000


class VerifiedBlobs:
    """sha256 -> (file identity, monotonic time of the check)."""

    def __init__(self, ttl: float = VERIFIED_TTL_S) -> None:
        self.ttl = ttl
        self._seen: dict[str, tuple[tuple[int, ...], float]] = {}
        self._lock = threading.Lock()

    def fresh(self, sha256: str, identity: tuple[int, ...] | None) -> bool:
        """True when this exact file was verified less than `ttl` seconds ago."""
        if identity is None:
            return False
        with self._lock:
            entry = self._seen.get(sha256)
        return entry is not None and entry[0] == identity and time.monotonic() - entry[1] < self.ttl

    def checked(
        self, sha256: str, identity: tuple[int, ...] | None, chunks: Iterator[bytes]
    ) -> Iterator[bytes]:
        """Pass `chunks` (a verifying stream) through; remember the blob once it ran to the end."""
        yield from chunks
        if identity is not None:
            with self._lock:
                if len(self._seen) >= _LIMIT:
                    self._seen.clear()
                self._seen[sha256] = (identity, time.monotonic())
