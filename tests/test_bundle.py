"""The source bundle: a deterministic tar of a model directory's code and named data (the weights stay
out, as their own blob), extracted safely from a file or straight from the store's checked stream."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from regctl.registry.bundle import BundleInfo, build_bundle, extract_stream, weights_file
from regctl.registry.errors import CorruptedArtifact, InvalidSpec
from regctl.registry.spec import ModelSpec, load_spec
from tests.factories import recorded_inputs
from tests.test_spec import MODEL_PY, spec_toml

CAP = 10 * 1024 * 1024
WEIGHTS = bytes(range(256)) * 4096  # 1 MiB
FULL_TOML = spec_toml(top='weights = "w.safetensors"', tail='[validation]\ninputs = "data/rec.safetensors"')


def make_model_dir(root: Path, toml: str = FULL_TOML, files: dict[str, bytes] | None = None) -> Path:
    """A model directory with code, the spec's data files, and clutter that must stay out of the bundle."""
    directory = root / "model"
    tree = {
        "regctl.toml": toml.encode(),
        "model.py": MODEL_PY.encode(),
        "pkg/__init__.py": b"",
        "pkg/layers.py": b"LAYERS = 2\n",
        "w.safetensors": WEIGHTS,
        "data/rec.safetensors": recorded_inputs(),
        "README.md": b"# readme\n",  # the model card
        # clutter
        "pkg/README.md": b"# only the top-level README is the card\n",
        "data/train.csv": b"a,b\n1,2\n",
        "pkg/__pycache__/layers.cpython-311.pyc": b"\x00",
        "pkg/__pycache__/stale.py": b"",
        ".hidden.py": b"",
        ".git/hooks/pre-commit.py": b"",
        ".venv/lib/site.py": b"",
        "env2/pyvenv.cfg": b"home = /usr/bin\n",
        "env2/lib/python3.11/site-packages/torch.py": b"",
        "node_modules/x.py": b"",
        **(files or {}),
    }
    for name, content in tree.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return directory


def bundle(directory: Path, dest: Path, max_bytes: int = CAP, spec: ModelSpec | None = None) -> BundleInfo:
    return build_bundle(directory, spec or load_spec(directory), dest, max_bytes)


def bundle_error(directory: Path, dest: Path, max_bytes: int = CAP, spec: ModelSpec | None = None) -> str:
    """The one-line InvalidSpec message of a refused bundle; no file is left at or beside `dest`."""
    spec = spec or load_spec(directory)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with pytest.raises(InvalidSpec) as info:
        build_bundle(directory, spec, dest, max_bytes)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []
    assert "\n" not in str(info.value)
    return str(info.value)


EXPECTED_FILES = (
    "README.md",
    "data/rec.safetensors",
    "model.py",
    "pkg/__init__.py",
    "pkg/layers.py",
    "regctl.toml",
)


def test_the_bundle_holds_code_spec_card_and_named_data_files_and_nothing_else(tmp_path: Path) -> None:
    info = bundle(make_model_dir(tmp_path), tmp_path / "out" / "source.tar")
    assert info.files == EXPECTED_FILES
    assert info.card == "# readme\n"
    with tarfile.open(info.path) as tar:
        assert tuple(tar.getnames()) == EXPECTED_FILES


def test_an_upload_bundle_carries_the_weights_too(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path)
    info = build_bundle(
        directory, load_spec(directory), tmp_path / "out" / "upload.tar", CAP, include_weights=True
    )
    assert info.files == tuple(sorted((*EXPECTED_FILES, "w.safetensors")))
    assert info.weights_sha256 == hashlib.sha256(WEIGHTS).hexdigest()


def test_the_weights_file_is_checked_against_its_own_cap(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path)
    spec = load_spec(directory)
    assert weights_file(directory, spec, len(WEIGHTS)) == directory / "w.safetensors"
    with pytest.raises(InvalidSpec, match=r"more than the cap of 0\.5 MB \(REGCTL_MAX_WEIGHTS_BYTES\)"):
        weights_file(directory, spec, 512 * 1024)
    # the code bundle is not held to the weights' size
    assert bundle(directory, tmp_path / "out" / "source.tar", max_bytes=512 * 1024).files == EXPECTED_FILES


def test_members_carry_fixed_metadata(tmp_path: Path) -> None:
    info = bundle(make_model_dir(tmp_path), tmp_path / "out" / "source.tar")
    with tarfile.open(info.path) as tar:
        members = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode, m.isreg()) for m in members} == {
        (0, 0, 0, "", "", 0o644, True)
    }


def test_the_info_reports_digest_and_size(tmp_path: Path) -> None:
    info = bundle(make_model_dir(tmp_path), tmp_path / "out" / "source.tar")
    written = info.path.read_bytes()
    assert info.sha256 == hashlib.sha256(written).hexdigest()
    assert info.size == len(written)
    assert info.weights_sha256 is None  # the weights are stored on their own


def test_a_spec_without_weights_has_no_weights_digest(tmp_path: Path) -> None:
    info = bundle(make_model_dir(tmp_path, spec_toml()), tmp_path / "out" / "source.tar")
    assert info.weights_sha256 is None
    assert "w.safetensors" not in info.files


def test_the_same_contents_give_a_byte_identical_bundle_whatever_the_times_and_modes(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path)
    first = bundle(directory, tmp_path / "a" / "one.tar")
    for path in directory.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    (directory / "model.py").chmod(0o755)
    second = bundle(directory, tmp_path / "b" / "two.tar")
    assert second.sha256 == first.sha256
    assert second.path.read_bytes() == first.path.read_bytes()


def test_a_copy_of_the_directory_elsewhere_gives_the_same_bundle(tmp_path: Path) -> None:
    first = bundle(make_model_dir(tmp_path / "x"), tmp_path / "a" / "source.tar")
    second = bundle(make_model_dir(tmp_path / "y"), tmp_path / "b" / "source.tar")
    assert second.sha256 == first.sha256


def test_changing_one_code_file_changes_the_digest(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path)
    first = bundle(directory, tmp_path / "a" / "source.tar")
    (directory / "pkg" / "layers.py").write_text("LAYERS = 3\n")
    assert bundle(directory, tmp_path / "b" / "source.tar").sha256 != first.sha256


def test_a_directory_over_the_size_cap_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path, files={"data/rec.safetensors": recorded_inputs(len(WEIGHTS))})
    message = bundle_error(directory, tmp_path / "out" / "source.tar", max_bytes=512 * 1024)
    assert f"model directory {directory} holds 1.0 MB of code and data" in message
    assert "more than the cap of 0.5 MB (REGCTL_MAX_BUNDLE_BYTES)" in message
    assert "the largest file is data/rec.safetensors (1.0 MB)" in message


def test_a_py_symlink_to_a_file_outside_the_directory_is_refused(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path)
    (directory / "pkg" / "secret.py").symlink_to("/etc/passwd")
    message = bundle_error(directory, tmp_path / "out" / "source.tar")
    assert (
        f"{directory / 'pkg' / 'secret.py'} is a symlink to /etc/passwd, outside the model directory"
        in message
    )


def test_a_symlinked_directory_outside_the_model_directory_is_refused(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path)
    (tmp_path / "shared").mkdir()
    (directory / "shared").symlink_to(tmp_path / "shared")
    assert "shared is a symlink to" in bundle_error(directory, tmp_path / "out" / "source.tar")


def test_a_weights_symlink_outside_the_directory_is_refused_even_if_the_spec_was_not_checked(
    tmp_path: Path,
) -> None:
    directory = make_model_dir(tmp_path)
    spec = load_spec(directory)
    (directory / "w.safetensors").unlink()
    (directory / "w.safetensors").symlink_to("/etc/passwd")
    message = bundle_error(directory, tmp_path / "out" / "source.tar", spec=spec)
    assert "w.safetensors is a symlink to /etc/passwd" in message
    with pytest.raises(InvalidSpec, match=r"w\.safetensors is a symlink to /etc/passwd"):
        weights_file(directory, spec, CAP)


def test_a_data_path_that_escapes_the_directory_is_refused(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path)
    (tmp_path / "stolen.pt").write_bytes(b"x")
    spec = ModelSpec.from_dict({**load_spec(directory).to_dict(), "weights": "../stolen.pt"})
    assert "the path escapes the model directory" in bundle_error(
        directory, tmp_path / "out" / "s.tar", spec=spec
    )


def test_a_symlink_inside_the_directory_is_stored_as_a_regular_file(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path)
    (directory / "alias.py").symlink_to(directory / "pkg" / "layers.py")
    (directory / "loop").symlink_to(directory)  # a link back up must not recurse forever
    info = bundle(directory, tmp_path / "out" / "source.tar")
    assert "alias.py" in info.files
    assert not any(name.startswith("loop/") for name in info.files)
    with tarfile.open(info.path) as tar:
        member = tar.getmember("alias.py")
        assert member.isreg()
        assert tar.extractfile(member).read() == b"LAYERS = 2\n"  # type: ignore[union-attr]


def _escaping_tar(path: Path) -> Path:
    """A tar whose one member would land outside the directory it is unpacked into."""
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("../escaped.py")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    return path


def _chunks_of(path: Path, size: int = 1000) -> list[bytes]:
    data = path.read_bytes()
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_a_bundle_unpacks_straight_from_a_stream(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path)
    info = bundle(directory, tmp_path / "out" / "source.tar")
    target = extract_stream(iter(_chunks_of(info.path)), tmp_path / "unpacked", "m:1 source")
    assert target == tmp_path / "unpacked"
    extracted = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert tuple(extracted) == EXPECTED_FILES
    for name in EXPECTED_FILES:
        assert (target / name).read_bytes() == (directory / name).read_bytes()
    (target / "w.safetensors").write_bytes(WEIGHTS)  # a worker links the weights blob in beside the code
    assert load_spec(target) == load_spec(directory)


def test_a_stream_that_fails_its_check_after_the_tar_ends_still_fails_the_extraction(tmp_path: Path) -> None:
    info = bundle(make_model_dir(tmp_path), tmp_path / "out" / "source.tar")

    def checked() -> Iterator[bytes]:
        yield from _chunks_of(info.path)
        raise CorruptedArtifact("digest mismatch")  # what the store raises after the last chunk

    with pytest.raises(CorruptedArtifact, match="digest mismatch"):
        extract_stream(checked(), tmp_path / "unpacked", "m:1 source")


def test_a_streamed_bundle_with_an_escaping_member_is_refused(tmp_path: Path) -> None:
    evil = _escaping_tar(tmp_path / "evil.tar")
    with pytest.raises(CorruptedArtifact, match="m:1 source cannot be unpacked safely"):
        extract_stream(iter(_chunks_of(evil)), tmp_path / "unpacked", "m:1 source")
    assert not (tmp_path / "escaped.py").exists()
