"""The battery: the input sets on which every candidate artifact must agree with the eager model.

Shapes. With no dynamic dims there is one shape, "static". Otherwise, starting with all dims at
opt (the shape the trace is recorded at, so battery[0] is the trace example):
  all at opt, all at min, all at max, then each dim alone at its min and at its max while the
  others stay at opt; duplicates dropped. That is at most 3 + 2 * dims shapes; it moves every dim
  through its range on its own (catching a size baked in by the trace) and together (catching
  sizes that only break in combination) without the exponential full grid.

Draws. `validation.samples` seeded draws per shape. Draw k of shape s uses the value regime
REGIMES[(k + s) % 4] for float tensors, so every regime appears at every shape when samples >= 4
and across shapes otherwise:
  mixed    standard normal                 (both signs)
  positive |standard normal|               (flips `x.sum() > 0` one way ...)
  negative -|standard normal|              (... and the other)
  large    standard normal * 1e3           (thresholds, saturation, overflow in low precision)
Float tensors with a declared range [low, high) are drawn uniformly from it (the positive and
negative regimes use the part of the range on that side of zero, when there is one).
Int tensors are uniform in [low, high), default [0, 10); bool tensors are fair coin flips.
Python scalars: int uniform in [low, high) (default [1, 9), i.e. 1..8), with draw 0 at low and
draw 1 at high - 1 so both ends are always tried; float uniform in [low, high) (default [0, 1));
bool alternates True, False.

Degenerate inputs. After the draws, two cases at the opt shape (when an input is a float tensor):
  small    standard normal * 1e-3          (thresholds near zero: `if h.amax() > 1.0` on quiet inputs)
  zeros    every float tensor 0, ints at their low end, bools False
both clamped into a declared [low, high).

Recorded inputs (`validation.inputs`, a .safetensors file): a key `<input name>` holds one
sample; keys `<input name>.0`, `<input name>.1`, ... hold several. Every input needs the same
number of samples. Tensors are cast to the spec's dtype; scalars are stored as 0-dim tensors.

Everything is deterministic given `seed`: each case has its own torch.Generator. A job's battery
uses a seed the supervisor draws after the candidates are sealed and hands only to the reference
runner and the judge, so no artifact can know its values (`draw_seed` in worker/supervisor/supervisor.py).

Examples (`example_cases`). The candidate builder never sees the battery: it traces and exports on
the spec's public examples, one draw per shape of the same grid (all-opt first), from a fixed seed
of their own. The battery keeps every shape, so the traced size is still judged; its values are
drawn from the job's seed and never repeat an example's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from regctl.registry.spec import DimSpec, InputSpec, ModelSpec
from regctl.worker.engine.devices import ModelLoadError

REGIMES = ("mixed", "positive", "negative", "large")
LARGE_SCALE = 1e3
SMALL_SCALE = 1e-3
DEFAULT_INT_RANGE = (0, 10)
DEFAULT_SCALAR_INT_RANGE = (1, 9)
DEFAULT_SCALAR_FLOAT_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class BatteryCase:
    """One input set: positional arguments for forward(), and where they come from."""

    label: str  # "seq=64 draw 2 negative", "recorded 1"
    group: str  # the shape label the report aggregates over: "seq=64", "static", "recorded seq=17"
    shape: dict[str, int]  # dynamic dim name -> size
    args: tuple[Any, ...]
    regime: str | None = None  # None for recorded inputs and inputs with no float tensor

    def clone_args(self, device: torch.device) -> tuple[Any, ...]:
        """Fresh copies on `device`, so a model that writes into its inputs cannot affect the next run."""
        return tuple(a.to(device, copy=True) if isinstance(a, torch.Tensor) else a for a in self.args)


def build_battery(spec: ModelSpec, model_dir: Path | None = None, *, seed: int = 0) -> list[BatteryCase]:
    """All generated cases (opt shape first) followed by the recorded ones."""
    _check_dims(spec)
    cases = []
    for s, shape in enumerate(shape_grid(spec)):
        group = shape_label(shape)
        for k in range(max(1, spec.validation.samples)):
            regime = REGIMES[(k + s) % len(REGIMES)]
            gen = torch.Generator().manual_seed((seed * 1_000_003 + s * 1009 + k) % _SEED_SPACE)
            args = tuple(_draw(inp, shape, regime, k, gen) for inp in spec.inputs)
            has_float = any(not i.is_scalar and input_dtype(i).is_floating_point for i in spec.inputs)
            scalars = " ".join(
                f"{i.name}={a!r}" for i, a in zip(spec.inputs, args, strict=True) if i.is_scalar
            )
            label = " ".join(p for p in (group, f"draw {k}", regime if has_float else "", scalars) if p)
            cases.append(BatteryCase(label, group, shape, args, regime if has_float else None))
    cases.extend(degenerate_cases(spec, seed))
    if spec.validation.inputs and model_dir is not None:
        cases.extend(recorded_cases(spec, Path(model_dir) / spec.validation.inputs))
    return cases


def degenerate_cases(spec: ModelSpec, seed: int) -> list[BatteryCase]:
    """Two inputs at the opt shape no regime draws: values near zero (x SMALL_SCALE) and exact zeros.

    Only for specs with a float tensor input; values stay inside a declared [low, high).
    """
    if not any(not i.is_scalar and input_dtype(i).is_floating_point for i in spec.inputs):
        return []
    shape = shape_grid(spec)[0]
    group = shape_label(shape)
    cases = []
    for k, (style, scale) in enumerate((("small", SMALL_SCALE), ("zeros", 0.0))):
        gen = torch.Generator().manual_seed((seed * 1_000_003 + 7919 + k) % _SEED_SPACE)
        args = tuple(
            styled_value(inp, shape, "mixed" if style == "small" else style, scale, gen)
            for inp in spec.inputs
        )
        cases.append(BatteryCase(f"{group} {style}", group, shape, args, style))
    return cases


def styled_value(
    inp: InputSpec, shape: dict[str, int], style: str, scale: float, gen: torch.Generator
) -> Any:
    """One input's value in `style` at `scale`, inside the spec's dtype and [low, high).

    Styles: mixed (normal x scale), positive, negative (one sign), sparse (nine in ten zero),
    constant (every element = scale), zeros. Ints and bools map each style to its nearest form:
    zeros to low (False), constant to the clamped scale (True), the rest uniform in the range.
    """
    if inp.is_scalar:
        return _styled_scalar(inp, style, scale, gen)
    size = tuple(shape[s] if isinstance(s, str) else s for s in inp.shape or ())
    dtype = input_dtype(inp)
    if dtype == torch.bool:
        if style in ("zeros", "constant"):
            return torch.full(size, style == "constant" and scale != 0, dtype=torch.bool)
        return torch.rand(size, generator=gen) < (0.1 if style == "sparse" else 0.5)
    if not (dtype.is_floating_point or dtype.is_complex):
        low, high = (int(v) for v in value_range(inp, DEFAULT_INT_RANGE))
        if style in ("zeros", "constant"):
            fill = min(max(0 if style == "zeros" else int(scale), low), high - 1)
            return torch.full(size, fill, dtype=dtype)
        drawn = torch.randint(low, high, size, generator=gen, dtype=dtype)
        if style == "sparse":
            drawn = torch.where(torch.rand(size, generator=gen) < 0.1, drawn, torch.full_like(drawn, low))
        return drawn
    base = torch.randn(size, generator=gen, dtype=torch.float64)
    value = {
        "mixed": base * scale,
        "positive": base.abs() * scale,
        "negative": -base.abs() * scale,
        "sparse": base * scale * (torch.rand(size, generator=gen, dtype=torch.float64) < 0.1),
        "constant": torch.full(size, float(scale), dtype=torch.float64),
        "zeros": torch.zeros(size, dtype=torch.float64),
    }[style]
    value = value.to(dtype)
    if inp.low is not None or inp.high is not None:
        low, high = value_range(inp, (0.0, 1.0))
        # the largest value below `high` in the input's own dtype: a float64 one may round up to it
        top = torch.nextafter(torch.tensor(high, dtype=dtype), torch.tensor(low, dtype=dtype))
        value = value.clamp(min=low, max=float(top))
    return value


def _styled_scalar(inp: InputSpec, style: str, scale: float, gen: torch.Generator) -> Any:
    if inp.dtype == "bool":
        return (
            style == "constant"
            if style in ("zeros", "constant")
            else bool(torch.rand((), generator=gen) < 0.5)
        )
    if inp.dtype == "int":
        low, high = (int(v) for v in value_range(inp, DEFAULT_SCALAR_INT_RANGE))
        if style in ("zeros", "constant"):
            return min(max(0 if style == "zeros" else int(scale), low), high - 1)
        return int(torch.randint(low, high, (), generator=gen))
    low, high = value_range(inp, DEFAULT_SCALAR_FLOAT_RANGE)
    value = (
        0.0
        if style == "zeros"
        else float(scale)
        if style == "constant"
        else float(torch.randn((), generator=gen)) * scale
    )
    return min(max(value, low), math.nextafter(high, low))


_SEED_SPACE = 1 << 63  # torch.Generator takes a 64-bit seed
EXAMPLE_SEED = 0x5EED_E8A3  # public: the builder's examples, never a battery's draws


def example_cases(spec: ModelSpec) -> list[BatteryCase]:
    """The candidate builder's inputs: one `mixed` draw per battery shape (all-opt first), publicly seeded.

    Only the shapes are shared with the battery; the values come from a seed of their own.
    """
    _check_dims(spec)
    cases = []
    for s, shape in enumerate(shape_grid(spec)):
        gen = torch.Generator().manual_seed(EXAMPLE_SEED + s)
        args = tuple(_draw(inp, shape, "mixed", 0, gen) for inp in spec.inputs)
        group = shape_label(shape)
        cases.append(BatteryCase(f"example {group}", group, shape, args))
    return cases


def shape_grid(spec: ModelSpec) -> list[dict[str, int]]:
    """The dim assignments the battery visits, all-opt first (see the module docstring)."""
    used = used_dims(spec)
    if not used:
        return [{}]
    dims = [spec.dims[n] for n in used]
    opt = {d.name: d.opt for d in dims}
    grid = [opt, {d.name: d.min for d in dims}, {d.name: d.max for d in dims}]
    for d in dims:
        grid += [{**opt, d.name: d.min}, {**opt, d.name: d.max}]
    unique: list[dict[str, int]] = []
    for shape in grid:
        if shape not in unique:
            unique.append(shape)
    return unique


def used_dims(spec: ModelSpec) -> list[str]:
    """Names of the dynamic dims the inputs use, in order of first use."""
    names: list[str] = []
    for inp in spec.inputs:
        for size in inp.shape or ():
            if isinstance(size, str) and size not in names:
                names.append(size)
    return names


def recorded_cases(spec: ModelSpec, path: Path) -> list[BatteryCase]:
    """The cases stored in a recorded-inputs .safetensors file (see the module docstring)."""
    name = spec.validation.inputs
    if not path.is_file():
        raise ModelLoadError(f"recorded inputs file {name!r} not found in the model directory")

    try:
        stored = load_file(str(path), device="cpu")
    except Exception as exc:
        raise ModelLoadError(f"recorded inputs file {name!r} cannot be read: {exc}") from exc
    samples = {inp.name: _samples_of(stored, inp.name, name) for inp in spec.inputs}
    counts = {n: len(v) for n, v in samples.items()}
    if len(set(counts.values())) > 1:
        raise ModelLoadError(f"recorded inputs file {name!r}: inputs have different sample counts {counts}")
    cases = []
    for i in range(next(iter(counts.values()), 0)):
        args, shape = [], {}
        for inp in spec.inputs:
            value, dims = _recorded_value(inp, samples[inp.name][i], spec.dims, f"{name!r} sample {i}")
            args.append(value)
            shape.update(dims)
        cases.append(BatteryCase(f"recorded {i}", f"recorded {shape_label(shape)}", shape, tuple(args)))
    return cases


def _draw(inp: InputSpec, shape: dict[str, int], regime: str, k: int, gen: torch.Generator) -> Any:
    if inp.is_scalar:
        return _draw_scalar(inp, k, gen)
    size = tuple(shape[s] if isinstance(s, str) else s for s in inp.shape or ())
    dtype = input_dtype(inp)
    if dtype == torch.bool:
        return torch.rand(size, generator=gen) < 0.5
    if dtype.is_floating_point or dtype.is_complex:
        return _draw_float(inp, size, regime, gen).to(dtype)
    low, high = value_range(inp, DEFAULT_INT_RANGE)
    return torch.randint(int(low), int(high), size, generator=gen, dtype=dtype)


def _draw_float(inp: InputSpec, size: tuple[int, ...], regime: str, gen: torch.Generator) -> torch.Tensor:
    if inp.low is None and inp.high is None:
        base = torch.randn(size, generator=gen, dtype=torch.float64)
        return {"mixed": base, "positive": base.abs(), "negative": -base.abs(), "large": base * LARGE_SCALE}[
            regime
        ]
    low, high = value_range(inp, (0.0, 1.0))
    if regime == "positive" and high > 0:
        low = max(low, 0.0)
    elif regime == "negative" and low < 0:
        high = min(high, 0.0)
    return low + (high - low) * torch.rand(size, generator=gen, dtype=torch.float64)


def _draw_scalar(inp: InputSpec, k: int, gen: torch.Generator) -> Any:
    if inp.dtype == "bool":
        return k % 2 == 0
    if inp.dtype == "int":
        low, high = (int(v) for v in value_range(inp, DEFAULT_SCALAR_INT_RANGE))
        if k < 2:
            return low if k == 0 else max(low, high - 1)
        return int(torch.randint(low, high, (), generator=gen))
    low, high = value_range(inp, DEFAULT_SCALAR_FLOAT_RANGE)
    return float(low + (high - low) * torch.rand((), generator=gen, dtype=torch.float64))


def value_range(inp: InputSpec, default: tuple[float, float]) -> tuple[float, float]:
    """The input's [low, high) with `default` filling what the spec leaves out; refuses an empty range."""
    low = default[0] if inp.low is None else inp.low
    high = default[1] if inp.high is None else inp.high
    if inp.high is None and inp.low is not None and high <= low:
        high = low + (default[1] - default[0])
    if high <= low:
        raise ModelLoadError(f"input {inp.name!r}: low ({low}) must be below high ({high})")
    return low, high


def input_dtype(inp: InputSpec) -> torch.dtype:
    """The torch dtype the spec names for a tensor input."""
    dtype = getattr(torch, inp.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise ModelLoadError(f"input {inp.name!r}: {inp.dtype!r} is not a torch dtype")
    return dtype


def _check_dims(spec: ModelSpec) -> None:
    for name in used_dims(spec):
        d: DimSpec | None = spec.dims.get(name)
        if d is None:
            raise ModelLoadError(f"an input uses dim {name!r}, which [dims] does not define")
        if not d.min <= d.opt <= d.max:
            raise ModelLoadError(f"dim {name!r}: need min <= opt <= max, got {d.min}, {d.opt}, {d.max}")


def shape_label(shape: dict[str, int]) -> str:
    """ "seq=64 batch=2", or "static" with no dynamic dims."""
    return " ".join(f"{n}={v}" for n, v in shape.items()) or "static"


def _samples_of(stored: dict[str, torch.Tensor], input_name: str, file: str | None) -> list[torch.Tensor]:
    if input_name in stored:
        if any(re.fullmatch(rf"{re.escape(input_name)}\.\d+", k) for k in stored):
            raise ModelLoadError(
                f"recorded inputs file {file!r} has both {input_name!r} and {input_name + '.<i>'!r}"
            )
        return [stored[input_name]]
    indexed = sorted(
        (int(m.group(1)), k) for k in stored if (m := re.fullmatch(rf"{re.escape(input_name)}\.(\d+)", k))
    )
    if not indexed:
        raise ModelLoadError(
            f"recorded inputs file {file!r} has no key {input_name!r} or {input_name + '.0'!r}"
        )
    if [i for i, _ in indexed] != list(range(len(indexed))):
        raise ModelLoadError(
            f"recorded inputs file {file!r}: keys {input_name}.<i> must be numbered 0, 1, 2, ..."
        )
    return [stored[k] for _, k in indexed]


def _recorded_value(
    inp: InputSpec, value: torch.Tensor, dims: dict[str, DimSpec], where: str
) -> tuple[Any, dict[str, int]]:
    if inp.is_scalar:
        if value.numel() != 1:
            raise ModelLoadError(f"recorded {where}: scalar input {inp.name!r} holds {value.numel()} values")
        return {"int": int, "float": float, "bool": bool}[inp.dtype](value.item()), {}
    spec_shape = inp.shape or ()
    if value.dim() != len(spec_shape):
        raise ModelLoadError(
            f"recorded {where}: {inp.name!r} has {value.dim()} dims, the spec says {len(spec_shape)}"
        )
    found = {}
    for axis, (want, got) in enumerate(zip(spec_shape, value.shape, strict=True)):
        if isinstance(want, int) and want != got:
            raise ModelLoadError(
                f"recorded {where}: {inp.name!r} axis {axis} is {got}, the spec fixes it at {want}"
            )
        if isinstance(want, str):
            d = dims[want]
            if not d.min <= got <= d.max:
                raise ModelLoadError(
                    f"recorded {where}: {inp.name!r} {want}={got} is outside [{d.min}, {d.max}]"
                )
            found[want] = got
    return value.to(input_dtype(inp)), found
