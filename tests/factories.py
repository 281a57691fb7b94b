"""Small models built from code with fixed seeds, shared by tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_model_dir

MODEL_PY = """
import os
import time

import torch


class Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        {forward}
        return self.linear(x)


def build() -> torch.nn.Module:
    return Model()
"""

SPEC_TOML = """
entrypoint = "model.py:build"
device = "{device}"

[[inputs]]
name = "x"
dtype = "float32"
shape = ["batch", 10]

[dims]
batch = {{ min = 1, max = 4 }}

[validation]
samples = 1
"""

# Bodies for the model's forward(), before it returns linear(x).
FAST = "pass"
SLOW = "time.sleep(0.3)"  # a conversion takes several seconds: a dozen eager calls
ABORT = "os.abort()"
HANG = "while True:\n            time.sleep(0.5)"
# Hangs and swallows the soft time limit's exception too: only the hard limit's SIGKILL stops it.
STUBBORN = (
    "while True:\n"
    "            try:\n"
    "                time.sleep(0.5)\n"
    "            except BaseException:\n"
    "                pass"
)


def linear_model(root: Path, *, forward: str = FAST, device: str = "cpu") -> Path:
    """A Linear(10, 2) model directory whose forward first runs `forward`; converts in about a second."""
    return write_model_dir(
        root, spec=SPEC_TOML.format(device=device), files={"model.py": MODEL_PY.format(forward=forward)}
    )


def recorded_inputs(nbytes: int = 8) -> bytes:
    """A readable recorded-inputs .safetensors file: one float32 tensor `x.0` of about `nbytes` bytes."""
    import numpy as np
    from safetensors.numpy import save

    return save({"x.0": np.zeros((1, max(1, nbytes // 4)), dtype=np.float32)})


def promotable(settings: object, name: str, *versions: int) -> None:
    """Give versions of `name` what the promotion policy asks of a proved, signed version (tests of alias
    mechanics, not of proofs): status ready, a TorchScript artifact and a signed-looking attestation
    row about it, both real blobs in the store. Real signatures are tested in tests/test_provenance.py.
    """
    from sqlalchemy import select

    from regctl.registry.db import session_scope
    from regctl.registry.schema import Artifact, Model, ModelVersion
    from regctl.registry.store import open_store

    store = open_store(settings.artifact_store)  # type: ignore[attr-defined]
    with session_scope(settings.database_url) as session:  # type: ignore[attr-defined]
        query = select(ModelVersion).join(Model).where(Model.name == name)
        if versions:
            query = query.where(ModelVersion.version.in_(versions))
        for row in session.scalars(query).all():
            row.status = "ready"
            scripted = store.put_bytes(f"torchscript of {name}:{row.version}".encode())
            statement = store.put_bytes(f'{{"about": "{scripted.sha256}"}}\n'.encode())
            for kind, blob, method in (
                ("torchscript", scripted, "script"),
                ("attestation", statement, "torchscript"),
            ):
                session.add(
                    Artifact(
                        version_id=row.id,
                        kind=kind,
                        sha256=blob.sha256,
                        size=blob.size,
                        uri=blob.uri,
                        torch_version="2.13.0+cpu",
                        method=method,
                    )
                )
