"""A model with a weights file is built without drawing the random weights the file replaces, and is
still exactly the model an ordinary build gives (worker/model/skipped_init.py): where that cannot be
proven, it is built again the ordinary way."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from regctl.worker.engine.devices import SEED
from regctl.worker.model.loader import loaded_model
from regctl.worker.model.model_side import build_candidates
from tests.engine.conftest import seq_spec, write_model

HEADER = """
    import torch
    from torch import nn
"""

BERT_LIKE = """
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4, padding_idx=0)
            self.fc = nn.Linear(4, 4)
            self.norm = nn.LayerNorm(4)
            self.pos = nn.Parameter(torch.randn(1, 8, 4))
            self.cls = nn.Parameter(torch.zeros(1, 1, 4))
            nn.init.trunc_normal_(self.cls, std=0.02)
            self.register_buffer("ids", torch.arange(8), persistent=False)

        def forward(self, x):
            tokens = self.embed(self.ids[: x.shape[1]]).unsqueeze(0)
            return self.norm(self.fc(x + tokens + self.pos[:, : x.shape[1]])) + self.cls
"""


def _write(tmp_path: Path, body: str, *, tied: bool = False) -> Path:
    """The model in `body`, its build() and a weights file with values no build draws."""
    source = HEADER + body + "\n    def build():\n        return Net()\n"
    model_dir = write_model(tmp_path / "m", source)
    module = _ordinary(model_dir, weights=None)
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:  # each tied one once
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
    state = module.state_dict()
    if tied:
        torch.save(state, model_dir / "weights.pt")  # keeps the tie: one storage under two names
    else:
        save_file({k: v.clone() for k, v in state.items()}, str(model_dir / "weights.safetensors"))
    return model_dir


def _ordinary(model_dir: Path, weights: str | None) -> nn.Module:
    """What the model is when built the plain way: import, seed, build, load the weights strictly."""
    spec = importlib.util.spec_from_file_location(f"plain_{uuid.uuid4().hex}", model_dir / "model.py")
    assert spec is not None and spec.loader is not None
    source = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(source)
    torch.manual_seed(SEED)
    module = source.build()
    if weights is not None:
        path = model_dir / weights
        state = (
            torch.load(path, weights_only=True)
            if path.suffix == ".pt"
            else __import__("safetensors.torch").torch.load_file(str(path))
        )
        module.load_state_dict(state, strict=True)
    return module.eval()


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, persistent or not, and every tensor attribute of every submodule."""
    found = {f"p:{k}": v.detach() for k, v in module.named_parameters()}
    found.update({f"b:{k}": v for k, v in module.named_buffers()})
    for prefix, sub in module.named_modules():
        for name, value in vars(sub).items():
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                if isinstance(item, torch.Tensor):
                    found[f"a:{prefix}.{name}[{i}]"] = item.detach().to_dense()
                elif isinstance(item, float | int):
                    found[f"v:{prefix}.{name}[{i}]"] = torch.tensor(item)
    return found


def _loads_like_an_ordinary_build(model_dir: Path, weights: str) -> bool:
    """Load through the loader; assert it is the ordinary build's model; return whether fills were skipped."""
    expected = _ordinary(model_dir, weights)
    x = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(7))
    with loaded_model(model_dir, seq_spec(weights=weights)) as model:
        got = _tensors(model.module)
        want = _tensors(expected)
        assert got.keys() == want.keys()
        for name, tensor in want.items():
            assert torch.equal(got[name], tensor), name
        with torch.no_grad():
            assert torch.equal(model.eager(x), expected(x))
        return model.fills_skipped


def test_a_model_with_a_weights_file_is_built_without_its_fills_and_equals_the_ordinary_build(
    tmp_path: Path,
) -> None:
    model_dir = _write(tmp_path, BERT_LIKE)
    assert _loads_like_an_ordinary_build(model_dir, "weights.safetensors") is True


def test_tied_weights_copied_into_the_undrawn_storage_keep_the_build_exact(tmp_path: Path) -> None:
    model_dir = _write(
        tmp_path,
        """
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, x):
            return self.head(x)
    """,
        tied=True,
    )
    assert _loads_like_an_ordinary_build(model_dir, "weights.pt") is True


@pytest.mark.parametrize(
    "derived",
    [
        # a buffer the weights file does not hold, computed from a fresh weight
        'self.register_buffer("scale", self.fc.weight.abs().amax(), persistent=False)',
        # a Python number read from a fresh weight
        "self.gain = float(self.fc.weight.detach().sum())",
        # bytes handed to Python without an op the dispatcher sees
        "self.first = self.fc.weight.tolist()[0][0]",
        "self.first = float(self.fc.weight.detach().numpy()[0, 0])",
        # a later draw gets other numbers when an earlier fill was not drawn
        'self.register_buffer("noise", torch.randint(0, 100, (4,)), persistent=False)',
        # a fresh weight still held where loading the file does not replace it
        "self.kept = [self.fc.weight]",
        "self.weight_t = self.fc.weight.t()",
        # a fresh random tensor that is no parameter: the file never replaces it
        'self.register_buffer("mask", torch.rand(4), persistent=False)',
        # a fresh weight compared in a loop of the model's own
        "assert bool((self.fc.weight.abs() < 1e30).all()), 'garbage'",
    ],
    ids=["buffer", "item", "tolist", "numpy", "later-draw", "alias", "view", "random-buffer", "assert"],
)
def test_a_build_that_reads_a_fresh_weight_is_built_again_the_ordinary_way(
    tmp_path: Path, derived: str
) -> None:
    model_dir = _write(
        tmp_path,
        f"""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            {derived}

        def forward(self, x):
            return self.fc(x)
    """,
    )
    assert _loads_like_an_ordinary_build(model_dir, "weights.safetensors") is False


WHOLE_MODELS = {
    # no fill to skip: the weights are assigned from the file, and a view held on would keep the
    # values the model was built with, where loading by copy gives it the file's
    "view-of-a-parameter": (
        """
        self.w = nn.Parameter(torch.zeros(4, 4))
        self.w_t = self.w.t()
    """,
        "x @ self.w_t",
        False,
    ),
    "fill-with-its-own-generator": (
        """
        self.fc = nn.Linear(4, 4)
        self.register_buffer("proj", torch.empty(4, 4), persistent=False)
        nn.init.normal_(self.proj, generator=torch.Generator().manual_seed(3))
    """,
        "self.fc(x) @ self.proj",
        True,
    ),
    "tensor-with-no-storage": (
        """
        self.fc = nn.Linear(4, 4)
        self.adjacency = (torch.eye(4).to_sparse() * 2).coalesce()
    """,
        "self.fc(x) + self.adjacency.to_dense().sum()",
        True,
    ),
}


@pytest.mark.parametrize(("init", "forward", "skipped"), WHOLE_MODELS.values(), ids=WHOLE_MODELS.keys())
def test_each_model_is_the_ordinary_build_with_fills_skipped_where_that_is_exact(
    tmp_path: Path, init: str, forward: str, skipped: bool
) -> None:
    body = "\n".join("            " + line.strip() for line in init.strip().splitlines())
    source = f"""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
{body}

        def forward(self, x):
            return {forward}
    """
    model_dir = _write(tmp_path, source)
    assert _loads_like_an_ordinary_build(model_dir, "weights.safetensors") is skipped


def test_a_build_done_again_the_ordinary_way_reports_its_warnings_once(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="built with"):  # _write builds the model once, here
        model_dir = _write(
            tmp_path,
            """
    import warnings

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            warnings.warn("built with a scale read from the weights")
            self.scale = float(self.fc.weight.detach().abs().max())

        def forward(self, x):
            return self.fc(x) * self.scale
    """,
        )
    side = build_candidates(
        model_dir, seq_spec(weights="weights.safetensors"), tmp_path / "out", method="script"
    )
    assert side.error is None and side.candidates["script"].file == "script.pt"
    (built,) = [w for w in side.warnings if w.message == "built with a scale read from the weights"]
    assert built.count == 1 and built.file == "model.py"


def test_without_a_weights_file_every_fill_is_drawn(tmp_path: Path) -> None:
    model_dir = write_model(tmp_path / "m", HEADER + BERT_LIKE + "\n    def build():\n        return Net()\n")
    expected = _tensors(_ordinary(model_dir, None))
    with loaded_model(model_dir, seq_spec()) as model:
        assert model.fills_skipped is False
        got = _tensors(model.module)
    assert all(torch.equal(got[k], v) for k, v in expected.items())


def test_the_build_leaves_torch_as_it_found_it(tmp_path: Path) -> None:
    methods = {name: torch.Tensor.__dict__.get(name) for name in ("numpy", "tolist", "data_ptr", "storage")}
    trunc_normal = nn.init.trunc_normal_
    model_dir = _write(tmp_path, BERT_LIKE)
    with loaded_model(model_dir, seq_spec(weights="weights.safetensors")) as model:
        assert model.fills_skipped
    assert {name: torch.Tensor.__dict__.get(name) for name in methods} == methods
    assert nn.init.trunc_normal_ is trunc_normal
    generator = torch.Generator().manual_seed(0)
    assert not torch.equal(torch.empty(4).uniform_(generator=generator), torch.zeros(4))
