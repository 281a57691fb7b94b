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

The grammar an expression must parse under (Python's own syntax, a strict subset of node types):
integers (and decimal floats), the program's symbols (`s77`, `u0`, `zf1`, `zuf0`, `ps2`, bare or as
`Symbol('s77', positive=True, integer=True)`), `+ - * / // % **` (a literal exponent at most 64),
unary minus and `not`, comparisons, `and`/`or`, `True`/`False`, and calls of the sympy and torch
shape functions torch itself prints (`SHAPE_FUNCTIONS`). No attribute access, subscripts,
lambdas, f-strings, starred or keyword arguments except a Symbol's assumptions and a Float's
precision, no string but a Symbol's name or a Float's digits, no name beginning with `_`.

Guards use a second, equally small grammar: `L['x'].size()[0]`-style references to the inputs,
`min`/`max`, a few `math` functions, the same arithmetic and comparisons.
"""

from __future__ import annotations

import ast
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

MAX_MEMBERS = 10_000
MAX_JSON_BYTES = 64 << 20  # a transformer's model.json is a few MB
MAX_PICKLE_BYTES = 256 << 20  # sample inputs and pickled tensors: their data.pkl only is scanned
MAX_TOTAL_BYTES = 256 << 30  # the weights of the largest model a worker could judge
MAX_SMALL_BYTES = 4096  # archive_format, byteorder, versions
MAX_EXPR_CHARS = 20_000
MAX_NESTING = 100
MAX_EXPONENT = 64
MAX_INT_DIGITS = 40
SHOWN_CHARS = 80

SYMBOL = re.compile(r"(?:s|u|zf|zuf|ps)\d{1,9}")
IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,199}")
FLOAT_TEXT = re.compile(r"-?\d{1,40}(?:\.\d{0,40})?(?:[eE][+-]?\d{1,4})?")
FQN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}(?:\.[A-Za-z0-9_]{1,200}){0,64}")
NAME_PART = r"[A-Za-z][A-Za-z0-9_]*"

# What torch's serializer names sympy/torch shape functions (serialize.py's sympy_functions and the
# sympy classes srepr prints); sympify resolves exactly these and nothing else is callable.
SHAPE_FUNCTIONS = frozenset(
    {
        "Symbol", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "Min", "Max", "Abs",
        "Mod", "FloorDiv", "CeilDiv", "CleanDiv", "PythonMod", "ModularIndexing", "CeilToInt",
        "FloorToInt", "TruncToInt", "TruncToFloat", "RoundToInt", "ToFloat", "IntTrueDiv",
        "FloatTrueDiv", "PowByNatural", "FloatPow", "LShift", "RShift", "Identity", "Where",
        "Equality", "Unequality", "LessThan", "StrictLessThan", "GreaterThan", "StrictGreaterThan",
        "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not",
    }
)  # fmt: skip
SYMBOL_ASSUMPTIONS = frozenset(
    {"positive", "negative", "integer", "nonnegative", "nonpositive", "real", "finite", "nonzero", "zero"}
)
CONSTANT_NAMES = frozenset({"True", "False", "true", "false"})
GUARD_FUNCTIONS = frozenset({"min", "max"})
GUARD_MATH = frozenset({"floor", "ceil", "trunc", "sqrt", "isnan", "inf"})
GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim"})

BIN_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
UNARY_OPS = (ast.USub, ast.UAdd, ast.Not)
COMPARE_OPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)

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


class ProgramRefused(Exception):
    """Raised when a saved program holds something torch.export.load would run or unpickle unsafely."""


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
        raise ProgramRefused(f"{path.name} is not a readable .pt2 archive: {_shown(str(exc))}") from None


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
        raise ProgramRefused(f"unexpected member {_shown(unexpected[0])} in the archive")
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
            raise ProgramRefused(f"member name {_shown(name)} is not a plain relative path")
        parts = name.split("/")
        if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or len(parts) < 2:
            raise ProgramRefused(f"member name {_shown(name)} is not a plain relative path")
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
        raise ProgramRefused(f"{name} holds {_shown(text)}, not a version or format word")


def _json(archive: zipfile.ZipFile, files: dict[str, zipfile.ZipInfo], name: str) -> Any:
    if name not in files:
        raise ProgramRefused(f"the archive lacks {name}")
    data = _read(archive, files[name], name, MAX_JSON_BYTES)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ProgramRefused(f"{name} is not JSON: {_shown(str(exc))}") from None


def _payloads(document: Any, folder: str, name: str) -> tuple[set[str], set[str]]:
    """The raw-byte and the pickled members a weights or constants config names."""
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise ProgramRefused(f"{name} has no config table")
    raw, pickled = set(), set()
    for key, entry in config.items():
        path_name = entry.get("path_name") if isinstance(entry, dict) else None
        if not isinstance(key, str) or not FQN.fullmatch(key) or "__" in key:
            raise ProgramRefused(f"{name}: {_shown(str(key))} is not a dotted attribute name")
        if not isinstance(path_name, str) or not IDENTIFIER.fullmatch(path_name):
            raise ProgramRefused(f"{name}: entry {_shown(str(key))} names no plain member")
        if folder == "constants" and not path_name.startswith("tensor_"):
            # custom_obj_* goes to torch's TorchScript unpickler, opaque_obj_* to pickle.loads.
            raise ProgramRefused(f"{name}: constant {_shown(str(key))} is a pickled object, not a tensor")
        use_pickle = entry.get("use_pickle")
        if not isinstance(use_pickle, bool):
            raise ProgramRefused(f"{name}: entry {_shown(str(key))} has no use_pickle flag")
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
        raise ProgramRefused(f"{name} is not a readable pickle: {_shown(str(exc))}") from None


def _allowed_global(module: str, attr: str, name: str) -> None:
    if (module, attr) in PICKLE_GLOBALS or (module == "torch" and TORCH_PICKLE_NAME.fullmatch(attr)):
        return
    raise ProgramRefused(f"{name}: the pickle names {_shown(f'{module}.{attr}')}, not plain tensor data")


def check_program_json(document: Any, name: str) -> None:
    """Check a program's JSON (`models/model.json`): expressions, guards, targets, tree specs, verifiers."""
    if not isinstance(document, dict):
        raise ProgramRefused(f"{name} is not a JSON object")
    for key, bounds in _items(document.get("range_constraints"), name, "range_constraints"):
        check_expression(key, f"{name} range_constraints")
        if not isinstance(bounds, dict) or not all(
            v is None or (type(v) is int and abs(v) < 1 << 63) for v in bounds.values()
        ):
            raise ProgramRefused(f"{name}: the range of {_shown(key)} is not a pair of integers")
    guards = document.get("guards_code") or []
    if not isinstance(guards, list):
        raise ProgramRefused(f"{name}: guards_code is not a list")
    for guard in guards:
        check_guard(guard, f"{name} guards_code")
    verifiers = document.get("verifiers") or []
    if not isinstance(verifiers, list) or not all(
        isinstance(v, str) and VERIFIER.fullmatch(v) for v in verifiers
    ):
        raise ProgramRefused(f"{name}: verifiers {_shown(str(verifiers))} are not dialect names")
    _check_walk(document, name)


def _check_walk(document: Any, name: str) -> None:
    """Every string of the document; expressions, names, targets and tree specs wherever they are."""
    for key, value in _walk(document):
        if isinstance(value, str) and _CONTROL.search(value):
            # FX writes names and stack traces into the Python source it generates and execs: a
            # carriage return would end a comment line there.
            raise ProgramRefused(f"{name}: {key} {_shown(value)} holds a control character")
        if key in NAME_KEYS and not (value is None or (isinstance(value, str) and FQN_TEXT.fullmatch(value))):
            # get_attr targets become `getattr(self, "<segment>")` in that source, unescaped.
            raise ProgramRefused(f"{name}: {key} {_shown(str(value))} is not a dotted name")
        if key == "forward_arg_names" and not (
            isinstance(value, list) and all(_identifier(v) for v in value)
        ):
            raise ProgramRefused(f"{name}: forward_arg_names {_shown(str(value))} are not identifiers")
        if key == "expr_str":
            check_expression(value, f"{name} expr_str")
        elif key == "nodes":
            _check_nodes(value, name)
        elif key in ("as_string", "as_strings") and _quoted(value):
            # A string input's value is written between quotes into the guard code .module() execs.
            raise ProgramRefused(f"{name}: string argument {_shown(str(value))} holds a quote or backslash")
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
        raise ProgramRefused(f"{name}: node target {_shown(str(target))} is not one of torch's operators")


def _check_treespec(text: Any, name: str) -> None:
    if not isinstance(text, str) or len(text) > MAX_JSON_BYTES:
        raise ProgramRefused(f"{name}: a tree spec is not a string")
    try:
        spec = json.loads(text)
    except (ValueError, RecursionError):
        raise ProgramRefused(f"{name}: tree spec {_shown(text)} is not JSON") from None
    if not isinstance(spec, list) or len(spec) != 2 or spec[0] != 1:
        raise ProgramRefused(f"{name}: tree spec {_shown(text)} is not protocol 1")
    stack = [spec[1]]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or set(node) != {"type", "context", "children_spec"}:
            raise ProgramRefused(f"{name}: tree spec {_shown(text)} has a malformed node")
        if node["type"] not in TREESPEC_TYPES:
            raise ProgramRefused(
                f"{name}: tree spec type {_shown(str(node['type']))} is not a plain container"
            )
        context = node["context"]
        if context is not None:
            # The context is JSON again, read with an object hook that imports `__enum__` classes.
            try:
                decoded = json.loads(context) if isinstance(context, str) else None
            except (ValueError, RecursionError):
                decoded = None
            if not isinstance(context, str) or "__enum__" in context or not _plain(decoded):
                raise ProgramRefused(f"{name}: tree spec context {_shown(str(context))} is not plain data")
        if not isinstance(node["children_spec"], list):
            raise ProgramRefused(f"{name}: tree spec {_shown(text)} has a malformed node")
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


def check_expression(text: Any, where: str) -> None:
    """Refuse a symbolic expression outside the grammar in the module docstring (one-line reason)."""
    tree = _parse(text, where)
    _Expression(text, where).visit(tree)


def check_guard(text: Any, where: str) -> None:
    """Refuse a guard outside the guard grammar in the module docstring (one-line reason)."""
    tree = _parse(text, where)
    _Guard(text, where).visit(tree)


def _parse(text: Any, where: str) -> ast.Expression:
    if not isinstance(text, str):
        raise ProgramRefused(f"{where}: {_shown(str(text))} is not a string")
    if len(text) > MAX_EXPR_CHARS:
        raise ProgramRefused(f"{where}: expression {_shown(text)} is longer than {MAX_EXPR_CHARS} characters")
    if any(not c.isascii() or (not c.isprintable() and c != "\n") for c in text):
        raise ProgramRefused(f"{where}: expression {_shown(text)} holds a character outside printable ASCII")
    depth = deepest = 0
    for c in text:
        depth += (c in "([{") - (c in ")]}")
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        raise ProgramRefused(f"{where}: expression {_shown(text)} nests deeper than {MAX_NESTING}")
    try:
        return ast.parse(text, mode="eval")  # parsing builds a tree and runs nothing
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ProgramRefused(f"{where}: expression {_shown(text)} is not an expression") from None


class _Grammar(ast.NodeVisitor):
    """Visits every node; any node type without a visit_ method is refused."""

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where

    def refuse(self, why: str) -> None:
        raise ProgramRefused(f"{self.where}: refused expression {_shown(self.text)}: {why}")

    def generic_visit(self, node: ast.AST) -> None:
        self.refuse(f"{type(node).__name__} is not allowed")

    def visit_Expression(self, node: ast.Expression) -> None:
        self.visit(node.body)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if type(value) is bool or (type(value) is float and FLOAT_TEXT.fullmatch(repr(value))):
            return
        if type(value) is int and len(str(abs(value))) <= MAX_INT_DIGITS:
            return
        self.refuse(f"the constant {_shown(repr(value))} is not an integer")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if not isinstance(node.op, BIN_OPS):
            self.refuse(f"operator {type(node.op).__name__} is not allowed")
        if isinstance(node.op, ast.Pow) and not _small_exponent(node.right):
            self.refuse(f"an exponent must be an integer up to {MAX_EXPONENT}")
        self.visit(node.left)
        self.visit(node.right)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if not isinstance(node.op, UNARY_OPS):
            self.refuse(f"operator {type(node.op).__name__} is not allowed")
        self.visit(node.operand)

    def visit_Compare(self, node: ast.Compare) -> None:
        if not all(isinstance(op, COMPARE_OPS) for op in node.ops):
            self.refuse("only <, <=, ==, !=, >, >= compare")
        self.visit(node.left)
        for item in node.comparators:
            self.visit(item)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        for item in node.values:
            self.visit(item)


class _Expression(_Grammar):
    """sympy's srepr and str forms of shape expressions."""

    def visit_Name(self, node: ast.Name) -> None:
        if not (SYMBOL.fullmatch(node.id) or node.id in CONSTANT_NAMES):
            self.refuse(f"{_shown(node.id)} is neither a symbol of the program nor a constant")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func.id if isinstance(node.func, ast.Name) else None
        if func not in SHAPE_FUNCTIONS:
            self.refuse("only torch's shape functions may be called")
        if func == "Symbol":
            self._symbol(node)
        elif func == "Float":
            self._float(node)
        else:
            if node.keywords:
                self.refuse(f"{func} takes no keyword arguments")
            for arg in node.args:
                self.visit(arg)
            if func in ("Pow", "PowByNatural", "FloatPow") and (
                len(node.args) != 2 or not _small_exponent(node.args[1])
            ):
                self.refuse(f"an exponent must be an integer up to {MAX_EXPONENT}")

    def _symbol(self, node: ast.Call) -> None:
        if len(node.args) != 1 or not _is_str(node.args[0]) or not SYMBOL.fullmatch(node.args[0].value):
            self.refuse("a Symbol's name must be one of the program's symbols (s0, u0, ...)")
        for option in node.keywords:
            if option.arg not in SYMBOL_ASSUMPTIONS or not _is_bool(option.value):
                self.refuse("a Symbol takes only True/False assumptions")

    def _float(self, node: ast.Call) -> None:
        if len(node.args) != 1:
            self.refuse("a Float takes one value")
        value = node.args[0]
        if not (_is_str(value) and FLOAT_TEXT.fullmatch(value.value)):
            self.visit(value)
        for option in node.keywords:
            if option.arg != "precision" or not (
                isinstance(option.value, ast.Constant) and type(option.value.value) is int
            ):
                self.refuse("a Float takes only an integer precision")


class _Guard(_Grammar):
    """Guards as torch writes them: `L['x'].size()[0] <= 64`, `min(...)`, `math.isnan(...)`."""

    def visit_Name(self, node: ast.Name) -> None:
        if node.id not in CONSTANT_NAMES:
            self.refuse(f"{_shown(node.id)} may not stand alone in a guard")

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if not _input_reference(node):
            self.refuse("a subscript must name an input (L['x'][0]) or a size (.size()[0])")
        if isinstance(node.value, ast.Call):
            self.visit_Call(node.value)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if not (isinstance(node.value, ast.Name) and node.value.id == "math" and node.attr == "inf"):
            self.refuse(f"attribute {_shown(node.attr)} is not allowed")

    def visit_Call(self, node: ast.Call) -> None:
        if node.keywords:
            self.refuse("no keyword arguments")
        func = node.func
        if isinstance(func, ast.Name) and func.id in GUARD_FUNCTIONS:
            pass
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "math":
            if func.attr not in GUARD_MATH:
                self.refuse(f"math.{_shown(func.attr)} is not allowed")
        elif isinstance(func, ast.Attribute) and func.attr in GUARD_METHODS and _input_reference(func.value):
            if len(node.args) > 1 or not all(
                isinstance(a, ast.Constant) and type(a.value) is int for a in node.args
            ):
                self.refuse(f".{func.attr}() takes at most one integer")
            return
        else:
            self.refuse("only min, max, math functions and .size() may be called")
        for arg in node.args:
            self.visit(arg)


def _input_reference(node: ast.AST) -> bool:
    """`L['x']`, `L['x'][0]`, `L['x']['k']` or `<one of those>.size()[1]`."""
    if not isinstance(node, ast.Subscript):
        return False
    index = node.slice
    value = node.value
    if isinstance(value, ast.Name):
        return value.id == "L" and _is_str(index) and bool(IDENTIFIER.fullmatch(index.value))
    if isinstance(value, ast.Call):
        func = value.func
        return (
            isinstance(func, ast.Attribute)
            and func.attr in GUARD_METHODS
            and not value.args
            and _input_reference(func.value)
            and isinstance(index, ast.Constant)
            and type(index.value) is int
        )
    ok_index = (_is_str(index) and IDENTIFIER.fullmatch(index.value)) or (
        isinstance(index, ast.Constant) and type(index.value) is int
    )
    return bool(ok_index) and _input_reference(value)


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is str


def _is_bool(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is bool


def _small_exponent(node: ast.AST) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Integer":
        node = node.args[0] if len(node.args) == 1 else node
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) is int and node.value <= MAX_EXPONENT


def _shown(text: str) -> str:
    """A string from the archive as one printable line: truncated, every non-printable escaped."""
    cut = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."
    return ascii(cut)
