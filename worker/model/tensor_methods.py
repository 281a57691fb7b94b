"""torch.Tensor's methods replaced for the duration of a block: how the model side watches a model's
tensors without a TorchFunctionMode (whose first use imports torch._dynamo: 1.8 s, measured).

Used by the coverage recorder (the conversions a model makes: `__bool__`, `.item()`, ...) and by the
build that leaves fills undrawn (the methods that hand a tensor's bytes to Python).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def replaced(names: Iterable[str], wrap: Callable[[str, Any], Any]) -> Iterator[None]:
    """Each method `name` of torch.Tensor is `wrap(name, original)` in the block, and as before after it."""
    # most of these are inherited from torch._C.TensorBase: afterwards they are inherited again
    own = {name: torch.Tensor.__dict__.get(name) for name in names}
    for name in own:
        setattr(torch.Tensor, name, wrap(name, getattr(torch.Tensor, name)))
    try:
        yield
    finally:
        for name, original in own.items():
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)
