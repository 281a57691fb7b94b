"""A plain function (no nn.Module) whose loop count is one of its inputs."""

import torch
from torch import Tensor


def smooth(x: Tensor, length: int) -> Tensor:
    """Apply a 3-tap circular moving average `length` times.

    `length` is a Python int, annotated so that TorchScript compiles the loop with its count as an
    argument; a trace could only record the loop unrolled for one value.
    """
    for _ in range(length):
        x = (torch.roll(x, 1, -1) + x + torch.roll(x, -1, -1)) / 3
    return x


def build():
    """The entrypoint returns the function itself; regctl wraps and compiles it."""
    return smooth
