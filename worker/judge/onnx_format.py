"""ONNX models (`.onnx`): the proved exported program through torch's dynamo exporter, proved in
ONNX Runtime.

`torch.onnx.export(program, dynamo=True)` translates the ExportedProgram the judge proved, so the
spec's dynamic dims, already in the program, become the model's dynamic axes; they are renamed to
the spec's dim names (`batch`, `seq`) on the graph's inputs and outputs, so a deployer reads the
same names as in regctl.toml. The weights stay inside the one file (ONNX's protobuf limit is 2 GB;
a larger model is not built, with that reason). Proved in `onnxruntime.InferenceSession` on the
CPU execution provider, with the job's threads. Imported only by the `onnx` stage (format_role.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from regctl.registry.spec import ModelSpec
from regctl.worker.judge.flat_runtime import FlatRun

MODULE = "onnxruntime"
MAX_BYTES = 2 * 1024**3  # a protobuf message cannot be larger


def build(program: Any, dest: Path, spec: ModelSpec) -> list[str]:
    """Translate `program` and write the .onnx to `dest`; notes for the report."""
    onnx_program = torch.onnx.export(program, dynamo=True, verbose=False)
    renamed = _name_axes(onnx_program.model, spec)
    onnx_program.save(str(dest), external_data=False)
    notes = [f"dynamic axes named after the spec's dims: {', '.join(renamed)}"] if renamed else []
    return notes


def _name_axes(model: Any, spec: ModelSpec) -> list[str]:
    """Rename the exporter's symbols (s77) to the spec's dim names wherever they appear on the graph."""
    import onnx_ir as ir

    names: dict[str, str] = {}
    tensors = [inp for inp in spec.inputs if not inp.is_scalar]
    for declared, value in zip(tensors, model.graph.inputs, strict=False):
        for axis, size in enumerate(declared.shape or ()):
            dims = value.shape.dims if value.shape is not None else ()
            symbol = dims[axis] if axis < len(dims) else None
            if isinstance(size, str) and isinstance(symbol, ir.SymbolicDim) and symbol.value is not None:
                names.setdefault(symbol.value, size)
    if not names:
        return []
    values = [*model.graph.inputs, *model.graph.outputs]
    values += [out for node in model.graph.all_nodes() for out in node.outputs]
    for value in values:
        if value.shape is None:
            continue
        dims = [
            ir.SymbolicDim(names[d.value]) if isinstance(d, ir.SymbolicDim) and d.value in names else d
            for d in value.shape.dims
        ]
        value.shape = ir.Shape(dims)
    return sorted(set(names.values()))


def open_session(path: Path) -> Any:
    """An InferenceSession on the CPU provider, with this process's threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def signature(session: Any) -> dict[str, Any]:
    """The model's inputs and outputs as ONNX Runtime reads them: names, element types, shapes."""

    def entries(args: Any) -> list[dict[str, Any]]:
        return [
            {"name": a.name, "dtype": a.type, "shape": [d if isinstance(d, int) else str(d) for d in a.shape]}
            for a in args
        ]

    return {"inputs": entries(session.get_inputs()), "outputs": entries(session.get_outputs())}


def load(path: Path) -> FlatRun:
    """The model in a fresh session, as a flat runner."""
    return runner(open_session(path))


def runner(session: Any) -> FlatRun:
    """A session as a flat runner: tensors in forward()'s order in, the outputs as tensors out."""
    names = [i.name for i in session.get_inputs()]

    def run(inputs: list[torch.Tensor]) -> list[Any]:
        if len(inputs) != len(names):
            raise ValueError(f"the ONNX model takes {len(names)} inputs, the call gave {len(inputs)}")
        feed = {name: tensor.numpy() for name, tensor in zip(names, inputs, strict=True)}
        return [torch.from_numpy(out) for out in session.run(None, feed)]

    return run
