"""The trust boundary is drawn by folders, and their imports keep to it (DESIGN.md, Trust boundaries)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "worker"


def _imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (inside functions too), as absolute names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import of {node.module!r}"
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules(folder: str) -> list[Path]:
    paths = sorted((WORKER / folder).rglob("*.py"))
    assert paths, f"worker/{folder}/ holds no Python files"
    return paths


@pytest.mark.parametrize("path", _modules("judge"), ids=lambda p: p.name)
def test_the_judge_never_imports_the_model_side(path: Path) -> None:
    model_side = sorted(m for m in _imported_modules(path) if m.startswith("regctl.worker.model"))
    assert model_side == [], f"worker/judge/{path.name} imports {model_side}"


def test_the_shared_contract_imports_neither_torch_nor_a_role() -> None:
    imported = _imported_modules(WORKER / "contract.py")
    assert not {m for m in imported if m.split(".")[0] == "torch" or m.startswith("regctl.worker.")}


def test_the_supervisors_sandbox_client_never_imports_the_zygote() -> None:
    imported = _imported_modules(WORKER / "sandbox" / "client.py")
    assert not {m for m in imported if m.startswith("regctl.worker.sandbox.zygote")}, imported


@pytest.mark.parametrize("path", _modules("sandbox"), ids=lambda p: p.name)
def test_the_sandbox_mechanism_never_imports_its_supervisor(path: Path) -> None:
    above = sorted(m for m in _imported_modules(path) if m.startswith("regctl.worker.supervisor"))
    assert above == [], f"worker/sandbox/{path.name} imports {above}"


def test_no_import_loops_anywhere_in_regctl() -> None:
    """Every arrow points down: no two modules import each other, even through a function's import."""
    spec = importlib.util.spec_from_file_location("codebase_shape", ROOT / "benchmarks" / "codebase_shape.py")
    assert spec is not None and spec.loader is not None
    shape = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shape)
    assert shape.measure()["import_loops"] == []


def test_the_domain_never_imports_the_operations_on_it() -> None:
    """registry/ops/ (doctor, gc, export, import, Triton) builds on the domain, never the other way."""
    domain = [
        p for p in (ROOT / "registry").rglob("*.py") if "ops" not in p.relative_to(ROOT / "registry").parts
    ]
    offenders = {
        str(p.relative_to(ROOT)): sorted(
            m for m in _imported_modules(p) if m.startswith("regctl.registry.ops")
        )
        for p in domain
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize(
    "box",
    [
        "cli",
        "server",
        "regctl",
        "service",
        "worker/dispatch",
        "worker/supervisor",
        "worker/sandbox",
        "worker/model",
        "worker/judge",
        "registry",
        "registry/ops",
        "registry/store",
        "migrations",
    ],
)
def test_each_box_of_the_design_is_a_folder(box: str) -> None:
    """DESIGN.md's "Where things live" is described by the code: each of its boxes is a package."""
    assert (ROOT / box / "__init__.py").is_file() or (ROOT / box / "env.py").is_file(), box


def test_the_shared_files_of_the_design_exist() -> None:
    assert (ROOT / "worker" / "contract.py").is_file()
    assert (ROOT / "worker" / "sandbox" / "protocol.py").is_file()
