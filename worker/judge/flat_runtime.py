"""A runtime that takes and returns flat lists of tensors, called like the eager model.

ExecuTorch's `Method.execute` and onnxruntime's `InferenceSession.run` see only the exported
program's tensor inputs, in forward()'s order, and give back its outputs flattened. The judge
compares structures (worker/judge/compare.py), so the outputs are put back into the program's own
output structure (`out_spec`, the pytree spec torch.export recorded), and onto the device the eager
outputs are on. Python scalar inputs are not passed: torch.export specialized them, and the program
was only built into a format after the battery proved it on the values the battery used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.utils._pytree as pytree

FlatRun = Callable[[list[torch.Tensor]], list[Any]]


class FlatRuntime:
    """Calls `run` on the tensor inputs and rebuilds the program's output structure."""

    def __init__(self, run: FlatRun, out_spec: Any, device: torch.device) -> None:
        self.run, self.out_spec, self.device = run, out_spec, device

    def __call__(self, *args: Any) -> Any:
        """Like the eager model: positional inputs in, outputs shaped like eager's."""
        flat = [a.detach().to("cpu").contiguous() for a in args if isinstance(a, torch.Tensor)]
        outputs = [o.to(self.device) if isinstance(o, torch.Tensor) else o for o in self.run(flat)]
        if self.out_spec is None:
            return outputs[0] if len(outputs) == 1 else tuple(outputs)
        return pytree.tree_unflatten(outputs, self.out_spec)


def output_spec(program: Any) -> Any:
    """The pytree spec of an ExportedProgram's outputs."""
    return program.call_spec.out_spec
