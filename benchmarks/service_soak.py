"""A soak of `regctl serve` (issue 26): 16 clients for 5 minutes of mixed work, on two backends.

Backends:
  embedded     SQLite and a local store, `regctl serve` with no broker (conversion off: uploads only
               register).
  postgres-s3  a scratch PostgreSQL database and an S3 store: moto's server on loopback (its own
               process), the store at s3://BUCKET/artifacts.

Each of `--clients` threads has its own token and keep-alive connection and loops, for `--seconds`,
over a mix: `versions show` (50%), a small download (25%, the ~3 KB source bundle of a linear model),
a large download (10%, a 16 MB weights blob, streamed and counted) and an upload (15%, a new version
of the linear model through the real client, `new_version=True`, no conversion). The server's
limits are on, set far above what the soak asks (`REGCTL_RATE_LIMIT=100000/minute`), so their
bookkeeping is paid without refusing anything.

Reported per backend: each operation's count, p50, p99 and max latency; errors (transport errors,
and statuses other than the right one) with their first messages; the server's RSS after a 20 s
warm-up and at the end (`rss_growth_mb`, target < 100), and its peak. Targets: no errors, RSS growth
under 100 MB.

S3 rate (`s3_small_downloads`, postgres-s3 only): the same 16 threads for `--rate-seconds` each way,
one after the other, GETting a small object: through the server (`/versions/NAME:1/artifacts/source`,
verified and streamed) against plain boto3 `get_object` of that very object (one client shared by
the threads, as boto3 recommends). Target: ratio >= 0.5.

    .venv/bin/python benchmarks/service_soak.py [--seconds 300] [--clients 16]
        [--backends embedded,postgres-s3] [--rate-seconds 20] [--large-mb 16]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.service_support import (
    REPO,
    direct_env,
    regctl,
    regctl_server_argv,
    scratch_database,
    serving,
    status_kb,
    write_big_model,
)

MB = 1_000_000
MIX = (("versions_show", 50), ("small_download", 25), ("large_download", 10), ("upload", 15))
LIMITS = {"REGCTL_RATE_LIMIT": "100000/minute", "REGCTL_ADDRESS_RATE_LIMIT": "1000000/minute"}
RSS_TARGET_MB = 100.0
S3_RATE_TARGET = 0.5
WARMUP_S = 20.0


def parse_args() -> argparse.Namespace:
    """Command-line options (module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=300.0, help="soak length per backend")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--rate-seconds", type=float, default=20.0, help="each side of the S3 rate comparison"
    )
    parser.add_argument("--large-mb", type=int, default=16, help="the large download's weights, in MB")
    parser.add_argument("--backends", default="embedded,postgres-s3")
    return parser.parse_args()


class Tally:
    """What the clients saw, under one lock: latencies by operation, errors by message."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {name: [] for name, _ in MIX}
        self.errors: Counter[str] = Counter()
        self.lock = threading.Lock()

    def record(self, name: str, seconds: float, error: str | None) -> None:
        """One operation's outcome."""
        with self.lock:
            if error is None:
                self.latencies[name].append(seconds)
            else:
                self.errors[f"{name}: {error}"[:300]] += 1

    def report(self) -> dict[str, Any]:
        """Counts and percentiles per operation, and the errors."""
        operations = {}
        for name, values in self.latencies.items():
            cuts = statistics.quantiles(values, n=100) if len(values) >= 2 else [0.0] * 99
            operations[name] = {
                "count": len(values),
                "p50_ms": round(cuts[49] * 1e3, 1),
                "p99_ms": round(cuts[98] * 1e3, 1),
                "max_ms": round(max(values, default=0.0) * 1e3, 1),
            }
        return {
            "operations": operations,
            "errors": sum(self.errors.values()),
            "first_errors": dict(self.errors.most_common(5)),
        }


def soak(
    url: str, tokens: list[str], model: Path, seconds: float, rss: Callable[[], float]
) -> dict[str, Any]:
    """The clients' loop for `seconds` (module docstring), with the server's RSS sampled each second."""
    from regctl.remote import Client

    tally = Tally()
    names, weights = zip(*MIX, strict=True)
    deadline = time.monotonic() + seconds
    samples: list[tuple[float, float]] = []

    def client(index: int) -> None:
        chooser = random.Random(index)
        headers = {"Authorization": f"Bearer {tokens[index]}"}
        with (
            httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=120) as http,
            contextlib.closing(Client(url, tokens[index])) as remote,
        ):
            while time.monotonic() < deadline:
                name = chooser.choices(names, weights)[0]
                started = time.perf_counter()
                try:
                    error = _operation(name, http, remote, model)
                except Exception as exc:  # a transport error is an error of the soak, not a crash
                    error = f"{type(exc).__name__}: {exc}"
                tally.record(name, time.perf_counter() - started, error)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(tokens))]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        samples.append((time.monotonic() - start, rss()))
        time.sleep(1.0)  # the sampling interval, not a synchronisation
    after_warmup = next((mb for at, mb in samples if at >= WARMUP_S), samples[0][1])
    growth = samples[-1][1] - after_warmup
    return {
        **tally.report(),
        "seconds": seconds,
        "rss_mb": {
            "after_warmup": round(after_warmup, 1),
            "end": round(samples[-1][1], 1),
            "peak": round(max(mb for _, mb in samples), 1),
        },
        "rss_growth_mb": round(growth, 1),
        "meets_target": tally.errors.total() == 0 and growth < RSS_TARGET_MB,
    }


def _operation(name: str, http: httpx.Client, remote: Any, model: Path) -> str | None:
    """One request of the mix; the error it met, or None."""
    if name == "versions_show":
        answer = http.get("/versions/soak:1")
        return None if answer.status_code == 200 else f"HTTP {answer.status_code}"
    if name == "small_download":
        answer = http.get("/versions/soak:1/artifacts/source")
        return None if answer.status_code == 200 and answer.content else f"HTTP {answer.status_code}"
    if name == "large_download":
        received = 0
        with http.stream("GET", "/versions/big:1/artifacts/weights") as answer:
            if answer.status_code != 200:
                return f"HTTP {answer.status_code}"
            for chunk in answer.iter_raw():
                received += len(chunk)
        expected = int(answer.headers.get("content-length", "-1"))
        return None if received == expected else f"{received} of {expected} bytes"
    remote.register("soak", model, convert=False, new_version=True)
    return None


def s3_rate(
    url: str, token: str, s3_env: dict[str, str], key: str, clients: int, seconds: float
) -> dict[str, Any]:
    """Small downloads per second through the server against plain boto3 GETs of the same object."""
    import boto3

    bucket, _, name = key.partition("/")
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")

    def through_server(_: int) -> Callable[[], bool]:
        http = httpx.Client(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        return lambda: http.get("/versions/soak:1/artifacts/source").status_code == 200

    def plain_boto3(_: int) -> Callable[[], bool]:
        return lambda: bool(s3.get_object(Bucket=bucket, Key=name)["Body"].read())

    server_rps, boto3_rps = (_closed_loop(make, clients, seconds) for make in (through_server, plain_boto3))
    ratio = server_rps / boto3_rps if boto3_rps else 0.0
    return {
        "server_rps": round(server_rps, 1),
        "boto3_rps": round(boto3_rps, 1),
        "ratio": round(ratio, 2),
        "target": S3_RATE_TARGET,
        "meets_target": ratio >= S3_RATE_TARGET,
    }


def _closed_loop(make: Callable[[int], Callable[[], bool]], clients: int, seconds: float) -> float:
    done = [0] * clients
    deadline = time.monotonic() + seconds

    def run(index: int) -> None:
        call = make(index)
        while time.monotonic() < deadline:
            if call():
                done[index] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / seconds


@contextlib.contextmanager
def backend(name: str, root: Path) -> Iterator[tuple[dict[str, str], dict[str, str] | None]]:
    """The environment of a direct `regctl` on this backend, and the S3 server's (None for embedded)."""
    if name == "embedded":
        env = direct_env(f"sqlite:///{root / 'registry.db'}", root)
        yield {**env, **LIMITS}, None
        return
    from tests.s3_server import new_bucket, s3_server

    with scratch_database() as database_url, s3_server() as s3_env:
        bucket = new_bucket(s3_env)
        env = {
            **direct_env(database_url, root),
            **s3_env,
            "REGCTL_ARTIFACT_STORE": f"s3://{bucket}/artifacts",
        }
        yield {**env, **LIMITS}, s3_env


def run_backend(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Prepare the registry, serve it, soak it (and, on S3, compare small-download rates)."""
    with (
        tempfile.TemporaryDirectory(dir="/tmp", prefix=f"regctl-bench-soak-{name}-") as tmp,
        backend(name, Path(tmp)) as (env, s3_env),
    ):
        root = Path(tmp)
        regctl(env, "db", "upgrade")
        model = REPO / "examples" / "linear"
        regctl(env, "register", "soak", str(model), "--no-convert")
        big = write_big_model(root / "big-model", args.large_mb * MB)
        regctl(env, "register", "big", str(big), "--no-convert")
        tokens = [
            regctl(env, "tokens", "create", f"soak-{i}", "--role", "writer").strip()
            for i in range(args.clients)
        ]
        with serving(regctl_server_argv(40), env, root / "serve.log") as server:
            result = soak(
                server.url, tokens, model, args.seconds, lambda: status_kb(server.pid, "VmRSS") / 1024
            )
            if s3_env is not None:
                source = json.loads(regctl(env, "versions", "show", "soak:1", "--json"))
                uri = next(a["uri"] for a in source["artifacts"] if a["kind"] == "source")
                key = uri.removeprefix("s3://")
                result["s3_small_downloads"] = s3_rate(
                    server.url, tokens[0], s3_env, key, args.clients, args.rate_seconds
                )
        return result


def main() -> None:
    """Soak each backend, print the JSON report; exit 1 when a target is missed."""
    args = parse_args()
    report: dict[str, Any] = {"benchmark": "service_soak", "clients": args.clients, "cpus": os.cpu_count()}
    for name in args.backends.split(","):
        report[name] = run_backend(name, args)
    missed = [
        f"{name}.{section}" if section else name
        for name in args.backends.split(",")
        for section, part in [
            ("", report[name]),
            ("s3_small_downloads", report[name].get("s3_small_downloads")),
        ]
        if isinstance(part, dict) and part.get("meets_target") is False
    ]
    report["missed_targets"] = missed
    print(json.dumps(report, indent=2))
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
