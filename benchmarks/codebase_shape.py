"""The codebase's shape in numbers (issue 23): import loops, long modules, imports inside functions.

Prints JSON. Imports are read with `ast`, never executed: a module's arrows are the `regctl.*` modules
it imports at top level (`top`) and inside functions (`lazy`). A loop is a strongly connected group of
two or more modules in the graph of both kinds of arrow, since a lazy import still ties two modules.

    python benchmarks/codebase_shape.py            # the summary
    python benchmarks/codebase_shape.py --lazy     # also every import inside a function, by file
"""

from __future__ import annotations

import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The installed package maps these top-level folders to regctl.* (pyproject's package-dir).
FOLDERS = {"cli": "cli", "migrations": "migrations", "registry": "registry", "server": "server"}
FOLDERS |= {"service": "service", "worker": "worker", "regctl": ""}
LONG_MODULE_LINES = 500


def modules() -> dict[str, Path]:
    """Every regctl module by dotted name."""
    found: dict[str, Path] = {}
    for folder, sub in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join(["regctl", *([sub] if sub else []), *parts])
            found[name] = path
    return found


def imports(path: Path, known: set[str]) -> tuple[set[str], list[tuple[int, str]]]:
    """The regctl modules `path` imports at top level, and (line, module) for each import in a function."""
    tree = ast.parse(path.read_text(), str(path))
    top: set[str] = set()
    lazy: list[tuple[int, str]] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        names = [f"{base}.{alias.name}" for alias in node.names]
        return [n if n in known else base for n in names]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found = targets(child)
                if in_function:
                    # one entry per statement: `from x import a, b` is one import to move
                    lazy.append((child.lineno, ", ".join(sorted(set(found)))))
                else:
                    top.update(target for target in found if target in known)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                continue
            else:
                nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                visit(child, nested)

    visit(tree, False)
    return top, lazy


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def measure(show_lazy: bool = False) -> dict:
    """The numbers: loops, modules over LONG_MODULE_LINES lines, and the count of function-level imports."""
    found = modules()
    known = set(found)
    graph: dict[str, set[str]] = defaultdict(set)
    lazy_by_file: dict[str, list[str]] = {}
    lazy_total = 0
    for name, path in found.items():
        top, lazy = imports(path, known)
        graph[name] |= {t for t in top if t != name}
        graph[name] |= {t for _, ts in lazy for t in ts.split(", ") if t in known and t != name}
        lazy_total += len(lazy)
        if lazy:
            lazy_by_file[str(path.relative_to(ROOT))] = [f"{line}: {target}" for line, target in lazy]
    long_modules = {
        str(path.relative_to(ROOT)): lines
        for path in found.values()
        if (lines := len(path.read_text().splitlines())) > LONG_MODULE_LINES
    }
    result = {
        "modules": len(found),
        "lines": sum(len(p.read_text().splitlines()) for p in found.values()),
        "import_loops": loops(dict(graph)),
        "modules_over_500_lines": long_modules,
        "imports_inside_functions": lazy_total,
    }
    if show_lazy:
        result["lazy_imports"] = lazy_by_file
    return result


if __name__ == "__main__":
    print(json.dumps(measure("--lazy" in sys.argv), indent=2))
