"""Triton Inference Server model repositories: a version's config.pbtxt and its repository entry.

`export_triton` writes `<repo>/<name>/<version>/model.pt` (the stored TorchScript artifact,
checksum-verified while it streams) and then `<repo>/<name>/config.pbtxt`. Other versions already
in the entry are left alone; the config is rewritten from the version exported, and only when its
inputs and outputs are the ones already declared (else the other versions would break), compared
as parsed ModelConfig messages (protobuf's text_format), not as text. The repo is
a local directory or any fsspec URL (s3://bucket/models); every file is written to a temporary
name beside it and renamed into place, so Triton's repository polling never sees a partial file.

The config (`triton_config`), for Triton's PyTorch backend:
- platform "pytorch_libtorch"; instance_group [{ kind: KIND_CPU | KIND_GPU, count: 1 }].
- Inputs are named INPUT__0, INPUT__1 ... in forward()'s order, outputs OUTPUT__0 ... (the backend's
  `<name>__<index>` convention, which every Triton release understands; the spec's names are listed
  in a comment at the top of the file).
- Data types come from the spec (inputs) and from the output signature the conversion report
  records over the whole battery (outputs); dims are -1 where a size is dynamic.
- The batch dimension is folded into max_batch_size only when the spec marks a dim `batch = true`,
  it is the first dim of every input and of every output; max_batch_size is then the dim's max
  (or --max-batch-size, at most that max: larger batches were never validated). Otherwise it is 0.
- Refused, with one line saying why (exit 2): Python scalar inputs (the backend passes tensors
  only), dict, list or nested outputs and non-tensor outputs (the backend returns a tensor or a
  tuple of tensors; dicts are refused rather than flattened, whose key order a client would have
  to guess), and dtypes Triton has no type for (complex, float8).
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

from regctl.registry.entities import ArtifactInfo, Record, VersionInfo
from regctl.registry.errors import ServiceUnavailable
from regctl.registry.errors.files import CannotWrite
from regctl.registry.errors.inputs import (
    BatchDimMissing,
    BatchTooLarge,
    NoOutputSignature,
    NotBatchable,
    NotReadyToDeploy,
    OutputNotServable,
    ScalarInputNotServable,
    TritonEntryDiffers,
    TritonHasNoType,
)
from regctl.registry.errors.lookup import MissingArtifact, NotAChoice
from regctl.registry.errors.services import StoreNeedsPackage, StoreUnreachable, StoreUrlNotUnderstood
from regctl.registry.refs import Ref
from regctl.registry.settings import Settings
from regctl.registry.spec import DimSpec, InputSpec, ModelSpec
from regctl.registry.store import open_store

PLATFORM = "pytorch_libtorch"
CONFIG_NAME = "config.pbtxt"
MODEL_NAME = "model.pt"
INSTANCE_KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
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
        batching = f"max_batch_size: {self.max_batch_size}\n"
        return f'{header}name: "{self.name}"\nplatform: "{PLATFORM}"\n{batching}{self.io_block()}{instances}'


@dataclass(frozen=True)
class TritonExport(Record):
    """What `export_triton` wrote."""

    ref: str
    entry: str
    config: str
    model: str
    sha256: str
    size: int
    max_batch_size: int
    note: str | None


def triton_config(
    name: str,
    spec: ModelSpec,
    outputs: list[dict[str, Any]],
    *,
    ref: str,
    max_batch_size: int | None = None,
    instance_kind: str = "cpu",
) -> TritonConfig:
    """The Triton config of a version from its spec and its report's output signature (module doc)."""
    if instance_kind not in INSTANCE_KINDS:
        raise NotAChoice(what="--instance-kind", value=instance_kind, choices=tuple(INSTANCE_KINDS))
    check_servable(spec, ref)
    _check_outputs(outputs, ref)
    batch = next((d for d in spec.dims.values() if d.batch), None)
    folded, note = _batching(spec, outputs, batch, max_batch_size, ref)
    size = 0 if not folded or batch is None else (max_batch_size or batch.max)
    inputs = tuple(
        _tensor(f"INPUT__{i}", inp.dtype, _dims(inp.shape or (), folded), f"input {inp.name!r} of {ref}")
        for i, inp in enumerate(spec.inputs)
    )
    results = tuple(
        _tensor(f"OUTPUT__{i}", out["dtype"], _dims(out["shape"], folded), f"{out['path']} of {ref}")
        for i, out in enumerate(outputs)
    )
    comments = (
        f"Written by regctl export-triton for {ref}; the next export rewrites this file.",
        "Inputs follow forward()'s order: "
        + ", ".join(f"INPUT__{i} = {inp.name}" for i, inp in enumerate(spec.inputs)),
        "Outputs: " + ", ".join(f"OUTPUT__{i} = {out['path']}" for i, out in enumerate(outputs)),
    )
    return TritonConfig(name, size, inputs, results, INSTANCE_KINDS[instance_kind], comments, note)


def check_servable(spec: ModelSpec, ref: str) -> None:
    """Refuse a spec with a Python scalar input: Triton's PyTorch backend passes tensors only."""
    for inp in spec.inputs:
        if inp.is_scalar:
            raise ScalarInputNotServable(ref=ref, name=inp.name, dtype=inp.dtype)


def _check_outputs(outputs: list[dict[str, Any]], ref: str) -> None:
    if not outputs:
        raise NoOutputSignature(ref=ref)
    for out in outputs:
        refused = _unservable(out)
        if refused is not None:
            raise OutputNotServable(ref=ref, path=out["path"], problem=refused[0], fix=refused[1])


def _unservable(out: dict[str, Any]) -> tuple[str, str] | None:
    """Why Triton's PyTorch backend cannot return this output, and what the model should return."""
    containers = out["within"]
    if out["varies"]:
        return "changes kind, dtype or rank between inputs", " of fixed rank"
    if "dict" in containers or "list" in containers:
        kind = "dict" if "dict" in containers else "list"
        return f"is inside a {kind}", ": return a tuple instead"
    if len(containers) > 1:
        return "is inside nested tuples", ": return a flat tuple"
    if out["kind"] != "tensor":
        return f"is {_article(out['kind'])}", ": return a tensor instead"
    return None


def _batching(
    spec: ModelSpec, outputs: list[dict[str, Any]], batch: DimSpec | None, wanted: int | None, ref: str
) -> tuple[bool, str | None]:
    """Whether the batch dim folds into max_batch_size, and why not when the spec has one."""
    if wanted == 0:
        return False, None
    if batch is None:
        if wanted is not None:
            raise BatchDimMissing(wanted=wanted, ref=ref)
        return False, None
    reason = _not_batched(spec.inputs, outputs, batch.name)
    if reason is not None:
        if wanted is not None:
            raise NotBatchable(wanted=wanted, reason=reason, ref=ref)
        return False, f"not batched by Triton: {reason}"
    if wanted is not None and wanted > batch.max:
        raise BatchTooLarge(wanted=wanted, ref=ref, dim=batch.name, max=batch.max)
    return True, None


def _not_batched(inputs: tuple[InputSpec, ...], outputs: list[dict[str, Any]], name: str) -> str | None:
    for inp in inputs:
        if not inp.shape or inp.shape[0] != name:
            return f"input {inp.name!r} does not start with the batch dim {name!r}"
    for out in outputs:
        if not out["shape"] or out["shape"][0] != name:
            return f"{out['path']} does not start with the batch dim {name!r}"
    return None


def _dims(shape: Iterable[int | str], folded: bool) -> tuple[int, ...]:
    dims = tuple(-1 if isinstance(size, str) else int(size) for size in shape)
    return dims[1:] if folded else dims


def _tensor(name: str, dtype: str, dims: tuple[int, ...], what: str) -> TensorConfig:
    if dtype not in TRITON_DTYPES:
        raise TritonHasNoType(what=what, dtype=dtype)
    if not dims:
        return TensorConfig(name, TRITON_DTYPES[dtype], (1,), ())
    return TensorConfig(name, TRITON_DTYPES[dtype], dims)


def _list(values: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]" if values else "[ ]"


def _article(kind: str) -> str:
    return "None" if kind == "none" else (f"an {kind}" if kind[0] in "aeiou" else f"a {kind}")


# -- the repository ----------------------------------------------------------------------------------


def export_triton(
    settings: Settings,
    ref: Ref,
    repo: str,
    *,
    max_batch_size: int | None = None,
    instance_kind: str = "cpu",
) -> TritonExport:
    """Add the version `ref` points at to the Triton model repository `repo` (module docstring)."""
    # Here: registry.versions brings SQLAlchemy (~250 ms, measured), which the remote client's
    # write_to_repo (regctl/remote.py) must not load.
    from regctl.registry.versions import get_version

    store = open_store(settings.artifact_store)
    return write_to_repo(
        get_version(settings, ref),
        lambda artifact: store.open_chunks(artifact.sha256),
        repo,
        max_batch_size=max_batch_size,
        instance_kind=instance_kind,
    )


def write_to_repo(
    info: VersionInfo,
    chunks_of: Callable[[ArtifactInfo], Iterable[bytes]],
    repo: str,
    *,
    max_batch_size: int | None = None,
    instance_kind: str = "cpu",
) -> TritonExport:
    """Write a ready version into `repo`, reading its TorchScript bytes from `chunks_of(artifact)`.

    The remote client passes a verified download; `export_triton` passes the store.
    """
    check_servable(ModelSpec.from_dict(info.spec), info.ref)
    if info.status != "ready":
        raise NotReadyToDeploy(ref=info.ref, status=info.status)
    artifact = _torchscript(info)
    outputs = ((info.summary or {}).get("report") or {}).get("outputs") or []
    config = triton_config(
        info.model,
        ModelSpec.from_dict(info.spec),
        outputs,
        ref=info.ref,
        max_batch_size=max_batch_size,
        instance_kind=instance_kind,
    )
    fs, root = _filesystem(repo)
    entry = f"{root.rstrip('/')}/{info.model}"
    config_path, model_path = f"{entry}/{CONFIG_NAME}", f"{entry}/{info.version}/{MODEL_NAME}"
    with _writable(fs, repo), _undo_new_dirs(fs, f"{entry}/{info.version}"):
        _check_entry(fs, entry, config, info)
        _put(fs, model_path, chunks_of(artifact))
        _put(fs, config_path, [config.to_pbtxt().encode()])
    return TritonExport(
        ref=info.ref,
        entry=_uri(fs, entry),
        config=_uri(fs, config_path),
        model=_uri(fs, model_path),
        sha256=artifact.sha256,
        size=artifact.size,
        max_batch_size=config.max_batch_size,
        note=_joined(config.note, _aoti_note(info)),
    )


def _aoti_note(info: VersionInfo) -> str | None:
    if not any(a.kind == "aoti" for a in info.artifacts):
        return None
    return (
        "exported the TorchScript artifact only: Triton's PyTorch backend loads TorchScript; fetch the "
        f"AOTInductor package with 'regctl fetch {info.ref} --format aoti'"
    )


def _joined(*notes: str | None) -> str | None:
    present = [n for n in notes if n]
    return "; ".join(present) if present else None


def _torchscript(info: VersionInfo) -> ArtifactInfo:
    scripted = [a for a in info.artifacts if a.kind == "torchscript"]
    if not scripted:
        raise MissingArtifact(ref=info.ref, kind="torchscript", hint="its conversion has not produced one")
    return scripted[-1]


def _filesystem(repo: str) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        return fsspec.core.url_to_fs(repo)
    except ImportError as exc:
        raise StoreNeedsPackage(where=f"--repo {repo}", reason=exc) from None
    except ValueError as exc:
        raise StoreUrlNotUnderstood(what="--repo", url=repo, reason=exc) from None


@contextlib.contextmanager
def _writable(fs: fsspec.AbstractFileSystem, repo: str) -> Iterator[None]:
    """Turn I/O failures into errors naming the repository."""
    try:
        yield
    except OSError as exc:
        if isinstance(fs, LocalFileSystem):
            raise CannotWrite(path=f"the Triton repository {repo}", reason=exc) from None
        raise StoreUnreachable(where=f"the Triton repository {repo}", reason=exc) from exc


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
    """Refuse to rewrite a config whose inputs or outputs differ while other versions rely on it."""
    path = f"{entry}/{CONFIG_NAME}"
    if not fs.isfile(path) or not _other_versions(fs, entry, info.version):
        return
    with fs.open(path, "rb") as f:
        existing = parse_config(f.read().decode("utf-8", errors="replace"))
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


def _uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)
