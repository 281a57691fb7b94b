"""`formats = ["torchscript", "executorch", "onnx"]` end to end on the embedded default: real convert
jobs in the sandbox, a sandboxed stage per format building it from the proved exported program and
proving it on the whole battery in executorch.runtime and onnxruntime, fetch, and a fresh process
that runs the fetched files without the model code.

One conversion per example, shared by every test here (ExecuTorch's lowering of the transformer
alone takes 15-20 s on two cores). The refusals and the hostile program are in
tests/engine/test_formats.py and tests/test_hostile_leftovers.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import write_model_dir
from tests.embedded_registry import Registry, embedded_registry
from tests.examples_in_range import in_range

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BUILT = ("executorch", "onnx")


def _registry(home: Path) -> Registry:
    return embedded_registry(home)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """linear and tiny-transformer registered once each with both formats, and converted."""
    root = tmp_path_factory.mktemp("formats")
    reg = _registry(root / "home")
    for example in ("linear", "tiny-transformer"):  # features in range: tests/examples_in_range.py
        model_dir = in_range(example, root)
        done = reg.regctl("register", example, str(model_dir), "--format", "executorch,onnx", "--wait")
        assert done.returncode == 0, done.stderr[-3000:]
    return reg


@pytest.mark.parametrize("example", ["linear", "tiny-transformer"])
def test_each_format_is_proved_in_its_runtime_on_every_battery_input_and_stored(
    registry: Registry, example: str
) -> None:
    version = registry.show(f"{example}:1")
    assert version["status"] == "ready"
    assert version["spec"]["formats"] == ["torchscript", "executorch", "onnx"]
    report = version["summary"]["report"]
    stored = {a["kind"]: a for a in version["artifacts"]}
    battery = version["summary"]["battery_size"]
    for fmt, runtime in (("executorch", "executorch.runtime"), ("onnx", "onnxruntime.InferenceSession")):
        section = report[fmt]
        assert section["ok"] is True, section["error"]
        assert section["runtime"].startswith(runtime)
        assert len(section["cases"]) == battery and all(c["ok"] for c in section["cases"])
        assert section["build_s"] > 0 and section["latency_ms"] > 0 and section["size_bytes"] > 0
        # stored only as the bytes the stage proved
        assert stored[fmt]["sha256"] == section["sha256"] == report["proved"][fmt]
        assert stored[fmt]["size"] == section["size_bytes"]
        assert version["summary"][fmt] is True and version["summary"][f"{fmt}_error"] is None
        sandbox = report["sandbox"][fmt]
        assert sandbox["network"] and sandbox["mode"] in ("auto", "strict"), sandbox
    # the dynamic dims keep the spec's names in the ONNX model a deployer reads
    names = [d for d in report["onnx"]["io"]["inputs"][0]["shape"] if isinstance(d, str)]
    assert names == (["batch"] if example == "linear" else ["batch", "seq"])
    # a format asked for alone costs nothing more: no .pt2 is kept, as `exported` was not asked for
    assert "exported" not in stored and "aoti" not in stored


RUN_FETCHED = """
import sys

import numpy as np
import onnxruntime
import torch
from executorch.runtime import Runtime

pte, onnx_path, scripted_path, shape = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
assert not any("examples" in p for p in sys.path), "the model's code is on the path"
torch.manual_seed(7)
x = torch.randn(*[int(n) for n in shape.split(",")])
expected = torch.jit.load(scripted_path)(x)
method = Runtime.get().load_program(pte).load_method("forward")
from_pte = method.execute([x])[0]
session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
from_onnx = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
for name, got in (("pte", from_pte), ("onnx", from_onnx)):
    assert got.shape == expected.shape, (name, got.shape, expected.shape)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), (name, (got - expected).abs().max())
print("ok", tuple(expected.shape))
"""


@pytest.mark.parametrize(("example", "shape"), [("linear", "3,10"), ("tiny-transformer", "3,5,16")])
def test_the_fetched_files_run_in_a_fresh_process_without_the_model_code(
    registry: Registry, example: str, shape: str, tmp_path: Path
) -> None:
    paths = {}
    for fmt, name in (("executorch", "model.pte"), ("onnx", "model.onnx"), ("torchscript", "model.pt")):
        paths[fmt] = tmp_path / name
        done = registry.regctl("fetch", example, "--format", fmt, "-o", str(paths[fmt]), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["kind"] == fmt
    args = [str(paths["executorch"]), str(paths["onnx"]), str(paths["torchscript"]), shape]
    ran = subprocess.run(
        [sys.executable, "-I", "-c", RUN_FETCHED, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip().startswith("ok (3,")


def test_the_version_shows_each_format_and_its_proof(registry: Registry) -> None:
    shown = registry.regctl("versions", "show", "tiny-transformer:1")
    assert shown.returncode == 0, shown.stderr
    for line in ("executorch          True", "onnx                True"):
        assert line in shown.stdout


def test_a_model_torch_export_cannot_capture_gets_one_line_and_stays_ready(registry: Registry) -> None:
    done = registry.regctl(
        "register", "conditional", str(EXAMPLES / "conditional"), "--format", "onnx,executorch", "--wait"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    version = registry.show("conditional:1")
    assert version["status"] == "ready"
    assert [a["kind"] for a in version["artifacts"] if a["kind"] in ("torchscript", *BUILT)] == [
        "torchscript"
    ]
    report = version["summary"]["report"]
    for fmt, name in (("executorch", "ExecuTorch program"), ("onnx", "ONNX model")):
        error = report[fmt]["error"]
        assert error.startswith(f"not exportable, so no {name}: torch.export failed: "), error
        assert "\n" not in error and version["summary"][f"{fmt}_error"] == error
        assert fmt not in report["sandbox"], "a stage started for a program that does not exist"


EXACT_MODEL = """
import torch


def build() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 8))
"""
EXACT_SPEC = """
entrypoint = "model.py:build"
optimize = false

[[inputs]]
name = "x"
dtype = "float32"
shape = ["batch", 64]

[dims]
batch = { min = 1, max = 8 }

[validation]
rtol = 0.0
atol = 0.0
samples = 2
"""


def test_a_format_that_fails_its_proof_is_not_stored(registry: Registry, tmp_path: Path) -> None:
    # TorchScript and the exported program run eager's own kernels and match it bit for bit; ONNX
    # Runtime's and XNNPACK's kernels round differently, which a tolerance of zero does not allow.
    directory = write_model_dir(tmp_path / "exact", spec=EXACT_SPEC, files={"model.py": EXACT_MODEL})
    done = registry.regctl("register", "exact", str(directory), "--format", "onnx,executorch", "--wait")
    assert done.returncode == 0, done.stderr[-3000:]
    version = registry.show("exact:1")
    assert version["status"] == "ready"
    report = version["summary"]["report"]
    assert report["export"]["ok"] is True, report["export"]["error"]
    kinds = [a["kind"] for a in version["artifacts"]]
    for fmt, name in (("executorch", "ExecuTorch program"), ("onnx", "ONNX model")):
        section = report[fmt]
        assert section["ok"] is False and fmt not in kinds and fmt not in (report.get("proved") or {})
        assert section["error"].startswith(f"the {name} differs from eager on input "), section["error"]
        assert section["failed_input"] == section["cases"][-1]["label"]
        assert section["cases"][-1]["ok"] is False and section["cases"][-1]["tolerance_used"] > 1


BLOCKER = """
import sys


class _Without:
    # As on a worker installed without the extra: no finder finds the runtime (find_spec is None).
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "onnxruntime":
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.finder, attr)


sys.meta_path[:] = [_Without(finder) for finder in sys.meta_path]
"""


def test_a_worker_without_the_extra_records_why_and_the_version_stays_ready(
    registry: Registry, tmp_path: Path
) -> None:
    blocker = tmp_path / "without-onnxruntime"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER))
    lacking = {"PYTHONPATH": str(blocker)}
    sandbox = registry.regctl("sandbox", env=lacking)
    assert "NOT BUILT: onnx: this worker lacks onnxruntime (pip install 'regctl[onnx]')" in sandbox.stdout
    directory = EXAMPLES / "linear"
    done = registry.regctl("register", "lacking", str(directory), "--format", "onnx", "--wait", env=lacking)
    assert done.returncode == 0, done.stderr[-3000:]
    version = registry.show("lacking:1")
    assert version["status"] == "ready"
    assert "onnx" not in [a["kind"] for a in version["artifacts"]]
    assert (
        version["summary"]["onnx_error"]
        == "not built: this worker lacks onnxruntime (pip install 'regctl[onnx]')"
    )


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (
            ("--format", "tflite"),
            {},
            "--format 'tflite' names 'tflite', which is not one of torchscript, exported, aoti, "
            "executorch, onnx",
        ),
        (("--format", "executorch,pte"), {}, "names 'pte', which is not one of"),
        ((), {"REGCTL_FORMATS": "coreml"}, "REGCTL_FORMATS='coreml'"),
    ],
)
def test_bad_format_names_exit_2_and_write_nothing(
    args: tuple[str, ...], env: dict[str, str], said: str, tmp_path: Path
) -> None:
    reg = _registry(tmp_path / "home")
    done = reg.regctl("register", "lin", str(EXAMPLES / "linear"), *args, env=env)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1
    listed = reg.regctl("models", "list", "--json")
    assert json.loads(listed.stdout) == []
    blobs = [p for p in (tmp_path / "home").rglob("*") if p.is_file() and "artifacts" in p.parts]
    assert blobs == []


def test_the_api_and_the_python_client_serve_both_formats(registry: Registry, tmp_path: Path) -> None:
    from regctl.local import LocalClient
    from regctl.registry.settings import Settings
    from regctl.remote import Client
    from tests.api_server import ApiServer

    settings = Settings.from_env({}, home=registry.home)
    secret = LocalClient(settings).create_token("deployer", "reader").secret
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(tmp_path), **settings.to_env()}
    server = ApiServer.start({k: v for k, v in env.items() if v != ""}, tmp_path)
    try:
        version = registry.show("tiny-transformer:1")
        proved = version["summary"]["report"]["proved"]
        with Client(server.url, token=secret) as client:
            for fmt, suffix in (("executorch", ".pte"), ("onnx", ".onnx")):
                fetched = client.fetch("tiny-transformer", tmp_path / f"model{suffix}", kind=fmt)
                assert fetched.artifact.sha256 == proved[fmt]
                assert (tmp_path / f"model{suffix}").stat().st_size == fetched.artifact.size
        import httpx

        answer = httpx.get(
            f"{server.url}/api/v1/versions/tiny-transformer:1/artifacts/onnx",
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert answer.status_code == 200 and answer.content == (tmp_path / "model.onnx").read_bytes()
        assert "tiny-transformer-1.onnx" in answer.headers["content-disposition"]
        refused = httpx.get(
            f"{server.url}/api/v1/versions/tiny-transformer:1/artifacts/tflite",
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert refused.status_code == 422
    finally:
        server.stop()
