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
READY_S = 120.0  # a polling deadline: costs nothing when the server starts fast
PORT_TRIES = 5


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
    def start(cls, env: dict[str, str], workdir: Path, *, port: int | None = None) -> ApiServer:
        """Start the server with exactly `env` and wait until /api/v1/health answers.

        `port` starts it there (a restart where a client expects it), in one try.

        A free port can be taken by another process before the server binds it (test runs side by
        side on one machine); then the health check would be answered by that other server. The
        server counts as started only once its own process holds the listening socket; otherwise it
        is started again on another port.
        """
        wanted = port
        for _ in range(PORT_TRIES if wanted is None else 1):
            port = wanted or free_port()
            log = workdir / f"serve-{port}-{time.monotonic_ns()}.log"
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
            try:
                server.wait_healthy()
            except AssertionError:
                if process.poll() is None or b"address already in use" not in log.read_bytes().lower():
                    raise
                continue  # another process took the port first
            if _listens_on(process.pid, port):
                return server
            server.stop()
        raise AssertionError(f"regctl serve found no free port in {PORT_TRIES} tries")

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


def _listens_on(pid: int, port: int) -> bool:
    """True when process `pid` holds the socket listening on 127.0.0.1:`port` (Linux's /proc)."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    listening.add(f"socket:[{inode}]")
    if not Path("/proc/net/tcp").exists():
        return True  # no /proc to ask: trust the health check
    fds = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        return any(os.readlink(fd) in listening for fd in fds.iterdir())
    return False
