"""A small transformer encoder over token features, with a dynamic batch and sequence length."""

import torch
from torch import Tensor, nn


class TinyEncoder(nn.Module):
    """Project features, run two encoder layers, classify every position."""

    def __init__(self, features: int = 16, width: int = 32, heads: int = 2, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(features, width)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, 4)

    def forward(self, x: Tensor) -> Tensor:  # x: [batch, seq, features]
        return self.head(self.encoder(self.embed(x)))


def build() -> nn.Module:
    torch.manual_seed(0)
    return TinyEncoder()
