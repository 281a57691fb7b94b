"""Who is calling: the bearer token, checked against its hash; the caller's address for the audit trail.

A token that checked out is remembered for TOKEN_CACHE_S seconds (keyed by the sha256 of what was
presented, never the token itself), so a busy client costs one token query every few seconds rather
than one per request. A revocation through this server takes effect at once; one made elsewhere
(the direct CLI, another server) within TOKEN_CACHE_S. A cached token never outlives its expiry.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

from cachetools import TLRUCache
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from regctl.registry.access import Caller
from regctl.registry.settings import Settings
from regctl.registry.tokens import authenticate_token

TOKEN_CACHE_S = 2.0
_CACHE_LIMIT = 10_000

bearer = HTTPBearer(
    auto_error=False,
    description="A token from 'regctl tokens create', sent as 'Authorization: Bearer <token>'",
)


class TokenCache:
    """Recently accepted tokens: digest -> caller, each for `ttl` seconds or until its expiry if sooner."""

    def __init__(self, ttl: float = TOKEN_CACHE_S) -> None:
        self.ttl = ttl
        # TLRU rather than TTL: each entry's lifetime is cut short by its own token's expiry.
        self._entries: TLRUCache[str, tuple[Caller, datetime | None]] = TLRUCache(
            maxsize=_CACHE_LIMIT, ttu=self._until, timer=time.monotonic
        )
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    def _until(self, _digest: str, entry: tuple[Caller, datetime | None], now: float) -> float:
        expires_at = entry[1]
        if expires_at is None:
            return now + self.ttl
        return now + min(self.ttl, (expires_at - datetime.now(UTC)).total_seconds())

    def get(self, digest: str) -> Caller | None:
        """The cached caller for a token digest, if still fresh."""
        with self._lock:
            entry = self._entries.get(digest)
        return None if entry is None else entry[0]

    def put(self, digest: str, caller: Caller, expires_at: datetime | None) -> None:
        """Remember an accepted token, never past its own expiry."""
        with self._lock:
            self._entries[digest] = (caller, expires_at)

    def forget_all(self) -> None:
        """Drop every entry (after a token is revoked through this server)."""
        with self._lock:
            self._entries.clear()


def settings_of(request: Request) -> Settings:
    """The server's settings."""
    return request.app.state.settings


async def current_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """The caller the request's bearer token stands for; 401 when there is no valid token."""
    return await caller_for(request, credentials.credentials if credentials else None)


async def caller_for(request: Request, presented: str | None) -> Caller:
    """The caller a presented token stands for (from a header or the pages' cookie); raises Unauthenticated.

    A cached token is answered on the event loop; only a lookup goes to a thread.
    """
    address = request.client.host if request.client else None
    cache: TokenCache = request.app.state.tokens
    digest = hashlib.sha256(presented.encode()).hexdigest() if presented else ""
    cached = cache.get(digest) if presented else None
    if cached is not None:
        return replace(cached, address=address)
    caller, expires_at = await run_in_threadpool(authenticate_token, settings_of(request), presented, address)
    cache.put(digest, caller, expires_at)
    return caller
