"""Names that read alike are one name: `LINEAR` beside `linear` is refused, `linear@PROD` is `linear@prod`.

Through the CLI on SQLite and PostgreSQL, and through a real `regctl serve` for the protected alias.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import pytest

from regctl.local import LocalClient
from regctl.registry.names import name_key
from regctl.registry.settings import Settings
from tests.api_server import ApiServer
from tests.conftest import direct_cli
from tests.factories import linear_model, promotable


@pytest.mark.parametrize("look_alike", ["LINEAR", "Linear", "1inear", "lInear", "LlNEAR"])
def test_a_name_that_reads_like_an_existing_model_is_refused_before_anything_is_stored(
    sqlite_settings: Settings, tmp_path: Path, look_alike: str
) -> None:
    directory = linear_model(tmp_path / "m")
    assert direct_cli(sqlite_settings, "register", "linear", str(directory), "--no-convert").exit_code == 0
    blobs_before = sorted((sqlite_settings.home / "artifacts").rglob("*"))
    (directory / "model.py").write_text((directory / "model.py").read_text() + "# changed\n")
    refused = direct_cli(sqlite_settings, "register", look_alike, str(directory), "--no-convert")
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"error: model name {look_alike!r} reads like the existing model 'linear' (names must differ by "
        "more than case, 0/o and 1/i/l); register under 'linear', or choose a name that reads differently\n"
    )
    assert [m.name for m in LocalClient(sqlite_settings).models()] == ["linear"]
    assert sorted((sqlite_settings.home / "artifacts").rglob("*")) == blobs_before
    # the same name itself still takes new versions, and a name that reads differently is its own model
    assert direct_cli(sqlite_settings, "register", "linear", str(directory), "--no-convert").exit_code == 0
    assert direct_cli(sqlite_settings, "register", "linear-2", str(directory), "--no-convert").exit_code == 0


def test_the_key_folds_case_and_the_look_alikes_only() -> None:
    assert name_key("LINEAR") == name_key("1inear") == name_key("Iinear") == name_key("linear")
    assert name_key("M0del") == name_key("model")
    assert name_key("model-a") != name_key("model_a") != name_key("model.a")
    assert name_key("bert-base") != name_key("bert-large")


def test_an_alias_is_one_alias_whatever_its_case(sqlite_settings: Settings, tmp_path: Path) -> None:
    local = LocalClient(sqlite_settings)
    local.register("linear", linear_model(tmp_path / "m"), convert=False)
    local.register("linear", linear_model(tmp_path / "m"), convert=False, new_version=True)
    promotable(sqlite_settings, "linear")
    assert direct_cli(sqlite_settings, "alias", "set", "linear@Staging", "1").exit_code == 0
    moved = direct_cli(sqlite_settings, "alias", "set", "linear@STAGING", "2")
    assert moved.exit_code == 0, moved.output
    assert local.version("linear@staging").version == 2 == local.version("linear@StAgInG").version
    assert [(a.name, a.version) for a in local.alias_history("linear")] == [("staging", 1), ("staging", 2)]
    assert local.model("linear").aliases == {"staging": 2}


@pytest.fixture
def server(serve) -> ApiServer:  # type: ignore[no-untyped-def]
    return serve()


def test_a_protected_alias_is_protected_in_every_case(
    server: ApiServer, sqlite_settings: Settings, tmp_path: Path
) -> None:
    local = LocalClient(sqlite_settings)
    local.register("linear", linear_model(tmp_path / "m"), convert=False)
    writer = local.create_token("ci", "writer").secret
    with httpx.Client(base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {writer}"}) as api:
        for spelled in ("PROD", "Prod", "prod"):
            refused = api.put(f"/models/linear/aliases/{spelled}", json={"version": 1})
            assert refused.status_code == 403, refused.text
            assert "protected-alias" in refused.json()["error"]["message"]
    assert local.model("linear").aliases == {}


def test_a_look_alike_is_refused_through_the_server_too(
    server: ApiServer, sqlite_settings: Settings, tmp_path: Path
) -> None:
    from regctl.registry.errors import AlreadyExists
    from regctl.remote import Client

    local = LocalClient(sqlite_settings)
    local.register("linear", linear_model(tmp_path / "m"), convert=False)
    writer = local.create_token("ci", "writer").secret
    with contextlib.closing(Client(server.url, writer)) as client, pytest.raises(AlreadyExists) as refused:
        client.register("LINEAR", linear_model(tmp_path / "other"), convert=False)
    assert "reads like the existing model 'linear'" in str(refused.value) and refused.value.exit_code == 2
    assert [m.name for m in local.models()] == ["linear"]
