"""The HTTP API on a real `regctl serve` process (SQLite, local store): tokens, roles, errors, downloads."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from regctl.local import LocalClient
from regctl.registry.settings import Settings
from regctl.server.auth import TOKEN_CACHE_S
from tests.api_server import REGCTL, ApiServer
from tests.conftest import write_model_dir
from tests.factories import promotable


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings.from_env({}, home=home)


@pytest.fixture
def direct(settings: Settings) -> LocalClient:
    """The server host's own direct access (how the first admin token is made)."""
    return LocalClient(settings)


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **settings.to_env(),
        "REGCTL_MAX_BUNDLE_BYTES": str(64 * 1024),
        "REGCTL_MAX_WEIGHTS_BYTES": str(64 * 1024),
    }
    env = {k: v for k, v in env.items() if v != ""}
    server = ApiServer.start(env, tmp_path)
    yield server
    server.stop()


def token(direct: LocalClient, name: str, role: str, **kwargs: str) -> str:
    return direct.create_token(name, role, **kwargs).secret


def http(server: ApiServer, secret: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.Client(base_url=f"{server.url}/api/v1", headers=headers, timeout=30)


def remote_cli(
    server: ApiServer, secret: str, *args: str, cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real CLI in remote mode: a URL and a token, no database or store settings at all."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "REGCTL_URL": server.url,
        "REGCTL_TOKEN": secret,
    }
    return subprocess.run([REGCTL, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_requests_without_a_valid_token_get_401_with_a_json_error(
    server: ApiServer, direct: LocalClient
) -> None:
    for secret in (None, "nonsense", "rgt_1_" + "x" * 43, "rgt_999_" + "y" * 43):
        with http(server, secret) as api:
            response = api.get("/models")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthenticated"
        assert secret is None or secret not in response.text


def test_a_revoked_or_expired_token_is_refused(
    server: ApiServer, direct: LocalClient, settings: Settings
) -> None:
    from sqlalchemy import update

    from regctl.registry.db import session_scope
    from regctl.registry.schema import Token, utcnow

    revoked, expired = token(direct, "old", "reader"), token(direct, "brief", "reader", expires="1h")
    in_use, admin = token(direct, "in-use", "reader"), token(direct, "boss", "admin")
    for secret in (revoked, in_use):
        with http(server, secret) as api:
            assert api.get("/models").status_code == 200
    direct.revoke_token("old")  # on the server host: the server learns of it within its token cache time
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Token).where(Token.name == "brief").values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with http(server, admin) as api:  # through the server itself: refused from the next request on
        assert api.delete("/tokens/in-use").status_code == 200
    with http(server, in_use) as api:
        assert api.get("/models").status_code == 401
    with http(server, expired) as api:
        response = api.get("/models")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]

    deadline = time.monotonic() + TOKEN_CACHE_S + 10
    with http(server, revoked) as api:
        while (response := api.get("/models")).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_only_a_hash_of_the_token_is_stored(direct: LocalClient, settings: Settings) -> None:
    from sqlalchemy import select

    from regctl.registry.db import session_scope
    from regctl.registry.schema import Token

    secret = token(direct, "ci", "writer")
    with session_scope(settings.database_url) as session:
        row = session.scalars(select(Token)).one()
    assert secret.rsplit("_", 1)[1] not in row.secret_sha256
    assert row.secret_sha256 == hashlib.sha256(secret.split("_", 2)[2].encode()).hexdigest()
    listed = direct.tokens()[0].to_json()
    assert secret not in str(listed)


def test_each_role_can_do_exactly_what_it_should(
    server: ApiServer, direct: LocalClient, model_dir: Path
) -> None:
    direct.register("net", model_dir, convert=False)
    direct.register("net", model_dir, convert=False, new_version=True)
    direct.register("net", model_dir, convert=False, new_version=True)  # net:3 stays unconverted
    promotable(direct.settings, "net", 1, 2)
    reader, writer, admin = (token(direct, role, role) for role in ("reader", "writer", "admin"))

    def status(secret: str, method: str, path: str, **kwargs: object) -> int:
        with http(server, secret) as api:
            return api.request(method, path, **kwargs).status_code  # type: ignore[arg-type]

    staging, prod = "/models/net/aliases/staging", "/models/net/aliases/prod"
    expected = [
        # method, path, body: what reader, writer and admin get
        ("GET", "/versions/net:1", None, (200, 200, 200)),
        ("GET", "/versions/net:1/artifacts/source", None, (200, 200, 200)),
        ("GET", "/jobs", None, (200, 200, 200)),
        ("POST", "/versions/net:3/jobs", {"kind": "validate"}, (403, 409, 409)),  # 409: nothing to validate
        ("PUT", staging, {"version": 1}, (403, 200, 200)),
        ("PUT", staging, {"version": 3}, (403, 409, 409)),  # 409: never converted (the promotion policy)
        ("PUT", staging, {"version": 3, "force": True}, (403, 403, 200)),  # only an admin overrides it
        ("PUT", prod, {"version": 2}, (403, 403, 200)),
        ("DELETE", prod, None, (403, 403, 200)),
        ("GET", "/tokens", None, (403, 403, 200)),
        ("POST", "/tokens", {"name": "x", "role": "reader"}, (403, 403, 201)),
        ("GET", "/audit", None, (403, 403, 200)),
    ]
    for method, path, body, codes in expected:
        got = tuple(
            status(secret, method, path, **({"json": body} if body else {}))
            for secret in (reader, writer, admin)
        )
        assert got == codes, f"{method} {path}: reader, writer, admin got {got}, expected {codes}"


def test_a_model_pattern_limits_a_token_to_matching_models(
    server: ApiServer, direct: LocalClient, model_dir: Path
) -> None:
    direct.register("vision-a", model_dir, convert=False)
    direct.register("speech", model_dir, convert=False)
    secret = token(direct, "vision-team", "writer", model_pattern="vision-*")
    with http(server, secret) as api:
        assert [m["name"] for m in api.get("/models").json()] == ["vision-a"]
        assert api.get("/versions/vision-a:1").status_code == 200
        refused = api.get("/versions/speech:1")
        assert refused.status_code == 403
        assert "vision-*" in refused.json()["error"]["message"]
        assert api.put("/models/speech/aliases/staging", json={"version": 1}).status_code == 403


def test_a_reader_cannot_move_prod_from_the_cli_and_gets_exit_code_5(
    server: ApiServer, direct: LocalClient, model_dir: Path, tmp_path: Path
) -> None:
    direct.register("net", model_dir, convert=False)
    result = remote_cli(
        server, token(direct, "viewer", "reader"), "alias", "set", "net@prod", "1", cwd=tmp_path
    )
    assert result.returncode == 5, result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: token 'viewer' has role reader")
    bad = remote_cli(server, "rgt_1_" + "z" * 43, "models", "list", cwd=tmp_path)
    assert bad.returncode == 5
    assert "not valid" in bad.stderr


def test_every_change_through_the_api_is_audited_with_who_and_from_where(
    server: ApiServer, direct: LocalClient, model_dir: Path, tmp_path: Path
) -> None:
    admin = token(direct, "release-bot", "admin")
    assert (
        remote_cli(server, admin, "register", "net", str(model_dir), "--no-convert", cwd=tmp_path).returncode
        == 0
    )
    # never converted: only --force moves prod there, and the audit trail says what it overrode
    moved = remote_cli(server, admin, "alias", "set", "net@prod", "1", "--force", cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr
    entries = direct.audit(model="net")
    assert entries[0].detail == {"from": None, "to": 1, "forced": "it was never converted"}
    assert [(e.actor, e.action, e.target, e.address) for e in entries] == [
        ("release-bot", "alias.set", "net@prod", "127.0.0.1"),
        ("release-bot", "version.register", "net:1", "127.0.0.1"),
    ]
    assert direct.version("net:1").created_by == "release-bot"


def test_a_download_has_an_etag_a_digest_a_304_and_resumes_byte_identically(
    server: ApiServer, direct: LocalClient, model_dir: Path
) -> None:
    direct.register("net", model_dir, convert=False)
    with http(server, token(direct, "deploy", "reader")) as api:
        whole = api.get("/versions/net:1/artifacts/source")
        assert whole.status_code == 200
        body = whole.content
        sha = hashlib.sha256(body).hexdigest()
        assert whole.headers["etag"] == f'"{sha}"'
        assert whole.headers["digest"] == "sha-256=" + base64.b64encode(bytes.fromhex(sha)).decode()
        assert (
            api.get(
                "/versions/net:1/artifacts/source", headers={"If-None-Match": whole.headers["etag"]}
            ).status_code
            == 304
        )
        cut = len(body) // 3
        head = api.get("/versions/net:1/artifacts/source", headers={"Range": f"bytes=0-{cut - 1}"})
        tail = api.get(
            "/versions/net:1/artifacts/source",
            headers={"Range": f"bytes={cut}-", "If-Range": whole.headers["etag"]},
        )
        assert (head.status_code, tail.status_code) == (206, 206)
        assert tail.headers["content-range"] == f"bytes {cut}-{len(body) - 1}/{len(body)}"
        assert head.content + tail.content == body
        past = api.get("/versions/net:1/artifacts/source", headers={"Range": f"bytes={len(body)}-"})
        assert past.status_code == 416


def test_an_oversized_or_hostile_upload_is_refused_and_leaves_nothing(
    server: ApiServer, direct: LocalClient, settings: Settings, tmp_path: Path
) -> None:
    secret = token(direct, "ci", "writer")
    blobs_before = sorted((settings.home / "artifacts").rglob("*"))
    with http(server, secret) as api:
        big = api.post(
            "/models/net/versions",
            content=b"\0" * (64 * 1024 + 17 * 1024 * 1024),
            headers={"Content-Type": "application/x-tar"},
        )
        assert big.status_code == 413
        assert "REGCTL_MAX_BUNDLE_BYTES" in big.json()["error"]["message"]
        linked = io.BytesIO()
        with tarfile.open(fileobj=linked, mode="w") as tar:
            link = tarfile.TarInfo("model.py")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
        hostile = api.post("/models/net/versions", content=linked.getvalue())
        assert hostile.status_code == 400
        assert "not a regular file" in hostile.json()["error"]["message"]
        garbage = api.post("/models/net/versions", content=b"not a tar at all")
        assert garbage.status_code == 400
        clashes = (  # found by the API fuzz test: one name as a file and as a folder
            (("model.py", False), ("model.py/x.py", False)),
            (("pkg", True), ("pkg", False)),
            (("m.py", False), ("m.py", False)),
        )
        for members in clashes:
            clash = io.BytesIO()
            with tarfile.open(fileobj=clash, mode="w") as tar:
                for name, folder in members:
                    member = tarfile.TarInfo(name)
                    if folder:
                        member.type = tarfile.DIRTYPE
                    tar.addfile(member, io.BytesIO(b""))
            refused = api.post("/models/net/versions", content=clash.getvalue())
            assert refused.status_code == 400, refused.text
            assert "twice or as both a file and a folder" in refused.json()["error"]["message"]
    assert direct.models() == []
    assert sorted((settings.home / "artifacts").rglob("*")) == blobs_before


def test_an_uploaded_bundle_gets_the_same_spec_checks_as_a_local_register(
    server: ApiServer, direct: LocalClient, tmp_path: Path
) -> None:
    broken = write_model_dir(tmp_path / "broken", spec='entrypoint = "model.py:build"\nmethod = "magic"\n')
    result = remote_cli(server, token(direct, "ci", "writer"), "register", "net", str(broken), cwd=tmp_path)
    assert result.returncode == 2
    assert "method" in result.stderr and "magic" in result.stderr
    assert direct.models() == []


def test_an_upload_carries_the_weights_and_the_server_stores_them_as_their_own_blob(
    server: ApiServer, direct: LocalClient, tmp_path: Path
) -> None:
    spec = 'weights = "w.safetensors"\n[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [2]\n'
    weights = os.urandom(8 * 1024)
    directory = write_model_dir(tmp_path / "w", spec=spec, files={"w.safetensors": weights})
    secret = token(direct, "ci", "writer")
    done = remote_cli(server, secret, "register", "net", str(directory), "--no-convert", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    stored = {a.kind: a for a in direct.version("net:1").artifacts}
    assert stored["weights"].sha256 == hashlib.sha256(weights).hexdigest()
    with http(server, secret) as api:
        fetched = api.get("/versions/net:1/artifacts/weights")
        assert fetched.status_code == 200 and fetched.content == weights
    # weights over the server's own cap (64 KiB here) are refused, naming the upload, not server paths
    (directory / "w.safetensors").write_bytes(os.urandom(65 * 1024))
    refused = remote_cli(server, secret, "register", "net", str(directory), "--no-convert", cwd=tmp_path)
    assert refused.returncode == 2 and "REGCTL_MAX_WEIGHTS_BYTES" in refused.stderr
    assert "regctl-upload-" not in refused.stderr, refused.stderr
    assert [v.version for v in direct.model("net").versions] == [1]


def test_remote_mode_imports_neither_sqlalchemy_celery_nor_torch(
    server: ApiServer, direct: LocalClient, model_dir: Path, tmp_path: Path
) -> None:
    direct.register("net", model_dir, convert=False)
    probe = (
        "import sys\nfrom cli.main import main\n"
        "sys.argv = ['regctl', 'versions', 'show', 'net:1', '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'celery', 'sqlalchemy', 'kombu', 'numpy') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "REGCTL_URL": server.url}
    env["REGCTL_TOKEN"] = token(direct, "viewer", "reader")
    result = subprocess.run(
        [REGCTL.replace("/regctl", "/python"), "-c", probe],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert '"ref": "net:1"' not in result.stdout  # VersionInfo has no ref field; the model name is there
    assert '"model": "net"' in result.stdout, result.stderr
    assert result.stderr.rsplit("HEAVY=", 1)[1].strip() == ""


def test_login_writes_a_private_file_that_later_commands_use(
    server: ApiServer, direct: LocalClient, model_dir: Path, tmp_path: Path
) -> None:
    direct.register("net", model_dir, convert=False)
    secret = token(direct, "me", "reader")
    config = tmp_path / "cfg" / "login.json"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "REGCTL_CONFIG": str(config)}
    login = subprocess.run(
        [REGCTL, "login", server.url, "--token-stdin"],
        input=secret + "\n",
        env=env,
        capture_output=True,
        text=True,
    )
    assert login.returncode == 0, login.stderr
    assert config.stat().st_mode & 0o777 == 0o600
    shown = subprocess.run([REGCTL, "whoami"], env=env, capture_output=True, text=True)
    assert shown.stdout.startswith(f"me: reader at {server.url}")
    assert secret not in shown.stdout + shown.stderr


def test_a_corrupted_blob_never_arrives_as_a_complete_file(
    server: ApiServer, direct: LocalClient, model_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    info = direct.register("net", model_dir, convert=False)
    blob = next(
        p for p in (settings.home / "artifacts").rglob("*") if p.is_file() and p.name in info.source_sha256
    )
    reader = token(direct, "deploy", "reader")
    with http(server, reader) as api:  # verified once: the server remembers the check for this file
        assert api.get("/versions/net:1/artifacts/source").status_code == 200
    blob.chmod(0o644)
    damaged = bytearray(blob.read_bytes())
    damaged[-1] ^= 0xFF  # same size, different bytes
    blob.write_bytes(bytes(damaged))
    with http(server, reader) as api, pytest.raises(httpx.RemoteProtocolError):
        api.get("/versions/net:1/artifacts/source")
    result = remote_cli(
        server,
        token(direct, "ci", "reader"),
        "fetch",
        "net:1",
        "--kind",
        "source",
        "-o",
        "x.tar",
        cwd=tmp_path,
    )
    assert result.returncode == 6, result.stderr  # the registry's data is damaged
    assert "may be damaged" in result.stderr
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.slow
def test_without_a_broker_the_server_runs_jobs_itself_and_never_loads_torch(
    server: ApiServer, direct: LocalClient, model_dir: Path, tmp_path: Path
) -> None:
    secret = token(direct, "trainer", "writer")
    done = remote_cli(server, secret, "register", "net", str(model_dir), "--wait", cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr + server.log_text()
    assert "net:1 is ready" in done.stderr
    assert direct.version("net:1").status == "ready"
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "libtorch" not in maps, "the API server process must never load torch"


class _CuttingProxy:
    """A TCP proxy to the server that drops one connection once, `cut` bytes into a response that
    contains `marker` (the first response at all when no marker is given)."""

    def __init__(self, target: str, cut: int, marker: bytes = b"") -> None:
        import socket
        import threading

        host, port = target.removeprefix("http://").split(":")
        self.target, self.cut, self.marker = (host, int(port)), cut, marker
        self.connections, self.cuts = 0, 0
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source, sink, responses: bool) -> None:  # type: ignore[no-untyped-def]
        import socket

        counted = None  # bytes since the marker, once it was seen
        try:
            while data := source.recv(65536):
                if responses and counted is None and self.marker in data:
                    counted = -data.index(self.marker)
                if counted is not None and counted + len(data) > self.cut and self._take_cut():
                    sink.sendall(data[: max(self.cut - counted, 0)])
                    break
                sink.sendall(data)
                if counted is not None:
                    counted += len(data)
        except OSError:
            pass
        for end in (source, sink):  # shutdown wakes the other direction's thread blocked in recv
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                end.close()

    def _take_cut(self) -> bool:
        with self._lock:
            self.cuts += 1
            return self.cuts == 1

    def close(self) -> None:
        self.listener.close()


def test_the_client_resumes_a_dropped_download_with_a_range_and_gets_the_same_bytes(
    server: ApiServer, direct: LocalClient, tmp_path: Path
) -> None:
    from regctl.remote import Client

    data = write_model_dir(tmp_path / "big", files={"blob.py": "# " + "x" * 300_000 + "\n"})
    version = direct.register("net", data, convert=False)
    proxy = _CuttingProxy(server.url, cut=100_000, marker=b"application/octet-stream")
    try:
        with Client(proxy.url, token(direct, "deploy", "reader")) as client:
            # A metadata call first, on its own connection through the proxy; then the download.
            client.whoami()
            fetched = client.fetch("net:1", tmp_path / "bundle.tar", kind="source")
    finally:
        proxy.close()
    assert proxy.cuts >= 1 and proxy.connections >= 2, "the download had to reconnect"
    assert hashlib.sha256((tmp_path / "bundle.tar").read_bytes()).hexdigest() == version.source_sha256
    assert fetched.artifact.sha256 == version.source_sha256


@pytest.mark.slow
def test_following_a_job_survives_a_dropped_event_stream(
    server: ApiServer, direct: LocalClient, model_dir: Path
) -> None:
    from regctl.remote import Client

    proxy = _CuttingProxy(server.url, cut=600, marker=b"text/event-stream")  # after an event or two
    try:
        with Client(proxy.url, token(direct, "trainer", "writer")) as client:
            version = client.register("net", model_dir)
            final = client.wait(version.jobs[0], timeout=240)
    finally:
        proxy.close()
    assert (final.kind, final.state) == ("convert", "succeeded")
    assert proxy.cuts >= 1, "the event stream was never cut"
    assert direct.version("net:1").status == "ready"


@pytest.mark.slow
def test_a_job_the_embedded_server_runs_goes_back_to_the_queue_when_the_server_stops(
    server: ApiServer, direct: LocalClient, tmp_path: Path
) -> None:
    from tests.factories import HANG, linear_model

    version = direct.register("stuck", linear_model(tmp_path / "stuck", forward=HANG), convert=False)
    job = direct.submit(f"{version.ref}", "convert")
    deadline = time.monotonic() + 60
    while direct.job(job.id).state != "running":
        assert time.monotonic() < deadline, f"job {job.id} never started:\n{server.log_text()}"
        time.sleep(0.1)
    server.process.send_signal(signal.SIGTERM)  # to the server alone, as `docker stop` does
    server.process.wait(timeout=30)
    stopped = direct.job(job.id)
    assert (stopped.state, stopped.attempts) == ("queued", 1), stopped
    assert "API server stopped" in (stopped.error or "")


def test_lineage_tags_archive_delete_and_gc_work_the_same_through_the_server(
    server: ApiServer, direct: LocalClient, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    directory = write_model_dir(repo)
    git_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
    }
    git_env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "m"]):
        subprocess.run(["git", "-C", str(repo), *args], env=git_env, check=True, capture_output=True)
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    writer, admin = token(direct, "trainer", "writer"), token(direct, "ops", "admin")

    registered = remote_cli(
        server, writer, "register", "m", str(directory), "--no-convert", "--tag", "team=nlp",
        "--run-url", "https://mlflow.example.com/runs/1", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    assert (
        remote_cli(
            server, writer, "register", "m", str(directory), "--no-convert", "--new-version", cwd=tmp_path
        ).returncode
        == 0
    )
    version = direct.version("m:1")
    assert (version.git_commit, version.git_dirty) == (head, False)  # read by the client, from its work tree
    assert version.tags == {"team": "nlp"} and version.run_url == "https://mlflow.example.com/runs/1"
    listed = remote_cli(server, writer, "versions", "list", "m", "--tag", "team=nlp", "--json", cwd=tmp_path)
    assert [v["version"] for v in json.loads(listed.stdout)] == [1]

    assert remote_cli(server, writer, "versions", "tag", "m:2", "team=nlp", cwd=tmp_path).returncode == 0
    assert remote_cli(server, writer, "versions", "archive", "m:2", cwd=tmp_path).returncode == 0
    listed = remote_cli(server, writer, "versions", "list", "m", "--tag", "team=nlp", "--json", cwd=tmp_path)
    assert [v["version"] for v in json.loads(listed.stdout)] == [1]
    denied = remote_cli(server, writer, "versions", "delete", "m:1", cwd=tmp_path)
    assert denied.returncode == 5, denied.stderr  # deleting needs an admin
    assert remote_cli(server, admin, "versions", "delete", "m:1", cwd=tmp_path).returncode == 0
    assert remote_cli(server, writer, "gc", "--dry-run", cwd=tmp_path).returncode == 5
    swept = remote_cli(server, admin, "gc", "--json", cwd=tmp_path)
    assert swept.returncode == 0 and json.loads(swept.stdout)["dry_run"] is False
    actions = [e.action for e in direct.audit(model="m")]
    assert {"version.tag", "version.archive", "version.delete"} <= set(actions)


@pytest.mark.slow
def test_metrics_parse_with_prometheus_and_move_when_a_job_runs(
    server: ApiServer, direct: LocalClient, model_dir: Path, tmp_path: Path
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict[str, list]:
        body = httpx.get(f"{server.url}/metrics", timeout=30).text
        return {family.name: family.samples for family in text_string_to_metric_families(body)}

    def value(samples: list, name: str, **labels: str) -> float:
        return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())

    before = scrape()
    assert value(before["regctl_jobs"], "regctl_jobs", kind="convert", state="succeeded") == 0
    secret = token(direct, "trainer", "writer")
    done = remote_cli(server, secret, "register", "net", str(model_dir), "--wait", cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr + server.log_text()

    after = scrape()
    assert value(after["regctl_jobs"], "regctl_jobs", kind="convert", state="succeeded") == 1
    assert value(after["regctl_queue_depth"], "regctl_queue_depth") == 0
    durations = after["regctl_job_duration_seconds"]
    assert value(durations, "regctl_job_duration_seconds_count", kind="convert") == 1
    assert value(durations, "regctl_job_duration_seconds_bucket", kind="convert", le="+Inf") == 1
    assert value(durations, "regctl_job_duration_seconds_sum", kind="convert") > 0
    method = direct.version("net:1").method
    assert value(after["regctl_conversions"], "regctl_conversions", method=method, outcome="succeeded") == 1
    latency = after["regctl_api_request_duration_seconds"]
    route = "/api/v1/models/{name}/versions"
    assert (
        value(latency, "regctl_api_request_duration_seconds_count", route=route, method="POST", status="201")
        == 1
    )
    labels = {v for family in after.values() for s in family for v in s.labels.values()}
    assert "net" not in labels and not any("net:1" in v for v in labels)  # no model names in labels


def test_register_module_goes_through_the_server_with_its_own_git_commit(
    server: ApiServer, direct: LocalClient, tmp_path: Path
) -> None:
    import importlib
    import sys

    from regctl.from_python import register_module
    from regctl.remote import Client

    root = tmp_path / "project"
    root.mkdir()
    (root / "remote_net.py").write_text(
        "import torch\n\n\nclass RemoteNet(torch.nn.Module):\n"
        "    def __init__(self) -> None:\n"
        "        super().__init__()\n"
        "        self.linear = torch.nn.Linear(4, 2)\n\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        "        return self.linear(x)\n"
    )
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("remote_net")
        with Client(server.url, token(direct, "trainer", "writer")) as client:
            info = register_module(
                "remote-net",
                module.RemoteNet(),
                inputs=[{"name": "x", "dtype": "float32", "shape": ["b", 4]}],
                dims={"b": (1, 4)},
                tags={"via": "http"},
                convert=False,
                client=client,
            )
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("remote_net", None)
    stored = direct.version(info.ref)
    assert stored.tags == {"via": "http"} and stored.weights_sha256 is not None
    assert stored.created_by == "trainer"
