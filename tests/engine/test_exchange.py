"""What crosses from the untrusted model roles to the judge: eager outputs, their JSON, candidates.

The judge must get plain data back or a clear ExchangeError, and must never run code the model process
planted in a file it wrote.
"""

from __future__ import annotations

import enum
import json
import os
import pickle
from collections import OrderedDict, namedtuple
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch

from regctl.worker.contract import BUILDER_FILE, REFERENCE_FILE
from regctl.worker.engine import exchange
from regctl.worker.engine.exchange import (
    MAX_JSON_BYTES,
    CandidateSide,
    ExchangeError,
    ExportSide,
    LatencyFigures,
    LatencyPair,
    ModelSide,
    UnsupportedOutput,
    WarningEntry,
    candidate_path,
    load_reference,
    read_side,
    save_reference,
    write_side,
)


class Pair(NamedTuple):
    first: torch.Tensor
    second: list[Any]


Triple = namedtuple("Triple", "a b c")  # the collections kind, as models often return it


def _same(got: Any, want: Any) -> None:
    """Equal structure with exactly the same container and scalar types, and equal tensors."""
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, torch.Tensor):
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        assert torch.equal(got, want)
    elif isinstance(want, list | tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _same(g, w)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            _same(got[key], want[key])
    else:
        assert got == want


# -- eager outputs -----------------------------------------------------------------------------------------


def test_eager_outputs_of_every_plain_kind_round_trip(tmp_path: Path) -> None:
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    ids = torch.tensor([[1, 2, 3]], dtype=torch.int64)
    mask = torch.tensor([True, False])
    half = torch.ones(2, dtype=torch.bfloat16)
    outputs = [
        t,
        (t, (ids, (mask, 3))),
        [t, None, "text", [half]],
        {"logits": t, "aux": {"ids": ids, "nested": (mask,)}, 7: "int key"},
        42,
        2.5,
        True,
        1 + 2j,
        None,
        "a string",
        (),
        {},
    ]
    path = tmp_path / REFERENCE_FILE
    save_reference(outputs, path)
    loaded = load_reference(path, len(outputs))
    _same(loaded, outputs)


def test_named_tuples_come_back_as_plain_tuples(tmp_path: Path) -> None:
    t = torch.randn(2, 2)
    outputs = [Pair(t, [t * 2, 1.0]), Triple(1, (t,), {"k": Triple(None, "s", t)})]
    path = tmp_path / REFERENCE_FILE
    save_reference(outputs, path)
    loaded = load_reference(path, 2)
    _same(loaded, [(t, [t * 2, 1.0]), (1, (t,), {"k": (None, "s", t)})])


def test_saved_tensors_are_detached_copies_without_the_rest_of_their_storage(tmp_path: Path) -> None:
    big = torch.zeros(1_000_000)  # 4 MB of storage behind the one row the model returns
    weight = torch.ones(3, requires_grad=True)
    outputs = [(big[:4], weight * 2, OrderedDict(x=big[4:8]))]
    path = tmp_path / REFERENCE_FILE
    save_reference(outputs, path)
    big[:8] = 5.0  # written after saving: the saved values must not change
    assert path.stat().st_size < 100_000, "a view must not drag its whole storage into the file"
    (row, doubled, named) = load_reference(path, 1)[0]
    assert torch.equal(row, torch.zeros(4))
    assert not doubled.requires_grad
    assert torch.equal(doubled, torch.full((3,), 2.0))
    assert type(named) is dict
    assert torch.equal(named["x"], torch.zeros(4))


class Widget:
    """A model's own class: not plain data."""

    def __init__(self) -> None:
        self.value = 1


def test_saving_an_output_that_holds_an_arbitrary_object_is_refused_naming_its_type(tmp_path: Path) -> None:
    path = tmp_path / REFERENCE_FILE
    with pytest.raises(UnsupportedOutput) as caught:
        save_reference([torch.ones(1), {"x": [torch.ones(1), Widget()]}], path)
    assert "Widget" in str(caught.value)
    assert "case 1" in str(caught.value)
    assert not path.exists(), "nothing is written when an output is refused"


@pytest.mark.parametrize(
    "value", [b"bytes", {1, 2}, torch.nn.Linear(1, 1), np.ones(2)], ids=["bytes", "set", "module", "array"]
)
def test_saving_bytes_sets_modules_and_arrays_is_refused(tmp_path: Path, value: Any) -> None:
    with pytest.raises(UnsupportedOutput, match=type(value).__name__):
        save_reference([value], tmp_path / REFERENCE_FILE)


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value", [np.float64(1.5), Colour.RED, {Widget(): torch.ones(1)}], ids=["numpy float64", "IntEnum", "key"]
)
def test_an_output_that_only_looks_plain_is_refused_when_saved_with_its_type_named(
    tmp_path: Path, value: Any
) -> None:
    path = tmp_path / REFERENCE_FILE
    name = type(next(iter(value)) if isinstance(value, dict) else value).__name__
    with pytest.raises(UnsupportedOutput, match=name):
        save_reference([value], path)
    assert not path.exists()


# -- hostile reference files -------------------------------------------------------------------------------


class Payload:
    """Unpickling this runs a shell command: what a hostile model process would plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_reference_that_would_run_code_when_unpickled_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / REFERENCE_FILE
    torch.save([torch.ones(2), Payload(marker)], path)
    with pytest.raises(ExchangeError, match="not plain tensors and data"):
        load_reference(path, 2)
    assert not marker.exists(), "the payload ran"
    # the file really is hostile: an ordinary unpickling runs it
    control = tmp_path / "control"
    torch.save([Payload(control)], tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.exists()


def test_a_hostile_reference_in_the_legacy_format_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / REFERENCE_FILE
    torch.save([Payload(marker)], path, _use_new_zipfile_serialization=False)
    with pytest.raises(ExchangeError):
        load_reference(path, 1)
    assert not marker.exists(), "the payload ran"


def test_a_raw_pickle_in_place_of_the_reference_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / REFERENCE_FILE
    path.write_bytes(pickle.dumps([Payload(marker)]))
    with pytest.raises(ExchangeError):
        load_reference(path, 1)
    assert not marker.exists(), "the payload ran"


def test_a_reference_holding_an_instance_of_a_models_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / REFERENCE_FILE
    torch.save([torch.ones(1), {"w": Widget()}], path)
    with pytest.raises(ExchangeError, match="Widget"):
        load_reference(path, 2)


def test_a_reference_with_the_wrong_number_of_cases_is_refused(tmp_path: Path) -> None:
    path = tmp_path / REFERENCE_FILE
    save_reference([torch.ones(1), torch.ones(2)], path)
    with pytest.raises(ExchangeError, match="hold 2 cases, the battery has 3"):
        load_reference(path, 3)
    assert len(load_reference(path, 2)) == 2


def test_a_reference_that_is_not_a_list_of_cases_is_refused(tmp_path: Path) -> None:
    path = tmp_path / REFERENCE_FILE
    torch.save((torch.ones(1), torch.ones(1)), path)
    with pytest.raises(ExchangeError, match="no list of cases"):
        load_reference(path, 2)


def test_a_symlink_in_place_of_the_reference_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.pt"
    save_reference([torch.ones(1)], real)
    link = tmp_path / REFERENCE_FILE
    link.symlink_to(real)
    with pytest.raises(ExchangeError, match="no eager outputs"):
        load_reference(link, 1)
    assert len(load_reference(real, 1)) == 1


def test_a_missing_reference_or_a_directory_in_its_place_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExchangeError, match="no eager outputs"):
        load_reference(tmp_path / REFERENCE_FILE, 1)
    (tmp_path / REFERENCE_FILE).mkdir()
    with pytest.raises(ExchangeError, match="no eager outputs"):
        load_reference(tmp_path / REFERENCE_FILE, 1)


def test_a_truncated_reference_is_refused(tmp_path: Path) -> None:
    path = tmp_path / REFERENCE_FILE
    save_reference([torch.ones(100)], path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ExchangeError):
        load_reference(path, 1)


# -- builder.json ----------------------------------------------------------------------------------------


def _full_side() -> ModelSide:
    return ModelSide(
        error=None,
        kind="nn.Module",
        battery_size=4,
        outputs=[{"case": "opt", "shape": [1, 4]}],
        candidates={
            "script": CandidateSide(
                file="script.pt",
                compile_s=0.25,
                warnings=[{"message": "w"}],
                strict=True,
                latency=LatencyPair(
                    input="opt",
                    eager=LatencyFigures(median_ms=0.5, q1_ms=0.45, q3_ms=0.6, runs=20),
                    artifact=LatencyFigures(median_ms=0.25, q1_ms=0.2, q3_ms=0.3, runs=40),
                ),
            ),
            "trace": CandidateSide(
                error="TracerWarning", detail="Traceback ...\n  line 1", hint="use script"
            ),
        },
        export=ExportSide(file="model.pt2", notes=["dynamic seq"], seconds=1.5),
        warnings=[WarningEntry(category="UserWarning", message="careful", file="model.py", line=3)],
        timings={"load_s": 0.1},
    )


def test_a_valid_model_side_round_trips(tmp_path: Path) -> None:
    side = _full_side()
    write_side(tmp_path / BUILDER_FILE, side)
    assert read_side(tmp_path / BUILDER_FILE) == side


def _write_side(directory: Path, data: str | bytes) -> None:
    path = directory / BUILDER_FILE
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("{not json", "Invalid JSON"),
        ('{"error": null', "Invalid JSON"),
        (b"\xff\xfe{}", "Invalid JSON"),
        ("[]", "object"),
        ('{"outputs": ' + "[" * 100_000 + "]" * 100_000 + "}", "Invalid JSON"),
    ],
    ids=["garbage", "truncated", "not utf-8", "a list", "nested too deep"],
)
def test_a_model_side_that_is_not_a_json_object_is_refused(
    tmp_path: Path, text: str | bytes, where: str
) -> None:
    _write_side(tmp_path, text)
    with pytest.raises(ExchangeError, match=f"invalid {BUILDER_FILE}") as caught:
        read_side(tmp_path / BUILDER_FILE)
    assert where in str(caught.value)


def test_a_model_side_with_an_unknown_key_is_refused_naming_it(tmp_path: Path) -> None:
    data = json.loads(_full_side().model_dump_json())
    data["run_this"] = "os.system('id')"
    _write_side(tmp_path, json.dumps(data))
    with pytest.raises(ExchangeError, match="run_this"):
        read_side(tmp_path / BUILDER_FILE)


def test_an_unknown_key_deep_inside_a_candidate_is_refused(tmp_path: Path) -> None:
    data = json.loads(_full_side().model_dump_json())
    data["candidates"]["script"]["accepted"] = True
    _write_side(tmp_path, json.dumps(data))
    with pytest.raises(ExchangeError, match=r"candidates\.script\.accepted"):
        read_side(tmp_path / BUILDER_FILE)


def test_a_model_side_with_a_too_long_error_is_refused(tmp_path: Path) -> None:
    _write_side(tmp_path, json.dumps({"error": "x" * 20_001}))
    with pytest.raises(ExchangeError, match="error"):
        read_side(tmp_path / BUILDER_FILE)
    _write_side(tmp_path, json.dumps({"error": "x" * 20_000}))
    assert read_side(tmp_path / BUILDER_FILE).error == "x" * 20_000


@pytest.mark.parametrize(
    "figures",
    [
        '{"median_ms": 1e999, "q1_ms": 0.1, "q3_ms": 0.3, "runs": 5}',  # infinite
        '{"median_ms": NaN, "q1_ms": 0.1, "q3_ms": 0.3, "runs": 5}',
        '{"median_ms": 0.0, "q1_ms": 0.0, "q3_ms": 0.0, "runs": 5}',  # no call takes no time
        '{"median_ms": 4e6, "q1_ms": 4e6, "q3_ms": 4e6, "runs": 5}',  # over an hour a call
        '{"median_ms": 0.2, "q1_ms": 0.25, "q3_ms": 0.3, "runs": 5}',  # quartiles not around the median
        '{"median_ms": 0.2, "q1_ms": 0.1, "q3_ms": 0.3, "runs": 0}',
    ],
    ids=["inf", "nan", "zero", "huge", "unordered", "no runs"],
)
def test_a_latency_figure_that_is_not_a_measurement_is_refused(tmp_path: Path, figures: str) -> None:
    good = '{"median_ms": 0.2, "q1_ms": 0.1, "q3_ms": 0.3, "runs": 5}'
    pair = f'{{"input": "opt", "eager": {good}, "artifact": {figures}}}'
    _write_side(tmp_path, f'{{"candidates": {{"script": {{"latency": {pair}}}}}}}')
    with pytest.raises(ExchangeError, match=r"candidates\.script\.latency\.artifact"):
        read_side(tmp_path / BUILDER_FILE)
    _write_side(tmp_path, f'{{"latency": {pair.replace(figures, good)}}}')
    assert read_side(tmp_path / BUILDER_FILE).latency is not None


def test_a_model_side_with_a_wrongly_typed_field_is_refused(tmp_path: Path) -> None:
    _write_side(tmp_path, json.dumps({"battery_size": "many"}))
    with pytest.raises(ExchangeError, match="battery_size"):
        read_side(tmp_path / BUILDER_FILE)


def test_a_model_side_larger_than_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / BUILDER_FILE
    with open(path, "wb") as f:  # sparse: no disk is used for the zeros
        f.truncate(MAX_JSON_BYTES + 1)
    with pytest.raises(ExchangeError, match=f"larger than {MAX_JSON_BYTES} bytes"):
        read_side(tmp_path / BUILDER_FILE)


def test_a_missing_model_side_or_a_symlink_in_its_place_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExchangeError, match=f"wrote no {BUILDER_FILE}"):
        read_side(tmp_path / BUILDER_FILE)
    real = tmp_path / "real"
    real.mkdir()
    write_side(real / BUILDER_FILE, _full_side())
    (tmp_path / BUILDER_FILE).symlink_to(real / BUILDER_FILE)
    with pytest.raises(ExchangeError, match=f"wrote no {BUILDER_FILE}"):
        read_side(tmp_path / BUILDER_FILE)


# -- candidate files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [None, "", "sub/model.pt", "../model.pt", "..", ".", ".hidden.pt", "/etc/passwd", "sub/"]
)
def test_a_candidate_name_that_is_not_a_plain_file_name_is_refused(tmp_path: Path, name: str | None) -> None:
    side = tmp_path / "side"
    (side / "sub").mkdir(parents=True)
    for path in (side / "sub" / "model.pt", side / ".hidden.pt", tmp_path / "model.pt"):
        path.write_bytes(b"artifact")  # each name leads to a regular file: only the name is wrong
    assert candidate_path(side, name) is None


def test_a_symlinked_missing_or_directory_candidate_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.db"
    secret.write_bytes(b"registry rows")
    side = tmp_path / "side"
    side.mkdir()
    (side / "script.pt").symlink_to(secret)
    (side / "trace.pt").mkdir()
    assert candidate_path(side, "script.pt") is None
    assert candidate_path(side, "trace.pt") is None
    assert candidate_path(side, "missing.pt") is None


def test_a_candidate_that_is_a_regular_file_in_the_directory_is_found(tmp_path: Path) -> None:
    (tmp_path / "script.pt").write_bytes(b"artifact")
    assert candidate_path(tmp_path, "script.pt") == tmp_path / "script.pt"


@pytest.mark.parametrize("proc", ["mounted", "missing"])
def test_eager_outputs_go_through_a_handed_file_with_or_without_a_proc(
    proc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fd = os.memfd_create("regctl-test-outputs", os.MFD_CLOEXEC)
    try:
        path = exchange.HANDED_DIR / str(fd)
        if proc == "missing":  # a sandbox whose private root could not mount a /proc of its own
            monkeypatch.setattr(exchange, "_proc_shows", lambda p: False)
        with pytest.raises(ExchangeError, match="left no eager outputs"):
            exchange.load_reference(path, 1, handed=True)  # nothing written yet
        exchange.save_reference([torch.arange(3.0), (torch.ones(2), 7)], path)
        loaded = exchange.load_reference(path, 2, handed=True)
        assert torch.equal(loaded[0], torch.arange(3.0)) and torch.equal(loaded[1][0], torch.ones(2))
        assert loaded[1][1] == 7
    finally:
        os.close(fd)


def test_only_a_handed_path_may_be_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real.pt"
    exchange.save_reference([torch.zeros(1)], real)
    (tmp_path / "reference.pt").symlink_to(real)  # planted by a model in its own folder
    with pytest.raises(ExchangeError, match="left no eager outputs"):
        exchange.load_reference(tmp_path / "reference.pt", 1)
    assert exchange.handed_fd(tmp_path / "reference.pt") is None
    assert exchange.handed_fd(exchange.HANDED_DIR / "7") == 7
