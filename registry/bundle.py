"""The source bundle: a model directory's code and data in one deterministic tar, for any worker to rebuild.

A bundle holds every `*.py` file under the directory (recursively, skipping `__pycache__`, hidden files and
directories, and virtualenv-like directories), `regctl.toml`, the recorded inputs the spec names, and the
top-level `README.md`, the version's model card (registry/card.py). Nothing else is included: other
READMEs, notebooks, datasets and other files stay behind.

The weights file is not in the bundle: it is stored as its own content-addressed blob (the `weights`
artifact), so a version that changes only code reuses the stored weights and one that changes only weights
reuses the code. The bundle cap (REGCTL_MAX_BUNDLE_BYTES) applies to code and small data; the weights have
their own, much larger one (REGCTL_MAX_WEIGHTS_BYTES). Only an upload to `regctl serve` carries the weights
inside the tar (`include_weights`), and the server splits them off again.

The tar is uncompressed POSIX (pax) with sorted members, mtime 0, uid/gid 0, no owner names and mode 0644,
so the same directory contents always give the same bytes and the same sha256, whatever the file times,
owners or the machine's zlib. Weights are mostly incompressible, so compression would buy little.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from regctl.registry.card import CARD_FILENAME, card_file, read_card
from regctl.registry.chunks import ChunkReader
from regctl.registry.errors.files import (
    BrokenSymlink,
    BundleTooBig,
    EntrypointLeftOut,
    NamedFileMissing,
    NamedPathNotFile,
    PathEscapes,
    SpecialFile,
    SymlinkLoop,
    SymlinkOutside,
    TooManyFiles,
    WeightsTooBig,
)
from regctl.registry.errors.services import BundleDamaged
from regctl.registry.spec import SPEC_FILENAME, ModelSpec, entrypoint_files

BUNDLE_SUFFIX = ".tar"
_SKIPPED_DIRS = {"__pycache__", "site-packages", "node_modules", "__pypackages__", "venv", "virtualenv"}
_VENV_MARKERS = ("pyvenv.cfg", "conda-meta")


@dataclass(frozen=True)
class BundleInfo:
    """A written bundle: where it is, its digest and size, its members, the digest of the weights file,
    and the model card (README.md) it carries, checked."""

    path: Path
    sha256: str
    size: int
    files: tuple[str, ...]
    weights_sha256: str | None
    card: str | None = None


def build_bundle(
    directory: Path, spec: ModelSpec, dest: Path, max_bytes: int, *, include_weights: bool = False
) -> BundleInfo:
    """Write the bundle of `directory` to `dest` (see the module docstring for what it holds).

    Raises InvalidSpec for a symlink or path that leads outside the directory, or when the code and data
    files total more than `max_bytes` (the weights, even when included, are checked by `weights_file`).
    `dest` only appears once it is complete; on any error it is not left behind.
    """
    root = directory.resolve()
    files = collect_files(directory, spec)
    _check_size(directory, files, max_bytes)
    card = read_card(directory) if CARD_FILENAME in files else None
    if include_weights and spec.weights:
        files = dict(sorted({**files, Path(spec.weights).as_posix(): directory / spec.weights}.items()))
    weights = Path(spec.weights).as_posix() if spec.weights else None
    weights_digest: list[str] = []
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, partial_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    partial = Path(partial_name)
    partial.chmod(0o644)
    try:
        with os.fdopen(handle, "wb") as raw:
            out = _HashingWriter(raw)
            with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[arg-type]
                for name, path in files.items():
                    _add_file(tar, name, path, root, weights_digest if name == weights else None)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return BundleInfo(
        path=dest,
        sha256=out.sha256.hexdigest(),
        size=out.size,
        files=tuple(files),
        weights_sha256=weights_digest[0] if weights_digest else None,
        card=card,
    )


def extract_stream(chunks: Iterator[bytes], dest_dir: Path, name: str) -> Path:
    """Unpack a bundle as its chunks arrive, with no copy of the tar on disk; return `dest_dir`.

    `chunks` is the store's checked stream (it raises after its last chunk when the digest is wrong),
    so it is read to its end even past the tar's own end marker: nothing counts as unpacked unchecked.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    reader = ChunkReader(chunks)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[arg-type]
            tar.extractall(dest_dir, filter="data")
        reader.drain()
    except tarfile.TarError as exc:
        raise BundleDamaged(name=name, reason=exc) from None
    return dest_dir


def collect_files(directory: Path, spec: ModelSpec) -> dict[str, Path]:
    """The files a bundle of `directory` holds (the weights aside): member name -> path, sorted by name."""
    root = directory.resolve()
    files = dict(_walk_code(directory, root, "", {root}))
    for name in [SPEC_FILENAME, *spec.data_files()]:
        files[Path(name).as_posix()] = _named_file(directory, root, name)
    if card_file(directory) is not None:  # the model card travels with the code (registry/card.py)
        files[CARD_FILENAME] = _named_file(directory, root, CARD_FILENAME)
    if spec.weights:  # checked above like every named file, but stored as its own blob
        files.pop(Path(spec.weights).as_posix())
    _check_entrypoint_included(directory, spec, files)
    return dict(sorted(files.items()))


def _check_entrypoint_included(directory: Path, spec: ModelSpec, files: dict[str, Path]) -> None:
    """The entrypoint's file must be one the bundle carries, or the version could never be built."""
    candidates = entrypoint_files(spec.entrypoint)
    if any(c in files for c in candidates):
        return
    raise EntrypointLeftOut(path=directory / candidates[0], entrypoint=spec.entrypoint)


def weights_file(directory: Path, spec: ModelSpec, max_bytes: int) -> Path | None:
    """The weights file the spec names, checked to lie inside `directory` and to fit under `max_bytes`."""
    if not spec.weights:
        return None
    path = _named_file(directory, directory.resolve(), spec.weights)
    size = path.stat().st_size
    if size > max_bytes:
        raise WeightsTooBig(path=path, size=_mb(size), cap=_mb(max_bytes))
    return path


def _named_file(directory: Path, root: Path, name: str) -> Path:
    """A file the spec names, refused when it escapes the directory or is missing."""
    path = directory / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise PathEscapes(path=path, directory=directory)
    _check_inside(path, root)
    if path.exists() and not path.is_file():
        raise NamedPathNotFile(path=path, directory=directory)
    if not path.is_file():
        raise NamedFileMissing(path=path, directory=directory)
    return path


def _walk_code(current: Path, root: Path, prefix: str, seen: set[Path]) -> Iterator[tuple[str, Path]]:
    """(member name, path) of every .py file below `current`; symlinked directories are followed once."""
    for entry in sorted(os.scandir(current), key=lambda e: e.name):
        path, name = Path(entry.path), f"{prefix}{entry.name}"
        if entry.name.startswith(".") or entry.name in _SKIPPED_DIRS:
            continue
        if entry.is_symlink():
            _resolve(path)  # a loop is refused before anything follows it
        if entry.is_dir(follow_symlinks=True):
            real = _check_inside(path, root) if entry.is_symlink() else path.resolve()
            if real in seen or any((path / marker).exists() for marker in _VENV_MARKERS):
                continue
            yield from _walk_code(path, root, f"{name}/", seen | {real})
        elif entry.name.endswith(".py"):
            if entry.is_symlink() and not _check_inside(path, root).exists():
                raise BrokenSymlink(path=path, root=root)
            if not entry.is_file(follow_symlinks=True):
                raise SpecialFile(path=path, root=root)
            yield name, path


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # a symlink loop
        raise SymlinkLoop(path=path) from None


def _check_inside(path: Path, root: Path) -> Path:
    real = _resolve(path)
    if not real.is_relative_to(root):
        raise SymlinkOutside(path=path, real=real, root=root)
    return real


MAX_FILES = 10_000  # members of one bundle; an upload is held to the same number


def _check_size(directory: Path, files: dict[str, Path], max_bytes: int) -> None:
    if len(files) > MAX_FILES:
        raise TooManyFiles(directory=directory, count=len(files), limit=MAX_FILES)
    sizes = {name: path.stat().st_size for name, path in files.items()}
    # What the tar really takes: a 512-byte header per member and each file padded to 512 bytes.
    total = sum(512 + -(-size // 512) * 512 for size in sizes.values()) + 1024
    if total > max_bytes:
        largest = max(sizes, key=lambda name: sizes[name])
        raise BundleTooBig(
            directory=directory,
            size=_mb(total),
            cap=_mb(max_bytes),
            largest=largest,
            largest_size=_mb(sizes[largest]),
        )


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def _add_file(tar: tarfile.TarFile, name: str, path: Path, root: Path, digest: list[str] | None) -> None:
    """Stream one file into the tar with fixed metadata; append its sha256 to `digest` if given."""
    _check_inside(path, root)
    with path.open("rb") as source:
        info = tarfile.TarInfo(name)
        info.size = os.fstat(source.fileno()).st_size
        info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = 0, 0o644, 0, 0, "", ""
        reader = _HashingReader(source)
        tar.addfile(info, reader)
        if digest is not None:
            digest.append(reader.sha256.hexdigest())


class _HashingReader:
    """A read-only file wrapper that hashes what passes through it."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.sha256.update(data)
        return data


class _HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.target.write(data)

    def tell(self) -> int:
        return self.size
