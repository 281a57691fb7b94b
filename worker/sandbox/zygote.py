"""The zygote: a warm template process that has imported torch and the engine but never model code.

A fresh Python that imports torch costs seconds; a fork of one that already has costs
milliseconds. The supervisor starts one zygote (`python -P -m regctl.worker.sandbox.zygote`) with an
allowlisted environment, so nothing it holds, and nothing a fork of it inherits, is a secret: not
the database URL, not the broker, not the store's keys. It never runs model code itself.

Protocol (constants in protocol.py), over a SOCK_SEQPACKET socket inherited as fd $REGCTL_ZYGOTE_FD,
one JSON message per packet:

    -> {"op": "run", "role": ..., "plan": {...}, "args": {...}, "files": [name, ...]}
       + the progress pipe's write end, then one open file per name (handed to the role)
    <- {"started": pid}      later   <- {"exited": pid, "status": raw wait status}
    -> {"op": "kill", "pid": pid}    (kills the role's whole process group, and its leased uid's processes)
    -> {"op": "runner", "cache_dir": ..., "enabled": bool}
    <- {"runner": path, "build_s": s} | {"runner": null, "skip": reason}

The zygote dies with its supervisor (parent-death signal, and end of file on the socket). When a
role whose plan has `own_uid` ends, the zygote (root, the role's ancestor) kills every process of
that uid: whatever the role started and hid from its process group and PID namespace.

torch and everything that imports it (the engine, the judge, the model side, libtorch.py's runner)
are imported inside the functions, never at the top: `main` imports them only once the zygote dies
with its supervisor, because they take 2–3 s (torch alone ~1.8 s, measured) and a zygote whose
supervisor died meanwhile must be killed at once, not left to finish them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

import regctl.worker.sandbox.roles  # noqa: F401  (no torch; preloaded so a role never imports it)
from regctl.registry.formats import PROGRAM_FORMATS
from regctl.worker.sandbox import linux
from regctl.worker.sandbox.launch import launch
from regctl.worker.sandbox.plan import SandboxPlan
from regctl.worker.sandbox.protocol import CONTROL_FD_ENV, MAX_HANDED, MAX_MESSAGE, PARENT_ENV
from regctl.worker.sandbox.uids import sweep


def main() -> None:
    """Import the engine, say ready, then serve requests until the supervisor goes away."""
    linux.die_with_parent(signal.SIGKILL)
    if os.getppid() != int(os.environ.get(PARENT_ENV, "0")):
        sys.exit(0)  # the supervisor died before we could ask to die with it
    sock = socket.socket(fileno=int(os.environ[CONTROL_FD_ENV]))
    import torch  # noqa: F401  (the point of the zygote: pay this once; lazy: module docstring)

    import regctl.worker.judge.aoti
    import regctl.worker.judge.format_role
    import regctl.worker.judge.judge
    import regctl.worker.judge.validation
    import regctl.worker.model.model_side  # noqa: F401

    warm_up()
    _send(sock, {"ready": os.getpid()})
    Zygote(sock).serve()


def _module_and_example() -> tuple[Any, Any]:
    import torch  # lazy: module docstring

    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()).eval(), torch.randn(2, 4)


def warm_up() -> None:
    """Pay TorchScript's and coverage.py's lazy one-off costs here, once, on no model code.

    TorchScript compiles its own builtins on first script, trace and freeze. Done with one thread,
    so no OpenMP team exists yet when the zygote forks; each role sets its own thread count.
    torch.export is warmed only for the first job whose formats need it (`warm_export`).
    """
    import torch  # lazy: module docstring

    from regctl.worker.model.recorder import warm_up_coverage

    torch.set_num_threads(1)
    module, example = _module_and_example()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(module)
        # as the builder traces: trace's own check compares with torch.testing, whose first use imports
        # sympy and DTensor (0.8 s, measured), which no role on the default path needs
        torch.jit.trace(module, (example,), check_trace=False)
        saved = io.BytesIO()
        torch.jit.save(scripted, saved)
        loaded = torch.jit.load(io.BytesIO(saved.getvalue()))
        torch.jit.optimize_for_inference(torch.jit.freeze(loaded.eval()))(example)
    # every convert job's reference runner records coverage: its imports paid here, 35-55 ms a job
    warm_up_coverage()


def warm_export() -> None:
    """Pay torch.export's one-off cost (dynamo and its caches: seconds) once, before the first fork
    whose job exports; the default formats never export, so most zygotes never pay it."""
    import torch  # lazy: module docstring

    module, example = _module_and_example()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        batch = torch.export.Dim("batch", min=1, max=8)
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        torch.export.load(io.BytesIO(buffer.getvalue())).module()(example)


def exports(args: dict[str, Any]) -> bool:
    """Whether a role's job asks for a format built from the exported program (its spec's formats)."""
    spec = args.get("spec")
    formats = spec.get("formats") if isinstance(spec, dict) else None
    return isinstance(formats, list) and any(f in PROGRAM_FORMATS for f in formats)


class Zygote:
    """Serves one supervisor: forks role processes and reports how they ended."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.export_warm = False
        self.children: dict[int, int] = {}  # pid -> pidfd
        self.uids: dict[int, int] = {}  # pid -> the uid leased to that role alone (plan.own_uid)

    def serve(self) -> None:
        while True:
            ready, _, _ = select.select([self.sock, *self.children.values()], [], [])
            for fd in ready:
                if fd is self.sock:
                    if not self._request():
                        self._kill_all()
                        return
                else:
                    self._reap(fd)

    def _request(self) -> bool:
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 1 + MAX_HANDED)
        except OSError:
            return False
        if not data:
            return False
        message = json.loads(data)
        op = message.get("op")
        unused = fds[1:]
        if op == "run":
            handed = dict(zip(message.get("files") or [], fds[1:], strict=False))
            unused = fds[1 + len(handed) :]
            for fd in handed.values():
                os.set_inheritable(fd, False)  # the role is a fork and keeps it; the waiters' exec drops it
            self._run(message, fds[0], handed)  # closes the pipe and the handed files, once forked
        elif op == "kill":
            self._kill(int(message["pid"]))
        elif op == "runner":
            _send(self.sock, _runner(message))
        for fd in unused:
            os.close(fd)
        return True

    def _run(self, message: dict[str, Any], progress_fd: int, handed: dict[str, int]) -> None:
        plan = SandboxPlan.from_json(message["plan"])
        if not self.export_warm and exports(message["args"]):
            warm_export()  # in the template, so that this job's roles and every later one inherit it
            self.export_warm = True
        pid = os.fork()
        if pid == 0:
            launch(plan, message["role"], message["args"], progress_fd, handed)
        os.close(progress_fd)
        for fd in handed.values():
            os.close(fd)
        self.children[pid] = os.pidfd_open(pid)
        if plan.own_uid and plan.mode != "off":
            self.uids[pid] = plan.uid
        _send(self.sock, {"started": pid})

    def _reap(self, pidfd: int) -> None:
        pid = next(p for p, fd in self.children.items() if fd == pidfd)
        _, status = os.waitpid(pid, 0)
        os.close(self.children.pop(pid))
        _kill_group(pid)  # anything the role left behind in its session (sandbox off or degraded)
        self._sweep(pid)
        _send(self.sock, {"exited": pid, "status": status})

    def _kill(self, pid: int) -> None:
        if pid in self.children:
            _kill_group(pid)
            if pid in self.uids:
                sweep([self.uids[pid]])

    def _kill_all(self) -> None:
        for pid in list(self.children):
            _kill_group(pid)
            self._sweep(pid)

    def _sweep(self, pid: int) -> None:
        """Kill every process of the role's own uid (none where the uid is not the role's alone)."""
        uid = self.uids.pop(pid, None)
        if uid is not None:
            sweep([uid])


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _runner(message: dict[str, Any]) -> dict[str, Any]:
    from regctl.worker.judge.libtorch import RunnerUnavailable, build_runner  # torch: module docstring

    if not message.get("enabled", True):
        return {"runner": None, "skip": message.get("skip") or "disabled"}
    cache = message.get("cache_dir")
    try:
        runner = build_runner(Path(cache) if cache else None)
    except RunnerUnavailable as exc:
        return {"runner": None, "skip": str(exc)}
    return {"runner": str(runner.path), "build_s": runner.build_s}


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


if __name__ == "__main__":
    main()
