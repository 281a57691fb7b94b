"""Blobs this server read through and found matching their sha256, remembered for a while.

A deployment fleet fetching the same gigabyte artifact again and again should not make the server
hash it each time: the first download after start (or after VERIFIED_TTL_S) is checked as it
streams, with its last chunk held back until the digest matches; later ones stream the same file
unhashed as long as its identity (device, inode, size, mtime, ctime) is unchanged. The regctl
client checks every download end to end either way, and curl users check the Digest header.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from cachetools import TTLCache

VERIFIED_TTL_S = 600.0
_LIMIT = 100_000


class VerifiedBlobs:
    """sha256 -> the identity of the file found matching it, for `ttl` seconds."""

    def __init__(self, ttl: float = VERIFIED_TTL_S) -> None:
        self.ttl = ttl
        self._seen: TTLCache[str, tuple[int, ...]] = TTLCache(maxsize=_LIMIT, ttl=ttl, timer=time.monotonic)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    def fresh(self, sha256: str, identity: tuple[int, ...] | None) -> bool:
        """True when this exact file was verified less than `ttl` seconds ago."""
        if identity is None:
            return False
        with self._lock:
            seen = self._seen.get(sha256)
        return seen == identity

    def checked(
        self, sha256: str, identity: tuple[int, ...] | None, chunks: Iterator[bytes]
    ) -> Iterator[bytes]:
        """Pass `chunks` (a verifying stream) through; remember the blob once it ran to the end."""
        yield from chunks
        if identity is not None:
            with self._lock:
                self._seen[sha256] = identity


SMALL_CACHE_BYTES = 64 * 1024 * 1024


class SmallBlobs:
    """Small blobs read whole and verified (`ArtifactStore.read_small`), kept for `ttl` seconds.

    A blob is named by its sha256 and never changes, so a copy checked once serves the next request
    without asking the store: on S3 each small download would otherwise cost a signed GET, more than
    the rest of the request. Bounded by bytes (`max_bytes`), so memory stays flat under any load. As
    with VerifiedBlobs, a local file whose identity changed is read (and checked) again at once; an
    object store's copy is trusted for `ttl`, so a blob damaged there is noticed within it.
    """

    def __init__(self, max_bytes: int = SMALL_CACHE_BYTES, ttl: float = VERIFIED_TTL_S) -> None:
        self._kept: TTLCache[str, tuple[tuple[int, ...] | None, bytes]] = TTLCache(
            maxsize=max_bytes, ttl=ttl, timer=time.monotonic, getsizeof=lambda kept: len(kept[1])
        )
        self._lock = threading.Lock()

    def read(self, sha256: str, identity: tuple[int, ...] | None, read: Callable[[str], bytes]) -> bytes:
        """The blob's bytes: the copy kept for this identity, else `read(sha256)` (which verifies)."""
        with self._lock:
            kept = self._kept.get(sha256)
        if kept is not None and kept[0] == identity:
            return kept[1]
        data = read(sha256)
        with self._lock, contextlib.suppress(ValueError):  # larger than the whole cache: not kept
            self._kept[sha256] = (identity, data)
        return data
