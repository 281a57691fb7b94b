"""`regctl export-triton`: a config Triton's own ModelConfig message accepts, next to the exact artifact.

The examples are registered and converted once for the module (embedded mode, a few seconds each);
the LibTorch stage is switched off here: tests/engine/test_libtorch.py covers it. The ONNX entry's
tests convert examples/linear once more with `--format onnx` (onnxruntime proves it: slow).
"""

from __future__ import annotations

import dataclasses
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
from regctl.registry.ops.triton import TritonConfig, triton_config, write_to_repo
from regctl.registry.ops.triton_onnx import onnx_config
from regctl.registry.refs import parse_ref
from regctl.registry.settings import Settings
from regctl.registry.spec import load_spec
from regctl.registry.store import open_store
from regctl.registry.versions import get_version
from tests.examples_in_range import in_range

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


@pytest.fixture(scope="module")
def onnx_registry(registry: Settings, regctl: Invoke, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """lin:1, examples/linear (inputs in range: tests/examples_in_range.py) with an ONNX model proved
    in onnxruntime."""
    linear = in_range("linear", tmp_path_factory.mktemp("onnx-linear"))
    result = regctl("register", "lin", str(linear), "--format", "onnx", "--wait")
    assert result.exit_code == 0, result.stderr
    return registry


def artifact_bytes(settings: Settings, regctl: Invoke, ref: str, kind: str = "torchscript") -> bytes:
    version = json.loads(regctl("versions", "show", ref, "--json").stdout)
    sha = next(a["sha256"] for a in reversed(version["artifacts"]) if a["kind"] == kind)
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


@pytest.mark.slow
def test_a_version_with_an_onnx_model_also_gets_an_onnxruntime_entry_with_its_real_tensor_names(
    onnx_registry: Settings, regctl: Invoke, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    result = regctl("export-triton", "lin:1", "--repo", str(repo), "--json")
    assert result.exit_code == 0, result.stderr
    exported = json.loads(result.stdout)
    version = json.loads(regctl("versions", "show", "lin:1", "--json").stdout)
    section = version["summary"]["report"]["onnx"]
    assert section["ok"] and section["io"]["inputs"][0]["dtype"] == "tensor(float)"

    # the TorchScript entry as before, and the ONNX one beside it
    assert parse_config(repo / "lin" / "config.pbtxt").platform == "pytorch_libtorch"
    config = parse_config(repo / "lin-onnx" / "config.pbtxt")
    assert config.name == "lin-onnx" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8  # folded as in the TorchScript entry
    inputs, outputs = section["io"]["inputs"], section["io"]["outputs"]
    assert io(config, "input") == [(inputs[0]["name"], "TYPE_FP32", [10])]
    assert io(config, "output") == [(outputs[0]["name"], "TYPE_FP32", [2])]
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)
    ]
    model = (repo / "lin-onnx" / "1" / "model.onnx").read_bytes()
    assert model == artifact_bytes(onnx_registry, regctl, "lin:1", "onnx")
    assert hashlib.sha256(model).hexdigest() == section["sha256"] == exported["onnx_sha256"]
    assert exported["onnx_model"] == str(repo / "lin-onnx" / "1" / "model.onnx")
    assert exported["onnx_config"] == str(repo / "lin-onnx" / "config.pbtxt")
    assert exported["onnx_entry"] == str(repo / "lin-onnx") and exported["onnx_size"] == len(model)
    assert "also wrote its ONNX model as lin-onnx" in exported["note"]
    assert sorted(p.name for p in (repo / "lin-onnx").iterdir()) == ["1", "config.pbtxt"]  # no temp files

    text = regctl("export-triton", "lin:1", "--repo", str(repo))
    assert text.exit_code == 0, text.stderr
    assert f"lin:1 -> {repo / 'lin-onnx' / '1' / 'model.onnx'} (" in text.stdout
    assert f"sha256 {section['sha256'][:16]}…" in text.stdout

    # a version without an ONNX model writes the TorchScript entry alone, as before
    plain = json.loads(regctl("export-triton", "linear:1", "--repo", str(repo), "--json").stdout)
    assert plain["onnx_entry"] is None and plain["onnx_model"] is None and plain["note"] is None
    assert not (repo / "linear-onnx").exists()

    # an entry of another platform where the ONNX entry would go (a model named "lin-onnx") is left
    # alone; the TorchScript entry is still written and the note says why
    other = tmp_path / "other"
    (other / "lin-onnx").mkdir(parents=True)
    taken = (repo / "lin" / "config.pbtxt").read_text().replace('name: "lin"', 'name: "lin-onnx"')
    (other / "lin-onnx" / "config.pbtxt").write_text(taken)
    skipped = regctl("export-triton", "lin:1", "--repo", str(other), "--json")
    assert skipped.exit_code == 0, skipped.stderr
    answer = json.loads(skipped.stdout)
    assert answer["onnx_entry"] is None
    assert (
        "wrote no ONNX entry: " in answer["note"] and "lin-onnx/config.pbtxt declares other" in answer["note"]
    )
    assert (other / "lin" / "1" / "model.pt").is_file()
    assert (other / "lin-onnx" / "config.pbtxt").read_text() == taken
    assert sorted(p.name for p in (other / "lin-onnx").iterdir()) == ["config.pbtxt"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ['x\n}\nplatform: "evil"', "../x"])
def test_an_untrusted_onnx_tensor_name_skips_the_onnx_entry_and_the_note_says_why(
    onnx_registry: Settings, tmp_path: Path, name: str
) -> None:
    info = get_version(onnx_registry, parse_ref("lin:1"))
    report = info.summary["report"]  # type: ignore[index]
    section = report["onnx"]
    hostile = {**section["io"], "inputs": [{**section["io"]["inputs"][0], "name": name}]}
    tampered = dataclasses.replace(
        info, summary={**info.summary, "report": {**report, "onnx": {**section, "io": hostile}}}
    )
    store = open_store(onnx_registry.artifact_store)
    repo = tmp_path / "repo"

    result = write_to_repo(tampered, lambda a: store.open_chunks(a.sha256), str(repo))

    assert (repo / "lin" / "1" / "model.pt").is_file() and result.onnx_entry is None
    assert result.note is not None and "\n" not in result.note
    assert result.note.startswith(f"wrote no ONNX entry: its input 0 has the name {name!a}, not a plain")
    assert not (repo / "lin-onnx").exists()


def linear_like(max_batch_size: int | None = None) -> TritonConfig:
    """The TorchScript entry's config of examples/linear (batch dim folded unless told 0)."""
    out = {"path": "output", "within": [], "kind": "tensor", "dtype": "float32", "varies": False}
    outputs = [{**out, "shape": ["batch", 2]}]
    return triton_config(
        "m", load_spec(EXAMPLES / "linear"), outputs, ref="m:1", max_batch_size=max_batch_size
    )


def onnx_section(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    outputs = outputs or [{"name": "linear", "dtype": "tensor(float)", "shape": ["batch", 2]}]
    return {"ok": True, "sha256": "ab" * 32, "io": {"inputs": inputs, "outputs": outputs}}


def test_the_onnx_config_maps_element_types_and_batches_like_the_torchscript_entry() -> None:
    inputs = [
        {"name": "input", "dtype": "tensor(float)", "shape": ["batch", 10]},
        {"name": "onnx::ids_1", "dtype": "tensor(int64)", "shape": ["batch", "seq"]},
        {"name": "mask/0", "dtype": "tensor(bool)", "shape": ["batch"]},
    ]
    config = onnx_config(
        "m", onnx_section(inputs), sha256="ab" * 32, like=linear_like(), batch="batch", ref="m:1"
    )
    assert isinstance(config, TritonConfig)
    parsed = text_format.Parse(config.to_pbtxt(), model_config_pb2.ModelConfig())
    assert parsed.name == "m-onnx" and parsed.platform == "onnxruntime_onnx" and parsed.max_batch_size == 8
    assert io(parsed, "input") == [
        ("input", "TYPE_FP32", [10]),
        ("onnx::ids_1", "TYPE_INT64", [-1]),
        ("mask/0", "TYPE_BOOL", [1]),  # only the batch dim: [1] reshaped to []
    ]
    assert list(parsed.input[2].reshape.shape) == [] and parsed.input[2].HasField("reshape")
    assert io(parsed, "output") == [("linear", "TYPE_FP32", [2])]

    # unbatched when the TorchScript entry is, with the batch dim kept as -1
    unbatched = onnx_config(
        "m", onnx_section(inputs[:1]), sha256="ab" * 32, like=linear_like(0), batch="batch", ref="m:1"
    )
    assert isinstance(unbatched, TritonConfig) and unbatched.max_batch_size == 0
    assert unbatched.inputs[0].dims == (-1, 10)

    # a tensor that does not lead with the batch dim the TorchScript entry folds: no ONNX entry
    fixed = [{"name": "input", "dtype": "tensor(float)", "shape": [1, 10]}]
    refused = onnx_config(
        "m", onnx_section(fixed), sha256="ab" * 32, like=linear_like(), batch="batch", ref="m:1"
    )
    assert refused == (
        "its input 'input' does not start with the batch dim 'batch', which the TorchScript entry "
        "folds into max_batch_size"
    )


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (
            {"name": 'x\n}\nplatform: "evil"'},
            "its input 0 has the name 'x\\n}\\nplatform: \"evil\"', not a plain",
        ),
        ({"name": "../x"}, "its input 0 has the name '../x', not a plain tensor name"),
        ({"name": 'x"'}, "its input 0 has the name 'x\"', not a plain tensor name"),
        ({"name": "x\x1b[2J"}, "its input 0 has the name 'x\\x1b[2J', not a plain tensor name"),
        ({"name": "x" * 129}, "its input 0 has the name '" + "x" * 40 + "'..., not a plain tensor name"),
        ({"name": ""}, "its input 0 has the name '', not a plain tensor name"),
        ({"name": 7}, "its input 0 has the name <int>, not a plain tensor name"),
        (
            {"dtype": "tensor(string)"},
            "its input 'input' has the element type 'tensor(string)', for which Triton has no",
        ),
        (
            {"dtype": "tensor(float)\n"},
            "its input 'input' has the element type 'tensor(float)\\n', for which",
        ),
        ({"shape": [True, 10]}, "its input 'input' has no shape of at most 16 sizes or dim names"),
        ({"shape": [-1, 10]}, "its input 'input' has no shape of at most 16 sizes or dim names"),
        ({"shape": "batch"}, "its input 'input' has no shape of at most 16 sizes or dim names"),
        ({"shape": [1] * 17}, "its input 'input' has no shape of at most 16 sizes or dim names"),
    ],
)
def test_an_untrusted_onnx_io_is_refused_in_one_escaped_line(entry: dict[str, Any], reason: str) -> None:
    tensor = {"name": "input", "dtype": "tensor(float)", "shape": ["batch", 10], **entry}

    refused = onnx_config(
        "m", onnx_section([tensor]), sha256="ab" * 32, like=linear_like(), batch="batch", ref="m:1"
    )

    assert isinstance(refused, str) and refused.startswith(reason), refused
    assert refused.isprintable() and refused.isascii()


def test_an_onnx_section_that_does_not_describe_the_file_is_refused() -> None:
    good = onnx_section([{"name": "input", "dtype": "tensor(float)", "shape": ["batch", 10]}])
    twice = onnx_section([{"name": "linear", "dtype": "tensor(float)", "shape": ["batch", 10]}])
    cases = [
        ({**good, "ok": False}, "the conversion report does not prove the ONNX model"),
        (
            {**good, "sha256": "cd" * 32},
            "the conversion report describes another ONNX file than the stored model.onnx",
        ),
        ({**good, "io": None}, "the conversion report does not record the ONNX model's inputs and outputs"),
        ({**good, "io": {**good["io"], "outputs": []}}, "the conversion report lists no ONNX outputs"),
        (twice, "the conversion report names two ONNX tensors alike"),
        (None, "the conversion report does not prove the ONNX model"),
    ]
    for section, reason in cases:
        refused = onnx_config("m", section, sha256="ab" * 32, like=linear_like(), batch="batch", ref="m:1")
        assert isinstance(refused, str) and refused.startswith(reason), (section, refused)
