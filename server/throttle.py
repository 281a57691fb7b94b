"""How much one client may ask of a server: requests per token and per address, uploads at once.

Rate limits are `limits`' moving windows in this process's memory (REGCTL_RATE_LIMIT per token,
REGCTL_ADDRESS_RATE_LIMIT per client address, "off" for none), checked by `ThrottleMiddleware` on
every route before anything else runs, so a refused request costs no database or store work. The
answer is 429 with Retry-After, the seconds until the window lets the next request in. A token
counts by its hash (bearer header or the pages' cookie); a request without one counts only against
its address. Uploads are also bounded per token while they stream (`upload_slot`), so a few slow
uploads cannot hold every worker thread and temp file of the server.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from regctl.registry.errors.services import RateLimited, UploadsBusy
from regctl.registry.settings import Settings
from regctl.server.errors import error_headers, error_response
from regctl.server.page_auth import COOKIE

UPLOAD_RETRY_S = 5  # what a client refused an upload slot is told to wait


class Throttle:
    """The server's rate limits and upload slots (module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.per_token = _item(settings.rate_limit)
        self.per_address = _item(settings.address_rate_limit)
        self.max_uploads = settings.uploads_per_token
        self._uploads: Counter[str] = Counter()
        self._lock = threading.Lock()

    def refusal(self, token: str | None, address: str) -> RateLimited | None:
        """The error to answer with when this request is one too many, else None (and it is counted)."""
        checks = [(self.per_address, "address", address, "REGCTL_ADDRESS_RATE_LIMIT")]
        if token is not None:
            checks.append((self.per_token, "token", token_key(token), "REGCTL_RATE_LIMIT"))
        for item, who, key, setting in checks:
            if item is not None and not self.limiter.hit(item, who, key):
                reset, _ = self.limiter.get_window_stats(item, who, key)
                wait = max(1, math.ceil(reset - time.time()))
                return RateLimited(limit=_shown(item), who=who, retry_after=wait, setting=setting)
        return None

    @contextmanager
    def upload_slot(self, holder: str) -> Iterator[None]:
        """Hold one of `holder`'s upload slots while the body streams; UploadsBusy when none is free."""
        with self._lock:
            if self._uploads[holder] >= self.max_uploads:
                raise UploadsBusy(count=self._uploads[holder], retry_after=UPLOAD_RETRY_S)
            self._uploads[holder] += 1
        try:
            yield
        finally:
            with self._lock:
                self._uploads[holder] -= 1
                if not self._uploads[holder]:
                    del self._uploads[holder]


class ThrottleMiddleware:
    """ASGI middleware: answer 429 with Retry-After before the app sees a request over a limit."""

    def __init__(self, app: Any, throttle: Throttle) -> None:
        self.app, self.throttle = app, throttle

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass the request on, unless it is one too many for its token or address."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("unknown", 0)
        refused = self.throttle.refusal(presented_token(scope), client[0])
        if refused is None:
            await self.app(scope, receive, send)
            return
        response = error_response(refused.http_status, refused.code, str(refused), error_headers(refused))
        await response(scope, receive, send)


def presented_token(scope: dict[str, Any]) -> str | None:
    """The token a request carries (bearer header, else the pages' cookie), unchecked; None if none."""
    headers = dict(scope.get("headers") or [])
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def token_key(token: str) -> str:
    """What a token is counted under: its hash, so the limiter's memory never holds a secret."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:32]


def _item(rate: str) -> RateLimitItem | None:
    return None if rate == "off" else parse(rate)


def _shown(item: RateLimitItem) -> str:
    return f"{item.amount} per {item.GRANULARITY.name}"  # settings.py allows one unit, no multiples
