"""A model's weights file loaded into the built model: strictly, keeping one copy of the weights where it can.

Weights are a `.safetensors` file or a state_dict saved with `torch.save` (read with
`weights_only=True`); whole pickled models are never unpickled.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

from regctl.worker.engine.capture import describe_exception
from regctl.worker.engine.devices import ModelLoadError

_MAX_KEYS_SHOWN = 5


def load_weights(module: nn.Module, path: Path, name: str) -> dict[str, torch.Tensor]:
    """Load a state_dict file into `module` strictly and return it; a mismatch names the offending keys."""
    if not path.is_file():
        raise ModelLoadError(f"weights file {name!r} not found in the model directory")
    state = _read_state_dict(path, name)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} in file vs {tuple(expected[k].shape)} in model"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch: {_listing(shapes)}")
    if problems:
        raise ModelLoadError(f"weights {name!r} do not fit the model: " + "; ".join(problems))
    assign = _can_assign(expected, state)
    replaced = [_Replaced.of(k, t) for k, t in expected.items()] if assign else []
    del expected  # holds the tensors being replaced: whatever else still holds one shows below
    try:
        module.load_state_dict(state, strict=True, assign=assign)
    except Exception as exc:  # e.g. a custom _load_from_state_dict rejecting a value
        raise ModelLoadError(f"weights {name!r} could not be loaded: {describe_exception(exc)}") from exc
    _update_survivors(replaced, state)
    return state


def _can_assign(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> bool:
    """Whether the file's tensors can become the module's own instead of being copied into them.

    safetensors maps the file, so assigning keeps one copy of the weights (pages of the file,
    shared with the page cache) instead of two. Only when nothing would change: same dtypes, on
    the CPU, and no parameter shared between two names (assigning would untie it).
    """
    storages = [t.untyped_storage().data_ptr() for t in expected.values() if t.numel()]
    if len(set(storages)) != len(storages):
        return False
    return all(
        state[k].dtype == t.dtype and t.device.type == "cpu" and state[k].device.type == "cpu"
        for k, t in expected.items()
    )


@dataclass(frozen=True)
class _Replaced:
    """A tensor the assigning load replaces, by weak reference: where its values lie in its storage."""

    key: str
    storage: StorageWeakRef
    offset: int
    shape: torch.Size
    stride: tuple[int, ...]
    dtype: torch.dtype

    @classmethod
    def of(cls, key: str, tensor: torch.Tensor) -> _Replaced:
        """The weak record of `tensor`, the module's value for `key`."""
        storage = StorageWeakRef(tensor.untyped_storage())
        return cls(key, storage, tensor.storage_offset(), tensor.shape, tensor.stride(), tensor.dtype)

    def revived(self) -> torch.Tensor:
        """The replaced tensor again, on its storage (which must still be alive)."""
        storage = torch.UntypedStorage._new_with_weak_ptr(self.storage.cdata)
        return torch.empty(0, dtype=self.dtype).set_(storage, self.offset, self.shape, self.stride)


def still_held(storages: set[StorageWeakRef]) -> set[StorageWeakRef]:
    """Those of `storages` something still holds once the garbage is collected (collected only if needed)."""
    held = {ref for ref in storages if not ref.expired()}
    if held:
        gc.collect()  # a reference cycle may still hold a replaced tensor
        held = {ref for ref in held if not ref.expired()}
    return held


def _update_survivors(replaced: list[_Replaced], state: dict[str, torch.Tensor]) -> None:
    """Give the file's values to replaced tensors something else still holds, as copying would have.

    A model may keep a view or a second reference of a parameter outside its state dict
    (`self.weight_t = self.fc.weight.t()` in __init__): loading by copy updates it, assigning
    alone would leave it on the values it was built with.
    """
    held = still_held({r.storage for r in replaced})
    with torch.no_grad():
        for record in (r for r in replaced if r.storage in held):
            record.revived().copy_(state[record.key])


def _read_state_dict(path: Path, name: str) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            state: Any = load_file(str(path), device="cpu")
        else:
            state = _torch_load(path)
    except Exception as exc:
        raise ModelLoadError(
            f"weights {name!r} cannot be read as a state_dict (.safetensors, or torch.save of a "
            f"state_dict, read with weights_only=True): {describe_exception(exc)}"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        hint = (
            " (it looks like a checkpoint: save checkpoint['state_dict'] instead)"
            if isinstance(state, dict)
            else ""
        )
        raise ModelLoadError(
            f"weights {name!r} hold a {type(state).__name__}, not a state_dict of tensors{hint}"
        )
    return state


def _torch_load(path: Path) -> Any:
    """A state_dict saved with torch.save, memory-mapped when its format allows (zip, the default)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)  # the legacy format


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_KEYS_SHOWN])
    return shown + (f" (+{len(items) - _MAX_KEYS_SHOWN} more)" if len(items) > _MAX_KEYS_SHOWN else "")
