"""uvicorn's HTTP protocol with a deadline for a request's headers (a slowloris defence).

uvicorn closes an idle keep-alive connection, but a client that opens a connection and sends its
headers a byte at a time holds it, and a slot of the server, for as long as it likes; it needs no
token to do so. Here every request's headers must be complete within `header_timeout` seconds of
the connection opening or of the previous response, or the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def with_header_timeout(header_timeout: float) -> type[asyncio.Protocol]:
    """An HttpToolsProtocol class whose connections close when headers take over `header_timeout` s."""

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        """HttpToolsProtocol, its headers on a deadline (module docstring)."""

        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection gets the same time for its headers

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadlineProtocol
