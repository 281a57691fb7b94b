"""The HTTP service (`regctl serve`) against baselines measured in the same run, on a scratch PostgreSQL
database (created for the run, `regctl db upgrade`d, dropped afterwards). Prints one JSON document and
exits 1 when a target is missed.

  versions_show_http  GET /api/v1/versions/NAME:1 from 16 keep-alive clients (service_load.py), in
                      requests/s: `regctl serve` against a bare FastAPI endpoint that runs the one SQL
                      query (service_bare_app.py). Both are one uvicorn process with the same options,
                      threads and pool size, and take turns in short windows (~10 s each in all).
                      Also the servers' CPU per request, and /api/v1/health as the clients' ceiling.
                      Target: rps ratio >= 0.5.
  download            a ~1 GB source bundle (a model whose weights are 1e9 random bytes, registered
                      without conversion) through the API with the real client (regctl.remote.Client.fetch)
                      against a direct, verified copy from the store (LocalClient.fetch); both in this
                      process, page cache warm, best of 3 alternating rounds. The server's VmRSS is
                      sampled every 50 ms meanwhile. Targets: throughput ratio >= 0.8, RSS growth < 100 MB.
  remote_cli          `regctl versions show NAME:1 --json` as a process, remote mode (REGCTL_URL) against
                      direct mode (REGCTL_DATABASE_URL), median of 10 alternating runs. Target: ratio <= 1.0.
  load                200 keep-alive clients for 30 s cycling through a version, the model list, the job
                      list and an artifact request answered 304 (If-None-Match); the database's PostgreSQL
                      connections sampled every second. Target: no 5xx and no transport error.
  soak                benchmarks/service_soak.py (its docstring): 16 clients of mixed work for 5 minutes on
                      embedded and on PostgreSQL + S3 (moto), its own servers with the rate limits on; no
                      errors, RSS growth < 100 MB, p99s, small S3 downloads >= 0.5x plain boto3's rate.

The server's log is scanned for errors and tracebacks afterwards (`server_log`).
Needs PostgreSQL at REGCTL_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test).

    python benchmarks/service.py [--quick] [--load-seconds 30] [--size-mb 1000] [--threads 40]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.service_load import Call, LoadResult, closed_loop
from benchmarks.service_soak import run_backend
from benchmarks.service_support import (
    REGCTL,
    REPO,
    Sampler,
    Server,
    bare_server_argv,
    connection_probe,
    cpu_seconds,
    direct_env,
    log_problems,
    max_connections,
    regctl,
    regctl_server_argv,
    remote_env,
    scratch_database,
    serving,
    status_kb,
    write_big_model,
)

SMALL = "lin"  # examples/linear, registered without conversion: the version every request reads
BIG = "big"  # the same code with a ~1 GB weights file, for the download
RPS_TARGET = 0.5
DOWNLOAD_TARGET = 0.8
RSS_GROWTH_TARGET_MB = 100.0
CLI_TARGET = 1.0
MB = 1e6

FULL = {
    "http_seconds": 10.0,
    "rounds": 4,
    "warmup_seconds": 1.0,
    "size_mb": 1000,
    "download_rounds": 3,
    "cli_runs": 10,
    "load_seconds": 30.0,
    "soak_seconds": 300.0,
}
QUICK = {
    "http_seconds": 2.0,
    "rounds": 2,
    "warmup_seconds": 0.5,
    "size_mb": 64,
    "download_rounds": 1,
    "cli_runs": 3,
    "load_seconds": 5.0,
    "soak_seconds": 20.0,
}


SECTIONS = ("versions_show_http", "download", "remote_cli", "load", "soak")


def parse_args() -> argparse.Namespace:
    """Options; those left unset take the full run's value, or the smoke run's with --quick."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: every duration and size cut down")
    parser.add_argument("--threads", type=int, default=40, help="both servers' threads (and pool size)")
    parser.add_argument("--clients", type=int, default=16, help="clients for versions_show_http")
    parser.add_argument("--http-seconds", type=float, help="versions_show_http seconds per server")
    parser.add_argument("--rounds", type=int, help="windows per server in versions_show_http")
    parser.add_argument("--warmup-seconds", type=float)
    parser.add_argument("--size-mb", type=int, help="the weights file in MB (1e6 bytes)")
    parser.add_argument("--download-rounds", type=int)
    parser.add_argument("--cli-runs", type=int)
    parser.add_argument("--load-seconds", type=float)
    parser.add_argument("--load-clients", type=int, default=200)
    parser.add_argument("--soak-seconds", type=float, help="the soak's length per backend (service_soak.py)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="run just these sections",
    )
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def turns(sides: list[str], round_index: int) -> list[str]:
    """The order the sides go in this round: reversed every other round, so neither always goes first."""
    return sides if round_index % 2 == 0 else sides[::-1]


# -- versions_show_http -------------------------------------------------------------------------------------


def measure_versions_show(
    regctl_server: Server, bare: Server, token: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Requests/s of GET /versions/NAME:1 on both servers, in alternating windows of equal length."""
    calls = [Call("version", f"/api/v1/versions/{SMALL}:1")]
    servers = {"regctl": regctl_server, "bare": bare}
    for server in servers.values():  # connections opened, pools filled, lazy imports done
        closed_loop(server.url, token, calls, clients=args.clients, seconds=args.warmup_seconds)
    window = args.http_seconds / args.rounds
    totals = {name: LoadResult(0.0) for name in servers}
    cpu = dict.fromkeys(servers, 0.0)
    for round_index in range(args.rounds):
        for name in turns(list(servers), round_index):
            before = cpu_seconds(servers[name].pid)
            result = closed_loop(servers[name].url, token, calls, clients=args.clients, seconds=window)
            cpu[name] += cpu_seconds(servers[name].pid) - before
            totals[name].merge(result)
            totals[name].seconds += result.seconds
    health = [Call("health", "/api/v1/health")]
    ceiling = closed_loop(regctl_server.url, token, health, clients=args.clients, seconds=window)
    sides = {name: _side(totals[name], cpu[name]) for name in servers}
    ratio = sides["regctl"]["rps"] / sides["bare"]["rps"]
    all_ok = all(totals[name].unexpected(calls) == 0 and not totals[name].errors for name in servers)
    return {
        "request": f"GET /api/v1/versions/{SMALL}:1",
        "clients": args.clients,
        "client": "one thread and one keep-alive httpx.Client per client",
        "server_threads": args.threads,
        "regctl": sides["regctl"],
        "bare": sides["bare"],
        "bare_is": "FastAPI + SQLAlchemy, one SELECT of model_versions JOIN models, no auth",
        # No token, no database: about the most these clients and uvicorn reach on this machine at all.
        "health_rps": round(ceiling.count(200, 300) / ceiling.seconds, 1),
        # The ratio were server CPU the only limit: independent of how much CPU the clients took.
        "cpu_per_request_ratio": round(
            sides["bare"]["server_cpu_ms_per_request"] / sides["regctl"]["server_cpu_ms_per_request"], 3
        ),
        "ratio": round(ratio, 3),
        "target": RPS_TARGET,
        "all_answers_200": all_ok,
        "meets_target": ratio >= RPS_TARGET and all_ok,
    }


def _side(result: LoadResult, cpu: float) -> dict[str, Any]:
    ok = result.count(200, 300)
    return {
        "rps": round(ok / result.seconds, 1),
        "requests": result.answered,
        "seconds": round(result.seconds, 2),
        "server_cpu_ms_per_request": round(cpu / max(ok, 1) * 1e3, 2),
        "latency_ms": result.latency_ms(),
        "statuses": result.by_label(),
        "transport_errors": dict(result.errors),
    }


# -- download ------------------------------------------------------------------------------------------------


def measure_download(
    server: Server, env: dict[str, str], token: str, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """The big source bundle through the API against a direct copy from the store, and the server's RSS."""
    from regctl.local import LocalClient
    from regctl.registry.settings import Settings
    from regctl.remote import Client

    ref = f"{BIG}:1"
    local, remote = LocalClient(Settings.from_env(env)), Client(server.url, token)
    try:
        artifact = next(a for a in local.version(ref).artifacts if a.kind == "source")
        _read_through(Path(artifact.uri))  # both sides then read from a warm page cache
        # The server imports the store (fsspec) on its first download; keep that out of the RSS growth.
        remote.fetch(f"{SMALL}:1", tmp / "warm.tar", kind="source")
        rss_before = status_kb(server.pid, "VmRSS")
        fetchers = {"direct": local.fetch, "api": remote.fetch}
        seconds: dict[str, list[float]] = {side: [] for side in fetchers}
        with Sampler(lambda: status_kb(server.pid, "VmRSS"), 0.05) as rss:
            for round_index in range(args.download_rounds):
                for side in turns(list(fetchers), round_index):
                    seconds[side].append(
                        _timed_fetch(fetchers[side], ref, tmp / "download.tar", artifact.size)
                    )
        hwm = status_kb(server.pid, "VmHWM")
    finally:
        remote.close()
    best = {side: artifact.size / min(times) / MB for side, times in seconds.items()}
    ratio = best["api"] / best["direct"]
    growth = (rss.peak - rss_before) * 1024 / MB  # kB to MB
    return {
        "ref": ref,
        "kind": "source",
        "size_mb": round(artifact.size / MB, 1),
        "rounds": args.download_rounds,
        "direct": "LocalClient.fetch: registry lookup + ArtifactStore.copy_to (copy_file_range, sha256)",
        "api": "regctl.remote.Client.fetch over loopback HTTP (sha256 checked on both ends)",
        "direct_s": [round(s, 3) for s in seconds["direct"]],
        "api_s": [round(s, 3) for s in seconds["api"]],
        "direct_mb_s": round(best["direct"], 1),
        "api_mb_s": round(best["api"], 1),
        "ratio": round(ratio, 3),
        "target": DOWNLOAD_TARGET,
        "server_rss_before_mb": round(rss_before * 1024 / MB, 1),
        "server_rss_peak_mb": round(rss.peak * 1024 / MB, 1),
        "server_rss_growth_mb": round(growth, 1),
        "server_vmhwm_mb": round(hwm * 1024 / MB, 1),
        "rss_samples": len(rss.values),
        "rss_growth_target_mb": RSS_GROWTH_TARGET_MB,
        "meets_target": ratio >= DOWNLOAD_TARGET and growth < RSS_GROWTH_TARGET_MB,
    }


def _read_through(path: Path) -> None:
    """Read a file to its end, so its pages are cached."""
    buffer = bytearray(8 << 20)
    with path.open("rb", buffering=0) as f:
        while f.readinto(buffer):
            pass


def _timed_fetch(fetch: Any, ref: str, dest: Path, size: int) -> float:
    """Seconds one fetch of the source bundle to `dest` takes; the file is checked and removed after."""
    start = time.perf_counter()
    fetch(ref, dest, kind="source")
    took = time.perf_counter() - start
    if dest.stat().st_size != size:
        raise RuntimeError(f"{dest} has {dest.stat().st_size} bytes, expected {size}")
    dest.unlink()  # also keeps dirty pages from piling up between rounds
    return took


# -- remote_cli ----------------------------------------------------------------------------------------------


def measure_remote_cli(
    server: Server, env: dict[str, str], token: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Median wall time of `regctl versions show NAME:1 --json`, remote against direct, alternating."""
    command = ["versions", "show", f"{SMALL}:1", "--json"]
    envs = {"direct": env, "remote": remote_env(env, server.url, token)}
    # Warm-up (page cache, .pyc files, the server's pool), and both modes must print the same record.
    shown = {side: json.loads(regctl(side_env, *command)) for side, side_env in envs.items()}
    times: dict[str, list[float]] = {side: [] for side in envs}
    for run in range(args.cli_runs):
        for side in turns(list(envs), run):
            start = time.perf_counter()
            subprocess.run([REGCTL, *command], env=envs[side], check=True, stdout=subprocess.DEVNULL)
            times[side].append(time.perf_counter() - start)
    median = {side: statistics.median(values) for side, values in times.items()}
    ratio = median["remote"] / median["direct"]
    return {
        "command": f"regctl {' '.join(command)}",
        "runs": args.cli_runs,
        "direct_median_s": round(median["direct"], 4),
        "remote_median_s": round(median["remote"], 4),
        "direct_s": [round(s, 4) for s in times["direct"]],
        "remote_s": [round(s, 4) for s in times["remote"]],
        "same_output": shown["direct"] == shown["remote"],
        "differing_keys": sorted(k for k in shown["direct"] if shown["direct"][k] != shown["remote"].get(k)),
        "ratio": round(ratio, 3),
        "target": CLI_TARGET,
        "meets_target": ratio <= CLI_TARGET,
    }


# -- load ----------------------------------------------------------------------------------------------------


def measure_load(server: Server, token: str, database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Many clients on a read mix; status codes, transport errors and PostgreSQL connections."""
    sha256 = _source_sha256(server, token)
    calls = [
        Call("version", f"/api/v1/versions/{SMALL}:1"),
        Call("models", "/api/v1/models"),
        Call("jobs", "/api/v1/jobs"),
        Call(
            "artifact_304",
            f"/api/v1/versions/{SMALL}:1/artifacts/source",
            {"If-None-Match": f'"{sha256}"'},
            304,
        ),
    ]
    with connection_probe(database_url) as probe, Sampler(probe, 1.0) as connections:
        result = closed_loop(server.url, token, calls, clients=args.load_clients, seconds=args.load_seconds)
    server_errors = result.count(500, 600)
    transport_errors = sum(result.errors.values())
    return {
        "clients": args.load_clients,
        "seconds": round(result.seconds, 2),
        "requests": result.answered,
        "rps": round(result.answered / result.seconds, 1),
        "latency_ms": result.latency_ms(),
        "statuses": result.by_label(),
        "unexpected_statuses": result.unexpected(calls),
        "server_errors_5xx": server_errors,
        "transport_errors": transport_errors,
        "transport_error_kinds": dict(result.errors.most_common(10)),
        "pg_connections_peak": connections.peak,
        "pg_connections_samples": connections.values,
        # registry.db.configure_pool, which `regctl serve --threads N` calls: N pooled, max(10, N // 2) more.
        "server_pool": {
            "threads": args.threads,
            "pool_size": args.threads,
            "max_overflow": max(10, args.threads // 2),
        },
        "pg_max_connections": max_connections(),
        "target": "no 5xx answer and no transport error",
        "meets_target": server_errors == 0 and transport_errors == 0,
    }


def _source_sha256(server: Server, token: str) -> str:
    from regctl.remote import Client

    with Client(server.url, token) as client:
        return next(a.sha256 for a in client.version(f"{SMALL}:1").artifacts if a.kind == "source")


# -- the run -------------------------------------------------------------------------------------------------


def prepare_registry(env: dict[str, str], tmp: Path, size: int) -> str:
    """Schema, the two versions (no conversion, so no torch work) and an admin token, all through the CLI."""
    regctl(env, "db", "upgrade")
    regctl(env, "register", SMALL, str(REPO / "examples" / "linear"), "--no-convert")
    big = write_big_model(tmp / "big-model", size)
    try:
        regctl(env, "register", BIG, str(big), "--no-convert")
    finally:
        shutil.rmtree(big)  # the store holds the bundle now
    return regctl(env, "tokens", "create", "bench", "--role", "admin").strip()


def run_sections(args: argparse.Namespace, database_url: str, tmp: Path) -> dict[str, Any]:
    """Every section against one `regctl serve`; the bare server runs only for the first."""
    env = direct_env(database_url, tmp)
    token = prepare_registry(env, tmp, args.size_mb * int(MB))
    sections: dict[str, Any] = {}
    log = tmp / "regctl-serve.log"
    try:
        with serving(regctl_server_argv(args.threads), env, log) as server:
            if "versions_show_http" in args.only:
                bare_argv = bare_server_argv(database_url, args.threads)
                with serving(bare_argv, env, tmp / "bare.log") as bare:
                    sections["versions_show_http"] = measure_versions_show(server, bare, token, args)
            if "download" in args.only:
                sections["download"] = measure_download(server, env, token, args, tmp)
            if "remote_cli" in args.only:
                sections["remote_cli"] = measure_remote_cli(server, env, token, args)
            if "load" in args.only:
                sections["load"] = measure_load(server, token, database_url, args)
    finally:
        if log.exists():  # read before the temporary directory goes, even when a section failed
            sections["server_log"] = log_problems(log)
    return sections


def soak_backends(args: argparse.Namespace) -> dict[str, Any]:
    """The soak on both backends (service_soak.py), its servers its own; meets_target when all did."""
    soak_args = argparse.Namespace(
        seconds=args.soak_seconds, clients=16, rate_seconds=min(20.0, args.soak_seconds), large_mb=16
    )
    found = {name: run_backend(name, soak_args) for name in ("embedded", "postgres-s3")}
    parts = [*found.values(), found["postgres-s3"]["s3_small_downloads"]]
    return {**found, "meets_target": all(part.get("meets_target") for part in parts)}


def main() -> None:
    """Measure, print the JSON report, exit 1 when a target is missed."""
    args = parse_args()
    report: dict[str, Any] = {
        "benchmark": "service",
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_start": os.getloadavg(),
        },
    }
    with (
        tempfile.TemporaryDirectory(dir="/tmp", prefix="regctl-bench-service-") as tmp,
        scratch_database() as url,
    ):
        report.update(run_sections(args, url, Path(tmp)))
    if "soak" in args.only:
        report["soak"] = soak_backends(args)
    report["machine"]["loadavg_end"] = os.getloadavg()
    missed = [
        name
        for name, section in report.items()
        if isinstance(section, dict) and section.get("meets_target") is False
    ]
    report["missed_targets"] = missed
    print(json.dumps(report, indent=2))
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
