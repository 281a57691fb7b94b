"""The Python client: `from regctl import Client`, the same typed records locally and remotely."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import regctl
from regctl.client import RegistryClient
from regctl.local import LocalClient
from regctl.registry.entities import FetchedArtifact, VersionInfo
from regctl.registry.settings import Settings
from regctl.remote import Client


def test_importing_regctl_loads_nothing_heavy() -> None:
    heavy = "('sqlalchemy', 'celery', 'torch', 'httpx')"
    probe = f"import sys, regctl; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_local_and_remote_clients_offer_the_same_operations() -> None:
    def operations(cls: type) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(member).parameters)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") and name in RegistryClient.__abstractmethods__
        }

    assert operations(LocalClient) == operations(Client)
    assert set(operations(Client)) == set(RegistryClient.__abstractmethods__)
    assert regctl.Client is Client
    assert isinstance(regctl.Client.local(), LocalClient)


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
