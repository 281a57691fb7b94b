"""Triton Inference Server model repositories: a version's config.pbtxt and its repository entry.

`export_triton` writes `<repo>/<name>/<version>/model.pt` (the stored TorchScript artifact,
checksum-verified while it streams) and then `<repo>/<name>/config.pbtxt`; a version with a proved
ONNX model also gets `<repo>/<name>-onnx` (platform onnxruntime_onnx, registry/ops/triton_onnx.py),
or a note saying why not. Other versions already in an entry are left alone; the config is
rewritten from the version exported, and only when its inputs and outputs are the ones already
declared (else the other versions would break), compared as parsed ModelConfig messages
(protobuf's text_format), not as text, and never over an entry of another platform. The repo is a
local directory or any fsspec URL (s3://bucket/models); every file is written to a temporary name
beside it and renamed into place, so Triton's repository polling never sees a partial file.

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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from regctl.registry.entities import ArtifactInfo, Record, VersionInfo
from regctl.registry.errors.files import CannotWrite
from regctl.registry.errors.inputs import (
    BatchDimMissing,
    BatchTooLarge,
    NoOutputSignature,
    NotBatchable,
    NotReadyToDeploy,
    OutputNotServable,
    ScalarInputNotServable,
)
from regctl.registry.errors.lookup import MissingArtifact, NotAChoice
from regctl.registry.errors.services import StoreNeedsPackage, StoreUnreachable, StoreUrlNotUnderstood
from regctl.registry.ops import triton_onnx
from regctl.registry.ops.triton_entry import (
    TritonConfig,
    put_attestation,
    repo_uri,
    tensor_config,
    tensor_dims,
    write_entry,
)
from regctl.registry.refs import Ref
from regctl.registry.settings import Settings
from regctl.registry.spec import DimSpec, InputSpec, ModelSpec
from regctl.registry.store import open_store

MODEL_NAME = "model.pt"
INSTANCE_KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}


@dataclass(frozen=True)
class TritonExport(Record):
    """What `export_triton` wrote; the onnx_* fields are None when it wrote no ONNX entry."""

    ref: str
    entry: str
    config: str
    model: str
    sha256: str
    size: int
    max_batch_size: int
    note: str | None
    onnx_entry: str | None = None
    onnx_config: str | None = None
    onnx_model: str | None = None
    onnx_sha256: str | None = None
    onnx_size: int | None = None


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
        tensor_config(
            f"INPUT__{i}", inp.dtype, tensor_dims(inp.shape or (), folded), f"input {inp.name!r} of {ref}"
        )
        for i, inp in enumerate(spec.inputs)
    )
    results = tuple(
        tensor_config(
            f"OUTPUT__{i}", out["dtype"], tensor_dims(out["shape"], folded), f"{out['path']} of {ref}"
        )
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
    from regctl.registry.provenance.lookup import attestations_about
    from regctl.registry.versions import get_version

    store = open_store(settings.artifact_store)
    info = get_version(settings, ref)
    return write_to_repo(
        info,
        lambda artifact: store.open_chunks(artifact.sha256),
        repo,
        max_batch_size=max_batch_size,
        instance_kind=instance_kind,
        attestation_of=lambda artifact: attestations_about(
            settings, info.ref, artifact.kind, artifact.sha256
        ),
    )


def write_to_repo(
    info: VersionInfo,
    chunks_of: Callable[[ArtifactInfo], Iterable[bytes]],
    repo: str,
    *,
    max_batch_size: int | None = None,
    instance_kind: str = "cpu",
    attestation_of: Callable[[ArtifactInfo], bytes | None] | None = None,
) -> TritonExport:
    """Write a ready version into `repo`, reading its TorchScript (and ONNX) bytes from `chunks_of(artifact)`.

    The remote client passes a verified download; `export_triton` passes the store. Each model file's
    attestation (`attestation_of(artifact)`, when it has one) is written beside it.
    """
    spec = ModelSpec.from_dict(info.spec)
    check_servable(spec, info.ref)
    if info.status != "ready":
        raise NotReadyToDeploy(ref=info.ref, status=info.status)
    artifact = _torchscript(info)
    outputs = ((info.summary or {}).get("report") or {}).get("outputs") or []
    config = triton_config(
        info.model, spec, outputs, ref=info.ref, max_batch_size=max_batch_size, instance_kind=instance_kind
    )
    fs, root = _filesystem(repo)
    with _writable(fs, repo):
        written = write_entry(fs, root, config, info, MODEL_NAME, lambda: chunks_of(artifact))
        if attestation_of is not None:
            put_attestation(fs, written[2], attestation_of(artifact))
        onnx, onnx_note = triton_onnx.write_onnx_entry(fs, root, info, config, chunks_of, attestation_of)
    entry, config_path, model_path = (repo_uri(fs, path) for path in written)
    return TritonExport(
        ref=info.ref,
        entry=entry,
        config=config_path,
        model=model_path,
        sha256=artifact.sha256,
        size=artifact.size,
        max_batch_size=config.max_batch_size,
        note=_joined(config.note, onnx_note, _aoti_note(info, onnx_written=bool(onnx))),
        **onnx,
    )


def _aoti_note(info: VersionInfo, *, onnx_written: bool) -> str | None:
    if not any(a.kind == "aoti" for a in info.artifacts):
        return None
    loads = "TorchScript and ONNX models only: Triton loads those"
    if not onnx_written:
        loads = "TorchScript artifact only: Triton's PyTorch backend loads TorchScript"
    return f"exported the {loads}; fetch the AOTInductor package with 'regctl fetch {info.ref} --format aoti'"


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
