"""Registering content equal to the newest version's says so and creates nothing, unless asked to.

Through every front door: the CLI (direct, and remote against a real `regctl serve`), the Python
clients and the HTTP API. Real SQLite, a real server process; conversions only where a job must run.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from regctl.local import LocalClient
from regctl.registry.bundle import build_bundle
from regctl.registry.entities import RegisteredVersion
from regctl.registry.settings import Settings
from regctl.registry.spec import prepare_spec
from regctl.remote import Client
from tests.api_server import REGCTL, ApiServer
from tests.conftest import direct_cli
from tests.factories import linear_model


def _versions(client: LocalClient, name: str) -> list[int]:
    return sorted(v.version for v in client.model(name).versions)


def test_the_cli_says_unchanged_and_creates_nothing_unless_asked(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    directory = linear_model(tmp_path / "linear")
    first = direct_cli(sqlite_settings, "register", "lin", str(directory), "--no-convert")
    assert first.exit_code == 0 and "registered lin:1 (registered)" in first.stdout, first.output

    again = direct_cli(sqlite_settings, "register", "lin", str(directory), "--no-convert")
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("unchanged: identical to lin:1 (registered)")
    assert "regctl submit lin:1 --job convert" in again.stdout  # what to do instead

    shown = direct_cli(sqlite_settings, "register", "lin", str(directory), "--no-convert", "--json")
    document = json.loads(shown.stdout)
    assert shown.exit_code == 0 and document["unchanged"] is True and document["version"] == 1

    local = LocalClient(sqlite_settings)
    assert _versions(local, "lin") == [1]
    audit = [e.action for e in local.audit(model="lin")]
    assert audit.count("version.register") == 1  # nothing recorded for the no-ops either

    forced = direct_cli(sqlite_settings, "register", "lin", str(directory), "--no-convert", "--new-version")
    assert forced.exit_code == 0 and "registered lin:2 (registered)" in forced.stdout, forced.output
    fresh = direct_cli(sqlite_settings, "register", "lin", str(directory), "--no-convert", "--json")
    assert json.loads(fresh.stdout)["version"] == 2 and json.loads(fresh.stdout)["unchanged"] is True

    # Any change of content is news: the spec (another method), the code, the weights.
    traced = direct_cli(
        sqlite_settings, "register", "lin", str(directory), "--no-convert", "--method", "trace"
    )
    assert "registered lin:3" in traced.stdout, traced.output
    (directory / "helper.py").write_text("SCALE = 2\n")
    changed = direct_cli(sqlite_settings, "register", "lin", str(directory), "--no-convert", "--json")
    assert json.loads(changed.stdout)["unchanged"] is False and json.loads(changed.stdout)["version"] == 4
    assert _versions(local, "lin") == [1, 2, 3, 4]
    same = direct_cli(sqlite_settings, "register", "lin", str(directory), "--no-convert")
    assert same.stdout.startswith("unchanged: identical to lin:4"), same.output

    # An archived newest version does not count: its owner hid it.
    assert direct_cli(sqlite_settings, "versions", "archive", "lin:4").exit_code == 0
    back = direct_cli(sqlite_settings, "register", "lin", str(directory), "--no-convert", "--json")
    assert json.loads(back.stdout)["version"] == 5


def test_wait_on_an_unchanged_version_follows_its_jobs_and_exits_with_its_outcome(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    local = LocalClient(sqlite_settings)
    directory = linear_model(tmp_path / "linear")
    # Registered by a process that stopped before running its job (a Ctrl-C): the job waits queued.
    queued = local.register("lin", directory).jobs[0]
    assert queued.state == "queued"

    again = direct_cli(sqlite_settings, "register", "lin", str(directory), "--wait")
    assert again.exit_code == 0, again.output
    assert "unchanged: identical to lin:1 (registered)" in again.stderr
    assert "lin:1 is ready" in again.stderr  # the queued job ran here, as a new registration's would
    assert _versions(local, "lin") == [1] and local.version("lin:1").status == "ready"

    ready = direct_cli(sqlite_settings, "register", "lin", str(directory), "--wait")
    assert ready.exit_code == 0 and "unchanged: identical to lin:1 (ready)" in ready.stderr

    # A version whose job was cancelled: --wait exits 1 with how to run it again; without it, 0.
    other = linear_model(tmp_path / "other", forward="x = x * 1")
    job = local.register("other", other).jobs[0]
    local.cancel(job.id)
    waited = direct_cli(sqlite_settings, "register", "other", str(other), "--wait")
    assert waited.exit_code == 1, waited.output
    assert f"run 'regctl jobs retry {job.id}' or register with --new-version" in waited.stderr
    assert direct_cli(sqlite_settings, "register", "other", str(other)).exit_code == 0
    assert _versions(local, "other") == [1]


def test_the_local_client_answers_unchanged_with_the_existing_version(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    local = LocalClient(sqlite_settings)
    directory = linear_model(tmp_path / "linear")
    first = local.register("lin", directory, convert=False)
    again = local.register("lin", directory, convert=False)
    assert not first.unchanged and again.unchanged
    assert (again.ref, again.source_sha256, again.weights_sha256) == (first.ref, first.source_sha256, None)
    forced = local.register("lin", directory, convert=False, new_version=True)
    assert not forced.unchanged and forced.ref == "lin:2"
    assert _versions(local, "lin") == [1, 2]


@pytest.fixture
def served(sqlite_settings: Settings, tmp_path: Path) -> Iterator[tuple[ApiServer, str]]:
    """A real `regctl serve` on the embedded default, and a writer's token for it."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **sqlite_settings.to_env()}
    server = ApiServer.start({k: v for k, v in env.items() if v != ""}, tmp_path)
    try:
        yield server, LocalClient(sqlite_settings).create_token("trainer", "writer").secret
    finally:
        server.stop()


def test_the_http_api_answers_200_and_unchanged_and_201_for_a_new_version(
    served: tuple[ApiServer, str], sqlite_settings: Settings, tmp_path: Path
) -> None:
    server, secret = served
    directory = linear_model(tmp_path / "linear")
    upload = build_bundle(
        directory,
        prepare_spec(directory, None, None, None),
        tmp_path / "upload.tar",
        sqlite_settings.max_bundle_bytes,
        include_weights=True,
    )
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/x-tar"}
    with httpx.Client(base_url=f"{server.url}/api/v1", headers=headers, timeout=60) as api:

        def post(**params: str) -> httpx.Response:
            body = upload.path.read_bytes()
            return api.post("/models/lin/versions", params={"convert": "false", **params}, content=body)

        created = post()
        assert created.status_code == 201 and created.json()["unchanged"] is False, created.text
        same = post()
        assert same.status_code == 200, same.text
        assert same.json()["unchanged"] is True and same.json()["version"] == 1
        assert same.json()["model"] == "lin" and same.json()["status"] == "registered"
        forced = post(new_version="true")
        assert forced.status_code == 201 and forced.json()["version"] == 2
    assert _versions(LocalClient(sqlite_settings), "lin") == [1, 2]


def test_the_remote_client_and_cli_say_unchanged_through_the_server(
    served: tuple[ApiServer, str], sqlite_settings: Settings, tmp_path: Path
) -> None:
    server, secret = served
    directory = linear_model(tmp_path / "linear")
    with Client(server.url, secret) as client:
        first = client.register("lin", directory, convert=False)
        again = client.register("lin", directory, convert=False)
        assert not first.unchanged and again.unchanged and again.ref == "lin:1"
        assert client.register("lin", directory, convert=False, new_version=True).ref == "lin:2"

    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "REGCTL_URL": server.url,
        "REGCTL_TOKEN": secret,
    }

    def remote(*args: str) -> subprocess.CompletedProcess[str]:
        command = [REGCTL, "register", "lin", str(directory), "--no-convert", *args]
        return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    said = remote()
    assert said.returncode == 0 and said.stdout.startswith("unchanged: identical to lin:2 (registered)"), said
    shown = remote("--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["unchanged"] is True
    assert json.loads(shown.stdout)["version"] == 2
    assert remote("--new-version").stdout.startswith("registered lin:3 (registered)")
    assert _versions(LocalClient(sqlite_settings), "lin") == [1, 2, 3]


def test_identical_registrations_racing_each_other_make_one_version(
    settings: Settings, model_dir: Path
) -> None:
    from regctl.registry.requests import RegisterRequest
    from regctl.registry.versions import register_version

    # the schema exists before the race starts
    register_version(settings, RegisterRequest("warm-up"), model_dir)
    racers = 6
    barrier = threading.Barrier(racers)

    def race(_: int) -> RegisteredVersion:
        barrier.wait(timeout=60)
        return register_version(settings, RegisterRequest("m"), model_dir, skip_unchanged=True)

    with ThreadPoolExecutor(racers) as pool:
        answers = list(pool.map(race, range(racers)))
    assert sorted(a.unchanged for a in answers) == [False] + [True] * (racers - 1)
    assert {a.version for a in answers} == {1}
    # the registry's own default: always new
    assert register_version(settings, RegisterRequest("m"), model_dir).version == 2


def test_register_module_through_a_server_shows_its_upload_and_then_says_unchanged(
    served: tuple[ApiServer, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib
    import sys

    from regctl.from_python import register_module

    root = tmp_path / "project"
    root.mkdir()
    (root / "wide_net.py").write_text(
        "import torch\n\n\nclass WideNet(torch.nn.Module):\n"
        "    def __init__(self) -> None:\n"
        "        super().__init__()\n"
        "        self.linear = torch.nn.Linear(1500, 1500)  # 9 MB of weights: long enough to show\n\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        "        return self.linear(x)\n"
    )
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "wide_net", raising=False)
    model = importlib.import_module("wide_net").WideNet()
    server, secret = served
    inputs = [{"name": "x", "dtype": "float32", "shape": ["b", 1500]}]
    with Client(server.url, secret) as client:
        lines: list[str] = []
        kwargs = {"inputs": inputs, "dims": {"b": (1, 2)}, "convert": False, "client": client}
        first = register_module("wide", model, progress=lines.append, **kwargs)
        uploads = [line for line in lines if line.startswith("uploading: ")]
        sent, total = uploads[-1].removeprefix("uploading: ").split(" of ")
        assert len(uploads) >= 2 and sent == total, lines
        assert lines[0].endswith(f"registering wide on {server.url}") and lines[-1].startswith(
            "registered wide:1"
        )
        lines.clear()
        again = register_module("wide", model, progress=lines.append, **kwargs)
        assert not first.unchanged and again.unchanged and again.ref == "wide:1"
        assert lines[-1] == "unchanged: identical to wide:1 (registered); nothing was registered"
    sys.modules.pop("wide_net", None)
