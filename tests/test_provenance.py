"""Signed provenance end to end on the embedded default: the registry's key, an attestation per proved
artifact, fetch beside it, offline verification, tampering, rotation and retirement.

One conversion (examples/linear with an ONNX model) is shared by most tests. The attestation is
checked twice: by `regctl verify`, and by a verifier written here from the DSSE and in-toto specs
with nothing of regctl's (base64, json, the pre-authentication encoding, Ed25519 from cryptography).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tests.conftest import write_model_dir
from tests.embedded_registry import REGCTL, Registry, embedded_registry
from tests.examples_in_range import in_range

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _registry(root: Path, **env: str) -> Registry:
    return embedded_registry(root / "home", **env)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A registry whose key signed examples/linear's TorchScript and ONNX model."""
    root = tmp_path_factory.mktemp("provenance")
    reg = _registry(root)
    made = reg.regctl("keys", "init")
    assert made.returncode == 0, made.stderr
    linear = in_range("linear", root)  # its ONNX model proved whatever the seed: examples_in_range.py
    done = reg.regctl("register", "linear", str(linear), "--format", "onnx", "--wait")
    assert done.returncode == 0, done.stderr[-3000:]
    return reg


# -- an independent verifier, from the specs ------------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding (github.com/secure-systems-lab/dsse, protocol.md)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def independent_verify(line: bytes, artifact: bytes, public_pem: str) -> dict[str, Any]:
    """The in-toto Statement of a DSSE envelope when `public_pem` signed it and it names `artifact`."""
    envelope = json.loads(line)
    payload = base64.b64decode(envelope["payload"])
    key = load_pem_public_key(public_pem.encode())
    signed = pae(envelope["payloadType"], payload)
    errors = []
    for signature in envelope["signatures"]:
        try:
            key.verify(base64.b64decode(signature["sig"]), signed)  # type: ignore[union-attr]
            break
        except InvalidSignature as exc:
            errors.append(exc)
    else:
        raise AssertionError(f"no signature verifies: {errors}")
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    digests = [s["digest"]["sha256"] for s in statement["subject"]]
    assert hashlib.sha256(artifact).hexdigest() in digests
    return statement


# -- the happy path ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "name"), [("torchscript", "model.pt"), ("onnx", "model.onnx")])
def test_a_fetched_artifact_verifies_offline_and_by_an_independent_implementation(
    signed: Registry, tmp_path: Path, fmt: str, name: str
) -> None:
    pub = signed.public_key(tmp_path / "registry.pub")
    out = tmp_path / name
    done = signed.regctl("fetch", "linear", "--format", fmt, "-o", str(out), "--key", str(pub), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["attestation"] == "verified against a trusted key"
    attestation = out.with_name(name + ".intoto.jsonl")
    # offline: a fresh registry-less environment (no REGCTL_HOME, no database) verifies it
    offline = subprocess.run(
        [REGCTL, "verify", str(out), "--key", str(pub), "--json"],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert offline.returncode == 0, offline.stderr
    assert not (tmp_path / ".regctl").exists(), "verify touched a registry"
    statement = independent_verify(
        attestation.read_bytes().splitlines()[0], out.read_bytes(), pub.read_text()
    )
    version = signed.show("linear:1")
    predicate = statement["predicate"]
    assert predicate["model"] == "linear" and predicate["version"] == 1 and predicate["format"] == fmt
    assert predicate["versions"]["torch"] == version["summary"]["torch"]
    assert predicate["battery"] == {
        "size": version["summary"]["battery_size"],
        "seed": version["summary"]["battery_seed"],
    }
    report = next(a for a in version["artifacts"] if a["kind"] == "conversion-report")
    assert predicate["report"]["sha256"] == report["sha256"]
    assert predicate["runtimes"] and predicate["sandbox"]["judge"]["mode"] in ("auto", "strict")
    assert statement["subject"][0]["name"] == f"linear-1{Path(name).suffix}"


def test_the_public_keys_are_served_without_a_token(signed: Registry, tmp_path: Path) -> None:
    from regctl.registry.settings import Settings
    from tests.api_server import ApiServer

    settings = Settings.from_env({}, home=signed.home)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(tmp_path), **settings.to_env()}
    server = ApiServer.start({k: v for k, v in env.items() if v != ""}, tmp_path)
    try:
        import httpx

        keys = httpx.get(f"{server.url}/api/v1/keys").json()
        assert [k["current"] for k in keys] == [True]
        assert keys[0]["public_pem"].startswith("-----BEGIN PUBLIC KEY-----")
        denied = httpx.get(f"{server.url}/api/v1/versions/linear:1/artifacts/torchscript/attestation")
        assert denied.status_code == 401
    finally:
        server.stop()


# -- what must fail ------------------------------------------------------------------------------------


def _fetched(signed: Registry, tmp_path: Path) -> tuple[Path, Path, Path]:
    pub = signed.public_key(tmp_path / "registry.pub")
    out = tmp_path / "model.pt"
    assert signed.regctl("fetch", "linear", "-o", str(out)).returncode == 0
    return out, out.with_name("model.pt.intoto.jsonl"), pub


def test_one_byte_changed_in_the_artifact_or_in_the_statement_fails(signed: Registry, tmp_path: Path) -> None:
    out, attestation, pub = _fetched(signed, tmp_path)
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed = tmp_path / "changed.pt"
    changed.write_bytes(bytes(data))
    done = signed.regctl("verify", str(changed), "--attestation", str(attestation), "--key", str(pub))
    assert done.returncode == 6 and "not these bytes" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

    envelope = json.loads(attestation.read_bytes())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["battery"]["size"] += 1  # a claim changed after signing
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    forged = tmp_path / "forged.intoto.jsonl"
    forged.write_text(json.dumps(envelope) + "\n")
    done = signed.regctl("verify", str(out), "--attestation", str(forged), "--key", str(pub))
    assert done.returncode == 6 and "changed after signing" in done.stderr, done.stderr


def test_a_key_the_registry_never_had_fails(signed: Registry, tmp_path: Path) -> None:
    out, _, _ = _fetched(signed, tmp_path)
    stranger = _registry(tmp_path / "stranger")
    assert stranger.regctl("keys", "init").returncode == 0
    wrong = stranger.public_key(tmp_path / "stranger.pub")
    done = signed.regctl("verify", str(out), "--key", str(wrong))
    assert done.returncode == 6 and "no trusted key signed" in done.stderr, done.stderr
    fetched = signed.regctl("fetch", "linear", "-o", str(tmp_path / "again.pt"), "--key", str(wrong))
    assert fetched.returncode == 6 and not (tmp_path / "again.pt").exists()


def test_fetch_refuses_bytes_a_changed_registry_serves_and_writes_nothing(tmp_path: Path) -> None:
    # Whoever changes the database and the store together (or a mirror) cannot change the signature.
    reg = _registry(tmp_path)
    assert reg.regctl("keys", "init").returncode == 0
    linear = in_range("linear", tmp_path)
    done = reg.regctl("register", "linear", str(linear), "--format", "onnx", "--wait")
    assert done.returncode == 0, done.stderr[-2000:]
    pub = reg.public_key(tmp_path / "registry.pub")
    with sqlite3.connect(reg.home / "registry.db") as db:
        sha, size = db.execute("SELECT sha256, size FROM artifacts WHERE kind = 'onnx'").fetchone()
        db.execute("UPDATE artifacts SET sha256 = ?, size = ? WHERE kind = 'torchscript'", (sha, size))
    out = tmp_path / "deploy" / "model.pt"
    out.parent.mkdir()
    fetched = reg.regctl("fetch", "linear", "-o", str(out), "--key", str(pub))
    assert fetched.returncode == 6, fetched.stderr
    assert "has no attestation that names these bytes" in fetched.stderr
    assert list(out.parent.iterdir()) == [], "a refused fetch left a file"


# -- keys: rotation and retirement ---------------------------------------------------------------------


def test_rotation_keeps_old_attestations_and_a_retired_key_signs_nothing_new(tmp_path: Path) -> None:
    reg = _registry(tmp_path)
    assert reg.regctl("keys", "init").returncode == 0
    again = reg.regctl("keys", "init")
    assert again.returncode == 2 and "keys rotate" in again.stderr
    old_pub = reg.public_key(tmp_path / "old.pub")
    model = peeking_model(tmp_path / "m")
    assert reg.regctl("register", "m", str(model), "--wait").returncode == 0
    first = tmp_path / "first.pt"
    assert reg.regctl("fetch", "m:1", "-o", str(first), "--key", str(old_pub)).returncode == 0

    assert reg.regctl("keys", "rotate").returncode == 0
    new_pub = reg.public_key(tmp_path / "new.pub")
    assert reg.regctl("register", "m", str(model), "--new-version", "--wait").returncode == 0
    second = tmp_path / "second.pt"
    assert reg.regctl("fetch", "m:2", "-o", str(second), "--key", str(new_pub)).returncode == 0
    # each verifies against its own key only
    assert reg.regctl("verify", str(first), "--key", str(old_pub)).returncode == 0
    assert reg.regctl("verify", str(second), "--key", str(old_pub)).returncode == 6

    keys = json.loads(reg.regctl("keys", "show", "--json").stdout)
    old_id = next(k["key_id"] for k in keys if not k["current"])
    assert reg.regctl("keys", "retire", old_id[:12]).returncode == 0
    # what the old key signed before its retirement still verifies, through the registry too
    assert reg.regctl("fetch", "m:1", "-o", str(tmp_path / "still.pt"), "--key", str(old_pub)).returncode == 0

    current = next(k["key_id"] for k in keys if k["current"])
    assert reg.regctl("keys", "retire", current).returncode == 0
    assert reg.regctl("register", "m", str(model), "--new-version", "--wait").returncode == 0
    third = reg.show("m:3")
    assert third["status"] == "ready"
    assert third["summary"]["attestation"]["signed"] is False
    assert "is retired" in third["summary"]["attestation"]["why"]
    shown = reg.regctl("versions", "show", "m:3").stdout
    assert "not signed: signing key" in shown and "is retired" in shown
    assert "attestation" not in [a["kind"] for a in third["artifacts"]]


def test_a_signature_made_after_its_key_was_retired_does_not_verify() -> None:
    from datetime import UTC, datetime, timedelta

    from securesystemslib.signer import CryptoSigner

    from regctl.registry.provenance.envelope import AttestationRefused, sign, statement, verify

    signer = CryptoSigner.generate_ed25519()
    now = datetime.now(UTC)
    line = sign(statement("m-1.pt", "a" * 64, {"time": now.isoformat()}), signer)
    key = signer.public_key
    assert verify(line, "a" * 64, [key]).key_id == key.keyid
    assert verify(line, "a" * 64, [key], {key.keyid: now + timedelta(seconds=1)}).key_id == key.keyid
    with pytest.raises(AttestationRefused, match="retired before this attestation was signed"):
        verify(line, "a" * 64, [key], {key.keyid: now - timedelta(seconds=1)})


# -- hostile models --------------------------------------------------------------------------------------

PEEK = """
import torch

KEY = {key!r}


def build() -> torch.nn.Module:
    try:
        with open(KEY) as handle:
            secret = handle.read()
    except OSError:
        secret = None
    if secret is not None:
        raise RuntimeError("LEAKED " + secret[:60])
    torch.manual_seed(0)
    return torch.nn.Linear(10, 2)
"""
SPEC = """
entrypoint = "model.py:build"

[[inputs]]
name = "x"
dtype = "float32"
shape = ["batch", 10]

[dims]
batch = { min = 1, max = 4 }

[validation]
samples = 1
"""


def peeking_model(directory: Path, source: str = PEEK, key: str = "/nonexistent") -> Path:
    """A Linear model whose build() first tries to read `key`."""
    return write_model_dir(directory, spec=SPEC, files={"model.py": source.format(key=key)})


@pytest.mark.parametrize("place", ["home", "elsewhere"])
def test_a_hostile_model_cannot_read_the_signing_key(tmp_path: Path, place: str) -> None:
    key = tmp_path / "home" / "keys" / "signing.pem" if place == "home" else tmp_path / "keys" / "sign.pem"
    reg = _registry(tmp_path, REGCTL_SIGNING_KEY=str(key))
    assert reg.regctl("keys", "init").returncode == 0
    assert key.stat().st_mode & 0o077 == 0, "the key file is readable by others"
    done = reg.regctl("register", "peek", str(peeking_model(tmp_path / "peek", key=str(key))), "--wait")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LEAKED" not in done.stdout + done.stderr
    version = reg.show("peek:1")
    assert version["status"] == "ready" and version["summary"]["attestation"]["signed"] is True


def test_nothing_is_signed_that_the_judge_did_not_prove(signed: Registry) -> None:
    # trace alone cannot hold conditional's data-dependent branch: the judge rejects it
    done = signed.regctl(
        "register", "conditional", str(EXAMPLES / "conditional"), "--method", "trace", "--wait"
    )
    assert done.returncode == 1, done.stderr[-2000:]
    version = signed.show("conditional:1")
    assert version["status"] == "failed"
    assert [a for a in version["artifacts"] if a["kind"] == "attestation"] == []


def test_a_validate_job_adds_an_attestation_and_keeps_the_old_one(signed: Registry, tmp_path: Path) -> None:
    before = [a for a in signed.show("linear:1")["artifacts"] if a["kind"] == "attestation"]
    done = signed.regctl("submit", "linear:1", "--job", "validate", "--wait")
    assert done.returncode == 0, done.stderr[-2000:]
    after = [a for a in signed.show("linear:1")["artifacts"] if a["kind"] == "attestation"]
    assert after[: len(before)] == before, "an attestation was rewritten"
    added = after[len(before) :]
    assert [a["method"] for a in added] == ["torchscript"]
    out = tmp_path / "model.pt"
    pub = signed.public_key(tmp_path / "registry.pub")
    assert signed.regctl("fetch", "linear:1", "-o", str(out), "--key", str(pub)).returncode == 0
    lines = out.with_name("model.pt.intoto.jsonl").read_bytes().splitlines()
    jobs = [independent_verify(line, out.read_bytes(), pub.read_text())["predicate"]["job"] for line in lines]
    assert jobs[0].startswith("convert job ") and jobs[-1].startswith("validate job ")


def test_export_triton_and_export_carry_the_attestations(signed: Registry, tmp_path: Path) -> None:
    pub = signed.public_key(tmp_path / "registry.pub")
    repo = tmp_path / "triton"
    done = signed.regctl("export-triton", "linear:1", "--repo", str(repo))
    assert done.returncode == 0, done.stderr
    for model in (repo / "linear" / "1" / "model.pt", repo / "linear-onnx" / "1" / "model.onnx"):
        assert model.with_name(model.name + ".intoto.jsonl").is_file(), f"no attestation beside {model}"
        assert signed.regctl("verify", str(model), "--key", str(pub)).returncode == 0

    archive = tmp_path / "linear.tar"
    assert signed.regctl("export", "linear:1", "-o", str(archive)).returncode == 0, "export failed"
    elsewhere = _registry(tmp_path / "elsewhere")
    imported = elsewhere.regctl("import", str(archive))
    assert imported.returncode == 0, imported.stderr
    # the other registry holds the same signed statements: the first registry's key still vouches
    out = tmp_path / "imported.pt"
    fetched = elsewhere.regctl("fetch", "linear:1", "-o", str(out), "--key", str(pub))
    assert fetched.returncode == 0, fetched.stderr
