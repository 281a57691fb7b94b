"""`regctl export-triton`: a config Triton's own ModelConfig message accepts, next to the exact artifact.

The examples are registered and converted once for the module (embedded mode, a few seconds each);
the LibTorch stage is switched off here: tests/engine/test_libtorch.py covers it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import pytest
from click.testing import CliRunner, Result
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from regctl.cli.app import cli
from regctl.cli.main import main as _main  # noqa: F401  (registers every command)
from regctl.registry.errors import InvalidInput
from regctl.registry.ops.triton import triton_config
from regctl.registry.settings import Settings
from regctl.registry.spec import load_spec
from regctl.registry.store import open_store

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
Invoke = Callable[..., Result]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("triton") / "home"


@pytest.fixture(scope="module")
def regctl(home: Path) -> Invoke:
    """Run regctl against an embedded registry in `home`."""
    env = {
        "REGCTL_HOME": str(home),
        "REGCTL_DATABASE_URL": None,
        "REGCTL_ARTIFACT_STORE": None,
        "REGCTL_BROKER_URL": None,
        "REGCTL_LIBTORCH": "0",
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="module")
def registry(regctl: Invoke, home: Path) -> Settings:
    """linear:1, linear:2 and varlen-sequence:1 converted and ready; dynamic-loop:1 only registered."""
    for name, example in (("linear", "linear"), ("linear", "linear"), ("varlen", "varlen-sequence")):
        # the same folder twice: a second version only when asked for (unchanged content is not one)
        result = regctl("register", name, str(EXAMPLES / example), "--wait", "--new-version")
        assert result.exit_code == 0, result.stderr
    assert regctl("register", "loop", str(EXAMPLES / "dynamic-loop"), "--no-convert").exit_code == 0
    return Settings.from_env({}, home=home)


def parse_config(path: Path | str) -> Any:
    """config.pbtxt parsed against Triton's own ModelConfig message: an invalid file raises."""
    with fsspec.open(str(path), "r") as f:
        return text_format.Parse(f.read(), model_config_pb2.ModelConfig())


def io(config: Any, kind: str) -> list[tuple[str, str, list[int]]]:
    entries = config.input if kind == "input" else config.output
    return [(e.name, model_config_pb2.DataType.Name(e.data_type), list(e.dims)) for e in entries]


def artifact_bytes(settings: Settings, regctl: Invoke, ref: str) -> bytes:
    version = json.loads(regctl("versions", "show", ref, "--json").stdout)
    sha = next(a["sha256"] for a in reversed(version["artifacts"]) if a["kind"] == "torchscript")
    return open_store(settings.artifact_store).read_bytes(sha)


def test_linear_is_batched_and_its_model_is_the_validated_artifact(
    registry: Settings, regctl: Invoke, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    result = regctl("export-triton", "linear:1", "--repo", str(repo))
    assert result.exit_code == 0, result.stderr

    config = parse_config(repo / "linear" / "config.pbtxt")
    assert config.name == "linear" and config.platform == "pytorch_libtorch"
    assert config.max_batch_size == 8  # the batch dim's max, folded out of the dims
    assert io(config, "input") == [("INPUT__0", "TYPE_FP32", [10])]
    assert io(config, "output") == [("OUTPUT__0", "TYPE_FP32", [2])]
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)
    ]
    model = (repo / "linear" / "1" / "model.pt").read_bytes()
    assert model == artifact_bytes(registry, regctl, "linear:1")
    assert hashlib.sha256(model).hexdigest()[:16] in result.stdout
    assert sorted(p.name for p in (repo / "linear").iterdir()) == ["1", "config.pbtxt"]  # no temp files


def test_varlen_sequence_keeps_the_sequence_dim_dynamic(
    registry: Settings, regctl: Invoke, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    result = regctl("export-triton", "varlen", "--repo", str(repo), "--instance-kind", "gpu", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["max_batch_size"] == 2

    config = parse_config(repo / "varlen" / "config.pbtxt")
    assert config.max_batch_size == 2
    assert io(config, "input") == [("INPUT__0", "TYPE_FP32", [-1, 8])]
    assert io(config, "output") == [("OUTPUT__0", "TYPE_FP32", [-1, 4])]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU

    too_big = regctl("export-triton", "varlen:1", "--repo", str(tmp_path / "other"), "--max-batch-size", "3")
    assert too_big.exit_code == 2
    assert "above the largest batch varlen:1 was validated on (batch max = 2)" in too_big.stderr


def test_adding_version_2_leaves_version_1_untouched(
    registry: Settings, regctl: Invoke, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    assert regctl("export-triton", "linear:1", "--repo", str(repo)).exit_code == 0
    first = repo / "linear" / "1" / "model.pt"
    before = (first.stat().st_ino, first.stat().st_mtime_ns, first.read_bytes())

    result = regctl("export-triton", "linear:2", "--repo", str(repo))

    assert result.exit_code == 0, result.stderr
    assert (first.stat().st_ino, first.stat().st_mtime_ns, first.read_bytes()) == before
    assert (repo / "linear" / "2" / "model.pt").read_bytes() == artifact_bytes(registry, regctl, "linear:2")
    assert parse_config(repo / "linear" / "config.pbtxt").max_batch_size == 8

    # an entry that cannot hold this version's inputs and outputs is not rewritten
    unbatched = regctl("export-triton", "linear:2", "--repo", str(repo), "--max-batch-size", "0")
    assert unbatched.exit_code == 2 and "the versions already there would break" in unbatched.stderr

    # any fsspec URL works as the repository (s3:// in production)
    url = "memory://regctl-test-triton"
    assert regctl("export-triton", "linear:2", "--repo", url).exit_code == 0
    with fsspec.open(f"{url}/linear/2/model.pt", "rb") as f:
        assert f.read() == artifact_bytes(registry, regctl, "linear:2")
    assert parse_config(f"{url}/linear/config.pbtxt").max_batch_size == 8


def test_an_entry_is_compared_as_a_parsed_config_not_as_text(
    registry: Settings, regctl: Invoke, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    assert regctl("export-triton", "linear:1", "--repo", str(repo)).exit_code == 0
    config_path = repo / "linear" / "config.pbtxt"

    # the same message written by protobuf's own tools (one line, no comments) still serves version 2
    config_path.write_text(text_format.MessageToString(parse_config(config_path), as_one_line=True))
    result = regctl("export-triton", "linear:2", "--repo", str(repo))
    assert result.exit_code == 0, result.stderr

    # other dims, or a file that is no ModelConfig at all, would break the versions already there
    changed = parse_config(config_path)
    changed.input[0].dims[0] = 11
    for text in (text_format.MessageToString(changed), "input [ {\n"):
        config_path.write_text(text)
        refused = regctl("export-triton", "linear:2", "--repo", str(repo))
        assert refused.exit_code == 2 and "the versions already there would break" in refused.stderr
        assert config_path.read_text() == text


def test_a_damaged_artifact_exports_nothing_and_leaves_no_empty_version_folder(
    registry: Settings, regctl: Invoke, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    assert regctl("export-triton", "linear:2", "--repo", str(repo)).exit_code == 0
    version = json.loads(regctl("versions", "show", "linear:1", "--json").stdout)
    sha = next(a["sha256"] for a in reversed(version["artifacts"]) if a["kind"] == "torchscript")
    blob = Path(registry.artifact_store) / "sha256" / sha[:2] / sha[2:]
    original = blob.read_bytes()
    blob.chmod(0o644)
    try:
        blob.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
        into_existing = regctl("export-triton", "linear:1", "--repo", str(repo))
        into_new = regctl("export-triton", "linear:1", "--repo", str(tmp_path / "new" / "repo"))
    finally:
        blob.write_bytes(original)
        blob.chmod(0o444)
    for result in (into_existing, into_new):
        assert result.exit_code == 6, result.stderr  # the registry's data is damaged
        assert "does not match its checksum" in result.stderr and result.stderr.count("\n") == 1
    assert sorted(p.name for p in (repo / "linear").iterdir()) == ["2", "config.pbtxt"]
    assert not (tmp_path / "new").exists()


def test_a_python_scalar_input_is_refused_in_one_line(
    registry: Settings, regctl: Invoke, tmp_path: Path
) -> None:
    result = regctl("export-triton", "loop:1", "--repo", str(tmp_path / "repo"))

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "error: loop:1 cannot be served by Triton: input 'length' is a Python int and Triton's "
        "PyTorch backend passes only tensors to forward()"
    )
    assert not (tmp_path / "repo").exists()


def test_dict_outputs_are_refused_and_a_scalar_output_is_reshaped() -> None:
    spec = load_spec(EXAMPLES / "linear")
    logits = {"path": "output", "within": [], "kind": "tensor", "dtype": "float32", "varies": False}

    with pytest.raises(InvalidInput, match=r"output\['logits'\] is inside a dict; .* return a tuple instead"):
        triton_config(
            "m",
            spec,
            [{**logits, "path": "output['logits']", "within": ["dict"], "shape": ["batch", 2]}],
            ref="m:1",
        )

    # a 0-dim output cannot lead with the batch dim: not batched, and declared as [1] reshaped to []
    outputs = [
        {**logits, "path": "output[0]", "within": ["tuple"], "shape": ["batch", 2]},
        {**logits, "path": "output[1]", "within": ["tuple"], "shape": []},
    ]
    config = triton_config("m", spec, outputs, ref="m:1")
    assert config.max_batch_size == 0 and "does not start with the batch dim 'batch'" in (config.note or "")
    parsed = text_format.Parse(config.to_pbtxt(), model_config_pb2.ModelConfig())
    assert io(parsed, "input") == [("INPUT__0", "TYPE_FP32", [-1, 10])]
    assert io(parsed, "output") == [("OUTPUT__0", "TYPE_FP32", [-1, 2]), ("OUTPUT__1", "TYPE_FP32", [1])]
    assert list(parsed.output[1].reshape.shape) == [] and parsed.output[1].HasField("reshape")
