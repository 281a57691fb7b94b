"""regctl.register_module: an in-memory module from a training script, registered without pickling code."""

from __future__ import annotations

import importlib
import io
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from regctl.from_python import register_module
from regctl.local import LocalClient
from regctl.registry.errors import InvalidInput
from regctl.registry.settings import Settings

NET = """
import torch
from torch import nn

from helpers.blocks import Scale


class Net(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.linear = nn.Linear(width, 2)
        self.scale = Scale(3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(self.linear(x))


def double(x: torch.Tensor) -> torch.Tensor:
    return x * 2
"""

BLOCKS = """
import torch
from torch import nn


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor
"""

INPUTS = [{"name": "x", "dtype": "float32", "shape": ["batch", 4]}]
DIMS = {"batch": (1, 8)}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[object]:
    """A training project on sys.path: project/mynet.py importing project/helpers/blocks.py."""
    root = tmp_path / "project"
    (root / "helpers").mkdir(parents=True)
    (root / "mynet.py").write_text(NET)
    (root / "helpers" / "__init__.py").write_text("")
    (root / "helpers" / "blocks.py").write_text(BLOCKS)
    (root / "train.py").write_text("print('training code, never bundled')\n")
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("mynet")
    finally:
        sys.path.remove(str(root))
        for name in ("mynet", "helpers", "helpers.blocks"):
            sys.modules.pop(name, None)


@pytest.fixture
def client(sqlite_settings: Settings) -> LocalClient:
    return LocalClient(sqlite_settings)


def _members(client: LocalClient, ref: str) -> list[str]:
    sink = io.BytesIO()
    client.stream(ref, sink, kind="source")
    with tarfile.open(fileobj=io.BytesIO(sink.getvalue())) as archive:
        return sorted(archive.getnames())


def test_a_trained_module_is_registered_with_its_local_imports_and_weights(
    project, client: LocalClient, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = project.Net(width=4).eval()
    version = register_module(
        "net", model, inputs=INPUTS, dims=DIMS, init={"width": 4}, tags={"run": "7"}, client=client, wait=True
    )
    assert version.status == "ready", [(j.kind, j.error) for j in version.jobs]
    assert version.tags == {"run": "7"}
    assert _members(client, "net:1") == [
        "helpers/__init__.py",
        "helpers/blocks.py",
        "mynet.py",
        "regctl.toml",
        "regctl_entry.py",
    ]  # no train.py, no pickle, no torch
    assert [a.kind for a in version.artifacts].count("weights") == 1

    client.fetch("net:1", tmp_path / "net.pt")
    loaded = torch.jit.load(str(tmp_path / "net.pt"))
    x = torch.randn(5, 4)
    torch.testing.assert_close(loaded(x), model(x))

    again = register_module(
        "net", model, inputs=INPUTS, dims=DIMS, init={"width": 4}, client=client, wait=True
    )
    assert (again.source_sha256, again.weights_sha256) == (version.source_sha256, version.weights_sha256)


def test_a_function_is_registered_as_it_is(project, client: LocalClient) -> None:  # type: ignore[no-untyped-def]
    version = register_module("double", project.double, inputs=INPUTS, dims=DIMS, client=client, wait=True)
    assert version.status == "ready", [(j.kind, j.error) for j in version.jobs]
    assert version.weights_sha256 is None


def test_a_class_from_main_or_a_function_body_is_refused_with_how_to_fix_it(
    project, client: LocalClient, sqlite_settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    class Local(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(InvalidInput, match=r"defined inside a function.*move it into a \.py file"):
        register_module("m", Local(), inputs=INPUTS, dims=DIMS, client=client)

    class Notebook(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    Notebook.__module__, Notebook.__qualname__ = "__main__", "Notebook"
    with pytest.raises(InvalidInput, match=r"in __main__ \(a notebook or the script being run\)"):
        register_module("m", Notebook(), inputs=INPUTS, dims=DIMS, client=client)
    with pytest.raises(InvalidInput, match=r"Net\(\*\*init\) does not match its constructor"):
        register_module("m", project.Net(), inputs=INPUTS, dims=DIMS, init={"depth": 3}, client=client)
    assert client.models() == []  # nothing registered, nothing stored
    assert not (sqlite_settings.home / "artifacts").exists()


def test_the_training_example_registers_and_waits_for_ready(tmp_path: Path) -> None:
    import os
    import subprocess

    example = Path(__file__).resolve().parent.parent / "examples" / "train-and-register" / "train.py"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "REGCTL_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("tiny-net:1 is ready")
