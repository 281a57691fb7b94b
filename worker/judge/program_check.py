"""The exported program's archive (`.pt2`), checked before torch reads a byte of it.

torch.export.load is not a data parser. Given a `.pt2` the model process wrote it would:
- `sympy.sympify` every symbolic-shape string (`expr_str`), which is `eval`;
- `exec` the program's `guards_code` as Python when `.module()` builds its guard function;
- resolve every node's `target` (and every operator passed as an argument) by `getattr` from
  `torch`, `operator` or `math` and call it when the program runs (`torch.os.system` is reachable);
- `importlib.import_module` names found in the in/out tree specs (`__enum__`, `defaultdict`);
- write names (parameters, buffers, forward's arguments) and stack traces into the Python source
  FX generates and execs for the module, and a string input between quotes into the guard code,
  unescaped;
- unpickle weights, constants and sample inputs, `pickle.loads` opaque objects;
- dlopen an AOTInductor library shipped under `data/aotinductor/`.

`check_program` refuses all of that with a one-line reason naming the member and the offending
string. It parses with zipfile, json, ast (which never runs code) and pickletools (which never
builds objects), reads every member through a size cap, extracts nothing to disk, and imports
neither torch nor model code, so the supervisor can use it as well as the judge.

The grammar every shape expression and guard must parse under is program_grammar.py's.
"""

from __future__ import annotations

import io
import json
import keyword
import pickletools
import re
import zipfile
from collections import deque
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from regctl.worker.judge.program_grammar import (
    IDENTIFIER,
    ProgramRefused,
    check_expression,
    check_guard,
    shown,
)

MAX_MEMBERS = 10_000
MAX_JSON_BYTES = 64 << 20  # a transformer's model.json is a few MB
MAX_PICKLE_BYTES = 256 << 20  # sample inputs and pickled tensors: their data.pkl only is scanned
MAX_TOTAL_BYTES = 256 << 30  # the weights of the largest model a worker could judge
MAX_SMALL_BYTES = 4096  # archive_format, byteorder, versions
# A parameter's or buffer's path: attribute names, and the digits nn.Sequential and nn.ModuleList name
# their children by ("0.weight"); never a dunder (checked beside it).
FQN = re.compile(r"[A-Za-z0-9_]{1,200}(?:\.[A-Za-z0-9_]{1,200}){0,64}")
NAME_PART = r"[A-Za-z][A-Za-z0-9_]*"

# Node targets the deserializer may resolve: torch's own operators, the symbolic-int operators
# serialize.py lists as _SYM_OPS, and nothing reached by walking attributes of a module.
TARGETS = re.compile(
    rf"torch\.ops\.(?:aten|prims|higher_order)\.{NAME_PART}(?:\.[A-Za-z][A-Za-z0-9_]*)?"
    r"|_operator\.(?:getitem|add|sub|mul|floordiv|truediv|mod|pow|neg|pos|eq|ne|lt|le|gt|ge|and_|or_|not_"
    r"|abs|invert|lshift|rshift|xor)"
    r"|torch\.(?:sym_min|sym_max|sym_int|sym_float|sym_not|sym_ite|sym_sqrt|sym_sum)"
    r"|math\.(?:trunc|floor|ceil|sqrt)"
)
TREESPEC_TYPES = frozenset(
    {
        None,
        "builtins.tuple",
        "builtins.list",
        "builtins.dict",
        "collections.OrderedDict",
        "collections.namedtuple",
        "torch.fx.immutable_collections.immutable_list",
        "torch.fx.immutable_collections.immutable_dict",
    }
)
VERIFIER = re.compile(r"[A-Z_]{1,32}")
# Every name the program gives a value, a parameter, a buffer, a constant or a submodule: FX puts
# them into generated Python source, so letters, digits, `_` and `.` only.
NAME_KEYS = frozenset(
    {"name", "as_name", "parameter_name", "buffer_name", "tensor_constant_name", "custom_obj_name", "fqn"}
)
FQN_TEXT = re.compile(r"[A-Za-z0-9_.]{0,1000}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# The globals a plain tensor pickle (torch.save of tensors, tuples, dicts) names: what torch's
# weights_only unpickler would allow of them, narrowed to what torch.export.save writes.
PICKLE_GLOBALS = frozenset(
    {
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor_v3"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("collections", "OrderedDict"),
        ("torch", "Size"),
        ("torch", "device"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("_codecs", "encode"),
    }
)
TORCH_PICKLE_NAME = re.compile(
    r"[A-Z][A-Za-z0-9]{0,30}Storage|u?int(?:8|16|32|64)|float(?:8_\w{1,10}|16|32|64)|bfloat16|bool"
    r"|complex(?:32|64|128)|half|double|long|cfloat|cdouble"
)
STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}
)
MEMO_PUT_OPS = frozenset({"MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"})
MEMO_GET_OPS = frozenset({"BINGET", "LONG_BINGET", "GET"})
REFUSED_OPS = frozenset({"INST", "OBJ", "EXT1", "EXT2", "EXT4", "PERSID"})


def check_program(path: Path) -> None:
    """Refuse (ProgramRefused, one line) a `.pt2` whose loading could run anything but torch's parser.

    Checks the archive's members and sizes, every JSON document it holds and every pickle torch
    would unpickle; see the module docstring for the grammar of expressions and guards.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            _check_archive(archive)
    except ProgramRefused:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, RuntimeError) as exc:
        raise ProgramRefused(f"{path.name} is not a readable .pt2 archive: {shown(str(exc))}") from None


SMALL_MEMBERS = ("archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id")
CONFIGS = {
    "weights": "data/weights/model_weights_config.json",
    "constants": "data/constants/model_constants_config.json",
}
PROGRAM = "models/model.json"
SAMPLE_INPUTS = "data/sample_inputs/model.pt"


def _check_archive(archive: zipfile.ZipFile) -> None:
    files = _members(archive)
    for name in SMALL_MEMBERS:
        if name in files:
            _check_small_text(archive, files[name], name)
        elif name != ".data/serialization_id":
            raise ProgramRefused(f"the archive lacks {name}")
    if {n for n in files if n.startswith("models/")} != {PROGRAM}:
        raise ProgramRefused(f"the archive must hold exactly one program, {PROGRAM}")
    raw: set[str] = set()
    pickled = {SAMPLE_INPUTS}
    for folder, config in CONFIGS.items():
        new_raw, new_pickled = _payloads(_json(archive, files, config), folder, config)
        raw |= new_raw
        pickled |= new_pickled
    check_program_json(_json(archive, files, PROGRAM), PROGRAM)
    unexpected = sorted(set(files) - {*SMALL_MEMBERS, PROGRAM, *CONFIGS.values(), *raw, *pickled})
    if unexpected:
        raise ProgramRefused(f"unexpected member {shown(unexpected[0])} in the archive")
    for name in sorted(pickled):
        if name not in files:
            raise ProgramRefused(f"the archive lacks {name}")
        _check_tensor_pickle(archive, files[name], name)


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by name below its one top folder, once the directory itself is checked."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ProgramRefused(f"the archive holds {len(infos)} members, more than {MAX_MEMBERS}")
    if archive.comment:
        # A comment can hide a second end-of-directory record that another zip reader would use.
        raise ProgramRefused("the archive has a comment; torch.export.save writes none")
    total = sum(info.file_size for info in infos)
    if total > MAX_TOTAL_BYTES:
        raise ProgramRefused(f"the archive unpacks to {total} bytes, more than {MAX_TOTAL_BYTES}")
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise ProgramRefused("the archive names one member twice")
    root = _root(names)
    return {name[len(root) + 1 :]: info for name, info in zip(names, infos, strict=True)}


def _root(names: list[str]) -> str:
    """The one top folder every member lives under; refuse path tricks in any name."""
    roots = set()
    for name in names:
        if not name or len(name) > 1024 or any(not c.isprintable() or c == "\\" for c in name):
            raise ProgramRefused(f"member name {shown(name)} is not a plain relative path")
        parts = name.split("/")
        if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or len(parts) < 2:
            raise ProgramRefused(f"member name {shown(name)} is not a plain relative path")
        roots.add(parts[0])
    if len(roots) != 1:
        raise ProgramRefused("the archive's members are not under one top folder")
    return roots.pop()


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limit: int) -> bytes:
    if info.file_size > limit:
        raise ProgramRefused(f"{name} holds {info.file_size} bytes, more than {limit}")
    with archive.open(info) as member:
        data = member.read(limit + 1)  # the header's size is the writer's word: read no more than the cap
    if len(data) > limit:
        raise ProgramRefused(f"{name} holds more than {limit} bytes")
    return data


def _check_small_text(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> None:
    text = _read(archive, info, name, MAX_SMALL_BYTES).decode("ascii", errors="replace")
    if not all(c.isalnum() or c in "._-\n" for c in text):
        raise ProgramRefused(f"{name} holds {shown(text)}, not a version or format word")


def _json(archive: zipfile.ZipFile, files: dict[str, zipfile.ZipInfo], name: str) -> Any:
    if name not in files:
        raise ProgramRefused(f"the archive lacks {name}")
    data = _read(archive, files[name], name, MAX_JSON_BYTES)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ProgramRefused(f"{name} is not JSON: {shown(str(exc))}") from None


def _payloads(document: Any, folder: str, name: str) -> tuple[set[str], set[str]]:
    """The raw-byte and the pickled members a weights or constants config names."""
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise ProgramRefused(f"{name} has no config table")
    raw, pickled = set(), set()
    for key, entry in config.items():
        path_name = entry.get("path_name") if isinstance(entry, dict) else None
        if not isinstance(key, str) or not FQN.fullmatch(key) or "__" in key:
            raise ProgramRefused(f"{name}: {shown(str(key))} is not a dotted attribute name")
        if not isinstance(path_name, str) or not IDENTIFIER.fullmatch(path_name):
            raise ProgramRefused(f"{name}: entry {shown(str(key))} names no plain member")
        if folder == "constants" and not path_name.startswith("tensor_"):
            # custom_obj_* goes to torch's TorchScript unpickler, opaque_obj_* to pickle.loads.
            raise ProgramRefused(f"{name}: constant {shown(str(key))} is a pickled object, not a tensor")
        use_pickle = entry.get("use_pickle")
        if not isinstance(use_pickle, bool):
            raise ProgramRefused(f"{name}: entry {shown(str(key))} has no use_pickle flag")
        (pickled if use_pickle else raw).add(f"data/{folder}/{path_name}")
    return raw, pickled


def _check_tensor_pickle(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> None:
    """A torch.save zip whose data.pkl names only the globals of plain tensors and containers."""
    data = _read(archive, info, name, MAX_PICKLE_BYTES)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            pickles = [i for i in inner.infolist() if i.filename.endswith(".pkl")]
            if len(inner.infolist()) > MAX_MEMBERS or [PurePosixPath(i.filename).name for i in pickles] != [
                "data.pkl"
            ]:
                raise ProgramRefused(f"{name} is not a torch.save archive of tensors")
            check_pickle(_read(inner, pickles[0], name, MAX_PICKLE_BYTES), name)
    except zipfile.BadZipFile:
        raise ProgramRefused(f"{name} is not a torch.save archive of tensors") from None


def check_pickle(data: bytes, name: str) -> None:
    """Refuse a pickle that names a global outside PICKLE_GLOBALS (scanned, never unpickled)."""
    # What the last two opcodes pushed, as far as STACK_GLOBAL needs: a string or None.
    strings: deque[str | None] = deque(maxlen=2)
    memo: dict[int, str | None] = {}
    try:
        for opcode, arg, _ in pickletools.genops(data):
            op = opcode.name
            if op in REFUSED_OPS:
                raise ProgramRefused(f"{name}: the pickle uses {op}, which plain tensors never need")
            if op == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                _allowed_global(module, attr, name)
                strings.append(None)
            elif op == "STACK_GLOBAL":
                if len(strings) < 2 or strings[-1] is None or strings[-2] is None:
                    raise ProgramRefused(f"{name}: the pickle builds a global from computed names")
                _allowed_global(strings[-2], strings[-1], name)  # type: ignore[arg-type]
                strings.clear()
                strings.append(None)
            elif op in STRING_OPS:
                strings.append(arg if isinstance(arg, str) else None)
            elif op in MEMO_PUT_OPS:
                memo[len(memo) if arg is None else int(arg)] = strings[-1] if strings else None
            elif op in MEMO_GET_OPS:
                strings.append(memo.get(int(arg)))
            else:
                strings.append(None)  # anything else breaks a module/name pair
    except ProgramRefused:
        raise
    except Exception as exc:  # pickletools raises ValueError and friends on a malformed stream
        raise ProgramRefused(f"{name} is not a readable pickle: {shown(str(exc))}") from None


def _allowed_global(module: str, attr: str, name: str) -> None:
    if (module, attr) in PICKLE_GLOBALS or (module == "torch" and TORCH_PICKLE_NAME.fullmatch(attr)):
        return
    raise ProgramRefused(f"{name}: the pickle names {shown(f'{module}.{attr}')}, not plain tensor data")


def check_program_json(document: Any, name: str) -> None:
    """Check a program's JSON (`models/model.json`): expressions, guards, targets, tree specs, verifiers."""
    if not isinstance(document, dict):
        raise ProgramRefused(f"{name} is not a JSON object")
    for key, bounds in _items(document.get("range_constraints"), name, "range_constraints"):
        check_expression(key, f"{name} range_constraints")
        if not isinstance(bounds, dict) or not all(
            v is None or (type(v) is int and abs(v) < 1 << 63) for v in bounds.values()
        ):
            raise ProgramRefused(f"{name}: the range of {shown(key)} is not a pair of integers")
    guards = document.get("guards_code") or []
    if not isinstance(guards, list):
        raise ProgramRefused(f"{name}: guards_code is not a list")
    for guard in guards:
        check_guard(guard, f"{name} guards_code")
    verifiers = document.get("verifiers") or []
    if not isinstance(verifiers, list) or not all(
        isinstance(v, str) and VERIFIER.fullmatch(v) for v in verifiers
    ):
        raise ProgramRefused(f"{name}: verifiers {shown(str(verifiers))} are not dialect names")
    _check_walk(document, name)


def _check_walk(document: Any, name: str) -> None:
    """Every string of the document; expressions, names, targets and tree specs wherever they are."""
    for key, value in _walk(document):
        if isinstance(value, str) and _CONTROL.search(value):
            # FX writes names and stack traces into the Python source it generates and execs: a
            # carriage return would end a comment line there.
            raise ProgramRefused(f"{name}: {key} {shown(value)} holds a control character")
        if key in NAME_KEYS and not (value is None or (isinstance(value, str) and FQN_TEXT.fullmatch(value))):
            # get_attr targets become `getattr(self, "<segment>")` in that source, unescaped.
            raise ProgramRefused(f"{name}: {key} {shown(str(value))} is not a dotted name")
        if key == "forward_arg_names" and not (
            isinstance(value, list) and all(_identifier(v) for v in value)
        ):
            raise ProgramRefused(f"{name}: forward_arg_names {shown(str(value))} are not identifiers")
        if key == "expr_str":
            check_expression(value, f"{name} expr_str")
        elif key == "nodes":
            _check_nodes(value, name)
        elif key in ("as_string", "as_strings") and _quoted(value):
            # A string input's value is written between quotes into the guard code .module() execs.
            raise ProgramRefused(f"{name}: string argument {shown(str(value))} holds a quote or backslash")
        elif key == "as_operator":  # an operator passed as an argument, resolved like a node's target
            _check_target(value, name)
        elif key in ("in_spec", "out_spec") and value is not None:
            _check_treespec(value, name)


def _quoted(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return any(not isinstance(v, str) or any(c in v for c in "'\"\\") for v in items)


def _identifier(value: Any) -> bool:
    return (
        isinstance(value, str) and value.isidentifier() and value.isascii() and not keyword.iskeyword(value)
    )


def _items(table: Any, name: str, what: str) -> Iterator[tuple[str, Any]]:
    if table is None:
        return
    if not isinstance(table, dict):
        raise ProgramRefused(f"{name}: {what} is not a table")
    yield from table.items()


def _walk(document: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) of every object in a JSON document, without recursion."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                yield key, value
                stack.append(value)
        elif isinstance(item, list):
            for element in item:
                if isinstance(element, str):
                    yield "[]", element  # a list's strings get the checks every string gets
                else:
                    stack.append(element)


def _check_nodes(nodes: Any, name: str) -> None:
    if not isinstance(nodes, list):
        raise ProgramRefused(f"{name}: a graph's nodes are not a list")
    for node in nodes:
        _check_target(node.get("target") if isinstance(node, dict) else None, name)


def _check_target(target: Any, name: str) -> None:
    if not isinstance(target, str) or not TARGETS.fullmatch(target) or "__" in target:
        raise ProgramRefused(f"{name}: node target {shown(str(target))} is not one of torch's operators")


def _check_treespec(text: Any, name: str) -> None:
    if not isinstance(text, str) or len(text) > MAX_JSON_BYTES:
        raise ProgramRefused(f"{name}: a tree spec is not a string")
    try:
        spec = json.loads(text)
    except (ValueError, RecursionError):
        raise ProgramRefused(f"{name}: tree spec {shown(text)} is not JSON") from None
    if not isinstance(spec, list) or len(spec) != 2 or spec[0] != 1:
        raise ProgramRefused(f"{name}: tree spec {shown(text)} is not protocol 1")
    stack = [spec[1]]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or set(node) != {"type", "context", "children_spec"}:
            raise ProgramRefused(f"{name}: tree spec {shown(text)} has a malformed node")
        if node["type"] not in TREESPEC_TYPES:
            raise ProgramRefused(
                f"{name}: tree spec type {shown(str(node['type']))} is not a plain container"
            )
        context = node["context"]
        if context is not None:
            # The context is JSON again, read with an object hook that imports `__enum__` classes.
            try:
                decoded = json.loads(context) if isinstance(context, str) else None
            except (ValueError, RecursionError):
                decoded = None
            if not isinstance(context, str) or "__enum__" in context or not _plain(decoded):
                raise ProgramRefused(f"{name}: tree spec context {shown(str(context))} is not plain data")
        if not isinstance(node["children_spec"], list):
            raise ProgramRefused(f"{name}: tree spec {shown(text)} has a malformed node")
        stack.extend(node["children_spec"])


def _plain(value: Any) -> bool:
    """JSON of lists, strings, numbers, booleans and null only (a context names keys or fields)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif not (item is None or isinstance(item, (str, int, float, bool))):
            return False
    return True
