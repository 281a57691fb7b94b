"""A tiny classifier, in its own file so regctl can bundle it (a class in __main__ cannot be)."""

import torch
from layers import Residual
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, features: int = 8, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), Residual(hidden))
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
