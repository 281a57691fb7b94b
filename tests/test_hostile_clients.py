"""Clients that starve a real `regctl serve`: slow headers, stalled uploads, floods of requests.

Each is cut off with its status and message, leaves no temp file (TMPDIR is the test's own folder),
and the remote client waits out a Retry-After instead of failing.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import httpx
import pytest

from regctl.local import LocalClient
from regctl.registry.ops.owned import UPLOAD_PREFIX
from regctl.registry.settings import Settings
from regctl.remote import Client
from tests.api_server import ApiServer
from tests.conftest import wait_until
from tests.factories import linear_model

DEADLINE_S = 60.0  # polling deadlines: far beyond the 1 s timeouts under test, on a loaded machine


@pytest.fixture
def settings(sqlite_settings: Settings) -> Settings:
    return sqlite_settings


@pytest.fixture
def start(serve):  # type: ignore[no-untyped-def]
    """`start(header_timeout_s="1")`: a server with REGCTL_HEADER_TIMEOUT_S=1, and so on."""
    return lambda **limits: serve(**{f"REGCTL_{key.upper()}": value for key, value in limits.items()})


def _connect(server: ApiServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=DEADLINE_S)
    return sock


def _closed_by_server(sock: socket.socket) -> bytes:
    """Everything the server sent until it closed the connection (recv blocks until then)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_connections_that_never_finish_their_headers_are_closed(start) -> None:  # type: ignore[no-untyped-def]
    server = start(header_timeout_s="1")
    slow = [_connect(server) for _ in range(8)]
    for sock in slow:  # no token needed to hold a connection this way
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    for sock in slow:
        assert _closed_by_server(sock) == b""  # closed, never answered
        sock.close()
    assert httpx.get(f"{server.url}/api/v1/health").status_code == 200


def test_a_stalled_upload_is_answered_408_and_leaves_no_temp_file(  # type: ignore[no-untyped-def]
    start, settings: Settings, server_tmp: Path
) -> None:
    server = start(body_timeout_s="1")
    secret = LocalClient(settings).create_token("ci", "writer").secret
    sock = _connect(server)
    sock.sendall(
        b"POST /api/v1/models/net/versions HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
        + f"Authorization: Bearer {secret}\r\nContent-Length: 100000\r\n\r\n".encode()
        + b"\0" * 1000
    )
    answer = _closed_by_server(sock).decode("latin-1")
    sock.close()
    assert answer.startswith("HTTP/1.1 408"), answer[:200]
    assert "the upload sent nothing for 1s (REGCTL_BODY_TIMEOUT_S) and was closed" in answer
    wait_until(lambda: not any(server_tmp.iterdir()), DEADLINE_S, "the upload's temp folder to go")
    assert LocalClient(settings).models() == []


def test_a_token_sends_at_most_its_share_of_uploads_at_once(  # type: ignore[no-untyped-def]
    start, settings: Settings, tmp_path: Path, server_tmp: Path
) -> None:
    server = start(uploads_per_token="1", body_timeout_s="120")
    local = LocalClient(settings)
    secret = local.create_token("ci", "writer").secret
    holding = _connect(server)  # one upload in progress, its body still coming
    holding.sendall(
        b"POST /api/v1/models/net/versions HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
        + f"Authorization: Bearer {secret}\r\nContent-Length: 100000\r\n\r\n".encode()
        + b"\0" * 512
    )
    # Its folder is made once it holds the slot. A second upload sent before that (a loaded server
    # reads the first one's headers late) would take the slot itself and leave the first refused.
    wait_until(
        lambda: list(server_tmp.glob(f"{UPLOAD_PREFIX}*/bundle.tar")),
        DEADLINE_S,
        "the first upload to hold the token's only slot",
    )
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/x-tar"}
    with httpx.Client(base_url=f"{server.url}/api/v1", headers=headers, timeout=DEADLINE_S) as api:
        busy = api.post("/models/other/versions", content=b"\0" * 10240)
        assert busy.status_code == 429, busy.text
        assert busy.headers["retry-after"] == "5"
        assert "already sending 1 uploads, the most REGCTL_UPLOADS_PER_TOKEN allows" in busy.text
        other = local.create_token("other", "writer").secret  # a slot is per token
        free = api.post(
            "/models/other/versions", content=b"not a tar", headers={"Authorization": f"Bearer {other}"}
        )
        assert free.status_code == 400
    holding.close()
    # the slot comes back when the upload ends: the remote client registers with the same token
    with contextlib.closing(Client(server.url, secret)) as client:
        assert client.register("net", linear_model(tmp_path / "net"), convert=False).ref == "net:1"


def test_a_token_past_its_rate_is_answered_429_with_retry_after_and_others_are_not(start, settings) -> None:  # type: ignore[no-untyped-def]
    server = start(rate_limit="5/minute")
    local = LocalClient(settings)
    first, second = (local.create_token(name, "reader").secret for name in ("first", "second"))
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=DEADLINE_S) as api:
        answers = [api.get("/models", headers={"Authorization": f"Bearer {first}"}) for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        refused = answers[-1]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json()["error"]["code"] == "too_many_requests"
        assert "more than 5 per minute requests from this token" in refused.json()["error"]["message"]
        assert "REGCTL_RATE_LIMIT" in refused.json()["error"]["message"]
        assert api.get("/models", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_an_address_past_its_rate_is_refused_with_or_without_a_token(start) -> None:  # type: ignore[no-untyped-def]
    server = start(address_rate_limit="30/minute")
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=DEADLINE_S) as api:
        codes = [api.get("/health").status_code for _ in range(32)]  # the start-up's polls count too
    assert 429 in codes and codes.index(429) <= 30 and set(codes[codes.index(429) :]) == {429}


def test_the_remote_client_waits_out_retry_after_instead_of_failing(start, settings) -> None:  # type: ignore[no-untyped-def]
    server = start(rate_limit="2/second")
    secret = LocalClient(settings).create_token("reader", "reader").secret
    with httpx.Client(base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {secret}"}) as api:
        assert 429 in [api.get("/models").status_code for _ in range(4)]  # the limit bites
    with contextlib.closing(Client(server.url, secret)) as client:
        assert [client.models() for _ in range(5)] == [[]] * 5  # every call answered, none raised
