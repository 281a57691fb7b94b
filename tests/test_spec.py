"""The model spec: `regctl.toml` parses to typed dataclasses, and every wrong field gets a one-line error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from regctl.registry.errors import InvalidSpec
from regctl.registry.spec import DimSpec, InputSpec, ModelSpec, ValidationSpec, load_spec, parse_spec
from tests.factories import recorded_inputs

X_INPUT = '[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [1, "seq"]'
SEQ_DIM = "[dims]\nseq = { min = 1, max = 16 }"
MODEL_PY = "import torch\n\n\ndef build():\n    return torch.nn.Identity()\n"

DESIGN_EXAMPLE = """
entrypoint = "model.py:build"   # file.py:callable or package.module:callable, relative to the dir;
weights = "weights.safetensors" # optional: .safetensors, or a state_dict .pt/.pth
method = "auto"                 # auto | trace | script
device = "cpu"                  # cpu | cuda  -> the queue the job goes to
optimize = true                 # freeze + optimize_for_inference after conversion

[[inputs]]                      # one table per positional input of forward()
name = "tokens"
dtype = "int64"                 # any torch dtype name
shape = [1, "seq"]              # ints are fixed sizes, strings name a dynamic dim
low = 0                         # optional value range for generated data
high = 1000

[[inputs]]                      # a Python scalar argument (int, float or bool): no shape
name = "length"
dtype = "int"
low = 1
high = 8

[dims]
seq = { min = 1, max = 128 }    # optional "opt" too; the validator sweeps min, opt, max

[validation]
rtol = 1e-4
atol = 1e-5
samples = 4                     # random draws per shape
inputs = "samples.safetensors"  # optional recorded real inputs
"""


def spec_toml(
    top: str = 'entrypoint = "model.py:build"', inputs: str = X_INPUT, dims: str = SEQ_DIM, tail: str = ""
) -> str:
    """A regctl.toml made of a top-level part, the [[inputs]] tables, [dims] and anything after."""
    return f"{top}\n\n{inputs}\n\n{dims}\n\n{tail}\n"


def make_model_dir(root: Path, toml: str | None = None, files: dict[str, bytes | str] | None = None) -> Path:
    """A model directory `root/model` with regctl.toml, model.py and `files` (name -> content)."""
    directory = root / "model"
    directory.mkdir()
    (directory / "regctl.toml").write_text(spec_toml() if toml is None else toml)
    (directory / "model.py").write_text(MODEL_PY)
    for name, content in (files or {}).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return directory


def spec_error(directory: Path) -> str:
    """The message of the InvalidSpec that loading `directory` raises; it must be one line."""
    with pytest.raises(InvalidSpec) as info:
        load_spec(directory)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.exit_code == 2
    return message


# -- the directory and the file ----------------------------------------------------------------------


def test_a_missing_directory_is_named_with_the_fix(tmp_path: Path) -> None:
    message = spec_error(tmp_path / "nowhere")
    assert f"model directory {tmp_path / 'nowhere'} does not exist" in message
    assert "pass the directory that holds regctl.toml" in message


def test_a_file_given_as_the_directory_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text("")
    assert "is not a directory" in spec_error(tmp_path / "model.py")


def test_a_directory_without_regctl_toml_says_what_a_minimal_file_holds(tmp_path: Path) -> None:
    message = spec_error(tmp_path)
    assert f"model directory {tmp_path} has no regctl.toml" in message
    assert 'entrypoint = "model.py:build"' in message
    assert "[[inputs]]" in message


def test_a_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path, 'entrypoint = "model.py:build"\nmethod "trace"\n')
    message = spec_error(directory)
    assert message.startswith(f"{directory / 'regctl.toml'}: not valid TOML:")
    assert "line 2" in message


def test_a_spec_that_is_not_utf8_is_rejected(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path)
    (directory / "regctl.toml").write_bytes(b'entrypoint = "\xff"\n')
    assert "not UTF-8" in spec_error(directory)


def test_a_spec_past_its_size_cap_is_refused_without_being_parsed(tmp_path: Path) -> None:
    from regctl.registry.spec.checked import MAX_SPEC_BYTES

    directory = make_model_dir(tmp_path)
    with open(directory / "regctl.toml", "w") as f:  # 5 MB: 100k generated [[inputs]] tables
        f.write('entrypoint = "model.py:build"\n')
        f.writelines(f'[[inputs]]\nname = "x{i}"\ndtype = "float32"\nshape = [2]\n' for i in range(100_000))
    message = spec_error(directory)
    assert message == (
        f"{directory / 'regctl.toml'}: larger than {MAX_SPEC_BYTES} bytes; "
        "a spec names files and shapes, keep data in files it names"
    )


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        (
            "".join(f'[[inputs]]\nname = "x{i}"\ndtype = "float32"\nshape = [2]\n' for i in range(257)),
            "inputs has 257 entries, more than 256; expected at most 256 [[inputs]] tables, one per argument",
        ),
        (
            X_INPUT + "\n[dims]\n" + "".join(f"d{i} = {{ min = 1, max = 2 }}\n" for i in range(65)),
            "dims has 65 entries, more than 64; expected at most 64 dims in [dims]",
        ),
    ],
)
def test_too_many_inputs_or_dims_are_refused_in_one_line(tmp_path: Path, tables: str, expected: str) -> None:
    directory = make_model_dir(tmp_path, 'entrypoint = "model.py:build"\n' + tables)
    message = spec_error(directory)
    assert expected in message and "\n" not in message


def test_recorded_inputs_past_their_cap_or_with_a_damaged_header_are_refused(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    from regctl.registry.spec.checked import MAX_RECORDED_TENSORS

    toml = (
        'entrypoint = "model.py:build"\n'
        + X_INPUT
        + "\n"
        + SEQ_DIM
        + '\n[validation]\ninputs = "r.safetensors"\n'
    )
    many = {f"x.{i}": np.zeros((1, 2), dtype=np.float32) for i in range(MAX_RECORDED_TENSORS + 1)}
    directory = make_model_dir(tmp_path, toml)
    save_file(many, str(directory / "r.safetensors"))
    message = spec_error(directory)
    assert f"holds {MAX_RECORDED_TENSORS + 1} tensors, more than {MAX_RECORDED_TENSORS}" in message
    (directory / "r.safetensors").write_bytes((2**40).to_bytes(8, "little") + b"{}")  # a header "of a TB"
    assert "is not a readable .safetensors file" in spec_error(directory)
    save_file({"x.0": np.zeros((1, 2), dtype=np.float32)}, str(directory / "r.safetensors"))
    assert load_spec(directory).validation.inputs == "r.safetensors"


# -- what a good spec parses to ----------------------------------------------------------------------


def test_the_design_example_parses_to_the_expected_spec(tmp_path: Path) -> None:
    directory = make_model_dir(
        tmp_path, DESIGN_EXAMPLE, {"weights.safetensors": b"w", "samples.safetensors": recorded_inputs()}
    )
    assert load_spec(directory) == ModelSpec(
        entrypoint="model.py:build",
        weights="weights.safetensors",
        method="auto",
        device="cpu",
        optimize=True,
        inputs=(
            InputSpec(name="tokens", dtype="int64", shape=(1, "seq"), low=0, high=1000),
            InputSpec(name="length", dtype="int", shape=None, low=1, high=8),
        ),
        dims={"seq": DimSpec(name="seq", min=1, max=128, opt=64)},
        validation=ValidationSpec(rtol=1e-4, atol=1e-5, samples=4, inputs="samples.safetensors"),
    )


def test_omitted_fields_take_their_documented_defaults(tmp_path: Path) -> None:
    toml = '[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [2, 3]\n'
    spec = load_spec(make_model_dir(tmp_path, toml))
    assert (spec.entrypoint, spec.weights, spec.method, spec.device, spec.optimize) == (
        "model.py:build",
        None,
        "auto",
        "cpu",
        True,
    )
    assert spec.dims == {}
    assert spec.validation == ValidationSpec(rtol=1e-4, atol=1e-5, samples=4, inputs=None)
    assert spec.inputs == (InputSpec(name="x", dtype="float32", shape=(2, 3)),)
    assert spec.data_files() == []


def test_opt_defaults_to_the_midpoint_of_min_and_max(tmp_path: Path) -> None:
    spec = load_spec(make_model_dir(tmp_path, spec_toml(dims="[dims]\nseq = { min = 3, max = 10 }")))
    assert spec.dims["seq"] == DimSpec(name="seq", min=3, max=10, opt=6, batch=False)


def test_a_batch_dim_and_an_explicit_opt_are_kept(tmp_path: Path) -> None:
    dims = "[dims]\nseq = { min = 1, max = 16, opt = 16, batch = true }"
    assert load_spec(make_model_dir(tmp_path, spec_toml(dims=dims))).dims["seq"].batch is True


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("float", "float32"),
        ("double", "float64"),
        ("half", "float16"),
        ("long", "int64"),
        ("int", "int32"),
        ("short", "int16"),
        ("cfloat", "complex64"),
        ("cdouble", "complex128"),
        ("torch.bfloat16", "bfloat16"),
        ("uint8", "uint8"),
        ("bool", "bool"),
    ],
)
def test_tensor_dtypes_are_normalised_to_canonical_torch_names(
    tmp_path: Path, written: str, canonical: str
) -> None:
    inputs = f'[[inputs]]\nname = "x"\ndtype = "{written}"\nshape = [1, "seq"]'
    spec = load_spec(make_model_dir(tmp_path, spec_toml(inputs=inputs)))
    assert spec.inputs[0].dtype == canonical


@pytest.mark.parametrize("dtype", ["int", "float", "bool"])
def test_a_scalar_input_keeps_its_python_type_name(tmp_path: Path, dtype: str) -> None:
    inputs = f'{X_INPUT}\n\n[[inputs]]\nname = "n"\ndtype = "{dtype}"'
    spec = load_spec(make_model_dir(tmp_path, spec_toml(inputs=inputs)))
    assert spec.inputs[1] == InputSpec(name="n", dtype=dtype, shape=None)
    assert spec.inputs[1].is_scalar


@pytest.mark.parametrize("layout", ["pkg/net.py", "pkg/net/__init__.py"])
def test_a_package_module_entrypoint_finds_its_module_file(tmp_path: Path, layout: str) -> None:
    files = {"pkg/__init__.py": "", layout: MODEL_PY}
    directory = make_model_dir(tmp_path, spec_toml(top='entrypoint = "pkg.net:make.model"'), files)
    assert load_spec(directory).entrypoint == "pkg.net:make.model"


def test_a_file_entrypoint_in_a_subdirectory_is_accepted(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path, spec_toml(top='entrypoint = "src/net.py:build"'), {"src/net.py": ""})
    assert load_spec(directory).entrypoint == "src/net.py:build"


def test_data_paths_are_normalised(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path, spec_toml(top='weights = "./w/model.pt"'), {"w/model.pt": b"\x00"})
    spec = load_spec(directory)
    assert spec.weights == "w/model.pt"
    assert spec.data_files() == ["w/model.pt"]


def test_a_symlink_that_stays_inside_the_directory_is_accepted(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path, spec_toml(top='weights = "w.pth"'), {"real/w.pth": b"w"})
    (directory / "w.pth").symlink_to(directory / "real" / "w.pth")
    assert load_spec(directory).weights == "w.pth"


def test_to_dict_survives_json_and_from_dict_gives_an_equal_spec(tmp_path: Path) -> None:
    directory = make_model_dir(
        tmp_path, DESIGN_EXAMPLE, {"weights.safetensors": b"w", "samples.safetensors": recorded_inputs()}
    )
    spec = load_spec(directory)
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_parse_spec_without_a_directory_checks_the_form_of_paths_only() -> None:
    data = {
        "entrypoint": "pkg.mod:build",
        "weights": "w.safetensors",
        "inputs": [{"name": "x", "dtype": "half", "shape": [4]}],
    }
    spec = parse_spec(data, "stored spec")
    assert spec.weights == "w.safetensors"
    assert spec.inputs[0].dtype == "float16"
    with pytest.raises(
        InvalidSpec, match=r'^stored spec: weights = "\.\./w\.pt" escapes the model directory'
    ):
        parse_spec({**data, "weights": "../w.pt"}, "stored spec")


def test_the_spec_and_bundle_modules_import_neither_torch_nor_celery() -> None:
    code = (
        "import sys, registry.spec, registry.bundle; print('torch' in sys.modules, 'celery' in sys.modules)"
    )
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


# -- every wrong field gets a one-line error naming the file, the key and the expectation ----------------

BAD_SPECS = {
    "unknown top-level key": (
        spec_toml(top='entrypiont = "model.py:build"'),
        ["unknown key entrypiont (did you mean entrypoint?)", "expected one of entrypoint, weights"],
    ),
    "unknown input key": (
        spec_toml(inputs='[[inputs]]\nname = "x"\ndtype = "float32"\nshpae = [1, "seq"]'),
        ["unknown key inputs[0].shpae (did you mean inputs[0].shape?)", "name, dtype, shape, low, high"],
    ),
    "unknown dim key": (
        spec_toml(dims="[dims]\nseq = { min = 1, mx = 16 }"),
        ["unknown key dims.seq.mx (did you mean dims.seq.max?)", "expected one of min, max, opt, batch"],
    ),
    "unknown validation key": (
        spec_toml(tail="[validation]\nrtoll = 0.1"),
        ["unknown key validation.rtoll (did you mean validation.rtol?)"],
    ),
    "top-level key written after a table": (
        spec_toml(inputs=f'{X_INPUT}\nmethod = "trace"'),
        ["unknown key inputs[0].method", "top-level keys must come before the first [table] header"],
    ),
    "wrong dtype name": (
        spec_toml(inputs='[[inputs]]\nname = "x"\ndtype = "flaot32"\nshape = [1, "seq"]'),
        [
            'inputs[0].dtype = "flaot32" is not a torch dtype (did you mean float32?)',
            "expected one of float32, float16, bfloat16, float64, int64",
            "(or int, float, bool for a scalar input)",
        ],
    ),
    "scalar input with a tensor dtype": (
        spec_toml(inputs=f'{X_INPUT}\n\n[[inputs]]\nname = "n"\ndtype = "float32"'),
        [
            'inputs[1].dtype = "float32" is a tensor dtype but the input has no shape',
            "expected int, float, bool for a scalar input, or a shape such as [1, 8]",
        ],
    ),
    "shape with a negative size": (
        spec_toml(inputs='[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [-3, "seq"]'),
        ["inputs[0].shape[0] = -3 is a negative size", "expected a positive integer or the name of a dim"],
    ),
    "shape with a zero size": (
        spec_toml(inputs='[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [0, "seq"]'),
        ["inputs[0].shape[0] = 0 is a zero size"],
    ),
    "shape that is not an array": (
        spec_toml(inputs='[[inputs]]\nname = "x"\ndtype = "float32"\nshape = "1, seq"'),
        ['inputs[0].shape = "1, seq" is a string', "expected an array of positive sizes and dim names"],
    ),
    "shape with a float size": (
        spec_toml(inputs='[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [1.5, "seq"]'),
        ["inputs[0].shape[0] = 1.5 is a number; expected a positive integer"],
    ),
    "dim used in a shape but not declared": (
        spec_toml(inputs='[[inputs]]\nname = "x"\ndtype = "float32"\nshape = ["batch", "seq"]'),
        [
            'inputs[0].shape[0] = "batch" names a dim that is not declared in [dims] (declared: seq)',
            "or add [dims] batch = { min = 1, max = 64 }",
        ],
    ),
    "misspelt dim in a shape": (
        spec_toml(inputs='[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [1, "sqe"]'),
        ['inputs[0].shape[1] = "sqe" names a dim that is not declared', "(did you mean seq?)"],
    ),
    "declared dim that no shape uses": (
        spec_toml(dims="[dims]\nseq = { min = 1, max = 16 }\nbatch = { min = 1, max = 8 }"),
        ["dims.batch = { min = 1, max = 8 } is declared but no input shape uses it"],
    ),
    "bool where an int is expected": (
        spec_toml(dims="[dims]\nseq = { min = true, max = 16 }"),
        ["dims.seq.min = true is a boolean; expected an integer >= 1"],
    ),
    "bool samples": (
        spec_toml(tail="[validation]\nsamples = true"),
        ["validation.samples = true is a boolean; expected an integer >= 1"],
    ),
    "min greater than max": (
        spec_toml(dims="[dims]\nseq = { min = 32, max = 16 }"),
        ["dims.seq.min = 32 is greater than max = 16; expected 1 <= min <= opt <= max"],
    ),
    "min below one": (
        spec_toml(dims="[dims]\nseq = { min = 0, max = 16 }"),
        ["dims.seq.min = 0 is less than 1; expected an integer >= 1"],
    ),
    "opt outside min and max": (
        spec_toml(dims="[dims]\nseq = { min = 1, max = 16, opt = 99 }"),
        ["dims.seq.opt = 99 is outside min = 1, max = 16; expected min <= opt <= max"],
    ),
    "missing max": (
        spec_toml(dims="[dims]\nseq = { min = 1 }"),
        ["dims.seq.max is missing; expected an integer >= 1"],
    ),
    "two batch dims": (
        spec_toml(
            inputs='[[inputs]]\nname = "x"\ndtype = "float32"\nshape = ["b", "seq"]',
            dims="[dims]\nb = { min = 1, max = 8, batch = true }\nseq = { min = 1, max = 16, batch = true }",
        ),
        ["dims.seq.batch = true but dims.b is already the batch dim; expected at most one batch dim"],
    ),
    "dims that is not a table": (
        spec_toml(top='entrypoint = "model.py:build"\ndims = 3', dims=""),
        ["dims = 3 is an integer; expected a [dims] table"],
    ),
    "no inputs": (
        spec_toml(inputs="", dims=""),
        ["inputs is missing; expected at least one [[inputs]] table"],
    ),
    "empty inputs": (
        spec_toml(top="inputs = []", inputs="", dims=""),
        ["inputs = [] is empty; expected at least one [[inputs]] table"],
    ),
    "inputs that are not tables": (
        spec_toml(top='inputs = ["x"]', inputs="", dims=""),
        ['inputs = ["x"] is not an array of tables'],
    ),
    "input name that is not an identifier": (
        spec_toml(inputs='[[inputs]]\nname = "my-x"\ndtype = "float32"\nshape = [1, "seq"]'),
        ['inputs[0].name = "my-x" is not a Python identifier'],
    ),
    "duplicate input names": (
        spec_toml(inputs=f"{X_INPUT}\n\n{X_INPUT}"),
        ['inputs[1].name = "x" is taken by an earlier input; expected unique names'],
    ),
    "input without a dtype": (
        spec_toml(inputs='[[inputs]]\nname = "x"\nshape = [1, "seq"]'),
        ['inputs[0].dtype is missing; expected a torch dtype name such as "float32"'],
    ),
    "low not below high": (
        spec_toml(inputs=f"{X_INPUT}\nlow = 5\nhigh = 5"),
        ["inputs[0].high = 5 is not greater than low = 5; expected low < high"],
    ),
    "low that is not a number": (
        spec_toml(inputs=f'{X_INPUT}\nlow = "0"'),
        ['inputs[0].low = "0" is a string; expected a finite number'],
    ),
    "unknown method": (
        spec_toml(top='method = "tarce"'),
        ['method = "tarce" is not a conversion method (did you mean trace?)', "one of auto, trace, script"],
    ),
    "unknown device": (
        spec_toml(top='device = "gpu"'),
        ['device = "gpu" is not a device', "expected one of cpu, cuda"],
    ),
    "optimize that is not a bool": (
        spec_toml(top='optimize = "yes"'),
        ['optimize = "yes" is a string; expected true or false'],
    ),
    "entrypoint without a callable": (
        spec_toml(top='entrypoint = "model.py"'),
        ['entrypoint = "model.py" is not of the form module:callable', '"file.py:callable" or'],
    ),
    "entrypoint with a bad callable": (
        spec_toml(top='entrypoint = "model.py:1build"'),
        ["names a callable '1build' that is not an identifier"],
    ),
    "entrypoint file that does not exist": (
        spec_toml(top='entrypoint = "net.py:build"'),
        ['entrypoint = "net.py:build" names a file that does not exist: looked for {dir}/net.py'],
    ),
    "entrypoint module that does not exist": (
        spec_toml(top='entrypoint = "pkg.net:build"'),
        ["looked for {dir}/pkg/net.py or {dir}/pkg/net/__init__.py"],
    ),
    "entrypoint escaping the directory": (
        spec_toml(top='entrypoint = "../model.py:build"'),
        ['entrypoint = "../model.py:build" escapes the model directory'],
    ),
    "weights file missing": (
        spec_toml(top='weights = "w.safetensors"'),
        [
            'weights = "w.safetensors" names a file that does not exist: looked for {dir}/w.safetensors',
            "expected an existing .safetensors or .pt or .pth file inside the model directory",
        ],
    ),
    "weights of the wrong type": (
        spec_toml(top='weights = "model.pkl"'),
        ['weights = "model.pkl" has the wrong file type; expected an existing .safetensors or .pt or .pth'],
    ),
    "weights escaping the directory": (
        spec_toml(top='weights = "../w.safetensors"'),
        ['weights = "../w.safetensors" escapes the model directory', "copy the file in"],
    ),
    "weights given as an absolute path": (
        spec_toml(top='weights = "/tmp/w.safetensors"'),
        ['weights = "/tmp/w.safetensors" is not a relative path', "relative to the model directory"],
    ),
    "negative rtol": (
        spec_toml(tail="[validation]\nrtol = -0.1"),
        ["validation.rtol = -0.1 is less than 0; expected a finite number >= 0"],
    ),
    "nan atol": (
        spec_toml(tail="[validation]\natol = nan"),
        ["validation.atol = nan is not finite"],
    ),
    "zero samples": (
        spec_toml(tail="[validation]\nsamples = 0"),
        ["validation.samples = 0 is less than 1"],
    ),
    "recorded inputs missing": (
        spec_toml(tail='[validation]\ninputs = "rec.safetensors"'),
        [
            'validation.inputs = "rec.safetensors" names a file that does not exist',
            "an existing .safetensors",
        ],
    ),
    "recorded inputs of the wrong type": (
        spec_toml(tail='[validation]\ninputs = "rec.pt"'),
        ['validation.inputs = "rec.pt" has the wrong file type; expected an existing .safetensors file'],
    ),
}


@pytest.mark.parametrize(("toml", "fragments"), BAD_SPECS.values(), ids=BAD_SPECS.keys())
def test_a_bad_spec_gets_a_one_line_error_naming_file_key_and_expectation(
    tmp_path: Path, toml: str, fragments: list[str]
) -> None:
    (tmp_path / "w.safetensors").write_bytes(b"outside")  # the target of the escaping paths exists
    directory = make_model_dir(tmp_path, toml)
    message = spec_error(directory)
    assert message.startswith(f"{directory / 'regctl.toml'}: ")
    for fragment in fragments:
        assert fragment.replace("{dir}", str(directory)) in message


def test_a_weights_symlink_to_a_file_outside_the_directory_is_rejected(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path, spec_toml(top='weights = "w.safetensors"'))
    (directory / "w.safetensors").symlink_to("/etc/passwd")
    message = spec_error(directory)
    assert 'weights = "w.safetensors" resolves to /etc/passwd, outside the model directory' in message
    assert "instead of linking to it" in message


def test_an_entrypoint_symlinked_outside_the_directory_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.py").write_text(MODEL_PY)
    directory = make_model_dir(tmp_path)
    (directory / "model.py").unlink()
    (directory / "model.py").symlink_to(tmp_path / "elsewhere.py")
    assert f"resolves to {tmp_path.resolve() / 'elsewhere.py'}, outside the model directory" in spec_error(
        directory
    )
