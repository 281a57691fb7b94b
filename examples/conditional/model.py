"""A model with a branch that depends on the values of its input."""

import torch
from torch import Tensor, nn


class SignGate(nn.Module):
    """Rectify inputs whose sum is positive; negate the others."""

    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 0:  # a trace records only the branch its example input took
            return torch.relu(x)
        return -x


def build() -> nn.Module:
    return SignGate()
