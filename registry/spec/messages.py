"""A pydantic ValidationError of `regctl.toml` as today's one-line InvalidSpec.

Every message names the file, the key as a path (`inputs[1].shape[0]`, `dims.seq.min`), the bad value
as it is written in TOML, and what was expected. Checks of regctl's own raise `fail(...)`, which
carries its problem and expectation; pydantic's own errors (a wrong type, a missing or unknown key, a
bound) take their expectation from EXPECTED, by the key's pattern.
"""

from __future__ import annotations

import difflib
import json
import keyword
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from regctl.registry.errors import InvalidSpec
from regctl.registry.formats import FORMATS
from regctl.registry.spec.checked import (
    DEVICES,
    MAX_DIM,
    MAX_DIMS,
    MAX_INPUTS,
    MAX_SAMPLES,
    MAX_SEARCH,
    METHODS,
)

_DIM_SIZE = f"an integer >= 1 and <= {MAX_DIM}"
_INPUTS = 'at least one [[inputs]] table, e.g. name = "x", dtype = "float32", shape = [1, 8]'
# What each key expects, by pattern: list indexes are [], the names of dims are *.
EXPECTED = {
    "entrypoint": "a string",
    "weights": "a string",
    "optimize": "true or false",
    "formats": 'a list of formats with "torchscript", e.g. ["torchscript", "onnx", "executorch"]',
    "dims": "a [dims] table like seq = { min = 1, max = 128 }",
    "dims.*": "a table like { min = 1, max = 128 } with optional opt and batch",
    "dims.*.min": _DIM_SIZE,
    "dims.*.max": _DIM_SIZE,
    "dims.*.opt": "an integer >= 1",
    "dims.*.batch": "true or false",
    "inputs": _INPUTS,
    "inputs[]": _INPUTS,
    "inputs[].name": "the argument's name in forward(), a Python identifier",
    "inputs[].dtype": 'a torch dtype name such as "float32" (or int, float, bool)',
    "inputs[].shape": 'an array of positive sizes and dim names, e.g. [1, "seq"]',
    "inputs[].low": "a finite number",
    "inputs[].high": "a finite number",
    "validation": "a [validation] table with rtol, atol, samples, inputs, search, accept_baked",
    "validation.rtol": "a finite number >= 0",
    "validation.atol": "a finite number >= 0",
    "validation.samples": f"an integer >= 1 and <= {MAX_SAMPLES}",
    "validation.inputs": "a string",
    "validation.search": f"an integer >= 0 and <= {MAX_SEARCH} (eager forwards; 0 turns the search off)",
    "validation.accept_baked": 'an array of decision points like ["model.py:14"]',
    "validation.accept_baked[]": 'a decision point "file.py:line", e.g. "model.py:14"',
}
# What a spec that outgrew a cap should hold instead.
_AT_MOST = {
    "inputs": f"at most {MAX_INPUTS} [[inputs]] tables, one per argument of forward()",
    "dims": f"at most {MAX_DIMS} dims in [dims]",
    "validation.accept_baked": "at most 200 decision points",
}
# Keys that take one of a few words: what the word names, and the words.
CHOICES = {
    "method": ("a conversion method", METHODS),
    "device": ("a device", DEVICES),
    "formats[]": ("a format", FORMATS),
}
_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}
_TABLE_ERRORS = {"model_type", "model_attributes_type", "dict_type", "list_type"}


def show(value: Any) -> str:
    """A value as it would be written in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {show(v)}" for k, v in value.items()) + " }"
    return str(value)


def kind(value: Any) -> str:
    """What a value is, in TOML's words ("a string", "a table")."""
    return "a table" if isinstance(value, dict) else _KINDS.get(type(value), f"a {type(value).__name__}")


def is_identifier(name: str) -> bool:
    """True for a name Python can bind (not a keyword)."""
    return name.isidentifier() and not keyword.iskeyword(name)


def did_you_mean(word: str, choices: Any, prefix: str = "") -> str:
    """` (did you mean X?)` for the closest choice, or nothing."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def fail(problem: str, expected: str, *key: str | int, value: Any = ...) -> PydanticCustomError:
    """A check of regctl's own failed; `key` goes below the validated value's place, `value` replaces it."""
    ctx = {"problem": problem, "expected": expected, "key": list(key)}
    if value is not ...:
        ctx["value"] = value
    return PydanticCustomError("regctl_spec", "{problem}; expected {expected}", ctx)


def key_path(loc: Sequence[str | int]) -> str:
    """("inputs", 0, "shape", 1) as inputs[0].shape[1]."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def pattern(loc: Sequence[str | int]) -> str:
    """The key's pattern in EXPECTED: indexes as [], the names of dims as *."""
    path = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            path += "[]"
        else:
            name = "*" if i == 1 and loc[0] == "dims" else part
            path += f".{name}" if path else name
    return path


def spec_error(
    exc: ValidationError, source: str, data: Any, tables: dict[str, type[BaseModel]]
) -> InvalidSpec:
    """The first error of `exc` (validating `data`) as one line naming `source`.

    `tables` maps a key's pattern to the model of that table, whose fields are the keys it allows.
    """
    errors = exc.errors(include_url=False)
    # An unknown key first, as a misspelt key often explains the error beside it (`mx` for max).
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    return InvalidSpec(f"{source}: {_describe(error, data, tables)}")


def _describe(error: ErrorDetails, data: Any, tables: dict[str, type[BaseModel]]) -> str:
    loc, value, kind_of, ctx = list(error["loc"]), error["input"], error["type"], error.get("ctx") or {}
    if kind_of == "regctl_spec":
        loc += ctx["key"]
        value = ctx.get("value", value)
        return f"{key_path(loc)} = {show(value)} {ctx['problem']}; expected {ctx['expected']}"
    where = pattern(loc)
    if kind_of == "missing":
        return f"{key_path(loc)} is missing; expected {EXPECTED.get(where, 'a value')}"
    if kind_of == "extra_forbidden":
        return _unknown_key(loc, tables)
    if where in ("inputs", "inputs[]") and kind_of in _TABLE_ERRORS:
        return f"inputs = {show(data['inputs'])} is not an array of tables; expected {_INPUTS}"
    if where in CHOICES:
        what, choices = CHOICES[where]
        guess = did_you_mean(value, choices) if isinstance(value, str) else ""
        return f"{key_path(loc)} = {show(value)} is not {what}{guess}; expected one of {', '.join(choices)}"
    if kind_of == "too_long":  # the value itself is too long to show
        actual = len(value) if isinstance(value, list | dict) else ctx.get("actual_length")
        many = f"{actual} entries, more than {ctx.get('max_length')}"
        return f"{key_path(loc)} has {many}; expected {_AT_MOST.get(where, 'fewer')}"
    problem = {
        "too_short": "is empty",
        "finite_number": "is not finite",
        "greater_than_equal": f"is less than {ctx.get('ge', 0):g}",
        "less_than_equal": f"is more than {ctx.get('le', 0)}",
    }.get(kind_of, f"is {kind(value)}")
    return f"{key_path(loc)} = {show(value)} {problem}; expected {EXPECTED.get(where, 'a value')}"


def _unknown_key(loc: list[str | int], tables: dict[str, type[BaseModel]]) -> str:
    *parent, key = loc
    allowed = list(tables[pattern(parent)].model_fields)
    where = f"{key_path(parent)}." if parent else ""
    guess = did_you_mean(str(key), allowed, where)
    message = f"unknown key {where}{key}{guess}; expected one of {', '.join(allowed)}"
    if parent and key in tables[""].model_fields:
        message += "; top-level keys must come before the first [table] header"
    return message
