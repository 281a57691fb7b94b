"""The model of benchmarks/end_to_end.py (a BERT encoder in plain PyTorch, its regctl.toml, seeded
weights and regctl's battery for it) and the bare script it is measured against.

Two entry points run as their own processes, so that the measuring process never imports torch:

    python -m benchmarks.end_to_end_model prepare DIR BATTERY --size bert-base [--layers N]
    python -m benchmarks.end_to_end_model bare DIR BATTERY OUT [--formats torchscript[,exported]]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# What the bare script can produce, as regctl's spec names it: TorchScript always; `exported` adds
# the torch.export program (regctl: `formats = ["torchscript", "exported"]`, `register --format exported`).
FORMATS = ("torchscript", "exported")

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


def bare(
    directory: Path, battery: Path, out: Path, formats: tuple[str, ...] = ("torchscript",)
) -> dict[str, Any]:
    """The plain-torch conversion (see end_to_end.py's docstring); returns what it found.

    Always: load, eager on the battery, trace, save, reload, the battery on the reloaded artifact.
    With `exported` in `formats`, also: torch.export with the spec's dynamic dims, save the .pt2,
    load it back and run the battery on the loaded program.
    """
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
    checks: dict[str, dict[str, Any]] = {}
    with torch.no_grad():
        lap = time.perf_counter()
        expected = [model(*args) for args in cases]
        timings["eager_s"], lap = time.perf_counter() - lap, time.perf_counter()
        traced = torch.jit.trace(model, cases[0], check_trace=False)  # cases[0] is at the opt shape
        torch.jit.save(traced, str(out / "model.pt"))
        del traced
        timings["trace_save_s"], lap = time.perf_counter() - lap, time.perf_counter()
        loaded = torch.jit.load(str(out / "model.pt"))
        checks["torchscript"] = _check(loaded, cases, expected, rtol, atol)
        del loaded
        timings["reload_battery_s"], lap = time.perf_counter() - lap, time.perf_counter()
        if "exported" in formats:
            dims = {n: torch.export.Dim(n, min=d["min"], max=d["max"]) for n, d in spec["dims"].items()}
            shape = spec["inputs"][0]["shape"]
            program = torch.export.export(
                model, cases[0], dynamic_shapes={"tokens": {i: dims[n] for i, n in enumerate(shape)}}
            )
            torch.export.save(program, str(out / "model.pt2"))
            del program
            timings["export_save_s"], lap = time.perf_counter() - lap, time.perf_counter()
            runnable = torch.export.load(str(out / "model.pt2")).module()
            checks["exported"] = _check(runnable, cases, expected, rtol, atol)
            del runnable
            timings["export_reload_battery_s"] = time.perf_counter() - lap
    return {
        "ok": all(c["mismatches"] == 0 for c in checks.values()),
        "formats": list(formats),
        "cases": len(cases),
        "mismatches": sum(c["mismatches"] for c in checks.values()),
        "max_abs_error": max(c["max_abs_error"] for c in checks.values()),
        "checks": checks,
        "torch_threads": torch.get_num_threads(),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


def _check(runnable: Any, cases: list[Any], expected: list[Any], rtol: float, atol: float) -> dict[str, Any]:
    """Run `runnable` on every case and compare each output with eager's (torch.allclose)."""
    import torch

    mismatches = 0
    max_abs = 0.0
    for args, want in zip(cases, expected, strict=True):
        got = runnable(*args)
        same = all(torch.allclose(g, w, rtol=rtol, atol=atol) for g, w in zip(got, want, strict=True))
        mismatches += not same
        max_abs = max(max_abs, *((g - w).abs().max().item() for g, w in zip(got, want, strict=True)))
    return {"mismatches": mismatches, "max_abs_error": max_abs}


def parse_formats(text: str) -> tuple[str, ...]:
    """`torchscript,exported` -> ("torchscript", "exported"): TorchScript always first, known names only."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown formats {unknown}; choose from {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in names or f == "torchscript")


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
    b.add_argument("--formats", type=parse_formats, default=("torchscript",))
    args = parser.parse_args()
    if args.command == "prepare":
        size = SIZES[args.size]
        if args.layers:
            size = BertSize(size.hidden, args.layers, size.heads, size.ff, size.vocab, size.positions)
        result = prepare(args.directory, args.battery, size)
    else:
        result = bare(args.directory, args.battery, args.out, args.formats)
    print(json.dumps(result))
    if not result.get("ok", True):
        sys.exit(1)


if __name__ == "__main__":
    main()
