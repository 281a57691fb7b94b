"""A real HTTP receiver for webhook tests: `http.server` on a free port in a thread, recording every request.

It answers with scripted status codes (the last one repeats), can redirect, and can sleep before it
answers (until released, so a test never waits out the sleep at teardown).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    """One request as it arrived: path, headers (lower-case names), the raw body and when."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the body had been read


class Receiver:
    """The receiver's state; `url` is where to point a webhook."""

    def __init__(self, statuses: tuple[int, ...] = (200,), delay: float = 0.0, location: str = "") -> None:
        self.statuses, self.delay, self.location = statuses, delay, location
        self.requests: list[Received] = []
        self.answered = 0
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.requests.append(Received(self.path, headers, body, time.time()))
                    status = receiver.statuses[min(len(receiver.requests), len(receiver.statuses)) - 1]
                if receiver.delay:
                    receiver.release.wait(receiver.delay)
                self.send_response(status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                with receiver._lock:
                    receiver.answered += 1

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler

    def received(self, count: int, timeout: float) -> list[Received]:
        """Poll until at least `count` requests arrived, or fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the receiver got {len(self.requests)} of {count} requests in {timeout}s"
                )
            time.sleep(0.02)


@contextmanager
def receiving(
    statuses: tuple[int, ...] = (200,), delay: float = 0.0, location: str = ""
) -> Iterator[Receiver]:
    """A running receiver, shut down (and any sleeping answer released) afterwards."""
    receiver = Receiver(statuses, delay, location)
    thread = threading.Thread(
        target=receiver.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        receiver.server.shutdown()
        receiver.server.server_close()
        thread.join(5)
