"""The artifact store on a real S3-compatible server (moto's server mode) through s3fs."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from regctl.registry.errors import CorruptedArtifact, MissingBlob, ServiceUnavailable
from regctl.registry.store import ArtifactStore, open_store
from tests.s3_server import new_bucket, s3_server


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    """The environment of a running S3 server shared by this module's tests."""
    with s3_server() as env:
        yield env


@pytest.fixture
def bucket(s3_env: dict[str, str]) -> str:
    """A fresh bucket."""
    return new_bucket(s3_env)


@pytest.fixture
def store(bucket: str) -> ArtifactStore:
    """A store under a prefix of a fresh bucket."""
    return open_store(f"s3://{bucket}/artifacts")


def _client(env: dict[str, str]):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")


def _keys(env: dict[str, str], bucket: str) -> list[str]:
    listed = _client(env).list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listed.get("Contents", []))


def test_blobs_round_trip_under_the_content_address(store: ArtifactStore, s3_env: dict, bucket: str) -> None:
    data = b"torchscript bytes" * 1000
    ref = store.put_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    assert ref.uri == f"s3://{bucket}/artifacts/sha256/{sha[:2]}/{sha[2:]}"
    assert _keys(s3_env, bucket) == [f"artifacts/sha256/{sha[:2]}/{sha[2:]}"]
    assert store.read_bytes(sha) == data


def test_a_blob_already_stored_is_not_uploaded_again(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(os.urandom(4096))
    store.put_file(path)
    moves: list[object] = []
    monkeypatch.setattr(store.fs, "mv", lambda *a, **k: moves.append(a))
    again = store.put_file(path)
    assert moves == [] and again.size == 4096


def test_a_failed_upload_leaves_no_object_behind(store: ArtifactStore, s3_env: dict, bucket: str) -> None:
    class Breaks(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
            if self.sent > 3 << 20:
                raise ConnectionResetError("client went away")
            buffer[: len(buffer)] = b"x" * len(buffer)
            self.sent += len(buffer)
            return len(buffer)

    with pytest.raises(ConnectionResetError):
        store.put_stream(io.BufferedReader(Breaks()))
    assert _keys(s3_env, bucket) == []


def test_a_corrupted_object_is_reported_and_never_written_out(
    store: ArtifactStore, s3_env: dict, bucket: str, tmp_path: Path
) -> None:
    ref = store.put_bytes(b"good bytes" * 100)
    key = ref.uri.removeprefix(f"s3://{bucket}/")
    _client(s3_env).put_object(Bucket=bucket, Key=key, Body=b"evil bytes" * 100)
    with pytest.raises(CorruptedArtifact, match=ref.sha256):
        store.copy_to(ref.sha256, tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()


def test_a_missing_object_is_a_missing_blob(store: ArtifactStore) -> None:
    with pytest.raises(MissingBlob, match="is missing from the store s3://"):
        store.read_bytes("ab" * 32)


def test_an_unreachable_endpoint_is_service_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = open_store("s3://nowhere/artifacts")
    with pytest.raises(ServiceUnavailable, match="s3://nowhere/artifacts is unreachable"):
        store.exists("cd" * 32)


@pytest.mark.slow
def test_large_blobs_stream_with_bounded_memory(store: ArtifactStore, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    tracemalloc.start()
    try:
        ref = store.put_file(path)
        store.copy_to(ref.sha256, tmp_path / "back.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "back.bin").read_bytes() == path.read_bytes()
    assert peak < 48 << 20, f"peak Python allocation {peak / 2**20:.1f} MB for a 64 MB blob"


def test_a_presigned_url_serves_the_blob_without_credentials(store: ArtifactStore) -> None:
    import httpx

    blob = store.put_bytes(b"weights" * 1000)
    url = store.presign(blob.sha256, expires_s=60)
    assert url is not None and "Signature" in url
    assert httpx.get(url).content == b"weights" * 1000
    assert open_store("/tmp/local-store").presign(blob.sha256) is None


def test_a_range_of_a_stored_object_reads_just_those_bytes(store: ArtifactStore) -> None:
    data = bytes(range(256)) * 100
    blob = store.put_bytes(data)
    assert b"".join(store.open_range(blob.sha256, 1000, 300, chunk_size=128)) == data[1000:1300]


def test_a_process_keeps_one_store_and_one_s3_client_per_url(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{bucket}/blobs"
    first = open_store(url)
    first.put_bytes(b"one client")
    assert open_store(url) is first and open_store(url).fs is first.fs
    assert open_store(f"s3://{bucket}/other") is not first
    # a client is built from the AWS variables: another endpoint or key gets its own
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "someone-else")
    assert open_store(url) is not first
    monkeypatch.undo()
    assert open_store(url) is first
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # a forked child must not share the parent's connections
        os.write(write, b"1" if open_store(url) is not first else b"0")
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 1) == b"1"


def test_gc_aborts_the_multipart_uploads_a_killed_writer_left_and_doctor_names_them(
    bucket: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    from regctl.registry.db import ensure_schema
    from regctl.registry.ops.doctor import check_registry
    from regctl.registry.ops.gc import collect_garbage
    from regctl.registry.settings import Settings

    settings = Settings.from_env({}, home=tmp_path, artifact_store=f"s3://{bucket}/artifacts")
    ensure_schema(settings.database_url)
    s3 = _client(s3_env)
    # what s3fs leaves when its process is killed between two parts of a large blob
    started = s3.create_multipart_upload(Bucket=bucket, Key="artifacts/tmp/0123abcd")
    s3.upload_part(
        Bucket=bucket,
        Key="artifacts/tmp/0123abcd",
        UploadId=started["UploadId"],
        PartNumber=1,
        Body=b"x" * 1024,
    )
    elsewhere = s3.create_multipart_upload(Bucket=bucket, Key="not-ours/x")  # outside the store's prefix

    def pending() -> set[str]:
        return {u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}

    # moto dates every upload 2010-11-10: a grace longer than that keeps it, as an hour's keeps a live one
    assert collect_garbage(settings, grace_s=1e10).aborted_uploads == []
    assert pending() == {"artifacts/tmp/0123abcd", "not-ours/x"}
    named = [p for p in check_registry(settings, grace_s=0).problems if p.kind == "incomplete_upload"]
    assert [p.subject for p in named] == [f"{bucket}/artifacts/tmp/0123abcd"]
    assert "'regctl gc' aborts it" in named[0].message
    done = collect_garbage(settings, grace_s=0)
    assert done.aborted_uploads == [f"{bucket}/artifacts/tmp/0123abcd ({started['UploadId']})"]
    assert pending() == {"not-ours/x"}
    assert not [p for p in check_registry(settings, grace_s=0).problems if p.kind == "incomplete_upload"]
    s3.abort_multipart_upload(Bucket=bucket, Key="not-ours/x", UploadId=elsewhere["UploadId"])
