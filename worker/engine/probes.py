"""The search's probes: inputs tried to take a decision's untaken side, rebuilt from (spec, seed, index).

A probe is a pure function of the spec, the job's secret seed and its index, so the reference
runner (which runs them in eager) only reports which indexes took an untaken side, and the judge
rebuilds those inputs itself: it never reads an input tensor from the model side.

The order (index 0 up):
  structured  at the opt shape: mixed values at scales 1e-4 .. 1e4; zeros; constants 1, -1, 0.5;
              one sign at scales 1e-2 and 1e2; sparse inputs (nine in ten zero); then each dim
              alone at its min and its max, at scales 1e-2 and 1e2
  random      a size uniform in each dim's [min, max], a style (mixed, positive, negative, sparse,
              constant) and a scale log-uniform in [1e-4, 1e4], each from the probe's own generator

Every value stays within the spec: its dtypes, its dims' ranges and each input's [low, high).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regctl.registry.spec import ModelSpec
from regctl.worker.engine.battery import BatteryCase, shape_grid, shape_label, styled_value, used_dims

MAX_PROBES = 10_000  # no search tries more; the judge refuses a higher index
SCALES = (1e-4, 1e-3, 1e-2, 1e-1, 10.0, 1e2, 1e4)
RANDOM_STYLES = ("mixed", "positive", "negative", "sparse", "constant")
_SEED_SPACE = 1 << 63


@dataclass(frozen=True)
class Plan:
    """One probe before its values are drawn: a shape, a style and a scale."""

    shape: dict[str, int]
    style: str
    scale: float
    what: str  # "scale 0.01", "zeros", "seq at max, scale 100"


def structured(spec: ModelSpec) -> list[Plan]:
    """The structured probes of `spec`, in order (module docstring)."""
    opt = shape_grid(spec)[0]
    plans = [Plan(opt, "mixed", s, f"scale {s:g}") for s in SCALES]
    plans.append(Plan(opt, "zeros", 0.0, "zeros"))
    plans += [Plan(opt, "constant", c, f"constant {c:g}") for c in (1.0, -1.0, 0.5)]
    for sign in ("positive", "negative"):
        plans += [Plan(opt, sign, s, f"{sign} scale {s:g}") for s in (1e-2, 1e2)]
    plans += [Plan(opt, "sparse", s, f"sparse scale {s:g}") for s in (1.0, 1e2)]
    for name in used_dims(spec):
        d = spec.dims[name]
        for end, size in (("min", d.min), ("max", d.max)):
            plans += [
                Plan({**opt, name: size}, "mixed", s, f"{name} at {end}, scale {s:g}") for s in (1e-2, 1e2)
            ]
    return plans


def probe(spec: ModelSpec, seed: int, index: int) -> BatteryCase:
    """Probe `index` of the job whose battery seed is `seed` (module docstring)."""
    if not 0 <= index < MAX_PROBES:
        raise ValueError(f"probe {index} is outside 0..{MAX_PROBES - 1}")
    gen = torch.Generator().manual_seed((seed * 2_000_003 + 104_729 * (index + 1)) % _SEED_SPACE)
    fixed = structured(spec)
    plan = fixed[index] if index < len(fixed) else _random_plan(spec, gen)
    args = tuple(styled_value(inp, plan.shape, plan.style, plan.scale, gen) for inp in spec.inputs)
    group = shape_label(plan.shape)
    return BatteryCase(f"probe {index}: {group} {plan.what}", group, plan.shape, args, plan.style)


def found_case(case: BatteryCase, flips: list[str]) -> BatteryCase:
    """A probe that took an untaken side, labelled for the battery it joins."""
    points = ", ".join(flips[:3]) + (f" and {len(flips) - 3} more" if len(flips) > 3 else "")
    return BatteryCase(
        f"found by search for {points} ({case.label})", case.group, case.shape, case.args, case.regime
    )


def _random_plan(spec: ModelSpec, gen: torch.Generator) -> Plan:
    shape = {}
    for name in used_dims(spec):
        d = spec.dims[name]
        shape[name] = int(torch.randint(d.min, d.max + 1, (), generator=gen))
    style = RANDOM_STYLES[int(torch.randint(len(RANDOM_STYLES), (), generator=gen))]
    scale = float(10 ** (8 * torch.rand((), generator=gen, dtype=torch.float64) - 4))
    if style == "constant" and bool(torch.rand((), generator=gen) < 0.5):
        scale = -scale
    return Plan(shape, style, scale, f"random {style} scale {scale:.2g}")
