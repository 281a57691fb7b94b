"""The ONNX entry of a Triton repository: `<repo>/<name>-onnx`, beside the TorchScript entry.

When a version has a proved ONNX model (an `onnx` artifact), `write_to_repo` (registry/ops/triton.py)
also writes `<repo>/<name>-onnx/<version>/model.onnx` and `<repo>/<name>-onnx/config.pbtxt`, the same
way as the TorchScript entry (temporary name and rename, the existing entry checked first, no empty
version folder left on failure). Its config (`onnx_config`), for Triton's onnxruntime backend:
- platform "onnxruntime_onnx"; the TorchScript entry's instance_group.
- Inputs and outputs carry the model's own tensor names (the backend binds them by name) and its
  element types (tensor(float) is TYPE_FP32 ...); dims are -1 where a size is a dim name.
- Batched exactly when the TorchScript entry is, with its max_batch_size, and only if every ONNX
  input and output also leads with the spec's batch dim (the ONNX stage names its dynamic axes
  after the spec's dims); otherwise there is no ONNX entry.

The names, types and shapes come from the report's `onnx` section (`io`, as onnxruntime read them
inside the sandbox), so they are read as untrusted data before any of it reaches a config.pbtxt:
every name must match a strict pattern (it is written between quotes), every element type must be
one Triton has a type for, every shape a short list of sizes or dim names, no name may be used
twice, and the section must describe the very file exported (its sha256). The TorchScript entry is
what export-triton is asked for: when the ONNX entry cannot be written (that, or the entry there
serves something else) it is skipped and the export's note says why in one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import fsspec

from regctl.registry.entities import ArtifactInfo, VersionInfo
from regctl.registry.errors.inputs import TritonEntryDiffers
from regctl.registry.ops import triton_entry as entries
from regctl.registry.spec import ModelSpec

ENTRY_SUFFIX = "-onnx"  # <repo>/<model>-onnx, beside the TorchScript entry <repo>/<model>
PLATFORM = "onnxruntime_onnx"
MODEL_NAME = "model.onnx"
# onnxruntime's element types, as the dtype names TRITON_DTYPES (registry/ops/triton_entry.py) maps
ELEMENT_TYPES = {
    "tensor(bool)": "bool",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(float16)": "float16",
    "tensor(bfloat16)": "bfloat16",
    "tensor(float)": "float32",
    "tensor(double)": "float64",
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,127}")  # always fullmatch: `$` would allow a "\n"
MAX_TENSORS = 256
MAX_RANK = 16
MAX_SIZE = 2**63 - 1  # ModelConfig's dims are int64
MAX_DIM_NAME = 128


def write_onnx_entry(
    fs: fsspec.AbstractFileSystem,
    root: str,
    info: VersionInfo,
    like: entries.TritonConfig,
    chunks_of: Callable[[ArtifactInfo], Iterable[bytes]],
    attestation_of: Callable[[ArtifactInfo], bytes | None] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Write the ONNX entry when the version has an ONNX model: TritonExport's onnx_* fields, and a note.

    `like` is the config of the TorchScript entry, just written.
    """
    onnx = next((a for a in reversed(info.artifacts) if a.kind == "onnx"), None)
    if onnx is None:
        return {}, None
    section = ((info.summary or {}).get("report") or {}).get("onnx")
    batch = next((d.name for d in ModelSpec.from_dict(info.spec).dims.values() if d.batch), None)
    config = onnx_config(info.model, section, sha256=onnx.sha256, like=like, batch=batch, ref=info.ref)
    if isinstance(config, str):
        return {}, f"wrote no ONNX entry: {config}"
    try:
        written = entries.write_entry(fs, root, config, info, MODEL_NAME, lambda: chunks_of(onnx))
    except TritonEntryDiffers as exc:
        return {}, f"wrote no ONNX entry: {exc}"
    if attestation_of is not None:
        entries.put_attestation(fs, written[2], attestation_of(onnx))
    entry, config_path, model_path = (entries.repo_uri(fs, path) for path in written)
    fields = {"onnx_entry": entry, "onnx_config": config_path, "onnx_model": model_path}
    note = (
        f"also wrote its ONNX model as {config.name} (Triton's onnxruntime backend, the model's tensor names)"
    )
    return {**fields, "onnx_sha256": onnx.sha256, "onnx_size": onnx.size}, note


def onnx_config(
    name: str, section: Any, *, sha256: str, like: entries.TritonConfig, batch: str | None, ref: str
) -> entries.TritonConfig | str:
    """The config of the ONNX entry `<name>-onnx`, or one line saying why there is none (module doc).

    `section` is the report's (untrusted) onnx section, `sha256` the ONNX file's, `like` the
    TorchScript entry's config, whose batching and instances it copies, `batch` the spec's batch dim.
    """
    io = read_io(section, sha256)
    if isinstance(io, str):
        return io
    folded = like.max_batch_size > 0
    reason = io.not_leading_with(batch or "") if folded else None
    if reason is not None:
        return f"{reason}, which the TorchScript entry folds into max_batch_size"
    inputs, outputs = (
        tuple(
            entries.tensor_config(
                t.name, t.dtype, entries.tensor_dims(t.shape, folded), f"{t.name!r} of {ref}"
            )
            for t in tensors
        )
        for tensors in (io.inputs, io.outputs)
    )
    comments = (
        f"Written by regctl export-triton for {ref}'s ONNX model; the next export rewrites this file.",
    )
    return entries.TritonConfig(
        f"{name}{ENTRY_SUFFIX}",
        like.max_batch_size,
        inputs,
        outputs,
        like.instance_kind,
        comments,
        platform=PLATFORM,
    )


@dataclass(frozen=True)
class OnnxTensor:
    """One input or output of the ONNX model: its name, dtype (torch's name for it) and shape."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class OnnxIO:
    """The ONNX model's inputs and outputs, each checked."""

    inputs: tuple[OnnxTensor, ...]
    outputs: tuple[OnnxTensor, ...]

    def not_leading_with(self, dim: str) -> str | None:
        """Why Triton could not fold the batch dim `dim` out of every tensor; None when it can."""
        for kind, tensors in (("input", self.inputs), ("output", self.outputs)):
            for tensor in tensors:
                if not tensor.shape or tensor.shape[0] != dim:
                    return f"its {kind} {tensor.name!r} does not start with the batch dim {dim!r}"
        return None


def read_io(section: Any, sha256: str) -> OnnxIO | str:
    """The inputs and outputs the report's `onnx` section records for the file `sha256`, or why not."""
    if not isinstance(section, dict) or section.get("ok") is not True:
        return "the conversion report does not prove the ONNX model"
    if section.get("sha256") != sha256:
        return "the conversion report describes another ONNX file than the stored model.onnx"
    io = section.get("io")
    if not isinstance(io, dict):
        return "the conversion report does not record the ONNX model's inputs and outputs (convert it again)"
    inputs, outputs = _tensors(io.get("inputs"), "input"), _tensors(io.get("outputs"), "output")
    if isinstance(inputs, str):
        return inputs
    if isinstance(outputs, str):
        return outputs
    names = [t.name for t in (*inputs, *outputs)]
    if len(set(names)) != len(names):
        return "the conversion report names two ONNX tensors alike"
    return OnnxIO(inputs, outputs)


def _tensors(entries: Any, kind: str) -> tuple[OnnxTensor, ...] | str:
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_TENSORS:
        return f"the conversion report lists no ONNX {kind}s, or more than {MAX_TENSORS}"
    read = []
    for index, entry in enumerate(entries):
        tensor = _tensor(entry, kind, index)
        if isinstance(tensor, str):
            return tensor
        read.append(tensor)
    return tuple(read)


def _tensor(entry: Any, kind: str, index: int) -> OnnxTensor | str:
    """The checked tensor, or why not (named by its index until its name is known to be plain)."""
    which = f"its {kind} {index}"
    if not isinstance(entry, dict):
        return f"{which} is not recorded as a name, dtype and shape"
    name, dtype, shape = entry.get("name"), entry.get("dtype"), entry.get("shape")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return f"{which} has the name {_shown(name)}, not a plain tensor name (letters, digits and _ . : / -)"
    if not isinstance(dtype, str) or dtype not in ELEMENT_TYPES:
        return f"its {kind} {name!r} has the element type {_shown(dtype)}, for which Triton has no data type"
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_is_size(s) for s in shape):
        return f"its {kind} {name!r} has no shape of at most {MAX_RANK} sizes or dim names"
    return OnnxTensor(name, ELEMENT_TYPES[dtype], tuple(shape))


def _is_size(size: Any) -> bool:
    """A fixed size, or a dim's name (only compared, never written: its dim becomes -1)."""
    if isinstance(size, bool):
        return False
    if isinstance(size, int):
        return 0 <= size <= MAX_SIZE
    return isinstance(size, str) and len(size) <= MAX_DIM_NAME


def _shown(value: Any) -> str:
    """An untrusted value for a one-line note: short, and escaped (no newline or terminal control)."""
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    return ascii(value[:40]) + ("..." if len(value) > 40 else "")
