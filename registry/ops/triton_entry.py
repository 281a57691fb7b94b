"""One Triton model entry in a repository: its config.pbtxt as Triton's own ModelConfig, and the
writes that put a model file and that config into `<repo>/<name>/` without ever leaving a partial
file or an empty version folder behind.

Shared by the TorchScript entry (registry/ops/triton.py) and the ONNX entry (triton_onnx.py): an
entry serving other versions is rewritten only when its inputs and outputs stay the same, compared
as parsed ModelConfig messages, and an entry of another platform is never taken over.
"""

from __future__ import annotations

import contextlib
import importlib.util
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from google.protobuf import text_format
from google.protobuf.message import Message

from regctl.registry.entities import VersionInfo
from regctl.registry.errors import ServiceUnavailable
from regctl.registry.errors.inputs import TritonEntryDiffers, TritonHasNoType

PLATFORM = "pytorch_libtorch"
CONFIG_NAME = "config.pbtxt"
ATTESTATION_SUFFIX = ".intoto.jsonl"
TRITON_DTYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
}


def _model_config_type() -> type[Message]:
    """Triton's own ModelConfig message, from tritonclient's generated module loaded on its own.

    `from tritonclient.grpc import model_config_pb2` would run tritonclient.grpc's __init__, which
    needs grpcio and starts the whole gRPC client (numpy included): 0.17 s, for a message class.
    """
    package = importlib.util.find_spec("tritonclient")
    if package is None or not package.submodule_search_locations:
        raise ServiceUnavailable("export-triton needs the tritonclient package: pip install tritonclient")
    source = Path(package.submodule_search_locations[0]) / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("regctl_triton_model_config_pb2", source)
    assert spec is not None and spec.loader is not None  # a .py file always has a loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ModelConfig


ModelConfig = _model_config_type()


@dataclass(frozen=True)
class TensorConfig:
    """One input or output of a Triton config; a 0-dim tensor is dims [1] reshaped to []."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None

    def to_pbtxt(self) -> str:
        """The entry as protobuf text."""
        lines = [
            f'    name: "{self.name}"',
            f"    data_type: {self.data_type}",
            f"    dims: {_list(self.dims)}",
        ]
        if self.reshape is not None:
            lines.append(f"    reshape: {{ shape: {_list(self.reshape)} }}")
        return "  {\n" + "\n".join(lines) + "\n  }"


@dataclass(frozen=True)
class TritonConfig:
    """The config.pbtxt of one model entry."""

    name: str
    max_batch_size: int
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    instance_kind: str  # KIND_CPU | KIND_GPU
    comments: tuple[str, ...] = ()
    note: str | None = None  # why the batch dim was not folded, when the spec has one
    platform: str = PLATFORM

    def io_block(self) -> str:
        """The input and output sections: what every version in the entry must agree on."""
        block = ""
        for key, entries in (("input", self.inputs), ("output", self.outputs)):
            block += f"{key} [\n" + ",\n".join(e.to_pbtxt() for e in entries) + "\n]\n"
        return block

    def to_pbtxt(self) -> str:
        """The whole file as protobuf text (ModelConfig)."""
        header = "".join(f"# {line}\n" for line in self.comments)
        instances = f"instance_group [\n  {{\n    kind: {self.instance_kind}\n    count: 1\n  }}\n]\n"
        model = f'name: "{self.name}"\nplatform: "{self.platform}"\nmax_batch_size: {self.max_batch_size}\n'
        return f"{header}{model}{self.io_block()}{instances}"


def tensor_dims(shape: Iterable[int | str], folded: bool) -> tuple[int, ...]:
    dims = tuple(-1 if isinstance(size, str) else int(size) for size in shape)
    return dims[1:] if folded else dims


def tensor_config(name: str, dtype: str, dims: tuple[int, ...], what: str) -> TensorConfig:
    if dtype not in TRITON_DTYPES:
        raise TritonHasNoType(what=what, dtype=dtype)
    if not dims:
        return TensorConfig(name, TRITON_DTYPES[dtype], (1,), ())
    return TensorConfig(name, TRITON_DTYPES[dtype], dims)


def _list(values: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]" if values else "[ ]"


def write_entry(
    fs: fsspec.AbstractFileSystem,
    root: str,
    config: TritonConfig,
    info: VersionInfo,
    filename: str,
    chunks: Callable[[], Iterable[bytes]],
) -> tuple[str, str, str]:
    """Write the version's model file into the entry `config.name`, then the config; the three paths."""
    entry = f"{root.rstrip('/')}/{config.name}"
    config_path, model_path = f"{entry}/{CONFIG_NAME}", f"{entry}/{info.version}/{filename}"
    with _undo_new_dirs(fs, f"{entry}/{info.version}"):
        _check_entry(fs, entry, config, info)
        _put(fs, model_path, chunks())
        _put(fs, config_path, [config.to_pbtxt().encode()])
    return entry, config_path, model_path


@contextlib.contextmanager
def _undo_new_dirs(fs: fsspec.AbstractFileSystem, deepest: str) -> Iterator[None]:
    """On failure, remove `deepest` and the parents of it this export created (a damaged blob, a full disk).

    Triton would otherwise find an empty version folder and fail to load the whole model.
    """
    new, path = [], deepest.rstrip("/")
    while path and not fs.exists(path):
        new.append(path)
        parent = path.rsplit("/", 1)[0] if "/" in path.strip("/") else ""
        path = parent
    try:
        yield
    except BaseException:
        for path in new:
            with contextlib.suppress(Exception):  # only empty ones go; the original error matters more
                if fs.exists(path) and not fs.ls(path, detail=False):
                    fs.rmdir(path)
        raise


def _check_entry(fs: fsspec.AbstractFileSystem, entry: str, config: TritonConfig, info: VersionInfo) -> None:
    """Refuse an entry of another platform, or other inputs or outputs while other versions rely on it."""
    path = f"{entry}/{CONFIG_NAME}"
    if not fs.isfile(path):
        return
    with fs.open(path, "rb") as f:
        existing = parse_config(f.read().decode("utf-8", errors="replace"))
    if existing is not None and existing.platform not in ("", config.platform):
        raise TritonEntryDiffers(path=path, ref=info.ref)
    if not _other_versions(fs, entry, info.version):
        return
    wanted = parse_config(config.to_pbtxt())
    if existing is None or not _serves_the_same(existing, wanted):
        raise TritonEntryDiffers(path=path, ref=info.ref)


def parse_config(text: str) -> Any:
    """A config.pbtxt read as Triton's ModelConfig message; None when it is not one."""
    try:
        return text_format.Parse(text, ModelConfig())
    except text_format.ParseError:
        return None


def _serves_the_same(existing: Any, wanted: Any) -> bool:
    """Same inputs and outputs (names, types, dims, reshapes), and batched or not alike."""
    return (
        list(existing.input) == list(wanted.input)
        and list(existing.output) == list(wanted.output)
        and (existing.max_batch_size > 0) == (wanted.max_batch_size > 0)
    )


def _other_versions(fs: fsspec.AbstractFileSystem, entry: str, version: int) -> list[str]:
    """The version directories of the entry other than `version`."""
    found = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(entry, detail=False)]
    return [name for name in found if name.isascii() and name.isdigit() and int(name) != version]


def _put(fs: fsspec.AbstractFileSystem, path: str, chunks: Iterable[bytes]) -> None:
    """Write `chunks` to a temporary name beside `path`, then move it into place."""
    parent, name = path.rsplit("/", 1)
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.part"
    try:
        with fs.open(tmp, "wb") as f:
            for chunk in chunks:  # a checksum mismatch raises after the last chunk, before the move
                f.write(chunk)
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):  # the original error is the one worth reporting
            fs.rm(tmp)
        raise


def repo_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def put_attestation(fs: fsspec.AbstractFileSystem, model_path: str, attestation: bytes | None) -> bool:
    """Write the model file's attestation beside it (`model.pt.intoto.jsonl`); False when there is none.

    Triton loads only the model file; the attestation is for whoever checks the repository's bytes.
    """
    if not attestation:
        return False
    _put(fs, f"{model_path}{ATTESTATION_SUFFIX}", [attestation])
    return True
