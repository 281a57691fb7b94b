"""A tiny recurrent sequence model that loops over the sequence in Python."""

import torch
from torch import Tensor, nn


class TinyRNN(nn.Module):
    """An Elman RNN: h_t = tanh(W x_t + U h_{t-1}), with a linear read-out at every step."""

    def __init__(self, features: int = 8, hidden: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Linear(features, hidden)
        self.rec = nn.Linear(hidden, hidden, bias=False)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:  # x: [batch, seq, features]
        h = torch.zeros(x.shape[0], self.hidden, dtype=x.dtype, device=x.device)
        steps: list[Tensor] = []
        for t in range(x.shape[1]):  # a trace unrolls this loop for the length it saw
            h = torch.tanh(self.inp(x[:, t]) + self.rec(h))
            steps.append(self.out(h))
        return torch.stack(steps, dim=1)


def build() -> nn.Module:
    torch.manual_seed(0)
    return TinyRNN()
