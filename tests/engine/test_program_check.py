"""The `.pt2` checker: real torch programs pass, every string torch would eval, exec or import does not."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from regctl.registry.spec import ModelSpec
from regctl.worker.judge.program import judge_program
from regctl.worker.judge.program_check import (
    ProgramRefused,
    check_expression,
    check_guard,
    check_pickle,
    check_program,
)
from regctl.worker.judge.program_grammar import MAX_EXPR_CHARS
from tests.engine.conftest import seq_spec

Dim = torch.export.Dim


class Slices(torch.nn.Module):
    """Min of two dynamic dims, a divisibility the reshape forces, a parameter and a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)
        self.register_buffer("offset", torch.ones(3))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = min(x.shape[0], y.shape[0])
        return (self.lin(x) + self.offset)[:n] * y[:n, :3], x.reshape(-1).view(2, -1)


class Halves(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(2, -1) * 2


class Upsample(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=1.5)


class Encoder(torch.nn.Module):
    """Embedding, attention, layer norm: the operators and shape expressions of a real transformer."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.layer = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.layer(self.embed(tokens)).max(1).values


PROGRAMS: dict[str, Callable[[], tuple[torch.nn.Module, tuple[torch.Tensor, ...], Any]]] = {
    "min-and-reshape": lambda: (
        Slices(),
        (torch.randn(4, 4), torch.randn(6, 5)),
        ({0: Dim("batch", min=2, max=64)}, {0: Dim("other", min=2, max=64)}),
    ),
    "divisible": lambda: (Halves(), (torch.randn(6, 4),), ({0: Dim("b", min=2, max=64) * 2},)),
    "float-scale": lambda: (Upsample(), (torch.randn(1, 2, 8),), ({2: Dim("length", min=2, max=100)},)),
    # nn.Sequential names its children by digits: "0.weight", "2.running_mean"
    "sequential": lambda: (
        torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.GELU()).eval(),
        (torch.randn(3, 4),),
        ({0: Dim("batch", min=2, max=64)},),
    ),
    "transformer": lambda: (
        Encoder().eval(),
        (torch.randint(0, 50, (2, 9)),),
        ({0: Dim("batch", min=1, max=8), 1: Dim("seq", min=2, max=64)},),
    ),
}


def saved_program(directory: Path, name: str = "min-and-reshape") -> Path:
    """A real torch.export program saved by this torch."""
    module, args, dynamic = PROGRAMS[name]()
    path = directory / f"{name}.pt2"
    torch.export.save(torch.export.export(module, args, dynamic_shapes=dynamic), str(path))
    return path


def rewrite(path: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """Rewrite the archive's members (by name, root folder included) as a hostile model would."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    edit(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def edit_program(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """Rewrite models/model.json through `change`."""

    def edit(members: dict[str, bytes]) -> None:
        name = next(n for n in members if n.endswith("/models/model.json"))
        document = json.loads(members[name])
        change(document)
        members[name] = json.dumps(document).encode()

    return rewrite(path, edit)


def first_expr(document: Any) -> dict[str, Any]:
    """The first object holding an expr_str."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "expr_str" in item:
                return item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    raise AssertionError("no expr_str in the program")


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_the_programs_torch_writes_pass_the_checker(tmp_path: Path, name: str) -> None:
    path = saved_program(tmp_path, name)
    check_program(path)
    with zipfile.ZipFile(path) as archive:
        text = archive.read(f"{path.stem}/models/model.json").decode()
    assert "Symbol(" in text  # the check walked real symbolic expressions


def test_a_payload_in_a_shape_expression_is_refused_and_never_runs(tmp_path: Path) -> None:
    canary = tmp_path / "PWNED"
    payload = f"__import__('pathlib').Path({str(canary)!r}).write_text('pwned')"
    path = edit_program(saved_program(tmp_path), lambda doc: first_expr(doc).update(expr_str=payload))

    with pytest.raises(ProgramRefused, match=r"expr_str: refused expression .__import__"):
        check_program(path)
    outcome = judge_program(path, seq_spec(), torch.device("cpu"), [], [], lambda text: None)
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.startswith("the exported program was refused before loading: models/model.json")
    assert "\n" not in outcome.error
    assert not canary.exists()


def test_without_the_checker_torch_would_run_that_payload(tmp_path: Path) -> None:
    # Why the checker exists: torch.export.load hands expr_str to sympify, which evals it.
    canary = tmp_path / "PWNED"
    payload = f"__import__('pathlib').Path({str(canary)!r}).write_text('pwned')"
    path = edit_program(saved_program(tmp_path), lambda doc: first_expr(doc).update(expr_str=payload))
    with pytest.raises(Exception):  # noqa: B017 - whatever torch makes of the result, the code ran
        torch.export.load(str(path)).module()
    assert canary.read_text() == "pwned"


def test_code_in_a_guard_is_refused(tmp_path: Path) -> None:
    path = edit_program(
        saved_program(tmp_path),
        lambda doc: doc["guards_code"].append("__import__('os').system('touch /tmp/x') == 0"),
    )
    with pytest.raises(ProgramRefused, match="guards_code: refused expression"):
        check_program(path)


def test_a_node_calling_a_module_function_is_refused(tmp_path: Path) -> None:
    # The deserializer resolves targets by getattr from torch: torch.os.system is reachable.
    def change(doc: dict[str, Any]) -> None:
        doc["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"

    with pytest.raises(ProgramRefused, match=r"node target 'torch\.os\.system'"):
        check_program(edit_program(saved_program(tmp_path), change))

    def argument(doc: dict[str, Any]) -> None:
        doc["graph_module"]["graph"]["nodes"][0]["inputs"][0]["arg"] = {"as_operator": "math.os.system"}

    with pytest.raises(ProgramRefused, match=r"node target 'math\.os\.system'"):
        check_program(edit_program(saved_program(tmp_path), argument))


def test_names_and_text_that_would_break_out_of_generated_python_are_refused(tmp_path: Path) -> None:
    # FX writes get_attr targets as getattr(self, "<segment>") and stack traces as comments into
    # the forward() it generates and execs; forward's argument names become its parameters.
    payload = 'b")or getattr(__import__("os"),"system")("id")or("'

    def rename(doc: dict[str, Any]) -> None:
        doc["graph_module"]["signature"]["input_specs"][2]["buffer"]["buffer_name"] = payload

    def argument(doc: dict[str, Any]) -> None:
        signature = doc["graph_module"]["module_call_graph"][0]["signature"]
        signature["forward_arg_names"] = ["x", "y=__import__('os').system('id')"]

    def comment(doc: dict[str, Any]) -> None:
        doc["graph_module"]["graph"]["nodes"][0]["metadata"]["stack_trace"] = "x = 1\r__import__('os')"

    def string_input(doc: dict[str, Any]) -> None:
        doc["graph_module"]["graph"]["nodes"][0]["inputs"][1]["arg"] = {"as_string": "a' or print(1) or '"}

    original = saved_program(tmp_path).read_bytes()
    cases = [
        (string_input, "string argument .* holds a quote"),
        (rename, "buffer_name .* is not a dotted name"),
        (argument, "forward_arg_names .* are not identifiers"),
        (comment, "stack_trace .* holds a control character"),
    ]
    for change, why in cases:
        path = tmp_path / "program.pt2"
        path.write_bytes(original)
        with pytest.raises(ProgramRefused, match=why):
            check_program(edit_program(path, change))


def test_a_tree_spec_that_imports_a_module_is_refused(tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        signature = doc["graph_module"]["module_call_graph"][0]["signature"]
        spec = json.loads(signature["in_spec"])
        spec[1]["children_spec"][1]["context"] = json.dumps(
            [{"__enum__": True, "fqn": "antigravity:x", "name": "y"}]
        )
        signature["in_spec"] = json.dumps(spec)

    with pytest.raises(ProgramRefused, match="tree spec context"):
        check_program(edit_program(saved_program(tmp_path), change))


def test_a_shipped_native_library_and_odd_member_names_are_refused(tmp_path: Path) -> None:
    path = saved_program(tmp_path)
    root = path.stem
    original = path.read_bytes()
    cases = {
        f"{root}/data/aotinductor/model/model.so": "unexpected member",
        f"{root}/../escape": "not a plain relative path",
        "/abs/path": "not a plain relative path",
        f"{root}/extra/notes.txt": "unexpected member",
        "other-root/archive_format": "not under one top folder",
    }
    for member, why in cases.items():
        path.write_bytes(original)
        rewrite(path, lambda members, member=member: members.update({member: b"\x7fELF"}))
        with pytest.raises(ProgramRefused, match=why):
            check_program(path)


def test_an_archive_comment_is_refused(tmp_path: Path) -> None:
    # A comment can hide a second end-of-central-directory record: zip readers may disagree on it.
    original = saved_program(tmp_path).read_bytes()
    for comment, why in ((b"a comment", "has a comment"), (b"PK\x05\x06" + bytes(18), ".")):
        path = tmp_path / "program.pt2"
        path.write_bytes(original)
        with zipfile.ZipFile(path, "a") as archive:
            archive.comment = comment
        with pytest.raises(ProgramRefused, match=why):
            check_program(path)


def test_a_duplicate_member_is_refused(tmp_path: Path) -> None:
    path = saved_program(tmp_path)
    with zipfile.ZipFile(path, "a") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr(f"{path.stem}/models/model.json", b"{}")
    with pytest.raises(ProgramRefused, match="names one member twice"):
        check_program(path)


class Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, ("true",))


def test_a_pickle_that_names_anything_but_tensor_globals_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"x": torch.ones(2)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as inner:
        check_pickle(inner.read(next(n for n in inner.namelist() if n.endswith("data.pkl"))), "t")
    for protocol in (2, 4):
        with pytest.raises(ProgramRefused, match=r"names '(posix|os)\.system'"):
            check_pickle(pickle.dumps(Boom(), protocol=protocol), "sample")
    with pytest.raises(ProgramRefused, match="uses INST"):
        check_pickle(pickle.dumps(Boom(), protocol=0).replace(b"cposix", b"iposix"), "sample")

    def plant(members: dict[str, bytes]) -> None:
        name = next(n for n in members if n.endswith("sample_inputs/model.pt"))
        evil = io.BytesIO()
        with zipfile.ZipFile(evil, "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps(Boom(), protocol=2))
        members[name] = evil.getvalue()

    with pytest.raises(ProgramRefused, match=r"sample_inputs/model\.pt: the pickle names"):
        check_program(rewrite(saved_program(tmp_path), plant))


def test_a_pickled_constant_object_is_refused(tmp_path: Path) -> None:
    def plant(members: dict[str, bytes]) -> None:
        name = next(n for n in members if n.endswith("model_constants_config.json"))
        members[name] = json.dumps(
            {"config": {"c": {"path_name": "opaque_obj_0", "use_pickle": True, "tensor_meta": None}}}
        ).encode()

    with pytest.raises(ProgramRefused, match="is a pickled object, not a tensor"):
        check_program(rewrite(saved_program(tmp_path), plant))


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt2"
    path.write_bytes(b"not a zip")
    with pytest.raises(ProgramRefused, match=r"not a readable \.pt2 archive"):
        check_program(path)


@pytest.mark.parametrize(
    "text",
    [
        "Symbol('s77', positive=True, integer=True)",
        "Min(Symbol('s17', positive=True, integer=True), Symbol('s77', positive=True, integer=True))",
        "Mul(Integer(2), Symbol('s65', positive=True, integer=True))",
        "TruncToInt(Mul(Float('1.5', precision=53), ToFloat(Symbol('s53', positive=True, integer=True))))",
        "FloorDiv(Symbol('u0', integer=True), Integer(2))",
        "Mod(Symbol('s0'), Integer(-3))",
        "Pow(Symbol('s0'), Integer(2))",
        "2*s65",
        "s0 // 2 + s1 % 3 - (-s2) ** 2",
        "StrictLessThan(Symbol('s0'), Integer(64))",
        "s0 <= 64 and s1 != 3",
        "True",
        "Rational(1, 2)",
    ],
)
def test_the_expression_grammar_accepts_what_torch_prints(text: str) -> None:
    check_expression(text, "model.json expr_str")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("__import__('os').system('id')", "only torch's shape functions may be called"),
        ("Symbol('s0').__class__", "Attribute is not allowed"),
        ("Integer(1).func", "Attribute is not allowed"),
        ("(lambda: 1)()", "only torch's shape functions"),
        ("Lambda(s0, s0)", "only torch's shape functions"),
        ("'s0'", "is not an integer"),
        ("f'{s0}'", "JoinedStr is not allowed"),
        ("s0[0]", "Subscript is not allowed"),
        ("eval('1')", "only torch's shape functions"),
        ("Symbol('os')", "a Symbol's name must be"),
        ("Symbol('s0', evil=__import__('os'))", "only True/False assumptions"),
        ("Float('1.5', precision=exec('1'))", "only an integer precision"),
        ("x", "neither a symbol of the program nor a constant"),
        ("__builtins__", "neither a symbol"),
        ("Integer(10) ** Integer(10 ** 9)", "exponent"),
        ("Pow(Integer(10), Integer(99999))", "exponent"),
        ("[s0]", "List is not allowed"),
        ("s0 if s1 else s2", "IfExp is not allowed"),
        ("s0 @ s1", "MatMult is not allowed"),
        ("s0 is s1", "only <, <="),
        ("Mul(*[s0])", "Starred is not allowed"),
        ("s0 + " * (MAX_EXPR_CHARS // 5) + "s0", "longer than"),
        ("(" * 200 + "s0" + ")" * 200, "nests deeper"),
        ("s0\x1b[2J", "outside printable ASCII"),
        ("s0; import os", "not an expression"),
        ("1" * 100, "is not an integer"),
    ],
)
def test_the_expression_grammar_refuses_anything_else(text: str, why: str) -> None:
    with pytest.raises(ProgramRefused) as refused:
        check_expression(text, "models/model.json expr_str")
    message = str(refused.value)
    assert why in message and message.startswith("models/model.json expr_str")
    assert "\n" not in message and len(message) < 300 and message.isascii()


@pytest.mark.parametrize(
    "text",
    [
        "min(L['y'].size()[0], L['x'].size()[0]) <= L['x'].size()[0]",
        "(L['x'].size()[0] % 2) == 0",
        "((4*(L['x'].size()[0] // 2)) % (2*L['x'].size()[0])) == 0",
        "L['length'] == 3",
        "L['z']['k'].size()[1] == 3",
        "math.isnan(L['f'])",
        "L['f'] == -math.inf",
    ],
)
def test_the_guard_grammar_accepts_what_torch_writes(text: str) -> None:
    check_guard(text, "guards_code")


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('id')",
        "L['x'].__class__",
        "L['x'].size.__self__",
        "L.__getitem__('x')",
        "L['x\"); os.system(\"id']",
        "math.os",
        "open('/etc/passwd')",
        "L['x'].size(dim=0)",
        "torch._assert(False)",
        "L",
    ],
)
def test_the_guard_grammar_refuses_anything_else(text: str) -> None:
    with pytest.raises(ProgramRefused, match="guards_code"):
        check_guard(text, "guards_code")


def test_a_refused_program_never_reaches_torch_in_the_aoti_stage(tmp_path: Path) -> None:
    from regctl.registry.digests import sha256_file
    from regctl.worker.judge.aoti import compile_and_judge

    canary = tmp_path / "PWNED"
    payload = f"__import__('pathlib').Path({str(canary)!r}).write_text('pwned')"
    path = edit_program(saved_program(tmp_path), lambda doc: first_expr(doc).update(expr_str=payload))
    section = compile_and_judge(
        path, sha256_file(path), ModelSpec(), [], [], tmp_path, torch.device("cpu"), "skipped", print
    )
    assert section["ok"] is False and "refused before loading" in section["error"]
    assert not canary.exists()


def test_the_checker_imports_neither_torch_nor_anything_of_the_engine() -> None:
    # The supervisor, which never imports torch, can check a program as well as the judge.
    import subprocess
    import sys

    probe = (
        "import sys, regctl.worker.judge.program_check; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'regctl.'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert (
        done.stdout.strip()
        == "['regctl.worker', 'regctl.worker.judge', 'regctl.worker.judge.program_check', "
        "'regctl.worker.judge.program_grammar']"
    )
