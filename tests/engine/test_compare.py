"""Comparing artifact outputs with eager outputs: structure, dtype, shape, values, with a precise reason."""

from __future__ import annotations

import math
from typing import NamedTuple

import pytest
import torch

from regctl.worker.judge.compare import compare_outputs


class Pair(NamedTuple):
    logits: torch.Tensor
    lengths: list[int]


def compare(actual: object, expected: object, rtol: float = 1e-4, atol: float = 1e-5):
    return compare_outputs(actual, expected, rtol=rtol, atol=atol)


def test_nested_dicts_lists_and_named_tuples_match_within_tolerance() -> None:
    x = torch.linspace(-1, 1, 12).reshape(3, 4)
    expected = {"out": Pair(x, [1, 2]), "aux": [x.sum(), (x > 0, 0.5)]}
    actual = {
        "aux": [x.sum() + 1e-7, (x > 0, 0.5)],
        "out": (x + 2e-6, [1, 2]),
    }  # a named tuple comes back as a tuple
    result = compare(actual, expected)
    assert result.ok and result.reason is None
    assert 1.9e-6 < result.max_abs_error < 2.1e-6
    assert 0 < result.max_rel_error < 1e-4


def test_a_shape_mismatch_names_the_path_and_both_shapes() -> None:
    expected = (torch.zeros(1), {"logits": torch.zeros(1, 9, 2)})
    actual = (torch.zeros(1), {"logits": torch.zeros(1, 7, 2)})
    assert compare(actual, expected).reason == "output[1]['logits'] shape (1, 7, 2) != eager (1, 9, 2)"


def test_a_dtype_mismatch_is_not_hidden_by_equal_values() -> None:
    result = compare(torch.ones(3, dtype=torch.float64), torch.ones(3))
    assert not result.ok and result.reason == "output dtype float64 != eager float32"


def test_a_value_mismatch_reports_the_worst_element() -> None:
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[1, 2] = 0.5
    actual[0, 0] = 1e-6  # within atol
    result = compare(actual, expected)
    assert not result.ok and result.max_abs_error == 0.5
    assert result.reason.startswith(
        "output values differ: max abs error 0.5 at index (1, 2) (got 0.5, eager 0;"
    )


def test_relative_tolerance_scales_with_the_eager_magnitude() -> None:
    assert compare(torch.tensor([1000.05]), torch.tensor([1000.0])).ok
    assert not compare(torch.tensor([1.05]), torch.tensor([1.0])).ok


def test_nan_equals_nan_but_not_a_number() -> None:
    nan = torch.tensor([1.0, math.nan])
    assert compare(nan.clone(), nan).ok
    result = compare(torch.tensor([1.0, 2.0]), nan)
    assert not result.ok and "at index (1,)" in result.reason
    assert compare(math.nan, math.nan).ok


def test_integer_tensors_must_be_exactly_equal() -> None:
    result = compare(torch.tensor([1, 2, 4]), torch.tensor([1, 2, 3]))
    assert result.reason == "output values differ at index (2,): 4 != eager 3"


def test_structure_mismatches_are_named() -> None:
    assert compare([torch.ones(1)], (torch.ones(1),)).reason == "output is a list, eager gives a tuple"
    assert compare((1, 2), (1, 2, 3)).reason == "output has 2 items, eager has 3"
    assert (
        compare({"a": 1}, {"a": 1, "b": 2}).reason == "output dict has missing keys 'b' compared with eager"
    )
    assert compare(torch.ones(()), 1.0).reason == "output is a tensor (), eager gives a float"
    assert compare(True, 1).reason == "output is a bool, eager gives an int"
    assert compare(3, 3).ok and not compare(3, 4).ok


def test_tolerance_used_is_the_worst_share_of_the_allowed_error() -> None:
    expected = torch.tensor([1.0, 100.0])
    half = compare_outputs(expected + torch.tensor([0.0, 0.005]), expected, rtol=1e-4, atol=0.0)
    assert half.ok and half.tolerance_used == pytest.approx(0.5, rel=1e-2)
    over = compare_outputs(expected + torch.tensor([0.0, 0.02]), expected, rtol=1e-4, atol=0.0)
    assert not over.ok and over.tolerance_used == pytest.approx(2.0, rel=1e-2)
    shape = compare_outputs(torch.zeros(3), torch.zeros(2), rtol=1e-4, atol=1e-5)
    assert shape.tolerance_used == math.inf
    assert compare_outputs(expected, expected, rtol=1e-4, atol=1e-5).tolerance_used == 0.0
