"""ExecuTorch programs (`.pte`): the proved exported program lowered for phones and edge devices, and
the runtime that proves it.

Built with ExecuTorch's own pipeline: `to_edge_transform_and_lower` with the XNNPACK partitioner
(the operators XNNPACK supports run in its delegate; the rest stay on ExecuTorch's portable
kernels), then `.to_executorch()`. Proved by loading the file in `executorch.runtime`, the Python
binding of the same C++ runtime an app links, and running the battery through `Method.execute`.
Imported only by the `executorch` stage (format_role.py): the lowering stack costs seconds to import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from regctl.registry.spec import ModelSpec
from regctl.worker.judge.flat_runtime import FlatRun

MODULE = "executorch"  # what the stage needs installed (registry/formats.py EXTRAS)


def build(program: Any, dest: Path, spec: ModelSpec) -> list[str]:
    """Lower `program` (an ExportedProgram) and write the .pte to `dest`; notes for the report.

    The spec is not needed: the program carries its dynamic dims and the runtime takes any size in them.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    delegated = _delegated_calls(lowered)
    executable = lowered.to_executorch()
    with open(dest, "wb") as handle:
        executable.write_to_file(handle)
    if delegated == 0:
        return ["no operator was delegated to XNNPACK: the program runs on the portable kernels only"]
    return [f"{delegated} part(s) of the program delegated to XNNPACK; the rest on portable kernels"]


def _delegated_calls(lowered: Any) -> int:
    graph = lowered.exported_program().graph_module.graph
    return sum(1 for node in graph.nodes if node.op == "call_function" and "delegate" in str(node.target))


def load(path: Path) -> FlatRun:
    """The .pte's forward method as a flat runner (its outputs copied: the runtime reuses its buffers)."""
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")

    def run(inputs: list[torch.Tensor]) -> list[Any]:
        return [o.clone() if isinstance(o, torch.Tensor) else o for o in method.execute(inputs)]

    return run
