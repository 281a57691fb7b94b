"""The battery: shapes across every dim's range, seeded draws that flip branches, recorded inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from regctl.registry.spec import DimSpec, InputSpec, ModelSpec, ValidationSpec
from regctl.worker.engine.battery import build_battery, shape_grid
from regctl.worker.engine.devices import ModelLoadError

TWO_DIMS = ModelSpec(
    inputs=(
        InputSpec("tokens", "int64", ("batch", "seq"), low=5, high=9),
        InputSpec("mask", "bool", ("batch", "seq")),
    ),
    dims={"batch": DimSpec("batch", 1, 4, 2, batch=True), "seq": DimSpec("seq", 3, 30, 10)},
    validation=ValidationSpec(samples=2),
)


def test_every_dim_visits_min_opt_and_max_alone_and_together() -> None:
    assert shape_grid(TWO_DIMS) == [
        {"batch": 2, "seq": 10},  # opt first: the traced shape
        {"batch": 1, "seq": 3},
        {"batch": 4, "seq": 30},
        {"batch": 1, "seq": 10},
        {"batch": 4, "seq": 10},
        {"batch": 2, "seq": 3},
        {"batch": 2, "seq": 30},
    ]
    battery = build_battery(TWO_DIMS)
    assert len(battery) == 7 * 2
    assert [c.label for c in battery[:3]] == [
        "batch=2 seq=10 draw 0",
        "batch=2 seq=10 draw 1",
        "batch=1 seq=3 draw 0",
    ]
    for case in battery:
        tokens, mask = case.args
        assert tokens.shape == mask.shape == (case.shape["batch"], case.shape["seq"])
        assert tokens.dtype == torch.int64 and mask.dtype == torch.bool
        assert int(tokens.min()) >= 5 and int(tokens.max()) < 9


def test_the_battery_is_deterministic_for_a_seed() -> None:
    def flat(seed: int) -> list[torch.Tensor]:
        return [a for case in build_battery(TWO_DIMS, seed=seed) for a in case.args]

    assert all(torch.equal(a, b) for a, b in zip(flat(0), flat(0), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(flat(0), flat(1), strict=True))


def test_float_draws_cover_both_signs_and_a_large_scale() -> None:
    spec = ModelSpec(inputs=(InputSpec("x", "float32", (64,)),), validation=ValidationSpec(samples=4))
    by_regime = {case.regime: case.args[0] for case in build_battery(spec)}
    assert set(by_regime) == {"mixed", "positive", "negative", "large", "small", "zeros"}
    assert 0 < float(by_regime["small"].abs().max()) < 0.01
    assert not bool(by_regime["zeros"].any())
    assert bool((by_regime["positive"] >= 0).all()) and bool((by_regime["negative"] <= 0).all())
    assert float(by_regime["mixed"].min()) < 0 < float(by_regime["mixed"].max())
    assert float(by_regime["large"].abs().max()) > 100
    assert [c.label for c in build_battery(spec)] == [
        "static draw 0 mixed",
        "static draw 1 positive",
        "static draw 2 negative",
        "static draw 3 large",
        "static small",
        "static zeros",
    ]


def test_a_float_range_is_respected_and_still_split_by_sign() -> None:
    spec = ModelSpec(
        inputs=(InputSpec("p", "float64", (100,), low=-0.5, high=2.0),), validation=ValidationSpec(samples=4)
    )
    for case in build_battery(spec):
        x = case.args[0]
        assert x.dtype == torch.float64 and float(x.min()) >= -0.5 and float(x.max()) < 2.0
        if case.regime == "negative":
            assert float(x.max()) <= 0


def test_scalar_inputs_try_both_ends_of_their_range() -> None:
    spec = ModelSpec(
        inputs=(
            InputSpec("n", "int", low=2, high=6),
            InputSpec("t", "float", low=0.5, high=1.5),
            InputSpec("b", "bool"),
        ),
        validation=ValidationSpec(samples=6),
    )
    battery = build_battery(spec)
    ints = [c.args[0] for c in battery]
    assert ints[:2] == [2, 5] and all(isinstance(n, int) and 2 <= n < 6 for n in ints)
    assert all(isinstance(c.args[1], float) and 0.5 <= c.args[1] < 1.5 for c in battery)
    assert {c.args[2] for c in battery} == {True, False}
    assert battery[0].label.startswith("static draw 0 n=2 t=")


def test_recorded_inputs_follow_the_generated_ones(tmp_path: Path) -> None:
    spec = ModelSpec(
        inputs=(InputSpec("x", "float32", (1, "seq")), InputSpec("n", "int")),
        dims={"seq": DimSpec("seq", 1, 16, 8)},
        validation=ValidationSpec(samples=1, inputs="samples.safetensors"),
    )
    save_file(
        {
            "x.0": torch.ones(1, 5, dtype=torch.float64),
            "x.1": torch.zeros(1, 16),
            "n.0": torch.tensor(3),
            "n.1": torch.tensor(7),
        },
        str(tmp_path / "samples.safetensors"),
    )
    recorded = build_battery(spec, tmp_path)[5:]  # 3 shapes x 1 draw, small, zeros
    assert [(c.label, c.group, c.shape, c.args[1]) for c in recorded] == [
        ("recorded 0", "recorded seq=5", {"seq": 5}, 3),
        ("recorded 1", "recorded seq=16", {"seq": 16}, 7),
    ]
    assert recorded[0].args[0].dtype == torch.float32  # cast to the spec's dtype


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ({"x": torch.ones(1, 4)}, r"has no key 'n' or 'n.0'"),
        ({"x": torch.ones(1, 40), "n": torch.tensor(1)}, r"'x' seq=40 is outside \[1, 16\]"),
        ({"x": torch.ones(4), "n": torch.tensor(1)}, r"'x' has 1 dims, the spec says 2"),
        (
            {"x.0": torch.ones(1, 4), "x.1": torch.ones(1, 4), "n": torch.tensor(1)},
            r"different sample counts",
        ),
    ],
)
def test_unusable_recorded_inputs_are_a_load_error_naming_the_problem(
    tmp_path: Path, stored: dict[str, torch.Tensor], message: str
) -> None:
    spec = ModelSpec(
        inputs=(InputSpec("x", "float32", (1, "seq")), InputSpec("n", "int")),
        dims={"seq": DimSpec("seq", 1, 16, 8)},
        validation=ValidationSpec(samples=1, inputs="rec.safetensors"),
    )
    save_file(stored, str(tmp_path / "rec.safetensors"))
    with pytest.raises(ModelLoadError, match=message):
        build_battery(spec, tmp_path)
