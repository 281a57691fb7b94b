"""One importable name: `pip install regctl` adds `regctl` and nothing else, and the wheel runs on its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
OLD_NAMES = ("registry", "worker", "cli", "migrations", "service", "server")
SKIPPED = {".venv", "build", "dist", "__pycache__", ".git"}


def _python_files() -> list[Path]:
    return [p for p in REPO.rglob("*.py") if not SKIPPED & set(p.relative_to(REPO).parts)]


def test_every_folder_with_python_files_is_a_listed_package() -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    found = set()
    for name, folder in setuptools["package-dir"].items():
        for path in (REPO / folder).rglob("*.py"):
            relative = path.parent.relative_to(REPO / folder)
            if not SKIPPED & set(relative.parts):
                found.add(".".join([name, *relative.parts]))
    assert found == set(setuptools["packages"])


def test_no_code_imports_the_old_top_level_names() -> None:
    # From the repository root `import registry` would still work, and load a second copy of every
    # module beside `regctl.registry`; only an installed wheel would fail.
    pattern = re.compile(rf"^\s*(?:from|import)\s+({'|'.join(OLD_NAMES)})(?:\.|\s|$)", re.M)
    offenders = [
        f"{p.relative_to(REPO)}: {m.group(0).strip()}"
        for p in _python_files()
        for m in pattern.finditer(p.read_text())
    ]
    assert offenders == []


@pytest.mark.slow
def test_the_sdist_and_the_wheel_install_into_a_fresh_venv_and_run(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("regctl-*.whl")
    (sdist,) = dist.glob("regctl-*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
        names = archive.namelist()
    assert top == {"regctl", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert "regctl/migrations/versions/0001_initial.py" in names
    assert "regctl/worker/judge/libtorch_runner.cpp" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    env = {**os.environ, "PIP_CONSTRAINT": str(REPO / "constraints.txt")}
    for package in (wheel, sdist):  # the sdist rebuilds the same package from source, in place
        installed = subprocess.run(
            [*pip, "--force-reinstall", *(["--no-deps"] if package == sdist else []), str(package)],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        assert installed.returncode == 0, installed.stderr[-3000:]
        _runs_on_its_own(venv, tmp_path / f"home-{package.suffix}")


def _runs_on_its_own(venv: Path, home: Path) -> None:
    """`regctl --help`, then a real registry (its schema comes from the packaged migrations)."""
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "REGCTL_HOME": str(home), "HOME": str(home)}
    helped = subprocess.run(
        ["regctl", "--help"], capture_output=True, text=True, env=env, cwd="/", timeout=60
    )
    assert helped.returncode == 0 and "register" in helped.stdout, helped.stderr
    listed = subprocess.run(
        ["regctl", "models", "list", "--json"], capture_output=True, text=True, env=env, cwd="/", timeout=60
    )
    assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stderr
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import regctl.registry, sys; print(regctl.registry.__file__)"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
