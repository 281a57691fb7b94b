"""Fixtures for the engine tests: the examples converted once per session, models built from code."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from regctl.registry.spec import DimSpec, InputSpec, ModelSpec, ValidationSpec, load_spec
from regctl.worker.inprocess import ConversionResult, convert_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_NAMES = ("linear", "dynamic-loop", "conditional", "varlen-sequence", "script-fails")


def example_spec(name: str) -> ModelSpec:
    """The parsed regctl.toml of an example."""
    return load_spec(EXAMPLES / name)


def write_model(directory: Path, source: str, filename: str = "model.py") -> Path:
    """Write a model file (dedented) into `directory`, creating it; return the directory."""
    path = directory / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return directory


def seq_spec(*, features: int = 4, samples: int = 2, **kwargs: object) -> ModelSpec:
    """A spec for forward(x) with x: float32 [1, seq, features], seq in 1..8 (opt 4)."""
    return ModelSpec(
        inputs=(InputSpec("x", "float32", (1, "seq", features)),),
        dims={"seq": DimSpec("seq", min=1, max=8, opt=4)},
        validation=ValidationSpec(samples=samples),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], ConversionResult]:
    """convert_model on an example, run once per session and shared by the tests that read it."""
    results: dict[str, ConversionResult] = {}

    def get(name: str) -> ConversionResult:
        if name not in results:
            results[name] = convert_model(EXAMPLES / name, example_spec(name), tmp_path_factory.mktemp(name))
        return results[name]

    return get
