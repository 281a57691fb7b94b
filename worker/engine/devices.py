"""The device a spec names, the seed every model run starts from, and the error for a model that
cannot be made runnable: shared by the model side (worker/model/) and the judge (worker/judge/),
which must agree on them and never import each other.
"""

from __future__ import annotations

import torch

SEED = 0


class ModelLoadError(Exception):
    """Raised when a model directory cannot be made into a runnable model: a bad entrypoint,
    an import error, weights that do not fit the model, unusable recorded inputs."""


def reseed(device: torch.device) -> None:
    """Reset the random state a model run draws from (CPU, and the CUDA device when used).

    Cheaper than torch.manual_seed, which also seeds every other backend on every call.
    """
    torch.default_generator.manual_seed(SEED)
    if device.type == "cuda":
        torch.cuda.manual_seed(SEED)


def device_for(name: str) -> torch.device:
    """The torch device a spec names; ModelLoadError when it asks for CUDA and there is none."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("the spec asks for device 'cuda', but CUDA is not available on this worker")
    return torch.device(name)
