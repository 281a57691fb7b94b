"""A real `regctl serve` process for tests: started on a free port, polled until healthy, stopped after."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REGCTL = str(Path(sys.executable).with_name("regctl"))
READY_S = 30.0


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiServer:
    """One `regctl serve` subprocess."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    def start(cls, env: dict[str, str], workdir: Path) -> ApiServer:
        """Start the server with exactly `env` and wait until /api/v1/health answers."""
        port = free_port()
        log = workdir / f"serve-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [REGCTL, "serve", "--port", str(port)],
                env=env,
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = cls(process, f"http://127.0.0.1:{port}", log)
        server.wait_healthy()
        return server

    def wait_healthy(self) -> None:
        """Poll the health endpoint until it answers 200, or fail with the server's log."""
        deadline = time.monotonic() + READY_S
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"regctl serve exited with {self.process.returncode}:\n{self.log_text()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"regctl serve did not become healthy in {READY_S}s:\n{self.log_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL the whole session (the server and any job it runs) after a deadline."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def log_text(self) -> str:
        """The end of the server's log."""
        try:
            return self.log.read_text(errors="replace")[-20_000:]
        except FileNotFoundError:
            return "(no log)"
