"""Hostile uploads against a real `regctl serve`: each is refused with its reason and leaves nothing.

Nothing in the server's temp space (TMPDIR is the test's own folder), no model row, no blob.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regctl.local import LocalClient
from regctl.registry.settings import Settings
from regctl.registry.upload import MAX_MEMBERS
from tests.api_server import ApiServer


@pytest.fixture
def settings(sqlite_settings: Settings) -> Settings:
    return sqlite_settings


@pytest.fixture
def server(serve) -> ApiServer:  # type: ignore[no-untyped-def]
    return serve(
        REGCTL_MAX_BUNDLE_BYTES=str(16 * 1024 * 1024),
        REGCTL_MAX_WEIGHTS_BYTES=str(4 * 1024**3),  # room for the sparse gigabyte to fit the caps
    )


@pytest.fixture
def api(server: ApiServer, settings: Settings) -> Iterator[httpx.Client]:
    secret = LocalClient(settings).create_token("ci", "writer").secret
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/x-tar"}
    with httpx.Client(base_url=f"{server.url}/api/v1", headers=headers, timeout=60) as client:
        yield client


def _sparse_tar(tmp_path: Path, tar_format: str) -> bytes:
    """A tar of a 1 GiB file of zeros written sparsely by GNU tar: about 10 KB on the wire."""
    folder = tmp_path / f"sparse-{tar_format}"
    folder.mkdir()
    (folder / "regctl.toml").write_text('entrypoint = "model.py:build"\n')
    with open(folder / "weights.safetensors", "wb") as f:
        f.truncate(1024**3)
    out = tmp_path / f"{tar_format}.tar"
    subprocess.run(
        ["tar", "--sparse", f"--format={tar_format}", "-cf", str(out), "-C", str(folder), "."], check=True
    )
    return out.read_bytes()


def _many_members(count: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for i in range(count):
            tar.addfile(tarfile.TarInfo(f"f{i}.py"), io.BytesIO(b""))
    return buffer.getvalue()


@pytest.mark.parametrize("tar_format", ["gnu", "pax"])
def test_a_sparse_member_is_refused_before_anything_is_unpacked(
    api: httpx.Client, settings: Settings, tmp_path: Path, server_tmp: Path, tar_format: str
) -> None:
    body = _sparse_tar(tmp_path, tar_format)
    assert len(body) < 64 * 1024  # a gigabyte when unpacked
    refused = api.post("/models/net/versions", content=body)
    assert refused.status_code == 400, refused.text
    message = refused.json()["error"]["message"]
    assert "member './weights.safetensors' is a sparse file" in message and "\n" not in message
    _assert_nothing_left(settings, server_tmp)


def test_a_tar_with_too_many_members_is_refused_at_the_first_one_over(
    api: httpx.Client, settings: Settings, server_tmp: Path
) -> None:
    refused = api.post("/models/net/versions", content=_many_members(MAX_MEMBERS + 500))
    assert refused.status_code == 400, refused.text
    assert f"has more than {MAX_MEMBERS} members" in refused.json()["error"]["message"]
    _assert_nothing_left(settings, server_tmp)


def _assert_nothing_left(settings: Settings, server_tmp: Path) -> None:
    assert LocalClient(settings).models() == []
    assert list(server_tmp.iterdir()) == []
    store = settings.home / "artifacts"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))


def test_a_spec_past_its_cap_in_an_upload_is_refused_before_it_is_parsed(
    api: httpx.Client, settings: Settings, server_tmp: Path
) -> None:
    from regctl.registry.spec.checked import MAX_SPEC_BYTES

    buffer = io.BytesIO()
    spec = (
        b'entrypoint = "model.py:build"\n'
        + b'[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [2]\n' * 90_000
    )
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("regctl.toml", spec), ("model.py", b"def build():\n    return None\n")):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    refused = api.post("/models/net/versions", content=buffer.getvalue())
    assert refused.status_code == 400, refused.text
    message = refused.json()["error"]["message"]
    assert message.startswith(f"regctl.toml: larger than {MAX_SPEC_BYTES} bytes")  # named within the upload
    _assert_nothing_left(settings, server_tmp)
