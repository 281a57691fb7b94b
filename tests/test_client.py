"""The Python client: `from regctl import Client`, the same typed records locally and remotely."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import regctl
from regctl.local import LocalClient
from regctl.registry.entities import FetchedArtifact, VersionInfo
from regctl.registry.errors import InvalidInput
from regctl.registry.lineage import Lineage
from regctl.registry.requests import RegisterRequest, SubmitRequest
from regctl.registry.settings import Settings
from regctl.remote import Client

ROOT = Path(__file__).resolve().parent.parent


def test_importing_regctl_loads_nothing_heavy() -> None:
    heavy = "('sqlalchemy', 'celery', 'torch', 'httpx')"
    probe = f"import sys, regctl; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_regctl_client_is_the_http_client_and_both_clients_implement_every_operation() -> None:
    assert not LocalClient.__abstractmethods__ and not Client.__abstractmethods__
    assert regctl.Client is Client
    assert isinstance(regctl.Client.local(), LocalClient)


def test_register_options_are_named_by_the_request_and_the_front_doors_only() -> None:
    # The client, the service and the registry pass a RegisterRequest on whole; only the doors that
    # receive the options in their own form (click options, a query string, a Python call that also
    # builds the bundle) name them, each building the request once.
    doors = set()
    for folder in ("cli", "regctl", "registry", "server", "service", "worker"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    names = {a.arg for a in [*node.args.args, *node.args.kwonlyargs]}
                    if "new_version" in names:
                        doors.add(f"{path.relative_to(ROOT)}:{node.name}")
    assert doors == {
        "cli/lifecycle.py:register",
        "server/register_api.py:register",
        "regctl/from_python.py:register_module",
    }


def test_a_register_request_is_checked_once_where_it_is_built(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(InvalidInput, match="model name 'no spaces' is not valid"):
        RegisterRequest("no spaces")
    with pytest.raises(InvalidInput, match="tag key"):
        RegisterRequest("m", lineage=Lineage(tags={"bad key": "v"}))
    with pytest.raises(InvalidInput, match="given twice"):
        RegisterRequest("m", description="a", lineage=Lineage(description="b"))
    request = RegisterRequest("m", description="doubles", formats=["torchscript", "aoti"], convert=False)
    assert (request.lineage.description, request.formats) == ("doubles", ("torchscript", "aoti"))
    # A bad name never reaches the server: the client's convenience builds the request first.
    with Client("http://127.0.0.1:9") as unreachable, pytest.raises(InvalidInput, match="not valid"):
        unreachable.register("no spaces", model_dir)
    with pytest.raises(TypeError, match="not both"):
        Client.local(Settings.from_env({}, home=tmp_path)).register(request, model_dir, convert=True)


def test_a_request_and_its_options_as_keywords_register_the_same(tmp_path: Path, model_dir: Path) -> None:
    client = Client.local(Settings.from_env({}, home=tmp_path / "home"))
    whole = client.register(RegisterRequest("m", description="first", convert=False), model_dir)
    spelled = client.register("m", model_dir, description="first", convert=False, new_version=True)
    assert (whole.ref, spelled.ref) == ("m:1", "m:2")
    assert whole.description == spelled.description == "first"
    assert not whole.jobs and not spelled.jobs
    with pytest.raises(InvalidInput, match="names no version"):
        client.submit("m", "convert")
    job = client.submit(SubmitRequest("m:2", "convert", method="trace"))
    assert (job.model, job.version, job.kind, job.method) == ("m", 2, "convert", "trace")


def test_a_local_client_registers_and_fetches_with_typed_results(tmp_path: Path, model_dir: Path) -> None:
    client = Client.local(Settings.from_env({}, home=tmp_path / "home"))
    version = client.register("doubler", model_dir, convert=False)
    assert isinstance(version, VersionInfo)
    assert (version.ref, version.status, version.created_by) == (
        "doubler:1",
        "registered",
        client.whoami().name,
    )
    fetched = client.fetch("doubler:1", tmp_path / "bundle.tar", kind="source")
    assert isinstance(fetched, FetchedArtifact)
    assert fetched.artifact.sha256 == version.source_sha256
    assert (tmp_path / "bundle.tar").stat().st_size == fetched.artifact.size
