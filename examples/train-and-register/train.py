"""Train a tiny model for a few steps and register it from Python, the way a training job would.

    cd examples/train-and-register && python train.py   # the registry REGCTL_* or `regctl login` names

It registers the in-memory module (its source files, its weights as safetensors, a generated
regctl.toml), waits for the conversion to be proven against eager PyTorch and prints the outcome;
regctl's own progress lines go to stderr. Run it again and nothing new is registered: the same seed
trains the same weights, so it answers "unchanged: identical to tiny-net:1".
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny_net.py and layers.py live here

from tiny_net import TinyNet

import regctl


def train(steps: int = 50) -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet(features=8, hidden=16, classes=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(256, 8)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    print(f"trained {steps} steps, loss {loss.item():.3f}", file=sys.stderr)
    return model.eval()


def main() -> int:
    model = train()
    version = regctl.register_module(
        "tiny-net",
        model,
        init={"features": 8, "hidden": 16, "classes": 3},
        inputs=[{"name": "x", "dtype": "float32", "shape": ["batch", 8]}],
        dims={"batch": {"min": 1, "max": 16, "batch": True}},
        description="tiny classifier trained by examples/train-and-register/train.py",
        tags={"steps": "50"},
        wait=True,
    )
    print(f"{version.ref} is {version.status} ({version.method})")
    return 0 if version.status == "ready" else 1


if __name__ == "__main__":
    sys.exit(main())
