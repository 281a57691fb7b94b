"""The set-up of benchmarks/service.py: a scratch PostgreSQL database, a registry on it, server processes,
and readings of a process's memory and CPU from /proc."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
REGCTL = str(Path(sys.executable).with_name("regctl"))
POSTGRES_ADMIN_URL = os.environ.get("REGCTL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Above the 512 MiB default, so a ~1 GB weights file fits in a bundle (the client and server both check).
MAX_BUNDLE_BYTES = 4 * 1024**3
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


# -- database --------------------------------------------------------------------------------------------


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new database `regctl_bench_<pid>` on the admin server; dropped with its connections afterwards."""
    from sqlalchemy import create_engine, text

    from regctl.registry.db import dispose_engines
    from regctl.registry.engines import normalize_url

    admin = create_engine(normalize_url(POSTGRES_ADMIN_URL), isolation_level="AUTOCOMMIT")
    name = f"regctl_bench_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        dispose_engines()  # this process's own pooled connections to it
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def connection_probe(database_url: str) -> Iterator[Callable[[], int]]:
    """A probe counting the backends connected to `database_url`'s database.

    It asks from the admin database, so its own connection is not among those counted.
    """
    from sqlalchemy import create_engine, text

    from regctl.registry.engines import normalize_url

    admin = create_engine(normalize_url(POSTGRES_ADMIN_URL), pool_size=1)
    name = database_url.rsplit("/", 1)[1]
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name")

    def count() -> int:
        with admin.connect() as conn:
            return int(conn.execute(query, {"name": name}).scalar_one())

    try:
        yield count
    finally:
        admin.dispose()


def max_connections() -> int:
    """PostgreSQL's max_connections setting."""
    from sqlalchemy import create_engine, text

    from regctl.registry.engines import normalize_url

    admin = create_engine(normalize_url(POSTGRES_ADMIN_URL))
    try:
        with admin.connect() as conn:
            return int(conn.execute(text("SHOW max_connections")).scalar_one())
    finally:
        admin.dispose()


# -- the registry --------------------------------------------------------------------------------------


def direct_env(database_url: str, root: Path) -> dict[str, str]:
    """The environment of a direct-mode `regctl` on this database with its store under `root`."""
    return {
        **_without_regctl(os.environ),
        "REGCTL_HOME": str(root / "home"),
        "REGCTL_DATABASE_URL": database_url,
        "REGCTL_ARTIFACT_STORE": str(root / "store"),
        "REGCTL_MAX_BUNDLE_BYTES": str(MAX_BUNDLE_BYTES),
        # throughput sections drive hundreds of requests a second from one address and token: the
        # rate limits are measured by the soak (service_soak.py), which sets them high instead
        "REGCTL_RATE_LIMIT": "off",
        "REGCTL_ADDRESS_RATE_LIMIT": "off",
        # Never the login `regctl login` may have saved for this user: it would make every command remote.
        "REGCTL_CONFIG": str(root / "no-login.json"),
    }


def remote_env(direct: dict[str, str], url: str, token: str) -> dict[str, str]:
    """The environment of a remote-mode `regctl`: the server's URL and a token, no database or store."""
    return {
        **_without_regctl(direct),
        "REGCTL_CONFIG": direct["REGCTL_CONFIG"],
        "REGCTL_URL": url,
        "REGCTL_TOKEN": token,
    }


def _without_regctl(env: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("REGCTL_")}


def regctl(env: dict[str, str], *args: str) -> str:
    """Run `regctl ARGS` and return its stdout; a failure raises with its stderr."""
    done = subprocess.run([REGCTL, *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"regctl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def write_big_model(directory: Path, size: int) -> Path:
    """examples/linear with a `size`-byte weights.safetensors of random bytes that its spec names."""
    directory.mkdir(parents=True)
    example = REPO / "examples" / "linear"
    (directory / "model.py").write_bytes((example / "model.py").read_bytes())
    spec = (example / "regctl.toml").read_text()
    # Top-level keys must come before the first [table]; the example starts with comments and keys.
    (directory / "regctl.toml").write_text(f'weights = "weights.safetensors"\n{spec}')
    write_safetensors(directory / "weights.safetensors", size)
    return directory


def write_safetensors(path: Path, size: int, chunk: int = 16 << 20) -> None:
    """A valid safetensors file holding one uint8 tensor of `size` random bytes, written in chunks.

    Random rather than zero bytes, so no layer along the way (sparse files, compression) gets it cheaper.
    """
    import json
    import struct

    header = json.dumps({"weight": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to a multiple of 8 with spaces
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(header)) + header)
        for start in range(0, size, chunk):
            out.write(os.urandom(min(chunk, size - start)))


# -- servers -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A running server process and where it answers."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        """The server's process id (uvicorn serves in this process: one worker, no fork)."""
        return self.process.pid


def regctl_server_argv(threads: int) -> list[str]:
    """`regctl serve` on loopback; the port is added when it starts."""
    return [REGCTL, "serve", "--host", "127.0.0.1", "--threads", str(threads)]


def bare_server_argv(database_url: str, threads: int) -> list[str]:
    """The bare FastAPI baseline (benchmarks/service_bare_app.py) on loopback."""
    from regctl.registry.engines import normalize_url

    app = REPO / "benchmarks" / "service_bare_app.py"
    return [
        sys.executable,
        str(app),
        "--database-url",
        normalize_url(database_url),
        "--threads",
        str(threads),
    ]


@contextmanager
def serving(argv: list[str], env: dict[str, str], log: Path) -> Iterator[Server]:
    """Start `argv --port PORT` on a free port, wait until /api/v1/health answers, always stop it after."""
    port = _free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*argv, "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stopping it reaches any children
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_healthy(server)
        yield server
    finally:
        _stop(process)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(server: Server) -> None:
    """Poll /api/v1/health until it answers 200; raise with the log's tail if the process exits or stalls."""
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(base_url=server.url, timeout=2.0) as http:
        while True:
            with suppress(httpx.TransportError):
                if http.get("/api/v1/health").status_code == 200:
                    return
            if server.process.poll() is not None or time.monotonic() > deadline:
                tail = server.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{server.process.args[:3]} did not come up on {server.url}:\n{tail}")
            time.sleep(0.05)  # the poll interval; readiness itself is the health answer


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (uvicorn drains for up to 10 s), SIGKILL if it lingers."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def log_problems(log: Path, limit: int = 10) -> dict[str, object]:
    """Error lines and the exception line ending each traceback in a server log, counted by text."""
    found: Counter[str] = Counter()
    in_traceback = False
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
        elif in_traceback and line and not line[0].isspace():
            # The first unindented line after a traceback is the exception; a chained one starts another.
            if not line.startswith(("During handling", "The above exception")):
                found[line[:300]] += 1
                in_traceback = False
        elif re.match(r"(ERROR|CRITICAL)\b", line):
            found[line[:300]] += 1
    return {"problem_lines": sum(found.values()), "most_common": dict(found.most_common(limit))}


# -- /proc readings ------------------------------------------------------------------------------------------


def status_kb(pid: int, field: str) -> int:
    """A `kB` field of /proc/PID/status, e.g. VmRSS (resident now) or VmHWM (resident at its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process (all its threads) has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces; skip past it
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler:
    """Calls `probe` every `interval` seconds in a background thread while the `with` block runs."""

    def __init__(self, probe: Callable[[], int], interval: float) -> None:
        self.probe = probe
        self.interval = interval
        self.values: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self.values.append(self.probe())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.values.append(self.probe())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.values.append(self.probe())

    @property
    def peak(self) -> int:
        """The highest value seen."""
        return max(self.values)
