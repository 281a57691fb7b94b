"""Loading a model directory: private namespaces, entrypoints, weights that fit or do not."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from regctl.registry.spec import ModelSpec
from regctl.worker.inprocess import ModelLoadError, convert_model
from regctl.worker.model.loader import NAMESPACE_PREFIX, loaded_model
from tests.engine.conftest import seq_spec, write_model

LINEAR = """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x)

    def build():
        return Net()
"""


def test_wrong_weights_fail_the_conversion_with_the_offending_keys(tmp_path: Path) -> None:
    model_dir = write_model(tmp_path / "m", LINEAR)
    save_file(
        {"fc.weight": torch.zeros(2, 4), "head.bias": torch.zeros(2)}, str(model_dir / "weights.safetensors")
    )
    result = convert_model(model_dir, seq_spec(weights="weights.safetensors"), tmp_path / "out")
    assert not result.ok and result.method is None and result.torchscript_path is None
    assert result.error == (
        "weights 'weights.safetensors' do not fit the model: "
        "missing keys: fc.bias; unexpected keys: head.bias"
    )
    assert result.report["error"] == result.error
    assert not (tmp_path / "out" / "model.pt").exists()


def test_weights_with_a_wrong_shape_name_the_key_and_both_shapes(tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, LINEAR)
    save_file({"fc.weight": torch.zeros(3, 4), "fc.bias": torch.zeros(2)}, str(model_dir / "w.safetensors"))
    with (
        pytest.raises(
            ModelLoadError, match=r"shape mismatch: fc.weight \(3, 4\) in file vs \(2, 4\) in model"
        ),
        loaded_model(model_dir, seq_spec(weights="w.safetensors")),
    ):
        pass


def test_a_long_list_of_missing_keys_is_truncated(tmp_path: Path) -> None:
    model_dir = write_model(
        tmp_path,
        """
        from torch import nn
        def build():
            return nn.Sequential(*[nn.Linear(2, 2) for _ in range(4)])
    """,
    )
    save_file({}, str(model_dir / "w.safetensors"))
    with (
        pytest.raises(
            ModelLoadError, match=r"missing keys: 0.weight, 0.bias, 1.weight, 1.bias, 2.weight \(\+3 more\)$"
        ),
        loaded_model(model_dir, seq_spec(weights="w.safetensors")),
    ):
        pass


def test_state_dict_pt_weights_are_loaded_strictly(tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, LINEAR)
    state = {"fc.weight": torch.arange(8.0).reshape(2, 4), "fc.bias": torch.tensor([1.0, -1.0])}
    torch.save(state, model_dir / "weights.pt")
    with loaded_model(model_dir, seq_spec(weights="weights.pt")) as model:
        assert model.module is not None and not model.module.training
        assert torch.equal(model.module.state_dict()["fc.weight"], state["fc.weight"])


def test_a_pickled_whole_model_is_refused_not_unpickled(tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, LINEAR)
    torch.save(nn.Linear(4, 2), model_dir / "whole.pt")
    with (
        pytest.raises(
            ModelLoadError, match=r"weights 'whole.pt' cannot be read as a state_dict .*weights_only=True"
        ),
        loaded_model(model_dir, seq_spec(weights="whole.pt")),
    ):
        pass


def test_an_import_error_names_the_module_and_the_model_line(tmp_path: Path) -> None:
    model_dir = write_model(tmp_path / "m", "import torch\nimport not_a_real_package\n")
    result = convert_model(model_dir, seq_spec(), tmp_path / "out")
    assert not result.ok
    assert result.error == (
        "cannot import model.py:build: ModuleNotFoundError: No module named 'not_a_real_package' (model.py:2)"
    )


@pytest.mark.parametrize(
    ("entrypoint", "message"),
    [
        ("model.py:missing", "model has no attribute 'missing'"),
        ("nothere.py:build", "file nothere.py not found"),
        ("../model.py:build", "points outside the model directory"),
        ("model.py", "must look like 'model.py:build'"),
        ("model.py:VALUE", "is not callable (a value of type int)"),
    ],
)
def test_a_bad_entrypoint_is_a_one_line_load_error(tmp_path: Path, entrypoint: str, message: str) -> None:
    model_dir = write_model(tmp_path / "m", LINEAR + "    VALUE = 3\n")
    with (
        pytest.raises(ModelLoadError, match=re.escape(message)),
        loaded_model(model_dir, ModelSpec(entrypoint=entrypoint)),
    ):
        pass


def test_sibling_and_package_imports_resolve_inside_the_model_directory(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    write_model(model_dir, "SCALE = 3.0\n", "helpers.py")
    write_model(model_dir, "", "nets/__init__.py")
    write_model(model_dir, "def double(x):\n    return 2 * x\n", "nets/ops.py")
    write_model(
        model_dir,
        """
        import torch
        import helpers
        from .ops import double

        class Net(torch.nn.Module):
            def forward(self, x):
                return double(x) * helpers.SCALE

        def build():
            return Net()
    """,
        "nets/net.py",
    )
    with loaded_model(model_dir, ModelSpec(entrypoint="nets.net:build")) as model:
        assert torch.equal(model.eager(torch.ones(2)), torch.full((2,), 6.0))
        assert type(model.eager).__module__ == f"{model.namespace}.nets.net"
        assert sys.modules["helpers"].__name__ == f"{model.namespace}.helpers"
    assert "helpers" not in sys.modules


def test_loading_leaves_sys_path_and_sys_modules_as_they_were(tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, LINEAR)
    write_model(model_dir, "X = 1\n", "helpers.py")
    path_before, modules_before = list(sys.path), set(sys.modules)
    with loaded_model(model_dir, seq_spec()):
        import helpers  # type: ignore[import-not-found]  # the model's sibling, importable while loaded

        assert helpers.X == 1
    assert sys.path == path_before
    assert {
        m for m in set(sys.modules) - modules_before if "regctl_model" in m or m in {"model", "helpers"}
    } == set()
    assert not any(m.startswith(NAMESPACE_PREFIX) for m in sys.modules)


def test_two_models_with_the_same_file_and_class_names_convert_side_by_side(tmp_path: Path) -> None:
    template = """
        from typing import NamedTuple
        import torch

        class Out(NamedTuple):
            {fields}

        class Net(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> Out:
                return Out({values})

        def build():
            return Net()
    """
    first = write_model(tmp_path / "a", template.format(fields="a: torch.Tensor", values="x + 1"))
    second = write_model(
        tmp_path / "b",
        template.format(fields="b: torch.Tensor\n            c: torch.Tensor", values="x * 2, x"),
    )
    spec = seq_spec(method="script", optimize=False)
    results = [convert_model(d, spec, tmp_path / f"out-{d.name}") for d in (first, second)]
    assert [r.error for r in results] == [None, None]
    assert [r.method for r in results] == ["script", "script"]


def test_a_function_entrypoint_cannot_take_weights(tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, "def f(x):\n    return x\n\ndef build():\n    return f\n")
    save_file({"w": torch.zeros(1)}, str(model_dir / "w.safetensors"))
    with (
        pytest.raises(ModelLoadError, match="returned a function, which has no parameters"),
        loaded_model(model_dir, seq_spec(weights="w.safetensors")),
    ):
        pass


def test_a_model_file_never_replaces_an_installed_package(tmp_path: Path) -> None:
    import sympy

    model_dir = write_model(tmp_path, LINEAR)
    write_model(model_dir, "BROKEN = True\n", "sympy.py")
    with loaded_model(model_dir, seq_spec()):
        assert sys.modules["sympy"] is sympy
    assert sys.modules["sympy"] is sympy


def test_a_stale_module_of_the_same_name_is_hidden_during_the_load_and_restored(tmp_path: Path) -> None:
    stale = type(sys)("helpers")
    stale.__file__ = str(tmp_path / "elsewhere" / "helpers.py")  # imported earlier from another directory
    sys.modules["helpers"] = stale
    try:
        model_dir = write_model(tmp_path / "m", "import helpers\n\ndef build():\n    return helpers.f\n")
        write_model(model_dir, "def f(x):\n    return x + 1\n", "helpers.py")
        with loaded_model(model_dir, seq_spec()) as model:
            assert float(model.eager(torch.zeros(()))) == 1.0
        assert sys.modules["helpers"] is stale
    finally:
        del sys.modules["helpers"]


def test_a_model_file_never_replaces_an_installed_package_not_yet_imported(tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, "import click\n\ndef build():\n    return click.echo\n")
    write_model(model_dir, "BROKEN = True\n", "click.py")  # shadows an installed package
    was_imported = "click" in sys.modules
    saved = sys.modules.pop("click", None)
    try:
        with loaded_model(model_dir, seq_spec()) as model:
            assert hasattr(sys.modules["click"], "command")  # the real click, not the model's file
            assert model.eager is sys.modules["click"].echo
    finally:
        if was_imported and saved is not None:
            sys.modules["click"] = saved
