"""The measuring pieces of benchmarks/end_to_end.py: a `regctl worker`, and the readings of a whole
process tree (resident memory, bytes written, CPU time) from /proc. The model and the bare script are
in benchmarks/end_to_end_model.py.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REGCTL = str(Path(sys.executable).with_name("regctl"))
PAGE_KB = os.sysconf("SC_PAGESIZE") // 1024
WORKER_READY_S = 120.0
WORKER_STOP_S = 30.0


# -- the process tree ----------------------------------------------------------------------------------------

# The counters summed over a tree. Each is one the kernel adds into the parent's when the parent reaps
# a child: /proc/PID/io's write_bytes and cancelled_write_bytes (wait_task_zombie adds the child's
# task_io_accounting into the parent's signal struct, which /proc/PID/io includes), and CPU time, as
# utime + stime + cutime + cstime of /proc/PID/stat.
COUNTERS = ("write", "cancelled", "cpu")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _read(path: str) -> bytes | None:
    """A /proc file's bytes, or None once the process is gone (raw reads: this runs every 50 ms)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    try:
        return os.read(fd, 8192)
    except (ProcessLookupError, PermissionError):
        return None
    finally:
        os.close(fd)


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, start time, CPU time with reaped children's), in clock ticks; None once gone."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()  # the command name may hold spaces; skip past it
    return int(fields[1]), int(fields[19]), sum(int(f) for f in fields[11:15])


def _io(pid: int) -> tuple[int, int] | None:
    """(write_bytes, cancelled_write_bytes) of /proc/PID/io, or None when unreadable or gone."""
    text = _read(f"/proc/{pid}/io")
    if not text:
        return None
    values = dict(line.split(b": ") for line in text.splitlines())
    return int(values[b"write_bytes"]), int(values[b"cancelled_write_bytes"])


def _name(pid: int) -> str:
    """A short name for a process: its command line, or its comm when that is empty."""
    raw = _read(f"/proc/{pid}/cmdline") or _read(f"/proc/{pid}/comm") or b"?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:80]


def _rss_kb(pid: int) -> int:
    """VmRSS in kB: statm's second field is the resident page count."""
    statm = _read(f"/proc/{pid}/statm")
    return int(statm.split()[1]) * PAGE_KB if statm else 0


def _pss_kb(pid: int) -> int:
    """Pss in kB, the process's share of its resident pages (a page shared by n processes counts 1/n).

    Costly: reading smaps_rollup walks every mapping (~10 ms per GB resident).
    """
    rollup = _read(f"/proc/{pid}/smaps_rollup")
    for line in (rollup or b"").splitlines():
        if line.startswith(b"Pss:"):
            return int(line.split()[1])
    return 0


def _pids() -> list[int]:
    return [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]


def _descendants(procs: dict[int, tuple[int, int, int]], roots: Iterable[int]) -> set[int]:
    """`roots` and all their descendants among `procs` (pid -> (parent, ...))."""
    children: dict[int, list[int]] = {}
    for pid, (parent, *_) in procs.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = [pid for pid in roots if pid in procs]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


@dataclass
class _Seen:
    """What was last read of one process (a pid and its start time, so a reused pid is another one)."""

    parent: int
    counters: dict[str, int] = field(default_factory=dict)
    at_start: dict[str, int] | None = None  # for processes already running when measuring began
    alive: bool = True


@dataclass
class TreeMonitor:
    """Samples a process tree every `interval` seconds: the sum of its members' VmRSS, the bytes they
    wrote and the CPU time they used; every `pss_interval` seconds (0: never) also the sum of their Pss,
    which costs far more to read.

    The tree is every descendant of `roots` (read from /proc each sample, so pids that come and go
    between samples are found while they live) plus every process seen in it before that is still
    alive (an orphan re-parented to init still took part).

    Totals (`totals`): Linux adds a child's counters (COUNTERS) into its parent's when the parent reaps
    it, so summing every pid's last value would count a child's writes twice. The total is therefore: for
    each root this process reaped, what wait4 returned for it (its own and everything it reaped in
    turn); for each process still alive at the end, its counter now minus its counter when measuring
    began; and for each process that vanished after being re-parented out of the tree (nobody in it
    reaped it), the last value read.
    """

    roots: Callable[[], Iterable[int]]
    interval: float = 0.05
    pss_interval: float = 1.0
    rss_peak_kb: int = 0
    pss_peak_kb: int = 0
    samples: int = 0
    pss_samples: int = 0
    peak_breakdown: list[str] = field(default_factory=list)  # each process's VmRSS at the peak
    seen: dict[tuple[int, int], _Seen] = field(default_factory=dict)
    _pss_at: float = float("-inf")
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> TreeMonitor:
        self.sample(first=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self, first: bool = False) -> None:
        """One reading of the whole tree."""
        procs = {pid: stat for pid in _pids() if (stat := _stat(pid)) is not None}
        members = _descendants(procs, self.roots())
        for (pid, start), record in self.seen.items():
            record.alive = pid in procs and procs[pid][1] == start
            if record.alive:
                members.add(pid)
        rss_total = pss_total = 0
        by_process: list[tuple[int, str]] = []
        with_pss = self.pss_interval > 0 and time.monotonic() - self._pss_at >= self.pss_interval
        for pid in members:
            parent, start, cpu = procs[pid]
            record = self.seen.setdefault((pid, start), _Seen(parent))
            record.parent = parent
            record.counters["cpu"] = cpu
            if (io := _io(pid)) is not None:
                record.counters["write"], record.counters["cancelled"] = io
            if first:
                record.at_start = dict(record.counters)
            rss = _rss_kb(pid)
            rss_total += rss
            by_process.append((rss, _name(pid)))
            if with_pss:
                pss_total += _pss_kb(pid)
        if rss_total > self.rss_peak_kb:
            self.rss_peak_kb = rss_total
            self.peak_breakdown = [
                f"{name}: {kb // 1024} MB" for kb, name in sorted(by_process, reverse=True)
            ]
        self.samples += 1
        if with_pss:
            self._pss_at = time.monotonic()
            self.pss_peak_kb = max(self.pss_peak_kb, pss_total)
            self.pss_samples += 1

    def totals(self, reaped: dict[int, dict[str, int]]) -> dict[str, int]:
        """COUNTERS summed over the tree (see the class docstring); `reaped` maps each root this process
        reaped to its counters as wait4 returned them."""
        total = dict.fromkeys(COUNTERS, 0)
        for counters in reaped.values():
            for k in COUNTERS:
                total[k] += counters[k]
        ever = {pid for pid, _ in self.seen}
        for (pid, _), record in self.seen.items():
            if pid in reaped:
                continue
            if record.alive:
                start = record.at_start or {}
                for k in COUNTERS:
                    total[k] += record.counters.get(k, 0) - start.get(k, 0)
            elif record.parent not in ever:  # re-parented away: no member folded it in
                for k in COUNTERS:
                    total[k] += record.counters.get(k, 0)
        return total

    def last(self, pid: int) -> dict[str, int]:
        """The last counters read of process `pid`."""
        return next((r.counters for (p, _), r in self.seen.items() if p == pid), {})

    @property
    def processes(self) -> int:
        """How many processes took part."""
        return len(self.seen)

    def orphans(self, roots: Iterable[int]) -> int:
        """Processes last seen re-parented out of the tree (to init): their counters count only if they
        were seen after that, and one orphaned before its first sample is missed altogether."""
        ever = {pid for pid, _ in self.seen}
        outside = set(roots)
        return sum(r.parent not in ever for (pid, _), r in self.seen.items() if pid not in outside)


def _machine_busy_ticks() -> int:
    """CPU time all CPUs spent busy since boot (/proc/stat: user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return sum(int(fields[i]) for i in (0, 1, 2, 5, 6, 7))


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


@dataclass(frozen=True)
class Sampling:
    """How often the tree is read: VmRSS and counters every `interval` s, Pss every `pss_interval` s."""

    interval: float = 0.05
    pss_interval: float = 1.0


def run_measured(
    argv: list[str],
    env: dict[str, str],
    log: Path,
    extra_roots: Callable[[], Iterable[int]] = lambda: (),
    sampling: Sampling = Sampling(),
) -> dict[str, Any]:
    """Run `argv` to its end under a TreeMonitor rooted at it (and `extra_roots`): its wall time, and the
    tree's peak memory, bytes written and CPU time."""
    process: subprocess.Popen[bytes] | None = None

    def roots() -> list[int]:
        return [*([process.pid] if process is not None else []), *extra_roots()]

    monitor = TreeMonitor(roots, sampling.interval, sampling.pss_interval)
    # Untimed: the previous side's gigabytes still being written back would slow this side's writes
    # (copying BERT-large's 1.3 GB took 2.8 s behind other writes, 0.43 s after a sync, measured).
    os.sync()
    load = os.getloadavg()[0]
    busy, own = _machine_busy_ticks(), _own_cpu_s()
    with monitor, log.open("wb") as out:
        start = time.perf_counter()
        process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        monitor.sample()  # the root itself, before it can fork anything
        # wait4 rather than Popen.wait: its rusage is the child's own and everything it reaped, in turn;
        # ru_oublock is write_bytes in 512-byte units (rounded down per process)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
    busy, own = _machine_busy_ticks() - busy, _own_cpu_s() - own
    reaped = {
        "write": usage.ru_oublock * 512,
        # rusage has no cancelled_write_bytes: the root's last reading stands in (missing its last moments)
        "cancelled": monitor.last(process.pid).get("cancelled", 0),
        "cpu": round((usage.ru_utime + usage.ru_stime) * CLOCK_TICKS),
    }
    totals = monitor.totals({process.pid: reaped})
    return {
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(monitor.rss_peak_kb * 1024 / 1e6, 1),
        "written_mb": round(totals["write"] / 1e6, 1),
        "peak_pss_mb": round(monitor.pss_peak_kb * 1024 / 1e6, 1),
        "peak_rss_by_process": monitor.peak_breakdown,
        "cancelled_mb": round(totals["cancelled"] / 1e6, 1),
        "cpu_s": round(totals["cpu"] / CLOCK_TICKS, 2),
        # CPU the machine spent on anything else meanwhile: other work disturbing the measurement (for
        # the worker side, also the database and broker serving it); this process's sampling apart
        "other_cpu_s": round((busy - totals["cpu"]) / CLOCK_TICKS - own, 2),
        "sampler_cpu_s": round(own, 2),
        "processes": monitor.processes,
        "orphans": monitor.orphans(roots()),
        "samples": monitor.samples,
        "pss_samples": monitor.pss_samples,
        "loadavg_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
        "exit_code": process.returncode,
    }


# -- what regctl recorded ----------------------------------------------------------------------------------

MB = 1e6
CANDIDATE_KEYS = ("ok", "runtime", "inputs_run", "judged_on", "judged_note", "runtime_note", "battery_s")


def _stage_s(stages: list[dict[str, Any]], name: str) -> float:
    """Seconds from stage `name` to the stage after it (0 when the job never reached it)."""
    for here, after in itertools.pairwise(stages):
        if here.get("stage") == name:
            return _seconds(_time(here.get("at")), _time(after.get("at"))) or 0.0
    return 0.0


def summarise(shown: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """Status, method, stage timings, job times and artifact sizes from `versions show --json`."""
    summary = shown.get("summary") or {}
    validation = summary.get("validation") or {}
    jobs = []
    for job in shown.get("jobs", []):
        created, started, finished = (_time(job.get(k)) for k in ("created_at", "started_at", "finished_at"))
        jobs.append(
            {
                "kind": job.get("kind"),
                "state": job.get("state"),
                "error": job.get("error"),
                "queued_s": _seconds(created, started),
                "run_s": _seconds(started, finished),
            }
        )
    in_jobs = sum(j["run_s"] or 0.0 for j in jobs)
    signing = sum(_stage_s(job.get("stages") or [], "signing") for job in shown.get("jobs", []))
    artifacts: dict[str, float] = {}
    for artifact in shown.get("artifacts", []):
        kind = artifact.get("kind", "?")
        artifacts[kind] = round(artifacts.get(kind, 0.0) + (artifact.get("size") or 0) / MB, 1)
    report = summary.get("report") or {}
    sandbox = (report.get("sandbox") or {}).get("model") or {}
    return {
        "status": shown.get("status"),
        "method": shown.get("method"),
        # the attestations' share: from the `signing` stage to the next one, against the whole wall time
        "signing_s": round(signing, 4),
        "signing_share": round(signing / wall_s, 5) if wall_s else None,
        "signed": (summary.get("attestation") or {}).get("signed"),
        "why": summary.get("why"),
        "battery_size": summary.get("battery_size"),
        "max_abs_error": summary.get("max_abs_error"),
        "optimized": summary.get("optimized"),
        "exported": summary.get("exported"),
        "sandbox_mode": sandbox.get("mode"),
        "validated": summary.get("validated"),
        "validated_by": validation.get("by"),
        "jobs": jobs,
        # CLI start-up, registration (bundle, sha256, store), queueing and following: the time no job ran
        "outside_jobs_s": round(wall_s - in_jobs, 3),
        "convert_timings": report.get("timings"),
        # each candidate: which inputs it ran, in which runtime, and how long its judging took
        "candidates": {
            name: {k: entry.get(k) for k in CANDIDATE_KEYS if k in entry}
            for name, entry in (report.get("candidates") or {}).items()
            if isinstance(entry, dict)
        },
        **({"validate_timings": validation["report"].get("timings")} if validation.get("report") else {}),
        "artifacts_mb": artifacts,
    }


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start and end else None


def side_by_side(models: dict[str, Any]) -> dict[str, Any]:
    """The ratios of every model, formats set and regctl side in one small table, with the load."""
    table: dict[str, Any] = {}
    for name, result in models.items():
        for label, run in result["runs"].items():
            for side in ("embedded", "worker"):
                ratios = run["ratios"].get(side)
                measured = run["sides"].get(side, {})
                table[f"{name} {label} {side}"] = {
                    **({k: v for k, v in ratios.items()} if ratios else {"failed": True}),
                    # seconds beside the ratios: a key of its own, never the ratio's own `wall_s`
                    "regctl_wall_s": measured.get("wall_s"),
                    "bare_wall_s": run["sides"]["bare"].get("wall_s"),
                    "other_cpu_s": measured.get("other_cpu_s"),
                    "bare_other_cpu_s": run["sides"]["bare"].get("other_cpu_s"),
                    "loadavg_1m": measured.get("loadavg_1m"),
                }
    return table


# -- a regctl worker -----------------------------------------------------------------------------------------


@dataclass
class Worker:
    """A `regctl worker` process (the pool's parent) in a session of its own."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The pool parent's process id (also its process group's)."""
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        """The end of its log."""
        return self.log.read_text(errors="replace")[-chars:]


@contextmanager
def running_worker(env: dict[str, str], log: Path, concurrency: int = 1) -> Iterator[Worker]:
    """`regctl worker --queues cpu`, answered a ping over the broker before this yields; stopped after."""
    from regctl.registry.settings import Settings
    from regctl.worker.dispatch.publishing import app_for

    name = f"e2e-{os.getpid()}@bench"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [REGCTL, "worker", "--queues", "cpu", "--concurrency", str(concurrency), "--hostname", name],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stopping it reaches the pool
        )
    worker = Worker(name, process, log)
    app = app_for(Settings.from_env(env))
    try:
        deadline = time.monotonic() + WORKER_READY_S
        while not app.control.ping(destination=[name], timeout=0.5):  # the wait is the ping's timeout
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not answer a ping:\n{worker.log_tail()}")
        yield worker
    finally:
        app.close()
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (Celery's warm shutdown), SIGKILL if it lingers."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=WORKER_STOP_S)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # pool children left behind, if any
    process.wait()
