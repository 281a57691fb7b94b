"""Real-size models through regctl, end to end, against a bare script doing the core of the same work.
Prints one JSON document and exits 1 when a target is missed or a side fails.

Models: a BERT encoder in plain PyTorch (benchmarks/end_to_end_model.py writes its model.py: token
and position embeddings, LayerNorm, N layers of self-attention written out with nn.Linear q/k/v/out,
matmul and softmax, a GELU feed-forward and LayerNorm; outputs the last hidden state and a tanh CLS
pooling). `bert-base` is hidden 768, 12 layers, 12 heads, ff 3072 (~110M parameters, ~440 MB fp32);
`bert-large` is 1024, 24, 16, 4096 (~335M, ~1.3 GB). Weights come from torch.manual_seed(0) random
init, saved with safetensors.torch.save_file into weights.safetensors; regctl.toml names
"model.py:build", the weights, method auto, device cpu, optimize true, one int64 input `tokens` of
shape [batch, seq] in [0, 30522), batch 1..4 (opt 2), seq 8..128 (opt 64), rtol 1e-3, atol 1e-4 and
the default 4 samples: a battery of 28 inputs over 7 shapes. The model directory and the battery
(regctl's own `build_battery` on that spec, saved with torch.save) are written by a separate process
before anything is measured, and all three sides read the same directory, its weights in page cache.

Sides, each a process tree started from this process, which never imports torch itself:

  bare      `python -m benchmarks.end_to_end_model bare`: plain torch, no regctl code, doing what
            regctl's default path (formats = ["torchscript"]) promises. Imports model.py, builds,
            loads the safetensors weights (load_state_dict), eval(); loads the battery; under
            torch.no_grad() runs eager on every input, torch.jit.trace at the opt shape
            (check_trace=False, as regctl), torch.jit.save to a file, torch.jit.load, runs the
            battery on the reloaded artifact and compares every output with torch.allclose at the
            spec's tolerances. Nothing is exported. With `exported` in --formats it then also runs
            torch.export.export with the same dynamic dims (torch.export.Dim), torch.export.save to
            a .pt2 file, torch.export.load(...).module() and the battery on that program, compared
            the same way. It fails if an output differs.
  embedded  `regctl register NAME DIR --wait` (with `--format exported` when --formats asks for it,
            under the name NAME-exported) with no broker: the CLI runs the version's jobs
            (convert, then validate where one is queued) in-process, each with its sandboxed model
            process and judge (REGCTL_SANDBOX left at its default, auto), on SQLite
            (REGCTL_DATABASE_URL) and a local store (REGCTL_ARTIFACT_STORE) in a scratch directory,
            after an untimed `regctl db upgrade`.
  worker    the same command with REGCTL_BROKER_URL on a Redis database of the run's own (flushed
            before and after; --redis-url), on a scratch PostgreSQL database, with one `regctl worker
            --queues cpu --concurrency 1` started beforehand (readiness: it answers a Celery ping;
            not timed) and stopped (SIGTERM, warm shutdown) after. The CLI publishes the convert job
            and follows it; the worker runs the jobs.

What regctl does on top of the bare script, and is counted against it: the CLI and its registration
(source bundle, sha256, the weights stored as their own blob), job bookkeeping, the private import
namespace and sandbox processes, both candidates (script and trace, each saved; the kept one frozen +
optimize_for_inference'd, kept if not slower by an interleaved torch.utils.benchmark measurement,
and run on the whole battery in the LibTorch C++ runner, then loaded in Python for one input; the
other run only on the deciding inputs), the LibTorch runner's start (it is built before measuring,
as in a worker image), a validate job where one still runs (none does when the stored bytes are the
ones the convert job's judge proved), and only with `exported`: the export, its reload and battery.

--formats LIST (repeatable; default torchscript) measures each set in turn, bare and regctl alike,
e.g. `--formats torchscript --formats torchscript,exported`. The targets hold for the default set
only; any other set reports its figures and ratios beside it with no target (meets_target null).
`ratios` at the top of the report puts every model, set and side in one table with the load.

Every side runs --rounds times (default 3), the three taking turns in an order reversed every other
round, and each metric is the median over its rounds (benchmarks/rounds.py: single runs of identical
code gave BERT-base wall ratios from 1.20 to 1.60 on a shared machine); each round's figures are
kept under the side's `rounds`. Every side starts after an untimed sync(), so none pays for the
writeback of what an earlier side or the preparation wrote; regctl's source is byte-compiled
beforehand, as installing its wheel does.

Measured per side:
  wall_s       from starting the process to reaping it (worker: the CLI's process).
  peak_rss_mb  every 50 ms (--interval), the sum of VmRSS over the process tree; the highest sum.
               The tree is every descendant of the root (worker: of the CLI and of the worker's main
               process, whose pool and sandboxes descend from it) plus anything seen in it before and
               still alive. Pages shared between processes (a zygote's forks) count once per process;
               `peak_pss_mb` (no target) is the same with each process's Pss, which counts them once;
               it is read once a second (--pss-interval), as reading it walks every page table.
  written_mb   bytes the tree caused to be written to storage (/proc/PID/io write_bytes, counted when
               a page is dirtied). Linux adds a reaped child's counters into its parent's, so each
               pid's last value cannot simply be summed (a child's writes would count twice): the
               root's share is the block output wait4 returns when this process reaps it (its own and
               everything below it reaped in turn); processes alive at the end (the worker's) count
               their counter now minus at the start, or all of it if they started meanwhile; a process
               re-parented out of the tree (`orphans`: in embedded mode the sandbox zygote and
               multiprocessing's resource tracker outlive the job process) counts its last reading.
               A process orphaned before its first sample would be missed. `cancelled_mb` (no target)
               is what the tree truncated or deleted before writeback (temporary files), credited to
               the deleting process; the root's share is its last reading, as rusage lacks it.
  cpu_s        (no target) user + system CPU time of the tree, summed the same way (wait4's rusage,
               /proc/PID/stat utime + stime + cutime + cstime): less sensitive than wall time to other
               work on the machine. `other_cpu_s` is the CPU time the machine spent on anything else
               meanwhile (/proc/stat busy time less the tree's and this process's `sampler_cpu_s`;
               for the worker side it includes PostgreSQL and Redis serving it): well above zero, other
               work disturbed the side. `loadavg_1m` is the 1-minute load before and after each side.
The bare script also reports its own stage timings (load, eager, trace + save, reload + battery;
with exported: export + save, reload + battery).
Writes by the database servers (PostgreSQL, Redis) are not counted; SQLite's, in the CLI, are.
Ratios are regctl side / bare, of the medians; targets: wall <= 1.5, peak RSS <= 1.5, written <= 2.0.
Also reported, from `regctl versions show NAME:1 --json` after each regctl side (must be `ready`):
the method chosen, the convert (and any validate) report's stage timings, each candidate's runtime
and the inputs it ran, each job's queue wait and run time, the sizes of the stored artifacts.

    .venv/bin/python benchmarks/end_to_end.py [--models bert-base,bert-large] [--layers N]
        [--formats torchscript[,exported]]... [--rounds 3] [--redis-url redis://127.0.0.1:6379/15]

--coverage measures instead what recording coverage (issue 24, worker/model/recorder.py) adds, per
model: `python -m benchmarks.coverage_support DIR` in a process of its own on the prepared directory
(module docstring there): the reference runner's eager battery pass plain, with the conversion patch
only and recorded (with where the time goes), and one whole in-process conversion
(`regctl.worker.inprocess.convert_model`) with the recorder's context managers as they are against
no-ops, taking turns, same seed, best of --repeats (LibTorch stage off on both sides). `ratio` is
on / off; the target is at most 1.05 for bert-base. `search.tried`: the search's forwards.

    .venv/bin/python benchmarks/end_to_end.py --coverage --models bert-base [--repeats 2] [--layers N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.end_to_end_model import FORMATS, SIZES, parse_formats
from benchmarks.end_to_end_support import (
    REGCTL,
    REPO,
    Sampling,
    run_measured,
    running_worker,
    side_by_side,
    summarise,
)
from benchmarks.ready_as_deployed import base_env, build_libtorch_runner, compile_bytecode
from benchmarks.rounds import in_turns
from benchmarks.service_support import direct_env, regctl, scratch_database

TARGETS = {"wall_s": 1.5, "peak_rss_mb": 1.5, "written_mb": 2.0}
DEFAULT_FORMATS = ("torchscript",)  # regctl's default `formats`: the targets hold for this set only
COVERAGE_TARGETS = {"bert-base": 1.05, "bert-large": 1.05}  # a conversion with coverage recording on / off
INFORMATIVE = ("peak_pss_mb", "cpu_s")  # ratios reported, no target
REDIS_URL = os.environ.get("REGCTL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
MB = 1e6


def parse_args() -> argparse.Namespace:
    """Options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(SIZES), help="comma-separated: bert-base, bert-large")
    parser.add_argument("--layers", type=int, help="override the number of encoder layers (a smoke run)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between process-tree samples")
    parser.add_argument("--pss-interval", type=float, default=1.0, help="seconds between Pss reads; 0: none")
    parser.add_argument("--redis-url", default=REDIS_URL, help="the worker side's broker (flushed)")
    parser.add_argument(
        "--formats",
        action="append",
        type=_formats,
        help=f"what both sides produce, comma-separated from {', '.join(FORMATS)} (TorchScript always);"
        " repeatable, each set measured in turn; default torchscript. Targets hold for torchscript alone",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of every side, taking turns (medians)")
    parser.add_argument("--coverage", action="store_true", help="coverage recording on vs off instead")
    parser.add_argument("--repeats", type=int, default=2, help="--coverage: conversions per side")
    args = parser.parse_args()
    args.formats = list(dict.fromkeys(args.formats or [DEFAULT_FORMATS]))
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    unknown = set(args.models.split(",")) - set(SIZES)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; choose from {', '.join(SIZES)}")
    return args


def _formats(text: str) -> tuple[str, ...]:
    try:
        return parse_formats(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def prepare_model(name: str, layers: int | None, root: Path) -> tuple[Path, Path, dict[str, Any]]:
    """The model directory and the battery file, written by a process of their own."""
    directory, battery = root / "model", root / "battery.pt"
    argv = [sys.executable, "-m", "benchmarks.end_to_end_model", "prepare", str(directory), str(battery)]
    argv += ["--size", name, *(["--layers", str(layers)] if layers else [])]
    done = subprocess.run(argv, cwd=REPO, env=base_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"preparing {name} failed:\n{done.stderr[-3000:]}")
    size = SIZES[name]
    info = {
        "hidden": size.hidden,
        "layers": layers or size.layers,
        "heads": size.heads,
        "ff": size.ff,
        **json.loads(done.stdout.splitlines()[-1]),
    }
    return directory, battery, info


def measure_bare(
    directory: Path, battery: Path, root: Path, formats: tuple[str, ...], sampling: Sampling
) -> dict[str, Any]:
    """The bare script, measured; fails when it exits non-zero (an output differed, or it raised)."""
    log = root / "bare.log"
    argv = [sys.executable, "-m", "benchmarks.end_to_end_model", "bare", str(directory), str(battery)]
    argv += [str(root / "bare-out"), "--formats", ",".join(formats)]
    result = run_measured(argv, base_env(), log, sampling=sampling)
    text = log.read_text(errors="replace")
    if result["exit_code"] != 0:
        result["error"] = text[-3000:]
    else:
        result["outcome"] = json.loads(text.strip().splitlines()[-1])
    return result


def register_argv(name: str, directory: Path, formats: tuple[str, ...]) -> list[str]:
    """`regctl register NAME DIR --wait`, with `--format` for what it makes besides TorchScript."""
    besides = [f for f in formats if f != "torchscript"]
    return [
        REGCTL,
        "register",
        name,
        str(directory),
        "--wait",
        *(["--format", ",".join(besides)] if besides else []),
    ]


def measure_regctl(
    name: str,
    directory: Path,
    formats: tuple[str, ...],
    env: dict[str, str],
    log: Path,
    sampling: Sampling,
    worker_pid: int | None = None,
) -> dict[str, Any]:
    """`regctl register NAME DIR --wait [--format ...]`, measured, then what regctl recorded about it."""
    extra = (lambda: [worker_pid]) if worker_pid is not None else (lambda: [])
    argv = register_argv(name, directory, formats)
    result = run_measured(argv, env, log, extra_roots=extra, sampling=sampling)
    result["command"] = " ".join(["regctl", *argv[1:]])
    try:
        shown = json.loads(regctl(env, "versions", "show", f"{name}:1", "--json"))
    except (RuntimeError, ValueError) as exc:
        shown = None
        result["error"] = f"versions show failed: {exc}"
    if shown is not None:
        result["regctl"] = summarise(shown, result["wall_s"])
    status = (result.get("regctl") or {}).get("status")
    if result["exit_code"] != 0 or status != "ready":
        result.setdefault("error", f"exit code {result['exit_code']}, status {status}")
        result["log_tail"] = log.read_text(errors="replace")[-3000:]
    return result


def measure_embedded(
    name: str, directory: Path, formats: tuple[str, ...], root: Path, sampling: Sampling
) -> dict[str, Any]:
    """The embedded side on a fresh SQLite registry."""
    env = {**base_env(), **direct_env(f"sqlite:///{root / 'registry.db'}", root)}
    regctl(env, "db", "upgrade")
    regctl(env, "keys", "init")  # a registry that signs: the attestations are part of what is measured
    return measure_regctl(name, directory, formats, env, root / "register.log", sampling)


def measure_worker(
    name: str,
    directory: Path,
    formats: tuple[str, ...],
    root: Path,
    database_url: str,
    redis_url: str,
    sampling: Sampling,
) -> dict[str, Any]:
    """The worker side: PostgreSQL, Redis and one `regctl worker` on the cpu queue."""
    import redis

    env = {**base_env(), **direct_env(database_url, root), "REGCTL_BROKER_URL": redis_url}
    regctl(env, "db", "upgrade")
    if not any(k.get("current") for k in json.loads(regctl(env, "keys", "show", "--json") or "[]")):
        regctl(env, "keys", "init")
    broker = redis.Redis.from_url(redis_url)
    broker.flushdb()
    try:
        with running_worker(env, root / "worker.log") as worker:
            result = measure_regctl(
                name, directory, formats, env, root / "register.log", sampling, worker.pid
            )
        if "error" in result:
            result["worker_log_tail"] = worker.log_tail()
        return result
    finally:
        broker.flushdb()
        broker.close()


def compare(sides: dict[str, dict[str, Any]], label: str, targeted: bool) -> tuple[dict[str, Any], list[str]]:
    """Ratios of each regctl side to bare, whether each meets its targets (where `targeted`: the
    default formats), and the misses by name; a side that failed is a miss either way."""
    ratios: dict[str, Any] = {}
    missed: list[str] = []
    bare = sides["bare"]
    if "error" in bare:
        return ratios, [f"{label}/bare/failed"]
    for side in ("embedded", "worker"):
        result = sides[side]
        if "error" in result:
            missed.append(f"{label}/{side}/failed")
            continue
        ratios[side] = {
            metric: round(result[metric] / bare[metric], 3) if bare[metric] else None
            for metric in (*TARGETS, *INFORMATIVE)
        }
        if not targeted:
            ratios[side]["meets_target"] = None  # no target: reported beside the default's figures
            continue
        misses = [m for m, target in TARGETS.items() if ratios[side][m] is None or ratios[side][m] > target]
        ratios[side]["meets_target"] = not misses
        missed += [f"{label}/{side}/{m}" for m in misses]
    return ratios, missed


def measure_formats(
    name: str,
    formats: tuple[str, ...],
    prepared: tuple[Path, Path],
    here: Path,
    args: argparse.Namespace,
    database_url: str,
    sampling: Sampling,
) -> dict[str, Any]:
    """One formats set's three sides, `args.rounds` times taking turns (rounds.py), and the ratios of
    their medians."""
    directory, battery = prepared
    label = ",".join(formats)
    # a registry name of its own per set and round: the worker side's PostgreSQL database is shared
    registered = name if formats == DEFAULT_FORMATS else f"{name}-{'-'.join(formats[1:])}"

    def named(index: int) -> str:
        return registered if index == 0 else f"{registered}-round{index + 1}"

    sides = in_turns(
        {
            "bare": lambda d, i: measure_bare(directory, battery, d, formats, sampling),
            "embedded": lambda d, i: measure_embedded(named(i), directory, formats, d, sampling),
            "worker": lambda d, i: measure_worker(
                named(i), directory, formats, d, database_url, args.redis_url, sampling
            ),
        },
        args.rounds,
        here,
    )
    targeted = formats == DEFAULT_FORMATS
    ratios, missed = compare(sides, f"{name}/{label}", targeted)
    return {
        "formats": list(formats),
        "targets": TARGETS if targeted else None,
        "rounds": args.rounds,
        "sides": sides,
        "ratios": ratios,
        "missed": missed,
    }


def measure_model(
    name: str, args: argparse.Namespace, root: Path, database_url: str, sampling: Sampling
) -> dict[str, Any]:
    """The model prepared once, then each formats set measured in turn (`runs`, keyed by the set:
    "torchscript", "torchscript,exported")."""
    directory, battery, info = prepare_model(name, args.layers, root)
    runs: dict[str, Any] = {}
    for formats in args.formats:
        label = ",".join(formats)
        here = root / label.replace(",", "+")
        runs[label] = measure_formats(name, formats, (directory, battery), here, args, database_url, sampling)
    missed = [m for run in runs.values() for m in run["missed"]]
    return {"model": info, "runs": runs, "meets_target": not missed, "missed": missed}


def measure_coverage(name: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Coverage recording on versus off for one model, in a process of its own (module docstring)."""
    directory, _, info = prepare_model(name, args.layers, root)
    argv = [sys.executable, "-m", "benchmarks.coverage_support", str(directory)]
    argv += ["--repeats", str(args.repeats), "--eager-repeats", str(max(3, args.repeats))]
    done = subprocess.run(argv, cwd=REPO, env=base_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"model": info, "error": done.stderr[-3000:], "meets_target": False}
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    whole, target = measured["conversion"], COVERAGE_TARGETS.get(name)
    added = measured["eager"]["recorded_s"] - measured["eager"]["plain_s"]
    return {
        "model": info,
        "ratio": whole["ratio"],
        "cpu_ratio": whole["cpu_ratio"],
        "eager_ratio": measured["eager"]["ratio"],
        "target": target,
        "meets_target": None if target is None else all(whole["ok"].values()) and whole["ratio"] <= target,
        "search_tried": whole["search"]["tried"],
        # coverage_support.added_share, not imported: this process never imports torch
        "eager_added_s": round(added, 4),
        "eager_added_share": round(added / whole["off_s"], 4),
        **measured,
    }


def coverage_main(args: argparse.Namespace) -> None:
    """--coverage: print the JSON report, exit 1 when a target is missed or a model failed."""
    models: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="regctl-bench-e2e-") as tmp:
        for name in args.models.split(","):
            (Path(tmp) / name).mkdir()
            models[name] = measure_coverage(name, args, Path(tmp) / name)
    missed = [name for name, result in models.items() if result["meets_target"] is False]
    report = {
        "benchmark": "end_to_end --coverage",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": package_version("torch"),
        },
        "measured": "convert_model, CoverageRecord.recording/converting as they are vs no-ops",
        "libtorch_stage": "off, both sides",
        "layers_override": args.layers,
        "repeats": args.repeats,
        "models": models,
        "missed_targets": missed,
    }
    print(json.dumps(report, indent=2))
    sys.exit(1 if missed else 0)


def main() -> None:
    """Measure every model's three sides, print the JSON report, exit 1 when a target is missed."""
    args = parse_args()
    if args.coverage:
        coverage_main(args)
        return
    report: dict[str, Any] = {
        "benchmark": "end_to_end",
        "machine": {
            "cpus": os.cpu_count(),
            "memory_mb": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGESIZE") / MB),
            "python": platform.python_version(),
            "torch": package_version("torch"),
            "loadavg_start": os.getloadavg(),
        },
        "settings": {
            "layers_override": args.layers,
            "sample_interval_s": args.interval,
            "pss_interval_s": args.pss_interval,
            "sandbox": "REGCTL_SANDBOX default (auto)",
            "worker": "regctl worker --queues cpu --concurrency 1, PostgreSQL, Redis",
            "formats": [list(f) for f in args.formats],
            "rounds": args.rounds,
        },
        "targets": TARGETS,
        "models": {},
    }
    missed: list[str] = []
    sampling = Sampling(args.interval, args.pss_interval)
    build_libtorch_runner()
    compile_bytecode()
    with (
        tempfile.TemporaryDirectory(dir="/tmp", prefix="regctl-bench-e2e-") as tmp,
        scratch_database() as database_url,
    ):
        for name in args.models.split(","):
            root = Path(tmp) / name
            root.mkdir()
            report["models"][name] = measure_model(name, args, root, database_url, sampling)
            missed += report["models"][name]["missed"]
    report["machine"]["loadavg_end"] = os.getloadavg()
    report["ratios"] = side_by_side(report["models"])
    report["missed_targets"] = missed
    print(json.dumps(report, indent=2))
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
