"""The supervisor's handle on its zygote: start it with a clean environment, run roles, kill them.

One zygote per supervisor process (a pool child, or the embedded job process), started on first
use and kept warm. Its environment is built from an allowlist, so it never holds the registry's
secrets; the supervisor never sends them either (plans carry paths and limits only).
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from regctl.worker.sandbox.plan import SandboxPlan
from regctl.worker.sandbox.protocol import (
    CONTROL_FD_ENV,
    MAX_HANDED,
    MAX_MESSAGE,
    PARENT_ENV,
    PROGRESS,
    PROTECTIONS,
    REFUSED,
    ZYGOTE_MODULE,
)

# Variables a model or a judge may legitimately need; everything else (REGCTL_*, AWS_*, tokens,
# the user's shell settings) stays with the supervisor.
ALLOWED_ENV = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_NUMERIC",
    "TZ",
    "PYTHONPATH",
    "CXX",
    "LD_LIBRARY_PATH",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "NVIDIA_VISIBLE_DEVICES",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)
START_TIMEOUT_S = 300.0
KILL_WAIT_S = 30.0
POLL_S = 0.5
MAX_PENDING = 1 << 20


class ZygoteError(Exception):
    """Raised when the zygote cannot be started or stops answering (an infrastructure failure)."""


def allowlisted_env(source: dict[str, str] | None = None) -> dict[str, str]:
    """The allowlisted subset of `source` (default: this process's environment)."""
    source = dict(os.environ) if source is None else source
    return {k: v for k, v in source.items() if k in ALLOWED_ENV}


@dataclass(frozen=True)
class RoleOutcome:
    """How a role process ended and what its sandbox looked like."""

    status: int  # raw wait status
    protections: dict[str, Any] | None  # the report's sandbox entry, None when it never got that far
    refused: str | None  # strict mode's reason for not running it

    @property
    def ok(self) -> bool:
        """True when the role exited 0."""
        return os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0


class Zygote:
    """A running zygote process and the socket to it."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self._ready = False

    def alive(self) -> bool:
        """True while the zygote process runs."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the zygote (it imports torch in the background) unless it already runs."""
        if self.alive():
            return
        self.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {
            **allowlisted_env(),
            CONTROL_FD_ENV: str(theirs.fileno()),
            PARENT_ENV: str(os.getpid()),
            # should anything ask torch.cuda.is_available() before a fork, ask NVML, which leaves the
            # CUDA driver uninitialised (a forked child could not use it otherwise)
            "PYTORCH_NVML_BASED_CUDA_CHECK": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", ZYGOTE_MODULE],
            env=env,
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            cwd="/",
        )
        theirs.close()
        self.sock = ours
        self._ready = False

    def run(
        self,
        role: str,
        plan: SandboxPlan,
        args: dict[str, Any],
        on_progress: Callable[[str], None],
        check: Callable[[], None],
        files: Mapping[str, int] | None = None,
    ) -> RoleOutcome:
        """Run `role` sandboxed; forward its progress; kill it if `check` or `on_progress` raise.

        `files` hands the role open files by name (at most `MAX_HANDED`): it finds each under
        `paths[name]` as /proc/self/fd/N, a file no other role can reach through the job's folders.
        """
        files = dict(files or {})
        if len(files) > MAX_HANDED:
            raise ValueError(f"at most {MAX_HANDED} files can be handed to a role, not {len(files)}")
        self._wait_ready()
        read_end, write_end = os.pipe()
        try:
            message = {"op": "run", "role": role, "plan": plan.to_json(), "args": args, "files": list(files)}
            socket.send_fds(self._socket(), [json.dumps(message).encode()], [write_end, *files.values()])
            os.close(write_end)
            write_end = -1
            pid = int(self._receive(START_TIMEOUT_S)["started"])
        except BaseException:
            # Interrupted mid-conversation (a time limit's signal): the replies would be out of
            # step with the next request, so stop this zygote, and its role with it.
            self.close()
            raise
        finally:
            if write_end != -1:
                os.close(write_end)
        try:
            return self._follow(pid, read_end, on_progress, check)
        finally:
            os.close(read_end)

    def runner(self, cache_dir: str, enabled: bool, skip: str | None = None) -> dict[str, Any]:
        """Ask the zygote for the LibTorch runner (built on first use); its path or why there is none."""
        self._wait_ready()
        try:
            request = {"op": "runner", "cache_dir": cache_dir, "enabled": enabled, "skip": skip}
            self._socket().send(json.dumps(request).encode())
            return self._receive(3600.0)
        except BaseException:
            self.close()  # as in run(): never leave a reply unread
            raise

    def close(self) -> None:
        """Stop the zygote (its running roles die with it)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _follow(
        self, pid: int, read_end: int, on_progress: Callable[[str], None], check: Callable[[], None]
    ) -> RoleOutcome:
        lines = _Lines()
        watching = [self._socket(), read_end]
        try:
            while True:
                ready, _, _ = select.select(watching, [], [], POLL_S)
                check()
                if read_end in ready:
                    data = os.read(read_end, 65536)
                    if not data:
                        watching.remove(read_end)
                    for text in lines.feed(data):
                        on_progress(text)
                if self._socket() in ready:
                    exited = self._receive(0)
                    if exited.get("exited") == pid:
                        for text in lines.feed(_drain(read_end)):
                            on_progress(text)
                        return RoleOutcome(int(exited["status"]), lines.protections, lines.refused)
        except BaseException:
            self._kill(pid)
            raise

    def _kill(self, pid: int) -> None:
        """Kill the role's process tree and wait until the zygote has reaped it."""
        if not self.alive() or self.sock is None:
            return
        try:
            self.sock.send(json.dumps({"op": "kill", "pid": pid}).encode())
            deadline = time.monotonic() + KILL_WAIT_S
            while time.monotonic() < deadline:
                if self._receive(deadline - time.monotonic()).get("exited") == pid:
                    return
        except (OSError, ZygoteError):
            pass
        except BaseException:
            self.close()
            raise
        self.close()  # it did not answer: take it down, and every role with it

    def _wait_ready(self) -> None:
        self.start()
        if not self._ready:
            try:
                self._receive(START_TIMEOUT_S)  # {"ready": pid}
            except BaseException:
                self.close()
                raise
            self._ready = True

    def _socket(self) -> socket.socket:
        if self.sock is None:
            raise ZygoteError("the sandbox's template process is not running")
        return self.sock

    def _receive(self, timeout: float) -> dict[str, Any]:
        sock = self._socket()
        ready, _, _ = select.select([sock], [], [], max(0.0, timeout))
        if not ready:
            raise ZygoteError(f"the sandbox's template process did not answer within {timeout:g}s")
        data = sock.recv(MAX_MESSAGE)
        if not data:
            self.close()
            raise ZygoteError(
                "the sandbox's template process exited (it could not import torch and the engine?); "
                "see the worker's log"
            )
        return json.loads(data)


class _Lines:
    """Splits the role's pipe into lines: the sandbox's own first line, then progress lines."""

    def __init__(self) -> None:
        self.pending = b""
        self.protections: dict[str, Any] | None = None
        self.refused: str | None = None
        self.first = True

    def feed(self, data: bytes) -> list[str]:
        self.pending += data
        *complete, self.pending = self.pending.split(b"\n")
        if len(self.pending) > MAX_PENDING:  # a role that writes without newlines
            self.pending = b""
        progress = []
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            if self.first:  # written by the sandbox's init before any model code ran
                self.first = False
                if line.startswith(PROTECTIONS):
                    self.protections = _json_or_none(line[len(PROTECTIONS) :])
                elif line.startswith(REFUSED):
                    self.refused = line[len(REFUSED) :]
                continue
            if line.startswith(PROGRESS):
                progress.append("".join(ch for ch in line[len(PROGRESS) :] if ch.isprintable()))
        return progress


def _json_or_none(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _drain(fd: int) -> bytes:
    """What is left in a pipe whose writers are gone (or that nobody writes to any more)."""
    chunks: list[bytes] = []
    while sum(map(len, chunks)) < MAX_PENDING and select.select([fd], [], [], 0)[0]:
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


_shared: Zygote | None = None


def shared_zygote() -> Zygote:
    """This process's zygote, started on first use."""
    global _shared
    if _shared is None:
        _shared = Zygote()
    _shared.start()  # a no-op while it runs; a new one if it died
    return _shared
