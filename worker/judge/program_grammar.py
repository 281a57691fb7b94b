"""The grammar every symbolic-shape expression and guard of an exported program must parse under,
checked with `ast` (which parses and never runs) before torch would `sympify` or `exec` them.
program_check.py applies it to every expression and guard in the archive.

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
import re
from typing import Any

MAX_EXPR_CHARS = 20_000
MAX_NESTING = 100
MAX_EXPONENT = 64
MAX_INT_DIGITS = 40
SHOWN_CHARS = 80

SYMBOL = re.compile(r"(?:s|u|zf|zuf|ps)\d{1,9}")
IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,199}")
FLOAT_TEXT = re.compile(r"-?\d{1,40}(?:\.\d{0,40})?(?:[eE][+-]?\d{1,4})?")

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


class ProgramRefused(Exception):
    """Raised when a saved program holds something torch.export.load would run or unpickle unsafely."""


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
        raise ProgramRefused(f"{where}: {shown(str(text))} is not a string")
    if len(text) > MAX_EXPR_CHARS:
        raise ProgramRefused(f"{where}: expression {shown(text)} is longer than {MAX_EXPR_CHARS} characters")
    if any(not c.isascii() or (not c.isprintable() and c != "\n") for c in text):
        raise ProgramRefused(f"{where}: expression {shown(text)} holds a character outside printable ASCII")
    depth = deepest = 0
    for c in text:
        depth += (c in "([{") - (c in ")]}")
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        raise ProgramRefused(f"{where}: expression {shown(text)} nests deeper than {MAX_NESTING}")
    try:
        return ast.parse(text, mode="eval")  # parsing builds a tree and runs nothing
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ProgramRefused(f"{where}: expression {shown(text)} is not an expression") from None


class _Grammar(ast.NodeVisitor):
    """Visits every node; any node type without a visit_ method is refused."""

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where

    def refuse(self, why: str) -> None:
        raise ProgramRefused(f"{self.where}: refused expression {shown(self.text)}: {why}")

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
        self.refuse(f"the constant {shown(repr(value))} is not an integer")

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
            self.refuse(f"{shown(node.id)} is neither a symbol of the program nor a constant")

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
            self.refuse(f"{shown(node.id)} may not stand alone in a guard")

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if not _input_reference(node):
            self.refuse("a subscript must name an input (L['x'][0]) or a size (.size()[0])")
        if isinstance(node.value, ast.Call):
            self.visit_Call(node.value)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if not (isinstance(node.value, ast.Name) and node.value.id == "math" and node.attr == "inf"):
            self.refuse(f"attribute {shown(node.attr)} is not allowed")

    def visit_Call(self, node: ast.Call) -> None:
        if node.keywords:
            self.refuse("no keyword arguments")
        func = node.func
        if isinstance(func, ast.Name) and func.id in GUARD_FUNCTIONS:
            pass
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "math":
            if func.attr not in GUARD_MATH:
                self.refuse(f"math.{shown(func.attr)} is not allowed")
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


def shown(text: str) -> str:
    """A string from the archive as one printable line: truncated, every non-printable escaped."""
    cut = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."
    return ascii(cut)
