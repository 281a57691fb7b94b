"""Random weights the weights file replaces are never drawn, and the model is still built exactly.

Building a model draws its random initial weights (kaiming_uniform_ on every nn.Linear, normal_ on
every nn.Embedding: 0.5-0.75 s for BERT-base, measured), and loading its weights file then replaces
every parameter and persistent buffer. Both roles that load a model (the candidate builder and the
reference runner) paid for numbers nobody reads. While the entrypoint builds a model that has a
weights file, `SkippedInit` leaves the CPU default generator's fills undrawn (`uniform_`, `normal_`,
`randn`, `rand`, `nn.init.trunc_normal_`): the tensor keeps the memory it was given. Transformers
does the same when it loads pretrained weights (`no_init_weights`), trusting that nothing reads them.

Here that is proven, or the loader builds the model again the ordinary way (loader.py), so a model
built this way is the very model an ordinary build gives:
- no undrawn value left the undrawn storage: an op that reads one may only write into undrawn
  storage (in-place, views); anything else that reads one (a copy, a comparison, `.item()`,
  `.numpy()`, `.tolist()`, `data_ptr()`) marks the build inexact, and from then on every fill is drawn;
- the default generator's state did not move after the first fill left undrawn, so no later draw got
  numbers other than an ordinary build's (a fill with its own `generator` is always drawn);
- once the weights are loaded, every undrawn storage is gone (the file's tensors replaced it) or
  holds the file's bytes under a name of the state dict (they were copied in).
Not seen: ops run by another thread than the build's, and reads through torch's C functions
(`torch._C._to_dlpack`) or raw memory. Only a model that means to hide a read goes there, and a
hostile model gains nothing by it: what the judge checks is the candidate against the reference
runner's eager outputs on the battery, which stay the model side's word, as they always were.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode

from regctl.worker.model import tensor_methods
from regctl.worker.model.weights import still_held

_aten = torch.ops.aten
_FILLS = frozenset({_aten.uniform_.default, _aten.normal_.default})  # in place: the tensor is kept
_FACTORIES = frozenset({_aten.randn.default, _aten.rand.default})  # answered with torch.empty
# read a tensor's shape, never its values
_SHAPE_ONLY = frozenset(
    {
        _aten.empty_like,
        _aten.zeros_like,
        _aten.ones_like,
        _aten.full_like,
        _aten.new_empty,
        _aten.new_empty_strided,
        _aten.new_zeros,
        _aten.new_ones,
        _aten.new_full,
    }
)
# Tensor methods that hand a tensor's bytes to Python without an op the dispatcher sees, watched
# while the model builds
_RAW_READS = frozenset(
    {"numpy", "tolist", "data_ptr", "untyped_storage", "storage", "_typed_storage", "__dlpack__", "__array__"}
)


class SkippedInit:
    """One build's undrawn fills and whether the build stayed exact (see the module docstring)."""

    def __init__(self) -> None:
        self._undrawn: set[StorageWeakRef] = set()
        self._state_at_first: torch.Tensor | None = None
        self._own = False  # our own bookkeeping reads storages: the raw-read check ignores it
        self.inexact: str | None = None  # why the build may differ from an ordinary one

    @property
    def skipped(self) -> bool:
        """Whether any fill was left undrawn."""
        return self._state_at_first is not None

    @contextmanager
    def building(self) -> Iterator[SkippedInit]:
        """Leave fills undrawn for the duration of the block (the entrypoint's call)."""
        nn.init.trunc_normal_ = self._trunc_normal_  # type: ignore[assignment]
        try:
            with tensor_methods.replaced(_RAW_READS, self._watched), _Fills(self):
                yield self
        finally:
            nn.init.trunc_normal_ = _ORIGINAL_TRUNC_NORMAL  # type: ignore[assignment]
        if self.skipped and self.inexact is None:
            state = self._state_at_first
            if not torch.equal(torch.default_generator.get_state(), state):
                self.inexact = "numbers were drawn after a fill was left undrawn"

    def verify(self, module: nn.Module, loaded: dict[str, torch.Tensor]) -> str | None:
        """After the weights file is loaded: None when the build is exact, else why it may not be."""
        if self.inexact is not None or not self.skipped:
            return self.inexact
        live = still_held(self._undrawn)
        if not live:
            return None  # the file's tensors replaced every one (loading by assignment)
        with self.bookkeeping():
            try:
                for name, tensor in module.state_dict(keep_vars=True).items():
                    ref = StorageWeakRef(tensor.untyped_storage())
                    if ref not in live:
                        continue
                    whole = tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
                    if not (whole and name in loaded and torch.equal(tensor.detach(), loaded[name])):
                        return f"{name} does not hold the weights file's values over all of its storage"
                    live.discard(ref)
            except (RuntimeError, NotImplementedError) as exc:  # a tensor with no storage to compare
                return f"the weights could not be compared with the file: {exc}"
        if live:
            return "a tensor whose fill was left undrawn is still held outside the state dict"
        return None

    @contextmanager
    def bookkeeping(self) -> Iterator[None]:
        """Our own storage reads, which the raw-read check must not count."""
        self._own = True
        try:
            yield
        finally:
            self._own = False

    def leave_undrawn(self, tensor: torch.Tensor) -> None:
        """Remember `tensor`'s storage as undrawn; the first time, the generator's state."""
        with self.bookkeeping():
            if self._state_at_first is None:
                self._state_at_first = torch.default_generator.get_state()
            self._undrawn.add(StorageWeakRef(tensor.untyped_storage()))

    def is_undrawn(self, value: Any) -> bool:
        """Whether `value` is a tensor on an undrawn storage."""
        if not isinstance(value, torch.Tensor) or not self._undrawn:
            return False
        with self.bookkeeping():
            try:
                return StorageWeakRef(value.untyped_storage()) in self._undrawn
            except (RuntimeError, NotImplementedError):  # no storage (sparse, nested): never left undrawn
                return False

    def undrawn_fill(self, device: torch.device, generator: Any) -> bool:
        """Whether a fill on `device` may be left undrawn: the default generator, on the CPU."""
        return self.inexact is None and generator is None and device.type == "cpu"

    def _watched(self, name: str, original: Any) -> Any:
        skip = self

        def read(tensor: Any, *args: Any, **kwargs: Any) -> Any:
            if not skip._own and skip.inexact is None and skip.is_undrawn(tensor):
                skip.inexact = f"{name}() read a weight whose fill was left undrawn"
            return original(tensor, *args, **kwargs)

        return read

    def _trunc_normal_(self, tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        # its rejection sampling compares the samples, which would mark every such build inexact
        plain = _trunc_normal_is_plain(*args, **kwargs)
        if plain and self.undrawn_fill(tensor.device, kwargs.get("generator")):
            self.leave_undrawn(tensor)
            return tensor
        return _ORIGINAL_TRUNC_NORMAL(tensor, *args, **kwargs)


_ORIGINAL_TRUNC_NORMAL = nn.init.trunc_normal_


def _trunc_normal_is_plain(
    mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, generator: Any = None
) -> bool:
    """No warning to give: trunc_normal_ warns when the mean is more than 2 std outside [a, b]."""
    return not (mean < a - 2 * std or mean > b + 2 * std)


class _Fills(TorchDispatchMode):
    """Leaves fills undrawn and marks the build inexact when an undrawn value is read."""

    def __init__(self, skip: SkippedInit) -> None:
        super().__init__()
        self.skip = skip

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in dynamo.disable by default, and its first call
        # then imports torch._dynamo (1.8 s); a model's build is never compiled
        return False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        skip = self.skip
        if func in _FILLS and skip.undrawn_fill(args[0].device, kwargs.get("generator")):
            skip.leave_undrawn(args[0])
            return args[0]
        if func in _FACTORIES and skip.undrawn_fill(_made_on(kwargs), kwargs.get("generator")):
            out = _aten.empty.memory_format(args[0], **kwargs)  # the .default overloads take no generator
            skip.leave_undrawn(out)
            return out
        out = func(*args, **kwargs)
        if skip.inexact is None and self._escapes(func, args, kwargs, out):
            skip.inexact = f"{func} read a weight whose fill was left undrawn"
        return out

    def _escapes(self, func: Any, args: tuple, kwargs: dict, out: Any) -> bool:
        """Whether the op read an undrawn tensor into anything but undrawn storage (a view, itself)."""
        read = any(map(self.skip.is_undrawn, _leaves((args, kwargs))))
        if not read or func.overloadpacket in _SHAPE_ONLY:
            return False
        outputs = _leaves(out)
        return not outputs or not all(self.skip.is_undrawn(o) for o in outputs)


def _made_on(kwargs: dict[str, Any]) -> torch.device:
    """The device a factory's output is made on."""
    return torch.device(kwargs.get("device") or torch.get_default_device())


def _leaves(value: Any) -> list[Any]:
    """The tensors in nested tuples, lists and dicts of an op's arguments or outputs."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [leaf for item in value for leaf in _leaves(item)]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    return []
