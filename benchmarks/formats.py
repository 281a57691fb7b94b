"""Every format regctl ships against eager PyTorch: latency, agreement, build seconds and file size.

Two models built from code with fixed seeds (torch.manual_seed(0)): the 6-layer transformer encoder of
benchmarks/aoti.py (width 256, 4 heads, feed-forward 1024, sequence 64, imported from there) and a
small conv net (three Conv2d+ReLU+MaxPool blocks and a Linear head on [batch, 3, 64, 64]). Each is
built into every format with regctl's own builders, from files as a worker has them:

  exported_program  torch.export.export with a dynamic batch (Dim "batch", 1..16; example batch 2),
                    torch.export.save, then torch.export.load(...).module()
  torchscript       torch.jit.script (regctl's first candidate), torch.jit.save, torch.jit.load; not
                    frozen or optimized (regctl keeps that variant only where it measures faster)
  aoti              worker.judge.aoti._compile (one compile thread, a cold Inductor cache of this
                    run's own), then torch._inductor.aoti_load_package
  onnx              worker.judge.onnx_format.build, then onnx_format.load (onnxruntime, CPU provider)
  executorch        worker.judge.executorch_format.build (XNNPACK), then executorch_format.load

aoti, onnx and executorch are each built from their own torch.export.load of the saved program, as
regctl's stages load the proved program; their build_s counts the builder only (the export is
exported_program's build_s). size_bytes is the file the builder wrote.

At batch 1 and 8 (same input for every form, under torch.no_grad()), each form's output is compared
with eager's (torch.allclose, atol 1e-4, rtol 1e-3) and its max abs error reported whether it passes
or not; a form is timed even when it disagrees. Timing is torch.utils.benchmark.Timer.blocked_autorange
with torch's thread count, the forms taking turns round by round (each round starting with the next
form), so load drift shifts all of them alike; median and quartiles are over all blocks of all
rounds, and ratio_to_eager (two significant figures) is a form's median over eager's. A builder or
a call that fails records its error string instead of a result. Prints one JSON document on stdout
(everything the converters print goes to stderr).

    .venv/bin/python benchmarks/formats.py [--quick] [--models transformer,conv] [--seconds 3]
        [--threads N]

--threads (default: torch's, the core count) sets torch's threads, and with them onnxruntime's intra-op
threads (onnx_format.load copies torch's) and ExecuTorch's XNNPACK pool. Where something else keeps
the cores busy, multi-threaded calls now and then stall for about 100 ms (seen on a 2-vCPU VM); the
summary then says NOISY, and --threads 1 avoids it. The transformer's six layers get weights of their
own (nn.TransformerEncoder copies one layer; equal tensors would be stored once by ExecuTorch).

About 3 minutes on a 2-core machine (175 s: builds about 85 s, mostly the transformer's ExecuTorch
lowering, about 40 s, and its AOTInductor compile, about 30 s; timing about 75 s). --quick times
batch 1 only with a fifth of the budget, about 100 s: the builds are the same.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch._inductor
from torch import nn
from torch.utils.benchmark import Timer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.aoti import Encoder  # noqa: E402
from regctl.registry.figures import two_significant  # noqa: E402
from regctl.registry.spec import ModelSpec  # noqa: E402
from regctl.worker.engine.capture import describe_exception  # noqa: E402
from regctl.worker.judge import aoti, executorch_format, onnx_format  # noqa: E402

BATCHES = (1, 8)
MAX_BATCH = 16
EXAMPLE_BATCH = 2  # torch.export specializes a dim whose example size is 0 or 1
ATOL, RTOL = 1e-4, 1e-3
ROUNDS, QUICK_ROUNDS = 6, 3
NOISY = 0.5  # an interquartile range over half the median: the summary says so
FORMS = ("eager", "exported_program", "torchscript", "aoti", "onnx", "executorch")

Runner = Callable[[torch.Tensor], torch.Tensor]


class ConvNet(nn.Module):
    """Three conv-relu-pool blocks on [batch, 3, 64, 64], then a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in (16, 32, 64):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(64 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


@dataclass(frozen=True)
class Model:
    """How to build one benchmark model and the shape of its input after the batch dim."""

    build: Callable[[], nn.Module]
    shape: tuple[int, ...]

    def input(self, batch: int) -> torch.Tensor:
        return torch.randn(batch, *self.shape)

    def spec(self) -> ModelSpec:
        """The spec regctl would hold: one input with a dynamic batch (names the ONNX axes)."""
        return ModelSpec.from_dict(
            {
                "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", *self.shape]}],
                "dims": {"batch": {"name": "batch", "min": 1, "max": MAX_BATCH, "opt": 8, "batch": True}},
            }
        )


def distinct_encoder() -> nn.Module:
    """benchmarks/aoti.py's Encoder with weights of its own in every layer.

    nn.TransformerEncoder deep-copies one layer six times, so all six start equal; ExecuTorch's
    data store keeps equal tensors once, which would make its file look a sixth of its real size.
    """
    model = Encoder()
    for layer in model.encoder.layers:
        for module in layer.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()
        layer.self_attn._reset_parameters()
    return model


MODELS = {"transformer": Model(distinct_encoder, (64, 256)), "conv": Model(ConvNet, (3, 64, 64))}


def build_forms(
    model: nn.Module, spec: ModelSpec, example: torch.Tensor, workdir: Path
) -> tuple[dict[str, Runner], dict[str, dict[str, Any]]]:
    """Every form of `model` built and loaded back: the runners, and per form its build entry."""
    runners: dict[str, Runner] = {"eager": model}
    builds: dict[str, dict[str, Any]] = {}
    program = workdir / "program.pt2"

    def export(path: Path) -> None:
        dims = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)
        with torch.no_grad():
            exported = torch.export.export(model, (example,), dynamic_shapes=dims)
        torch.export.save(exported, str(path))

    def from_program(builder: Callable[[Any, Path], Any]) -> Callable[[Path], None]:
        def make(path: Path) -> None:
            if "error" in builds["exported_program"]:
                raise RuntimeError("needs the exported program, which failed")
            builder(torch.export.load(str(program)), path)

        return make

    steps: list[tuple[str, str, Callable[[Path], None], Callable[[Path], Runner]]] = [
        ("exported_program", "program.pt2", export, lambda p: torch.export.load(str(p)).module()),
        ("torchscript", "model.pt", lambda p: torch.jit.save(torch.jit.script(model), str(p)), _jit_load),
        ("aoti", "model.aoti.pt2", from_program(aoti._compile), _aoti_load),
        (
            "onnx",
            "model.onnx",
            from_program(lambda e, p: onnx_format.build(e, p, spec)),
            _flat(onnx_format.load),
        ),
        (
            "executorch",
            "model.pte",
            from_program(lambda e, p: executorch_format.build(e, p, spec)),
            _flat(executorch_format.load),
        ),
    ]
    for form, filename, make, load in steps:
        runner, builds[form] = _build(workdir / filename, make, load)
        if runner is not None:
            runners[form] = runner
    return runners, builds


def _build(
    path: Path, make: Callable[[Path], None], load: Callable[[Path], Runner]
) -> tuple[Runner | None, dict[str, Any]]:
    try:
        started = time.perf_counter()
        make(path)
        built = time.perf_counter()
        runner = load(path)
        loaded = time.perf_counter()
    except Exception as exc:
        return None, {"error": describe_exception(exc)}
    return runner, {
        "build_s": round(built - started, 2),
        "load_s": round(loaded - built, 3),
        "size_bytes": path.stat().st_size,
    }


def _jit_load(path: Path) -> Runner:
    return torch.jit.load(str(path))


def _aoti_load(path: Path) -> Runner:
    return torch._inductor.aoti_load_package(str(path))


def _flat(load: Callable[[Path], Callable[[list[torch.Tensor]], list[Any]]]) -> Callable[[Path], Runner]:
    """regctl's flat-list runner (tensors in, tensors out) called like the eager model."""

    def loader(path: Path) -> Runner:
        run = load(path)
        return lambda x: run([x])[0]

    return loader


def agreement(runners: dict[str, Runner], x: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Per form: max abs error against eager and whether it is within tolerance, or the call's error."""
    with torch.no_grad():
        expected = runners["eager"](x)
        entries: dict[str, dict[str, Any]] = {}
        for form, fn in runners.items():
            try:
                got = fn(x)
            except Exception as exc:
                entries[form] = {"error": describe_exception(exc)}
                continue
            if got.shape != expected.shape:
                entries[form] = {"error": f"output shape {list(got.shape)}, eager's {list(expected.shape)}"}
                continue
            entries[form] = {
                "max_abs_error": float((got - expected).abs().max()),
                "matches_eager": torch.allclose(got, expected, rtol=RTOL, atol=ATOL),
            }
    return entries


def latencies(
    runners: dict[str, Runner], x: torch.Tensor, seconds: float, rounds: int
) -> dict[str, list[float]]:
    """Seconds per call of each form, one per measured block; the forms take turns round by round."""
    names = list(runners)
    timers = {
        name: Timer("fn(x)", globals={"fn": fn, "x": x}, num_threads=torch.get_num_threads())
        for name, fn in runners.items()
    }
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.no_grad():
        for i in range(rounds):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                times[name] += timers[name].blocked_autorange(min_run_time=seconds / rounds).times
    return times


def bench(name: str, seconds: float, rounds: int, batches: tuple[int, ...], workdir: Path) -> dict[str, Any]:
    """One model: its builds, and every form at every batch."""
    spec_model = MODELS[name]
    torch.manual_seed(0)
    model = spec_model.build().eval()
    torch.manual_seed(EXAMPLE_BATCH)
    runners, builds = build_forms(model, spec_model.spec(), spec_model.input(EXAMPLE_BATCH), workdir)
    results: dict[str, dict[str, Any]] = {}
    for batch in batches:
        torch.manual_seed(batch)
        x = spec_model.input(batch)
        checked = agreement(runners, x)
        timed = latencies(
            {f: fn for f, fn in runners.items() if "error" not in checked[f]}, x, seconds, rounds
        )
        eager_ms = statistics.median(timed["eager"]) * 1000
        row: dict[str, Any] = {}
        for form in FORMS:
            if form not in runners:
                row[form] = {"error": builds[form]["error"]}
            elif form not in timed:
                row[form] = checked[form]
            else:
                q1, median, q3 = (
                    t * 1000 for t in statistics.quantiles(timed[form], n=4, method="inclusive")
                )
                row[form] = {
                    "median_ms": round(median, 3),
                    "q1_ms": round(q1, 3),
                    "q3_ms": round(q3, 3),
                    "ratio_to_eager": two_significant(median / eager_ms),
                    "blocks": len(timed[form]),
                    **checked[form],
                }
        results[str(batch)] = row
    return {"batches": results, "builds": builds}


def summary(models: dict[str, dict[str, Any]]) -> list[str]:
    """Plain lines: the fastest form per model and batch, every disagreement, every error."""
    lines = []
    for name, per_batch in models.items():
        for batch, row in per_batch.items():
            timed = {f: e for f, e in row.items() if "median_ms" in e}
            fastest = min(timed, key=lambda f: timed[f]["median_ms"])
            ratio = timed[fastest]["ratio_to_eager"]
            lines.append(f"{name} batch {batch}: fastest {fastest} ({ratio}x eager's median)")
            for form, entry in row.items():
                if "median_ms" in entry and entry["q3_ms"] - entry["q1_ms"] > NOISY * entry["median_ms"]:
                    lines.append(
                        f"{name} batch {batch} {form}: NOISY, quartiles {entry['q1_ms']}-{entry['q3_ms']} ms "
                        f"around a median of {entry['median_ms']} ms"
                    )
                if "error" in entry:
                    lines.append(f"{name} batch {batch} {form}: ERROR {entry['error']}")
                elif not entry["matches_eager"]:
                    lines.append(
                        f"{name} batch {batch} {form}: DISAGREES with eager, max abs error "
                        f"{entry['max_abs_error']:.3g} (atol {ATOL}, rtol {RTOL})"
                    )
    return lines


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """File descriptor 1 onto 2 while converters run: the exporters print progress, C++ included."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def versions() -> dict[str, Any]:
    """The versions of what is measured, and each runtime's thread count."""
    found = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()}
    for package in ("onnxruntime", "onnx", "onnxscript", "executorch"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    found["threads"] = {
        "torch": torch.get_num_threads(),
        "onnxruntime_intra_op": torch.get_num_threads(),  # onnx_format.load sets it from torch's
        "executorch_threadpool": _executorch_threads(),
    }
    return found


def _executorch_threads(wanted: int | None = None) -> int | None:
    """The size of ExecuTorch's thread pool (XNNPACK's), first set to `wanted` where it differs."""
    try:  # lazy, and optional: executorch is an extra; its builder records the error where it is missing
        from executorch.extension.pybindings import portable_lib
    except ImportError:
        return None
    if wanted is not None and portable_lib._threadpool_get_thread_count() != wanted:
        portable_lib._unsafe_reset_threadpool(wanted)  # before any program runs: nothing in flight
    return portable_lib._threadpool_get_thread_count()


def main() -> int:
    """Build, check and time every form of every model asked for; print the JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: transformer,conv")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per form per batch")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="batch 1 only, a fifth of the budget")
    args = parser.parse_args()
    wanted = [m for m in args.models.split(",") if m]
    unknown = [m for m in wanted if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    torch.set_num_threads(args.threads)
    _executorch_threads(args.threads)  # regctl's load leaves the pool at its default, the core count
    seconds = args.seconds / 5 if args.quick else args.seconds
    rounds = QUICK_ROUNDS if args.quick else ROUNDS
    batches = BATCHES[:1] if args.quick else BATCHES
    warnings.filterwarnings("ignore")  # torch's deprecation notices (torch.jit, exporters): not results
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="regctl-bench-formats-") as tmp, stdout_to_stderr():
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")  # a cold compile, every run
        results = {}
        for name in wanted:
            (Path(tmp) / name).mkdir()
            results[name] = bench(name, seconds, rounds, batches, Path(tmp) / name)
        found = versions()
    models = {name: r["batches"] for name, r in results.items()}
    document = {
        "benchmark": "latency of every format regctl ships against eager PyTorch",
        **found,
        "quick": args.quick,
        "seconds_per_form_per_batch": seconds,
        "rounds": rounds,
        "tolerance": {"atol": ATOL, "rtol": RTOL},
        "summary": summary(models),
        "models": models,
        "builds": {name: r["builds"] for name, r in results.items()},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
