"""Load a model directory into a fresh, private module namespace and make the model ready to run.

Every load gets its own package name, `_regctl_model_<hex>`, whose `__path__` is the model
directory (a private search path: `sys.path` is never touched). The entrypoint module is
imported inside it (`model.py` -> `_regctl_model_<hex>.model`, `pkg.mod` ->
`_regctl_model_<hex>.pkg.mod`), and for as long as the model is loaded an import hook answers
the model's own absolute imports of its sibling files (`import helpers`, `from layers import
Block`) with the same private modules. So every class of the model has a unique qualified name:
TorchScript, which keeps one global table of compiled classes and named tuples by qualified
name, never confuses two models that both define `model.Output`, and two loads of one directory
never share state. When the `loaded_model` block ends the hook is removed and every module of
the load leaves `sys.modules`. A model file named like a module the worker has already imported
from outside the installed packages (a leftover `helpers` of another import) hides that module
during the load; installed packages and the standard library always win (a `sympy.py` in the
model directory must not replace the sympy that torch imports lazily while converting).

The weights file is loaded by weights.py; while a model that has one builds, the random fills the
file replaces are left undrawn (skipped_init.py).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import sysconfig
import threading
import types
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regctl.registry.spec import ModelSpec
from regctl.worker.engine.capture import ModelFrames, describe_exception
from regctl.worker.engine.devices import SEED, ModelLoadError, device_for
from regctl.worker.model.skipped_init import SkippedInit
from regctl.worker.model.weights import load_weights

NAMESPACE_PREFIX = "_regctl_model_"
# Import state and warning filters are process-global: one engine call runs at a time per process.
ENGINE_LOCK = threading.RLock()
_NEVER_SHADOWED = frozenset({"torch", "numpy", "safetensors", "registry", "worker", "typing_extensions"})
_INSTALL_ROOT = Path(sysconfig.get_paths()["stdlib"]).resolve()
_SITE_DIRS = tuple({Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")})


@dataclass(frozen=True)
class LoadedModel:
    """The eager model, in eval mode with its weights, ready to be called on battery inputs."""

    eager: Callable[..., Any]  # the nn.Module, or the plain function the entrypoint returned
    module: nn.Module | None  # None when the entrypoint returned a function
    model_dir: Path
    namespace: str  # the private package that holds this load's modules
    device: torch.device
    frames: ModelFrames
    fills_skipped: bool = False  # built with undrawn fills the weights file replaced (skipped_init.py)

    @property
    def is_function(self) -> bool:
        """True when the model is a plain function of tensors rather than an nn.Module."""
        return self.module is None

    @property
    def kind(self) -> str:
        """'function' or the module's class name, for reports."""
        return "function" if self.module is None else type(self.module).__name__


@contextmanager
def loaded_model(
    model_dir: Path, spec: ModelSpec, *, before_rebuild: Callable[[], None] = lambda: None
) -> Iterator[LoadedModel]:
    """Import the model, build it with a fixed seed, load its weights; unload it on exit.

    With a weights file, the build first leaves the random fills the file replaces undrawn
    (skipped_init.py); should that build not be provably the ordinary one, `before_rebuild` is
    called (to forget the warnings the first build raised) and the model is imported and built again
    the ordinary way, in a fresh namespace. Raises ModelLoadError with a one-line message for
    anything wrong with the directory.
    """
    model_dir = Path(model_dir).resolve()
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist")
    device = device_for(spec.device)
    frames = ModelFrames(model_dir)
    for skip in (SkippedInit(), None) if spec.weights else (None,):
        importer = PrivateImporter(model_dir, f"{NAMESPACE_PREFIX}{uuid.uuid4().hex[:12]}")
        with importer.installed():
            try:
                built = _build(importer, spec.entrypoint, frames, skip)
                module = built if isinstance(built, nn.Module) else None
                inexact = _weights_loaded(module, model_dir, spec, skip)
            except ModelLoadError:
                if skip is None or not skip.skipped:
                    raise
                inexact = "the build failed"  # an ordinary build says what is wrong, or succeeds
            if inexact is not None:
                before_rebuild()
                continue
            if module is not None:
                module.to(device).eval()
            skipped = skip is not None and skip.skipped
            yield LoadedModel(built, module, model_dir, importer.namespace, device, frames, skipped)
            return


def _weights_loaded(
    module: nn.Module | None, model_dir: Path, spec: ModelSpec, skip: SkippedInit | None
) -> str | None:
    """Load the spec's weights into `module`; None, or why a build with undrawn fills may not be exact."""
    if not spec.weights:
        return None
    if module is None:
        raise ModelLoadError(
            f"weights {spec.weights!r} given, but entrypoint {spec.entrypoint} returned a function, "
            "which has no parameters to load them into"
        )
    loaded = load_weights(module, model_dir / spec.weights, spec.weights)
    return skip.verify(module, loaded) if skip is not None else None


class PrivateImporter(importlib.abc.MetaPathFinder):
    """Imports the model's files under a private package name (see the module docstring)."""

    def __init__(self, model_dir: Path, namespace: str) -> None:
        self.model_dir = model_dir
        self.namespace = namespace
        self.top_names = _top_level_names(model_dir)
        self._hidden: dict[str, types.ModuleType] = {}
        self._imported: set[str] = set()  # every module name this load created (seen by find_spec)

    @contextmanager
    def installed(self) -> Iterator[PrivateImporter]:
        """Register the private package and the alias hook; clean everything up on exit."""
        root = types.ModuleType(self.namespace)
        root.__path__ = [str(self.model_dir)]
        root.__spec__ = importlib.machinery.ModuleSpec(self.namespace, None, is_package=True)
        root.__spec__.submodule_search_locations = [str(self.model_dir)]
        was_writing_bytecode = sys.dont_write_bytecode
        sys.dont_write_bytecode = True  # never write __pycache__ into the model directory
        self._hide_shadowed()
        sys.modules[self.namespace] = root
        sys.meta_path.insert(0, self)
        sys.path_importer_cache.pop(str(self.model_dir), None)  # list the directory afresh
        try:
            yield self
        finally:
            sys.meta_path.remove(self)
            sys.dont_write_bytecode = was_writing_bytecode
            self._purge()

    def import_module(self, dotted: str) -> types.ModuleType:
        """Import `dotted` (relative to the model directory) inside the private package."""
        return importlib.import_module(f"{self.namespace}.{dotted}")

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        """Answer an absolute import of one of the model's own files with its private module."""
        if self._is_private(fullname):
            self._imported.add(fullname)
        if _top_of(fullname) not in self.top_names:
            return None
        self._imported.add(fullname)
        private = self.import_module(fullname)
        return importlib.util.spec_from_loader(
            fullname, _AliasLoader(private), is_package=hasattr(private, "__path__")
        )

    def _is_private(self, name: str) -> bool:
        return name == self.namespace or name.startswith(self.namespace + ".")

    def _hide_shadowed(self) -> None:
        protected = {
            name
            for name in self.top_names
            if name in sys.stdlib_module_names or name in _NEVER_SHADOWED or _is_installed_name(name)
        }
        self.top_names -= protected
        if any(name in sys.modules for name in self.top_names):  # rare: scan for submodules too
            for name in [n for n in sys.modules if _top_of(n) in self.top_names]:
                self._hidden[name] = sys.modules.pop(name)

    def _purge(self) -> None:
        # every module this load created went through find_spec (the hook is first on sys.meta_path)
        for name in (self.namespace, *self._imported):
            sys.modules.pop(name, None)
        sys.path_importer_cache.pop(str(self.model_dir), None)
        sys.modules.update(self._hidden)
        self._hidden.clear()


class _AliasLoader(importlib.abc.Loader):
    """Hands an already imported private module to an absolute import of its plain name."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        # the import system stamped the alias spec on the module; give it back its own
        module.__spec__ = self.module.__spec__


def _build(importer: PrivateImporter, entrypoint: str, frames: ModelFrames, skip: SkippedInit | None) -> Any:
    dotted, attr_path = _parse_entrypoint(entrypoint, importer.model_dir)
    try:
        module = importer.import_module(dotted)
    except SyntaxError as exc:
        where = frames.relative(exc.filename or "") or exc.filename
        raise ModelLoadError(
            f"cannot import {entrypoint}: SyntaxError at {where}:{exc.lineno}: {exc.msg}"
        ) from exc
    except Exception as exc:
        raise ModelLoadError(f"cannot import {entrypoint}: {describe_exception(exc, frames)}") from exc
    factory: Any = module
    for attr in attr_path.split("."):
        if not hasattr(factory, attr):
            raise ModelLoadError(f"entrypoint {entrypoint}: {dotted} has no attribute {attr_path!r}")
        factory = getattr(factory, attr)
    if not callable(factory):
        raise ModelLoadError(
            f"entrypoint {entrypoint} is not callable (a value of type {type(factory).__name__})"
        )
    torch.manual_seed(SEED)
    try:
        with skip.building() if skip is not None else nullcontext():
            built = factory()
    except Exception as exc:
        raise ModelLoadError(
            f"calling entrypoint {entrypoint} raised {describe_exception(exc, frames)}"
        ) from exc
    if not isinstance(built, nn.Module) and not callable(built):
        raise ModelLoadError(
            f"entrypoint {entrypoint} returned a value of type {type(built).__name__}; expected an nn.Module "
            "or a function of tensors"
        )
    return built


def _parse_entrypoint(entrypoint: str, model_dir: Path) -> tuple[str, str]:
    """'model.py:build' -> ('model', 'build'); 'pkg.mod:build' -> ('pkg.mod', 'build')."""
    target, sep, attr_path = entrypoint.partition(":")
    if not sep or not target or not attr_path:
        raise ModelLoadError(
            f"entrypoint {entrypoint!r} must look like 'model.py:build' or 'package.module:build'"
        )
    if target.endswith(".py"):
        file = (model_dir / target).resolve()
        if model_dir not in file.parents:
            raise ModelLoadError(f"entrypoint {entrypoint!r} points outside the model directory")
        if not file.is_file():
            raise ModelLoadError(f"entrypoint {entrypoint!r}: file {target} not found in the model directory")
        parts = list(file.relative_to(model_dir).with_suffix("").parts)
    else:
        parts = target.split(".")
    if not all(p.isidentifier() for p in [*parts, *attr_path.split(".")]):
        raise ModelLoadError(
            f"entrypoint {entrypoint!r}: module and attribute names must be Python identifiers"
        )
    return ".".join(parts), attr_path


def _top_level_names(model_dir: Path) -> set[str]:
    names = set()
    for entry in model_dir.iterdir():
        if entry.is_file() and entry.suffix == ".py" and entry.stem.isidentifier():
            names.add(entry.stem)
        elif entry.is_dir() and entry.name.isidentifier() and entry.name != "__pycache__":
            names.add(entry.name)
    return names


def _top_of(name: str) -> str:
    """The top-level package of a dotted module name."""
    return name.partition(".")[0]


def _is_installed_name(name: str) -> bool:
    """True when `name` is (or would import) a module of the stdlib or site-packages."""
    if name in sys.modules:
        module = sys.modules[name]
        file = getattr(module, "__file__", None)
        return not file or _is_installed_file(file)  # no file: builtin or namespace package
    spec = importlib.machinery.PathFinder.find_spec(name)
    return spec is not None and spec.origin is not None and _is_installed_file(spec.origin)


def _is_installed_file(file: str) -> bool:
    path = Path(file).resolve()
    return any(path.is_relative_to(root) for root in (_INSTALL_ROOT, *_SITE_DIRS))
