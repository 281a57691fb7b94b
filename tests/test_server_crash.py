"""kill -9 of a real `regctl serve` during an upload and during a download.

After a restart nothing is orphaned: `regctl doctor` names exactly the upload folder the restart
sweeps, then reports clean; the interrupted download resumes with a Range once the server is back
and its bytes match the sha256 the registry holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from regctl.local import LocalClient
from regctl.registry.ops.doctor import check_registry
from regctl.registry.settings import Settings
from regctl.remote import Client
from tests.api_server import ApiServer
from tests.conftest import wait_until, write_model_dir

DEADLINE_S = 120.0
WEIGHTS_SPEC = 'weights = "w.safetensors"\n[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [2]\n'


@pytest.fixture
def work(server_tmp: Path) -> Path:
    return server_tmp


@pytest.fixture
def settings(sqlite_settings: Settings, work: Path) -> Settings:
    """The registry as the server and `regctl doctor` on its host see it: the work dir included."""
    return dataclasses.replace(sqlite_settings, work_dir=str(work))


@pytest.fixture
def servers(serve, work: Path):  # type: ignore[no-untyped-def]
    return lambda port=None: serve(port=port, REGCTL_WORK_DIR=str(work))


def _kill(server: ApiServer) -> int:
    """kill -9 the server's whole session; the port it listened on."""
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=30)
    return int(server.url.rpartition(":")[2])


def test_a_server_killed_mid_upload_leaves_only_what_doctor_names_and_its_restart_sweeps(  # type: ignore[no-untyped-def]
    servers, settings: Settings, work: Path
) -> None:
    server = servers()
    secret = LocalClient(settings).create_token("ci", "writer").secret
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=DEADLINE_S) as sock:
        sock.sendall(
            b"POST /api/v1/models/net/versions HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
            + f"Authorization: Bearer {secret}\r\nContent-Length: 50000000\r\n\r\n".encode()
            + os.urandom(4 * 1024 * 1024)
        )
        uploads = wait_until(
            lambda: [p for p in work.glob("regctl-upload-*") if _size(p) >= 1024 * 1024],
            DEADLINE_S,
            "the server to spool the upload into its folder",
        )
        _kill(server)
    named = [(p.kind, p.subject) for p in check_registry(settings).problems]
    assert named == [("abandoned_upload", str(uploads[0]))]
    servers(port=int(port))  # its start-up sweeps what the killed one left
    assert list(work.iterdir()) == []
    assert check_registry(settings).problems == []


def test_a_download_cut_by_kill_9_resumes_when_the_server_is_back_and_verifies(  # type: ignore[no-untyped-def]
    servers, settings: Settings, tmp_path: Path
) -> None:
    weights = os.urandom(32 * 1024 * 1024)
    directory = write_model_dir(tmp_path / "m", spec=WEIGHTS_SPEC, files={"w.safetensors": weights})
    local = LocalClient(settings)
    local.register("net", directory, convert=False)
    server = servers()
    restarted: list[ApiServer] = []
    cuts: list[int] = []

    def kill_once_then_restart_later(done: int, total: int) -> None:
        if cuts:
            return
        cuts.append(done)
        port = _kill(server)
        # back only after the client found it gone: it must wait for the server, not race it
        threading.Thread(target=lambda: restarted.append(servers(port=port)), daemon=True).start()

    secret = local.create_token("deploy", "reader").secret
    with contextlib.closing(Client(server.url, secret)) as client:
        fetched = client.fetch(
            "net:1", tmp_path / "w.bin", kind="weights", progress=kill_once_then_restart_later
        )
    assert cuts and cuts[0] < len(weights) and restarted  # cut part-way, finished by the new server
    data = (tmp_path / "w.bin").read_bytes()
    assert data == weights
    assert fetched.artifact.sha256 == hashlib.sha256(weights).hexdigest()
    assert not list(tmp_path.glob(".w.bin.*.part"))


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
