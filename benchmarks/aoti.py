"""AOTInductor package against TorchScript against eager PyTorch: median latency, in one run.

Two models built from code with fixed seeds: a 6-layer transformer encoder (width 256, 4 heads,
sequence 64) and a small conv net (four 3x3 conv blocks on 3x64x64 images). Each is converted the way
regctl converts it: TorchScript scripted, frozen and optimized for inference; the AOTInductor
package compiled from `torch.export` with a dynamic batch (1..8) by
`torch._inductor.aoti_compile_and_package` and loaded with `aoti_load_package`. Every form runs the
same inputs at batch 1 and batch 8 under `torch.no_grad()`; each timing is the median of --runs
calls after --warmup, the three forms taking turns call by call. Outputs are checked against eager
first (a wrong fast form is no result). Prints one JSON document with the latencies and the ratios
to eager and to TorchScript, and says plainly where AOTInductor is slower than TorchScript.

    python benchmarks/aoti.py [--runs 50] [--warmup 10] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

BATCHES = (1, 8)


class ConvNet(nn.Module):
    """Four conv-bn-relu blocks with pooling, then a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in (32, 64, 128, 128):
            layers += [
                nn.Conv2d(channels, width, 3, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(128 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


class Encoder(nn.Module):
    """Six transformer encoder layers over [batch, 64, 256] features."""

    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[int], torch.Tensor]]] = {
    "transformer-6-layer": (Encoder, lambda batch: torch.randn(batch, 64, 256)),
    "convnet": (ConvNet, lambda batch: torch.randn(batch, 3, 64, 64)),
}


def medians_ms(
    forms: dict[str, Callable[[torch.Tensor], Any]], x: torch.Tensor, runs: int, warmup: int
) -> dict[str, float]:
    """Median wall time of each form on `x`, in milliseconds; the forms take turns call by call, so
    a change in the machine's load shifts all of them alike rather than whichever ran then."""
    names = list(forms)
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.no_grad():
        for _ in range(warmup):
            for name in names:
                forms[name](x)
        for i in range(runs):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                started = time.perf_counter()
                forms[name](x)
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def torchscript(model: nn.Module) -> Any:
    """As regctl keeps it when optimize = true: scripted, frozen, optimized for inference."""
    scripted = torch.jit.script(model)
    return torch.jit.optimize_for_inference(torch.jit.freeze(scripted.eval()))


def aoti(model: nn.Module, example: torch.Tensor, workdir: Path) -> tuple[Any, float]:
    """The AOTInductor package of `model` with a dynamic batch, loaded; and its compile seconds."""
    import torch._inductor
    import torch._inductor.config

    torch._inductor.config.compile_threads = 1  # as in regctl's sandbox
    batch = torch.export.Dim("batch", min=1, max=8)
    started = time.perf_counter()
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    path = torch._inductor.aoti_compile_and_package(program, package_path=str(workdir / "model.pt2"))
    seconds = time.perf_counter() - started
    return torch._inductor.aoti_load_package(path), seconds


def bench(name: str, runs: int, warmup: int, workdir: Path) -> dict[str, Any]:
    """One model: every form at every batch size."""
    build, make_input = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    scripted = torchscript(model)
    package, compile_s = aoti(model, make_input(2), workdir)
    rows = []
    for batch in BATCHES:
        torch.manual_seed(batch)
        x = make_input(batch)
        with torch.no_grad():
            expected = model(x)
            for form, fn in (("torchscript", scripted), ("aoti", package)):
                if not torch.allclose(fn(x), expected, rtol=1e-4, atol=1e-4):
                    raise AssertionError(f"{name} {form} disagrees with eager at batch {batch}")
        measured = medians_ms({"eager": model, "torchscript": scripted, "aoti": package}, x, runs, warmup)
        eager_ms, script_ms, aoti_ms = measured["eager"], measured["torchscript"], measured["aoti"]
        rows.append(
            {
                "batch": batch,
                "eager_ms": round(eager_ms, 3),
                "torchscript_ms": round(script_ms, 3),
                "aoti_ms": round(aoti_ms, 3),
                "aoti_vs_eager": round(aoti_ms / eager_ms, 3),
                "aoti_vs_torchscript": round(aoti_ms / script_ms, 3),
                "torchscript_vs_eager": round(script_ms / eager_ms, 3),
                "verdict": (
                    "AOTInductor is slower than TorchScript here"
                    if aoti_ms > script_ms
                    else "AOTInductor is faster than TorchScript here"
                ),
            }
        )
    return {"model": name, "compile_s": round(compile_s, 1), "results": rows}


def main() -> int:
    """Run every model and print the JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # torch's deprecation notices for torch.jit: known, not results
    with tempfile.TemporaryDirectory(prefix="regctl-bench-aoti-") as tmp:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(tmp) / "inductor"))  # a cold compile
        models = []
        for name in MODELS:
            workdir = Path(tmp) / name
            workdir.mkdir()
            models.append(bench(name, args.runs, args.warmup, workdir))
    slower = [
        f"{m['model']} batch {r['batch']}"
        for m in models
        for r in m["results"]
        if r["aoti_ms"] > r["torchscript_ms"]
    ]
    print(
        json.dumps(
            {
                "benchmark": "AOTInductor vs TorchScript vs eager latency",
                "threads": args.threads,
                "runs": args.runs,
                "models": models,
                "aoti_slower_than_torchscript": slower,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
