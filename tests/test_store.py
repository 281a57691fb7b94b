"""The content-addressed artifact store: layout, dedup, atomic writes, verified reads, bounded memory."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from regctl.registry.errors import CorruptedArtifact, InvalidInput, MissingBlob, NotFound, ServiceUnavailable
from regctl.registry.errors.files import ChangedWhileStored
from regctl.registry.store import ArtifactStore, LocalStore, RemoteStore, open_store, sha256_file
from regctl.registry.store.blobs import SealedFile, file_identity

MiB = 1 << 20


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return open_store(str(tmp_path / "artifacts"))


@pytest.fixture
def memory_store() -> Iterator[ArtifactStore]:
    # A fresh prefix per test: fsspec's memory filesystem is one process-wide dict.
    url = f"memory://regctl-test-{uuid.uuid4().hex}"
    yield open_store(url)
    fs = open_store(url).fs
    if fs.exists(url):
        fs.rm(url, recursive=True)


def _flip_last_byte(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


class _ExplodingStream(io.RawIOBase):
    """A stream that hands out `good_chunks` chunks and then fails, like a dropped upload."""

    def __init__(self, good_chunks: int) -> None:
        self.left = good_chunks

    def read(self, size: int = -1) -> bytes:
        if self.left == 0:
            raise ConnectionResetError("client went away")
        self.left -= 1
        return b"x" * 1000


def test_put_bytes_then_read_bytes_returns_the_same_content(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"hello weights")
    assert ref.sha256 == hashlib.sha256(b"hello weights").hexdigest()
    assert ref.size == 13
    assert store.read_bytes(ref.sha256) == b"hello weights"
    assert store.exists(ref.sha256)
    assert store.size(ref.sha256) == 13


def test_blob_key_is_sha256_then_two_hex_directory_then_the_other_62(
    store: ArtifactStore, tmp_path: Path
) -> None:
    ref = store.put_bytes(b"layout")
    expected = tmp_path / "artifacts" / "sha256" / ref.sha256[:2] / ref.sha256[2:]
    assert expected.is_file()
    assert ref.uri == str(expected) == store.uri_for(ref.sha256)
    assert len(expected.name) == 62


def test_file_url_and_plain_path_name_the_same_store(tmp_path: Path) -> None:
    ref = open_store(f"file://{tmp_path}/a").put_bytes(b"same")
    assert open_store(str(tmp_path / "a")).read_bytes(ref.sha256) == b"same"
    assert ref.uri.startswith(str(tmp_path / "a") + "/sha256/")


def test_put_file_and_put_stream_store_what_put_bytes_would(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "model.pt"
    src.write_bytes(b"abc" * 1_000_000)
    from_file = store.put_file(src)
    from_stream = store.put_stream(io.BytesIO(b"abc" * 1_000_000))
    assert from_file == from_stream
    assert from_file.sha256 == sha256_file(src) == hashlib.sha256(src.read_bytes()).hexdigest()
    assert from_file.size == 3_000_000


def test_same_content_put_twice_is_written_once(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def counting_replace(src: str, dst: str) -> None:
        renames.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", counting_replace)
    src = tmp_path / "w.bin"
    src.write_bytes(b"dedup me")
    first = store.put_bytes(b"dedup me")
    inode = os.stat(first.uri).st_ino
    assert store.put_bytes(b"dedup me") == first
    assert store.put_file(src) == first
    assert store.put_stream(io.BytesIO(b"dedup me")) == first
    assert len(renames) == 1
    assert os.stat(first.uri).st_ino == inode
    assert os.listdir(tmp_path / "artifacts" / "tmp") == []


def test_a_file_known_to_be_new_is_hashed_while_copied_and_still_deduplicated(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import regctl.registry.store.base as base

    src = tmp_path / "weights.bin"
    src.write_bytes(os.urandom(3_000_000))
    hashed: list[Path] = []
    monkeypatch.setattr(base, "sha256_file", lambda path: hashed.append(path) or sha256_file(path))
    ref = store.put_file(src, maybe_stored=False)
    assert hashed == []  # no pass before the copy
    assert ref.sha256 == hashlib.sha256(src.read_bytes()).hexdigest() and ref.size == 3_000_000
    assert store.read_bytes(ref.sha256) == src.read_bytes()
    # told wrongly that it is new: the copy is dropped, the stored blob stands
    inode = os.stat(ref.uri).st_ino
    assert store.put_file(src, maybe_stored=False) == ref
    assert os.stat(ref.uri).st_ino == inode
    assert os.listdir(tmp_path / "artifacts" / "tmp") == []


def test_a_file_written_while_it_is_copied_is_refused_and_leaves_nothing(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import regctl.registry.store.base as base

    src = tmp_path / "weights.bin"
    src.write_bytes(b"a" * 2_000_000)
    real_chunks = base.read_chunks

    def chunks_then_a_write(f):  # type: ignore[no-untyped-def]
        for i, chunk in enumerate(real_chunks(f)):
            if i == 0:
                with open(src, "r+b") as writer:  # the training script saves over it meanwhile
                    writer.write(b"b" * 10)
            yield chunk

    monkeypatch.setattr(base, "read_chunks", chunks_then_a_write)
    with pytest.raises(ChangedWhileStored, match="changed"):
        store.put_file(src, maybe_stored=False)
    assert os.listdir(tmp_path / "artifacts" / "tmp") == []
    assert not store.exists(hashlib.sha256(b"a" * 2_000_000).hexdigest())


def test_stream_failing_mid_write_leaves_no_blob_and_no_temp_file(
    store: ArtifactStore, tmp_path: Path
) -> None:
    with pytest.raises(ConnectionResetError):
        store.put_stream(_ExplodingStream(good_chunks=3))
    partial = hashlib.sha256(b"x" * 3000).hexdigest()
    assert not store.exists(partial)
    assert not (tmp_path / "artifacts" / "sha256").exists()
    assert os.listdir(tmp_path / "artifacts" / "tmp") == []


def test_crash_at_rename_leaves_no_blob_at_the_final_key(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_replace(src: str, dst: str) -> None:
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", failing_replace)
    src = tmp_path / "w.bin"
    src.write_bytes(b"never lands")
    with pytest.raises(OSError, match="simulated crash"):
        store.put_file(src)
    assert not store.exists(sha256_file(src))
    assert not Path(store.uri_for(sha256_file(src))).exists()
    assert os.listdir(tmp_path / "artifacts" / "tmp") == []


def test_corrupted_blob_is_never_copied_to_its_destination(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_bytes(os.urandom(3 * MiB + 5))
    _flip_last_byte(Path(ref.uri))
    dest = tmp_path / "out" / "model.pt"
    with pytest.raises(CorruptedArtifact, match=ref.sha256) as info:
        store.copy_to(ref.sha256, dest)
    assert ref.uri in str(info.value)
    assert "re-register" in str(info.value)
    assert "\n" not in str(info.value)
    assert not dest.exists()
    assert os.listdir(dest.parent) == []


def test_corrupted_blob_fails_read_bytes_verify_and_open_chunks_at_the_end(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"a" * (2 * MiB))
    _flip_last_byte(Path(ref.uri))
    with pytest.raises(CorruptedArtifact):
        store.read_bytes(ref.sha256)
    with pytest.raises(CorruptedArtifact):
        store.verify(ref.sha256)
    chunks = store.open_chunks(ref.sha256)
    assert next(chunks) == b"a" * MiB
    with pytest.raises(CorruptedArtifact):
        list(chunks)


def test_copy_to_writes_the_blob_and_reports_progress(store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(2 * MiB + 17)
    ref = store.put_bytes(data)
    seen: list[int] = []
    dest = tmp_path / "fetched" / "model.pt"
    assert store.copy_to(ref.sha256, dest, progress=seen.append) == ref
    assert dest.read_bytes() == data
    assert seen and seen == sorted(seen) and seen[-1] == 2 * MiB + 17
    store.verify(ref.sha256)


def test_missing_blob_is_an_integrity_failure_naming_sha_and_store(
    store: ArtifactStore, tmp_path: Path
) -> None:
    # A row references every blob the store is asked for: its absence is damage (exit 6), not "not found".
    sha = "ab" * 32
    assert not store.exists(sha)
    for call in (store.read_bytes, store.verify, store.size, store.open_chunks):
        with pytest.raises(MissingBlob, match=f"sha256:{sha} is missing from the store {store.root}") as info:
            call(sha)
        assert info.value.exit_code == 6 and not isinstance(info.value, NotFound)
    with pytest.raises(MissingBlob):
        store.copy_to(sha, tmp_path / "dest.pt")
    with pytest.raises(MissingBlob):
        store.link_to(sha, tmp_path / "linked.pt")
    assert not (tmp_path / "dest.pt").exists() and not (tmp_path / "linked.pt").exists()


@pytest.mark.parametrize("bad", ["", "abc", "AB" * 32, "g" * 64, "a" * 65, "../" + "a" * 61])
def test_malformed_sha256_is_rejected_as_invalid_input(store: ArtifactStore, bad: str) -> None:
    for call in (store.exists, store.uri_for, store.read_bytes, store.verify, store.size):
        with pytest.raises(InvalidInput, match="64 lowercase hex"):
            call(bad)


def test_unknown_protocol_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="nosuchproto://x"):
        open_store("nosuchproto://x")


def test_the_url_scheme_alone_chooses_the_backend(tmp_path: Path) -> None:
    for local in (str(tmp_path / "a"), f"file://{tmp_path}/a", "~/regctl-artifacts", "relative/artifacts"):
        assert type(open_store(local)) is LocalStore
    assert type(open_store(f"memory://regctl-test-{uuid.uuid4().hex}")) is RemoteStore
    with pytest.raises(TypeError):
        ArtifactStore(str(tmp_path / "a"))  # type: ignore[abstract]  (the interface alone stores nothing)


@pytest.mark.slow
def test_a_210_mb_file_round_trips_with_bounded_python_memory(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    block = os.urandom(MiB)
    expected = hashlib.sha256()
    with open(src, "wb") as f:
        for i in range(210):
            chunk = i.to_bytes(4, "big") + block[4:]
            expected.update(chunk)
            f.write(chunk)
    dest = tmp_path / "copy.bin"
    tracemalloc.start()
    try:
        ref = store.put_file(src)
        store.copy_to(ref.sha256, dest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB
    assert ref.sha256 == expected.hexdigest() == sha256_file(dest)
    assert ref.size == dest.stat().st_size == 210 * MiB


def test_memory_filesystem_round_trips_with_a_full_uri(memory_store: ArtifactStore) -> None:
    ref = memory_store.put_bytes(b"in memory")
    assert ref.uri == f"{memory_store.root}/sha256/{ref.sha256[:2]}/{ref.sha256[2:]}"
    assert ref.uri.startswith("memory://")
    assert memory_store.read_bytes(ref.sha256) == b"in memory"
    assert open_store(memory_store.root).read_bytes(ref.sha256) == b"in memory"
    assert memory_store.put_stream(io.BytesIO(b"in memory")) == ref


def test_memory_filesystem_writes_same_content_once(
    memory_store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    moves: list[str] = []
    real_mv = memory_store.fs.mv
    monkeypatch.setattr(memory_store.fs, "mv", lambda a, b, **kw: (moves.append(b), real_mv(a, b, **kw)))
    first = memory_store.put_bytes(b"once")
    assert memory_store.put_bytes(b"once") == first
    assert memory_store.put_stream(io.BytesIO(b"once")) == first
    assert len(moves) == 1
    assert memory_store.fs.find(f"{memory_store.root}/tmp") == []


def test_memory_filesystem_detects_corruption_and_leaves_no_temp_on_failed_upload(
    memory_store: ArtifactStore, tmp_path: Path
) -> None:
    ref = memory_store.put_bytes(b"pristine")
    memory_store.fs.pipe(ref.uri, b"tampered")
    with pytest.raises(CorruptedArtifact, match=ref.sha256):
        memory_store.copy_to(ref.sha256, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()
    with pytest.raises(ConnectionResetError):
        memory_store.put_stream(_ExplodingStream(good_chunks=2))
    assert memory_store.fs.find(f"{memory_store.root}/tmp") == []


def test_unreachable_remote_store_raises_service_unavailable_naming_the_url(
    memory_store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(memory_store.fs, "info", down)
    with pytest.raises(ServiceUnavailable, match=memory_store.root):
        memory_store.exists("cd" * 32)


def test_store_module_imports_neither_torch_nor_celery() -> None:
    probe = "import sys, registry.store; print(sorted({'torch', 'celery'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_link_to_gives_the_checked_blob_itself_without_a_copy(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_bytes(os.urandom(MiB))
    dest = tmp_path / "job" / "model" / "w.safetensors"
    assert store.link_to(ref.sha256, dest) == ref
    assert os.stat(dest).st_ino == os.stat(ref.uri).st_ino
    assert os.stat(dest).st_mode & 0o777 == 0o444  # readers cannot change the store's bytes through it


def test_link_to_refuses_a_corrupted_blob(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_bytes(os.urandom(MiB))
    _flip_last_byte(Path(ref.uri))
    dest = tmp_path / "job" / "w.safetensors"
    with pytest.raises(CorruptedArtifact, match=ref.sha256):
        store.link_to(ref.sha256, dest)
    assert not dest.exists()


def test_link_checking_links_at_once_and_its_check_finds_a_damaged_blob(
    store: ArtifactStore, tmp_path: Path
) -> None:
    sound = store.put_bytes(os.urandom(MiB))
    linked = store.link_checking(sound.sha256, tmp_path / "job" / "sound.safetensors")
    assert (
        linked.ref == sound
        and os.stat(tmp_path / "job" / "sound.safetensors").st_ino == os.stat(sound.uri).st_ino
    )
    linked.check.wait()  # passes
    damaged = store.put_bytes(os.urandom(MiB))
    _flip_last_byte(Path(damaged.uri))
    dest = tmp_path / "job" / "damaged.safetensors"
    pending = store.link_checking(damaged.sha256, dest)
    assert dest.exists()  # the model process may read it meanwhile; the job waits before recording
    for _ in range(2):  # every place that asks is told
        with pytest.raises(CorruptedArtifact, match=damaged.sha256):
            pending.check.wait()


def test_link_to_a_remote_store_copies(memory_store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(MiB)
    ref = memory_store.put_bytes(data)
    dest = tmp_path / "w.safetensors"
    memory_store.link_to(ref.sha256, dest)
    assert dest.read_bytes() == data


def test_adopting_a_job_output_moves_its_inode_into_the_store(store: ArtifactStore, tmp_path: Path) -> None:
    output = tmp_path / "judge" / "model.pt"
    output.parent.mkdir()
    data = os.urandom(2 * MiB)
    output.write_bytes(data)
    ref = store.adopt_file(output)
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert os.stat(ref.uri).st_ino == os.stat(output).st_ino
    assert os.stat(ref.uri).st_mode & 0o777 == 0o444
    assert store.read_bytes(ref.sha256) == data
    again = tmp_path / "judge" / "again.pt"
    again.write_bytes(data)
    assert store.adopt_file(again) == ref  # already stored: the new file is left alone
    assert os.stat(again).st_ino != os.stat(ref.uri).st_ino


def test_a_sealed_output_is_stored_under_its_seal_and_one_changed_since_is_hashed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    (tmp_path / "builder").mkdir()

    def output(name: str, data: bytes, mode: int) -> tuple[Path, SealedFile]:
        path = tmp_path / "builder" / name
        path.write_bytes(data)
        os.chmod(path, mode)
        return path, SealedFile(hashlib.sha256(data).hexdigest(), file_identity(os.lstat(path)))

    path, sealed = output("model.pt", b"sealed bytes", 0o444)
    assert store.adopt_file(path, sealed).sha256 == sealed.sha256
    # A seal is taken at its word while the inode is the one sealed (the supervisor alone seals):
    # a seal naming other bytes is what shows the file was not read a second time.
    path, sealed = output("trusted.pt", b"other bytes", 0o444)
    claimed = SealedFile("ab" * 32, sealed.identity)
    assert store.adopt_file(path, claimed).sha256 == "ab" * 32
    # Written after its seal (here: grown by a byte), it is hashed and stored as what it now holds.
    path, sealed = output("changed.pt", b"judged bytes", 0o444)
    os.chmod(path, 0o644)
    with open(path, "ab") as more:
        more.write(b"!")
    os.chmod(path, 0o444)
    assert store.adopt_file(path, sealed).sha256 == hashlib.sha256(b"judged bytes!").hexdigest()
    # Writable by others when sealed, or sealed without an identity: hashed, whatever the seal says.
    path, sealed = output("open.pt", b"anyone's bytes", 0o666)
    wrong = SealedFile("cd" * 32, sealed.identity)
    assert store.adopt_file(path, wrong).sha256 == hashlib.sha256(b"anyone's bytes").hexdigest()
    path, sealed = output("unpinned.pt", b"unpinned bytes", 0o444)
    assert store.adopt_file(path, SealedFile("ef" * 32, None)).sha256 == sealed.sha256


def test_adopting_refuses_links_planted_by_the_writer(store: ArtifactStore, tmp_path: Path) -> None:
    other = tmp_path / "secret"
    other.write_bytes(b"not yours")
    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "model.pt").symlink_to(other)
    with pytest.raises(InvalidInput, match="cannot be stored"):
        store.adopt_file(tmp_path / "judge" / "model.pt")
    os.link(other, tmp_path / "judge" / "hard.pt")
    with pytest.raises(InvalidInput, match="not a plain file of its own"):
        store.adopt_file(tmp_path / "judge" / "hard.pt")
    assert list(Path(store.root).glob("sha256/*/*")) == []


def test_a_stream_that_is_not_the_expected_blob_is_stored_under_no_name(store: ArtifactStore) -> None:
    import hashlib

    data = b"the bytes an archive promised"
    sha = hashlib.sha256(data).hexdigest()
    with pytest.raises(CorruptedArtifact, match="nothing was stored"):
        store.put_stream(io.BytesIO(data[:-1] + b"?"), expect=(sha, len(data)))
    assert [f for f in store.listing()] == []  # neither a blob under another name nor a temp
    assert store.put_stream(io.BytesIO(data), expect=(sha, len(data))).sha256 == sha
