"""The battery the model never sees: public examples for the builder, a secret seed for the battery.

A model that memorises a battery it can compute passes a judge that uses that battery; these tests
show the cheat is real (a held-out input exposes it when the seed is known) and that a drawn seed
defeats it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from regctl.registry.seeds import draw_seed
from regctl.registry.spec import load_spec
from regctl.worker.engine.battery import BatteryCase, build_battery, example_cases, shape_grid
from regctl.worker.inprocess import convert_model
from tests.engine.conftest import seq_spec
from tests.hostile import Targets, hostile_model


def _tensors(cases: list) -> list[torch.Tensor]:
    return [a for case in cases for a in case.args if isinstance(a, torch.Tensor)]


def test_the_builders_examples_cover_every_battery_shape_with_values_of_their_own() -> None:
    spec = seq_spec(samples=4)
    examples = example_cases(spec)
    assert [c.shape for c in examples] == shape_grid(spec)
    assert examples[0].shape == {"seq": 4}, "the trace example is at the opt shape"
    battery = build_battery(spec, seed=draw_seed())
    assert {tuple(c.shape.items()) for c in battery} == {tuple(c.shape.items()) for c in examples}
    shown = _tensors(examples)
    assert not any(torch.equal(b, e) for b in _tensors(battery) for e in shown if b.shape == e.shape)


def test_batteries_of_two_drawn_seeds_share_no_values_and_one_seed_repeats_itself() -> None:
    spec = seq_spec(samples=2)
    seed, other = draw_seed(), draw_seed()

    def drawn(seed: int) -> list[BatteryCase]:  # the all-zeros case is the same for every seed, by design
        return [c for c in build_battery(spec, seed=seed) if c.regime != "zeros"]

    first, again = _tensors(drawn(seed)), _tensors(drawn(seed))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, _tensors(drawn(other)), strict=True))


def _memorising_model(root: Path) -> Path:
    targets = Targets(store="/nonexistent", home="/nonexistent", runner="/nonexistent", secret_files=[])
    return hostile_model(root, "memorise", targets)


def test_an_artifact_that_memorised_a_known_battery_passes_it_yet_is_wrong_on_a_held_out_input(
    tmp_path: Path,
) -> None:
    model_dir = _memorising_model(tmp_path / "model")
    spec = load_spec(model_dir)
    known = convert_model(model_dir, spec, tmp_path / "known", seed=0)  # the battery it memorised
    assert known.ok and known.method == "script", known.error
    artifact = torch.jit.load(str(known.torchscript_path))
    held_out = torch.randn(3, 10, generator=torch.Generator().manual_seed(12345))
    torch.manual_seed(0)  # the model's own Linear(10, 2), as its __init__ builds it
    eager = torch.nn.Linear(10, 2)
    with torch.no_grad():
        assert (artifact(held_out) - eager(held_out)).abs().max().item() > 1000


def test_the_same_model_is_rejected_on_a_battery_drawn_from_a_secret_seed(tmp_path: Path) -> None:
    model_dir = _memorising_model(tmp_path / "model")
    result = convert_model(model_dir, load_spec(model_dir), tmp_path / "out")
    assert not result.ok
    assert result.report["battery_seed"] != 0
    assert "differs from eager" in result.report["candidates"]["script"]["error"]
    assert result.report["candidates"]["trace"]["error"], "its trace refuses to be recorded"
