"""`regctl spec schema`: a JSON Schema of regctl.toml that accepts what regctl accepts, for editors."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from regctl.cli.main import cli
from regctl.registry.spec import json_schema
from tests.test_spec import DESIGN_EXAMPLE, X_INPUT, spec_toml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _errors(validator: Draft202012Validator, toml: str) -> list[str]:
    return [error.message for error in validator.iter_errors(tomllib.loads(toml))]


def test_the_command_prints_the_schema_as_json() -> None:
    done = CliRunner().invoke(cli, ["spec", "schema"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    schema = json.loads(done.stdout)
    assert schema == json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "regctl.toml" and schema["required"] == ["inputs"]


def test_the_command_writes_the_schema_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "regctl.schema.json"
    done = CliRunner().invoke(cli, ["spec", "schema", "-o", str(target)], catch_exceptions=False)
    assert done.exit_code == 0 and done.stdout == ""
    assert json.loads(target.read_text()) == json_schema() and str(target) in done.stderr


def test_every_key_has_a_description_for_the_editor_to_show() -> None:
    schema = json_schema()
    tables = [schema, *schema["$defs"].values()]
    undescribed = [
        f"{table['title']}.{key}"
        for table in tables
        for key, field in table["properties"].items()
        if not field.get("description")
    ]
    assert undescribed == [] and all(table.get("description") for table in tables)


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*/regctl.toml")), ids=lambda p: p.parent.name)
def test_the_examples_are_valid(validator: Draft202012Validator, example: Path) -> None:
    assert _errors(validator, example.read_text()) == []


@pytest.mark.parametrize(
    "toml",
    [
        DESIGN_EXAMPLE,
        spec_toml(),
        '[[inputs]]\nname = "x"\ndtype = "torch.half"\nshape = [2, 3]\n',
        spec_toml(top='formats = ["torchscript", "aoti"]\nmethod = "script"\ndevice = "cuda"'),
        spec_toml(dims="[dims]\nseq = { min = 1, max = 16, opt = 4, batch = true }"),
    ],
    ids=["design", "minimal-with-dims", "torch-prefixed-dtype", "formats", "batch-dim"],
)
def test_specs_regctl_accepts_are_valid(validator: Draft202012Validator, toml: str) -> None:
    assert _errors(validator, toml) == []


@pytest.mark.parametrize(
    "toml",
    [
        spec_toml(top='entrypiont = "model.py:build"'),
        spec_toml(top='method = "tarce"'),
        spec_toml(top='device = "gpu"'),
        spec_toml(top='optimize = "yes"'),
        spec_toml(top='formats = ["tflite"]'),
        spec_toml(top='formats = ["onnx"]'),  # leaves out torchscript
        spec_toml(inputs="", dims=""),
        spec_toml(top="inputs = []", inputs="", dims=""),
        spec_toml(inputs='[[inputs]]\nname = "x"\ndtype = "flaot32"\nshape = [1, "seq"]'),
        spec_toml(inputs='[[inputs]]\nname = "my-x"\ndtype = "float32"\nshape = [1, "seq"]'),
        spec_toml(inputs='[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [0, "seq"]'),
        spec_toml(inputs=f'{X_INPUT}\nlow = "0"'),
        spec_toml(dims="[dims]\nseq = { min = 0, max = 16 }"),
        spec_toml(dims="[dims]\nseq = { min = 1 }"),
        spec_toml(dims="[dims]\nseq = { min = 1, mx = 16 }"),
        spec_toml(tail="[validation]\nsamples = 0"),
        spec_toml(tail="[validation]\nrtol = -0.1"),
        spec_toml(tail="[validation]\nrtoll = 0.1"),
    ],
    ids=[
        "unknown-key",
        "method",
        "device",
        "optimize",
        "format",
        "format-without-torchscript",
        "no-inputs",
        "empty-inputs",
        "dtype",
        "input-name",
        "zero-size",
        "low-string",
        "min-zero",
        "no-max",
        "unknown-dim-key",
        "zero-samples",
        "negative-rtol",
        "unknown-validation-key",
    ],
)
def test_specs_regctl_refuses_are_invalid(validator: Draft202012Validator, toml: str) -> None:
    assert _errors(validator, toml) != []


def test_the_cli_starts_without_pydantic_or_the_spec_models() -> None:
    # The schema command imports them when it runs: at start-up they cost ~100 ms of every command.
    code = (
        "import sys, regctl.cli.main\n"
        "print(sorted(m for m in ('pydantic', 'regctl.registry.spec') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
