"""The pieces of benchmarks/end_to_end.py: the BERT model directory, the bare script, a `regctl worker`,
and the readings of a whole process tree (resident memory and bytes written) from /proc.

Two entry points run as their own processes, so that the measuring process never imports torch:

    python -m benchmarks.end_to_end_support prepare DIR BATTERY --size bert-base [--layers N]
    python -m benchmarks.end_to_end_support bare DIR BATTERY OUT
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REGCTL = str(Path(sys.executable).with_name("regctl"))
PAGE_KB = os.sysconf("SC_PAGESIZE") // 1024
WORKER_READY_S = 120.0
WORKER_STOP_S = 30.0


# -- the model ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BertSize:
    """The shape of a BERT encoder."""

    hidden: int
    layers: int
    heads: int
    ff: int
    vocab: int = 30522
    positions: int = 512


SIZES = {
    "bert-base": BertSize(hidden=768, layers=12, heads=12, ff=3072),
    "bert-large": BertSize(hidden=1024, layers=24, heads=16, ff=4096),
}

# The dynamic dims of the input and the tolerances; the spec and the bare script both read them.
DIMS = {"batch": {"min": 1, "max": 4, "opt": 2, "batch": True}, "seq": {"min": 8, "max": 128, "opt": 64}}
# fp32 through 12-24 layers: TorchScript's frozen and optimized graph rounds differently from eager.
RTOL, ATOL = 1e-3, 1e-4

# Plain PyTorch, typed so that torch.jit.script accepts it; sizes come from tensor shapes (traced as
# values), and positions are sliced out of a buffer rather than built with arange, so a trace at one
# sequence length holds at every other.
MODEL_SOURCE = '''\
"""A BERT encoder in plain PyTorch: token and position embeddings, self-attention layers, a CLS pooler."""

import math
from typing import Tuple

import torch
from torch import nn

CONFIG = {config}


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), x.size(1), self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.split(self.query(x))
        k = self.split(self.key(x))
        v = self.split(self.value(x))
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        probs = torch.softmax(scores, dim=-1)
        context = torch.matmul(probs, v).transpose(1, 2).contiguous()
        return self.out(context.view(x.size(0), x.size(1), self.heads * self.head_dim))


class EncoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, ff: int) -> None:
        super().__init__()
        self.attention = SelfAttention(hidden, heads)
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Linear(hidden, ff)
        self.gelu = nn.GELU()
        self.output = nn.Linear(ff, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.attention(x))
        return self.output_norm(x + self.output(self.gelu(self.intermediate(x))))


class Bert(nn.Module):
    def __init__(self, vocab: int, positions: int, hidden: int, layers: int, heads: int, ff: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, hidden)
        self.positions = nn.Embedding(positions, hidden)
        self.register_buffer("position_ids", torch.arange(positions).unsqueeze(0), persistent=False)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList([EncoderLayer(hidden, heads, ff) for _ in range(layers)])
        self.pooler = nn.Linear(hidden, hidden)

    def forward(self, tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        positions = self.position_ids[:, : tokens.size(1)]
        x = self.norm(self.tokens(tokens) + self.positions(positions))
        for layer in self.layers:
            x = layer(x)
        return x, torch.tanh(self.pooler(x[:, 0]))


def build() -> nn.Module:
    return Bert(**CONFIG)
'''


def spec_toml(size: BertSize) -> str:
    """The regctl.toml of the BERT model directory."""
    dims = "\n".join(
        f"{name} = {{ "
        + ", ".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in dim.items())
        + " }"
        for name, dim in DIMS.items()
    )
    return f"""\
entrypoint = "model.py:build"
weights = "weights.safetensors"
method = "auto"
device = "cpu"
optimize = true

[[inputs]]
name = "tokens"
dtype = "int64"
shape = ["batch", "seq"]
low = 0
high = {size.vocab}

[dims]
{dims}

[validation]
rtol = {RTOL}
atol = {ATOL}
"""


def prepare(directory: Path, battery: Path, size: BertSize) -> dict[str, Any]:
    """Write model.py, regctl.toml and weights.safetensors (seed 0) into `directory`, and regctl's
    battery for that spec into `battery` (a torch.save list of argument tuples, opt shape first)."""
    import torch
    from safetensors.torch import save_file

    from regctl.registry.spec import load_spec
    from regctl.worker.engine.battery import build_battery

    directory.mkdir(parents=True)
    config = {
        "vocab": size.vocab,
        "positions": size.positions,
        "hidden": size.hidden,
        "layers": size.layers,
        "heads": size.heads,
        "ff": size.ff,
    }
    (directory / "model.py").write_text(MODEL_SOURCE.format(config=repr(config)))
    (directory / "regctl.toml").write_text(spec_toml(size))
    module = _import_file(directory / "model.py")
    torch.manual_seed(0)
    model = module.build()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "weights.safetensors"))
    spec = load_spec(directory)
    cases = build_battery(spec, directory)
    torch.save([case.args for case in cases], battery)
    return {
        "params": sum(v.numel() for v in state.values()),
        "weights_mb": round((directory / "weights.safetensors").stat().st_size / 1e6, 1),
        "battery_size": len(cases),
        "battery_shapes": sorted({case.group for case in cases}),
    }


def _import_file(path: Path) -> Any:
    import importlib.util

    name = f"_e2e_model_{os.getpid()}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # TorchScript resolves the model's classes through sys.modules
    spec.loader.exec_module(module)
    return module


# -- the bare script ---------------------------------------------------------------------------------------


def bare(directory: Path, battery: Path, out: Path) -> dict[str, Any]:
    """The plain-torch conversion (see end_to_end.py's docstring); returns what it found."""
    started = time.perf_counter()  # after the interpreter's start-up, before torch's import
    import tomllib

    import torch
    from safetensors.torch import load_file

    spec = tomllib.loads((directory / "regctl.toml").read_text())
    rtol, atol = spec["validation"]["rtol"], spec["validation"]["atol"]
    model = _import_file(directory / "model.py").build()
    model.load_state_dict(load_file(str(directory / spec["weights"])))
    model.eval()
    cases = torch.load(battery, weights_only=True)
    out.mkdir(parents=True, exist_ok=True)
    timings = {"load_s": time.perf_counter() - started}
    with torch.no_grad():
        lap = time.perf_counter()
        expected = [model(*args) for args in cases]
        timings["eager_s"], lap = time.perf_counter() - lap, time.perf_counter()
        traced = torch.jit.trace(model, cases[0], check_trace=False)  # cases[0] is at the opt shape
        torch.jit.save(traced, str(out / "model.pt"))
        del traced
        timings["trace_save_s"], lap = time.perf_counter() - lap, time.perf_counter()
        loaded = torch.jit.load(str(out / "model.pt"))
        mismatches = 0
        max_abs = 0.0
        for args, want in zip(cases, expected, strict=True):
            got = loaded(*args)
            same = all(torch.allclose(g, w, rtol=rtol, atol=atol) for g, w in zip(got, want, strict=True))
            mismatches += not same
            max_abs = max(max_abs, *((g - w).abs().max().item() for g, w in zip(got, want, strict=True)))
        del loaded
        timings["reload_battery_s"], lap = time.perf_counter() - lap, time.perf_counter()
        dims = {name: torch.export.Dim(name, min=d["min"], max=d["max"]) for name, d in spec["dims"].items()}
        shape = spec["inputs"][0]["shape"]
        program = torch.export.export(
            model, cases[0], dynamic_shapes={"tokens": {i: dims[n] for i, n in enumerate(shape)}}
        )
        torch.export.save(program, str(out / "model.pt2"))
        timings["export_save_s"] = time.perf_counter() - lap
    return {
        "ok": mismatches == 0,
        "cases": len(cases),
        "mismatches": mismatches,
        "max_abs_error": max_abs,
        "torch_threads": torch.get_num_threads(),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


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


# -- entry points ------------------------------------------------------------------------------------------


def main() -> None:
    """`prepare` or `bare`; prints one JSON line."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("directory", type=Path)
    p.add_argument("battery", type=Path)
    p.add_argument("--size", choices=sorted(SIZES), required=True)
    p.add_argument("--layers", type=int)
    b = sub.add_parser("bare")
    b.add_argument("directory", type=Path)
    b.add_argument("battery", type=Path)
    b.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "prepare":
        size = SIZES[args.size]
        if args.layers:
            size = BertSize(size.hidden, args.layers, size.heads, size.ff, size.vocab, size.positions)
        result = prepare(args.directory, args.battery, size)
    else:
        result = bare(args.directory, args.battery, args.out)
    print(json.dumps(result))
    if not result.get("ok", True):
        sys.exit(1)


if __name__ == "__main__":
    main()
