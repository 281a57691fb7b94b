"""regctl.register_module: an in-memory module from a training script, registered without pickling code."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from regctl.client import WaitTimeout
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
    lines: list[str] = []
    version = register_module(
        "net",
        model,
        inputs=INPUTS,
        dims=DIMS,
        init={"width": 4},
        tags={"run": "7"},
        client=client,
        wait=True,
        progress=lines.append,
    )
    assert version.status == "ready", [(j.kind, j.error) for j in version.jobs]
    assert not version.unchanged
    # What it did, step by step, in the words `regctl register --wait` uses.
    assert lines[0].startswith("bundled Net: 3 files from ") and "weights " in lines[0]
    assert lines[1].startswith("registered net:1 (registered) in ")
    assert any(line.startswith("net:1 convert job ") and "[running]" in line for line in lines)
    assert lines[-1] == "net:1 is ready"
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

    # The same module again: the same bytes, so nothing new is registered and nothing converts again.
    lines: list[str] = []
    same = {"inputs": INPUTS, "dims": DIMS, "init": {"width": 4}, "client": client}
    again = register_module("net", model, wait=True, progress=lines.append, **same)
    assert again.unchanged and again.ref == "net:1" and again.status == "ready"
    assert lines[-1] == "unchanged: identical to net:1 (ready); nothing was registered"
    assert [v.version for v in client.model("net").versions] == [1]
    forced = register_module("net", model, convert=False, new_version=True, **same)
    assert not forced.unchanged and forced.ref == "net:2"
    assert (forced.source_sha256, forced.weights_sha256) == (version.source_sha256, version.weights_sha256)


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


def test_a_relative_module_file_is_never_resolved_against_the_current_folder(
    project, client: LocalClient, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import torch.classes  # noqa: F401  (its __file__ is the relative "_classes.py")

    root = Path(project.__file__).parent
    monkeypatch.chdir(root)  # where a relative "_classes.py" would resolve to a file of the project
    (root / "_classes.py").write_text("raise SystemExit('never bundled: nothing imported it from here')\n")
    monkeypatch.setitem(sys.modules, "odd_module", SimpleNamespace(__file__="helpers/not_imported.py"))
    monkeypatch.setitem(sys.modules, "odd_value", SimpleNamespace(__file__=42))
    version = register_module("net", project.Net(), inputs=INPUTS, dims=DIMS, client=client, convert=False)
    assert version.status == "registered"
    assert "_classes.py" not in _members(client, "net:1")


def test_an_error_while_bundling_registers_nothing(
    project, client: LocalClient, sqlite_settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    class Broken(project.Net):
        def state_dict(self, *args: object, **kwargs: object) -> dict:  # type: ignore[override]
            raise RuntimeError("the GPU fell off the bus")

    Broken.__module__, Broken.__qualname__ = project.__name__, "Net"
    with pytest.raises(RuntimeError, match="fell off the bus"):
        register_module("net", Broken(), inputs=INPUTS, dims=DIMS, client=client)
    assert client.models() == []


def test_an_interrupted_wait_leaves_the_job_queued_and_running_again_finishes_it(
    project, client: LocalClient
) -> None:  # type: ignore[no-untyped-def]
    model = project.Net(width=4).eval()
    kwargs = {"inputs": INPUTS, "dims": DIMS, "init": {"width": 4}, "client": client, "progress": False}
    with pytest.raises(WaitTimeout):
        register_module("net", model, wait=True, timeout=0.01, **kwargs)
    # The job this process ran is back in the queue, not left `running` with nobody running it.
    [job] = client.version("net:1").jobs
    assert job.state == "queued", job
    # Running the script again registers nothing new: it finishes that version's job.
    again = register_module("net", model, **kwargs)
    assert again.unchanged and again.ref == "net:1" and again.status == "ready"
    assert [v.version for v in client.model("net").versions] == [1]


def test_an_identical_version_whose_job_was_cancelled_says_how_to_try_again(
    project, client: LocalClient
) -> None:  # type: ignore[no-untyped-def]
    kwargs = {"inputs": INPUTS, "dims": DIMS, "client": client, "progress": False}
    with pytest.raises(WaitTimeout):
        register_module("double", project.double, wait=True, timeout=0.0, **kwargs)
    [job] = client.version("double:1").jobs
    client.cancel(job.id)
    lines: list[str] = []
    again = register_module("double", project.double, **{**kwargs, "progress": lines.append})
    assert again.unchanged and again.ref == "double:1" and again.status != "ready"
    assert lines[-1].startswith("unchanged: identical to double:1")
    assert lines[-1].endswith(
        f"its convert job {job.id} cancelled: run it again with client.retry({job.id}) "
        f"('regctl jobs retry {job.id}'), or pass new_version=True"
    )


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train-and-register"
GUARD = 'if __name__ == "__main__":\n    sys.exit(main())\n'


def _run_example(script: Path, home: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`python train.py` from the script's own folder, on the embedded default under `home`."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "REGCTL_HOME": str(home),
        "PYTHONDONTWRITEBYTECODE": "1",  # leave no __pycache__ in the repository's example folder
        # the LibTorch runner built once per test session (tests/conftest.py), not once per run
        "REGCTL_LIBTORCH_CACHE": os.environ["REGCTL_LIBTORCH_CACHE"],
    }
    return subprocess.run(
        [sys.executable, script.name], cwd=script.parent, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_training_example_registers_from_its_own_folder_with_and_without_a_main_guard(
    tmp_path: Path,
) -> None:
    unguarded = tmp_path / "unguarded"
    unguarded.mkdir()
    for name in ("tiny_net.py", "layers.py"):
        (unguarded / name).write_text((EXAMPLE / name).read_text())
    source = (EXAMPLE / "train.py").read_text()
    assert source.endswith(GUARD)
    (unguarded / "train.py").write_text(source.removesuffix(GUARD) + "sys.exit(main())\n")

    for script, home in (
        (EXAMPLE / "train.py", tmp_path / "guarded"),
        (unguarded / "train.py", tmp_path / "bare"),
    ):
        done = _run_example(script, home, tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.startswith("tiny-net:1 is ready"), done.stdout
        # Trained once: the job's process never ran the script again.
        assert done.stderr.count("trained 50 steps") == 1, done.stderr[-3000:]
        assert "regctl: bundled TinyNet: 2 files from " in done.stderr
        assert "regctl: tiny-net:1 is ready" in done.stderr
        local = LocalClient(Settings.from_env({}, home=home))
        assert [(v.version, v.status) for v in local.model("tiny-net").versions] == [(1, "ready")]
        assert _members(local, "tiny-net:1") == ["layers.py", "regctl.toml", "regctl_entry.py", "tiny_net.py"]

    # Running it again trains the same weights: nothing new is registered.
    done = _run_example(unguarded / "train.py", tmp_path / "bare", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "regctl: unchanged: identical to tiny-net:1 (ready)" in done.stderr
    assert done.stdout.startswith("tiny-net:1 is ready")
    local = LocalClient(Settings.from_env({}, home=tmp_path / "bare"))
    assert [v.version for v in local.model("tiny-net").versions] == [1]
