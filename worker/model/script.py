"""The `script` candidate: `torch.jit.script`, and a plain-words hint when it cannot compile.

A compile error keeps TorchScript's own message (with its source excerpt) as `detail`; `error`
is its first line plus the model file and line it points at, and `hint` is keyed on substrings
of the message (HINTS, first match wins).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import torch

from regctl.worker.engine.capture import ModelFrames, one_line
from regctl.worker.model.loader import LoadedModel

HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("variable number of arguments", "keyword-only arguments"),
        "TorchScript cannot compile *args or **kwargs: give the function (or the helper it calls) "
        'explicit, typed parameters, or use method = "trace"',
    ),
    (
        ("(inferred)",),
        "an argument without a type hint is assumed to be a Tensor: annotate the non-Tensor "
        "arguments, e.g. `length: int` or `scale: float = 1.0`",
    ),
    (
        ("Can't get source", "could not get source code", "source access"),
        "TorchScript compiles from source: define the model in a .py file of the model directory, "
        "not with exec(), in a REPL or in generated code",
    ),
    (
        ("numpy", "weak reference", "Python value of type 'module'", "Unknown type annotation"),
        "calls into non-torch libraries (numpy, scipy, math on tensors, ...) cannot be compiled: "
        "use the torch equivalent",
    ),
    (
        ("aren't supported", "is not supported", "not supported in TorchScript", "Python builtin"),
        "this Python construct is outside TorchScript's subset (generators, lambdas, try/except, "
        "with-statements, most builtins): rewrite it with plain loops and torch ops, or use "
        'method = "trace" if no control flow depends on the data',
    ),
    (
        ("has no attribute", "Module has no attribute", "failed to convert Python type"),
        "TorchScript could not infer the type of a module attribute: set it in __init__ to a "
        "value of one type, or annotate it (self.x: List[int] = [])",
    ),
    (
        ("Expected a value of type", "Arguments for call are not valid", "Tried to access nonexistent"),
        "a value has a different type than TorchScript inferred: annotate variables and empty "
        "containers (`xs: List[Tensor] = []`) and the arguments of helpers",
    ),
)

_LOCATION = re.compile(r'File "([^"]+)", line (\d+)')


@dataclass(frozen=True)
class ScriptOutcome:
    """A compiled artifact, or why there is none."""

    artifact: Any  # torch.jit.ScriptModule | torch.jit.ScriptFunction | None
    error: str | None = None  # one line
    detail: str | None = None  # TorchScript's full message with its source excerpt
    hint: str | None = None
    seconds: float = 0.0


def script_model(model: LoadedModel) -> ScriptOutcome:
    """Compile the eager model (module or function) with torch.jit.script."""
    start = time.perf_counter()
    try:
        artifact = torch.jit.script(model.eager)
    except Exception as exc:
        message = str(exc).strip()
        return ScriptOutcome(
            artifact=None,
            error=f"{type(exc).__name__}: {_summary(message, model.frames)}",
            detail=message,
            hint=hint_for(message),
            seconds=time.perf_counter() - start,
        )
    return ScriptOutcome(artifact, seconds=time.perf_counter() - start)


def hint_for(message: str) -> str | None:
    """The first hint whose substrings occur in a TorchScript compile error."""
    for needles, hint in HINTS:
        if any(n in message for n in needles):
            return hint
    return None


def _summary(message: str, frames: ModelFrames) -> str:
    """First line of the message plus the innermost model line its excerpt points at."""
    head = one_line(message)
    spots = [(frames.relative(f), n) for f, n in _LOCATION.findall(message)]
    spots = [(f, n) for f, n in spots if f is not None]
    return f"{head} (at {spots[-1][0]}:{spots[-1][1]})" if spots else head
