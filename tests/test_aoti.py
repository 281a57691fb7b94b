"""`formats = ["torchscript", "aoti"]` end to end on the embedded default: a real convert job in the
sandbox, a third sandboxed process compiling and proving the package, fetch, and the refusals.

A model torch.export cannot capture keeps its TorchScript artifact and says why there is no package.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from regctl.cli.app import cli
from regctl.cli.main import main as _main  # noqa: F401  (registers every command)
from regctl.registry.settings import Settings
from tests.factories import linear_model

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def embedded(sqlite_settings: Settings):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str, **env: str):  # type: ignore[no-untyped-def]
        base = {"REGCTL_HOME": str(sqlite_settings.home), "REGCTL_DATABASE_URL": "", "REGCTL_BROKER_URL": ""}
        base |= {"REGCTL_ARTIFACT_STORE": "", "REGCTL_FORMATS": ""}
        return runner.invoke(cli, list(args), env={**base, **env}, catch_exceptions=False)

    return invoke


def test_format_aoti_builds_a_package_proved_in_python_and_cpp_that_fetch_returns(
    embedded, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    directory = linear_model(tmp_path / "linear")
    done = embedded("register", "lin", str(directory), "--format", "aoti", "--wait")
    assert done.exit_code == 0, done.output
    version = json.loads(embedded("versions", "show", "lin:1", "--json").stdout)
    assert version["spec"]["formats"] == ["torchscript", "aoti"]
    aoti = version["summary"]["report"]["aoti"]
    assert aoti["ok"] is True, aoti["error"]
    assert aoti["libtorch"]["ran"] and aoti["libtorch"]["ok"], aoti["libtorch"]
    assert len(aoti["cases"]) == version["summary"]["battery_size"]
    assert aoti["compile_s"] > 0 and aoti["latency_ms"] > 0
    package = next(a for a in version["artifacts"] if a["kind"] == "aoti")
    assert package["sha256"] == aoti["sha256"] == version["summary"]["report"]["proved"]["aoti"]
    sandbox = version["summary"]["report"]["sandbox"]["aoti"]
    assert sandbox["network"] and sandbox["mode"] in ("auto", "strict")

    out = tmp_path / "deploy" / "lin.aoti.pt2"
    fetched = embedded("fetch", "lin", "--format", "aoti", "-o", str(out), "--create-dirs", "--json")
    assert fetched.exit_code == 0, fetched.output
    assert json.loads(fetched.stdout)["sha256"] == package["sha256"]
    # A fresh interpreter that never sees the model code runs the package at a batch it never saw.
    check = (
        "import sys, torch, torch._inductor\n"
        "run = torch._inductor.aoti_load_package(sys.argv[1])\n"
        "torch.manual_seed(0)\n"
        "eager = torch.nn.Linear(10, 2)\n"
        "x = torch.randn(3, 10)\n"
        "assert torch.allclose(run(x), eager(x), atol=1e-5), 'package disagrees with eager'\n"
        "print('ok')\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", check, str(out)], cwd=out.parent, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0 and ran.stdout.strip() == "ok", ran.stderr[-2000:]

    # Triton's PyTorch backend loads TorchScript: export-triton writes that and says so.
    repo = tmp_path / "triton"
    exported = embedded("export-triton", "lin", "--repo", str(repo))
    assert exported.exit_code == 0, exported.output
    assert "exported the TorchScript artifact only" in exported.stderr
    assert "regctl fetch lin:1 --format aoti" in exported.stderr
    assert sorted(p.name for p in (repo / "lin" / "1").iterdir()) == ["model.pt"]


@pytest.mark.parametrize("example", ["conditional", "varlen-sequence"])
def test_a_model_torch_export_cannot_capture_stays_ready_and_says_why_there_is_no_package(
    embedded, example: str
) -> None:  # type: ignore[no-untyped-def]
    done = embedded("register", example, str(EXAMPLES / example), "--format", "torchscript,aoti", "--wait")
    assert done.exit_code == 0, done.output
    version = json.loads(embedded("versions", "show", f"{example}:1", "--json").stdout)
    assert version["status"] == "ready"
    assert [a["kind"] for a in version["artifacts"] if a["kind"] in ("torchscript", "aoti")] == [
        "torchscript"
    ]
    aoti = version["summary"]["report"]["aoti"]
    assert aoti["requested"] and not aoti["ok"]
    assert aoti["error"].startswith("not exportable, so no AOTInductor package: torch.export failed: ")
    assert "\n" not in aoti["error"]
    assert version["summary"]["aoti_error"] == aoti["error"]
    shown = embedded("versions", "show", f"{example}:1")
    assert "not exportable" in shown.stdout


def test_bad_formats_are_refused_before_anything_is_written(embedded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    directory = linear_model(tmp_path / "linear")
    done = embedded("register", "lin", str(directory), "--format", "tensorrt")
    assert done.exit_code == 2
    assert "--format 'tensorrt' names 'tensorrt', which is not one of torchscript, exported," in done.stderr
    spec = directory / "regctl.toml"
    spec.write_text(spec.read_text().replace('device = "cpu"', 'device = "cpu"\nformats = ["aoti"]'))
    done = embedded("register", "lin", str(directory))
    assert done.exit_code == 2
    assert 'formats = ["aoti"] leaves out torchscript' in done.stderr
    done = embedded("register", "lin", str(directory), REGCTL_FORMATS="tensorrt")
    assert done.exit_code == 2 and "REGCTL_FORMATS='tensorrt'" in done.stderr
    assert json.loads(embedded("models", "list", "--json").stdout) == []


def test_the_registry_default_and_the_spec_decide_when_no_format_is_given(embedded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    directory = linear_model(tmp_path / "linear")
    done = embedded("register", "lin", str(directory), "--no-convert", REGCTL_FORMATS="aoti")
    assert done.exit_code == 0, done.output
    done = embedded("register", "lin", str(directory), "--no-convert")
    assert done.exit_code == 0, done.output
    spec = directory / "regctl.toml"
    spec.write_text(
        spec.read_text().replace('device = "cpu"', 'device = "cpu"\nformats = ["torchscript", "aoti"]')
    )
    done = embedded("register", "lin", str(directory), "--no-convert")
    assert done.exit_code == 0, done.output
    formats = [
        json.loads(embedded("versions", "show", f"lin:{v}", "--json").stdout)["spec"]["formats"]
        for v in (1, 2, 3)
    ]
    assert formats == [["torchscript", "aoti"], ["torchscript"], ["torchscript", "aoti"]]
