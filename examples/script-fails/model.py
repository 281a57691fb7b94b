"""A model that `torch.jit.script` cannot compile but `torch.jit.trace` records faithfully."""

import torch
from torch import Tensor, nn


def scaled(x, **options):
    """A config-style helper: TorchScript cannot compile **kwargs (nor an untyped `options`)."""
    return x * options.get("scale", 1.0)


class Head(nn.Module):
    """A classifier head; nothing depends on the data, so a trace is exact."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return scaled(torch.tanh(self.fc(x)), scale=0.5)


def build() -> nn.Module:
    torch.manual_seed(0)
    return Head()
