"""Registry commands never import torch or Celery: `regctl models list` must stay fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import sys
from regctl.cli.main import main
sys.argv = ["regctl", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "celery", "kombu", "numpy") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["models", "list"],
        ["models", "show", "nothing"],
        ["versions", "show", "nothing:1"],
        ["jobs", "list"],
        ["alias", "set", "nothing@prod", "1"],
        ["fetch", "nothing:1", "-o", "out.pt"],
        ["register", "m", "DIR", "--no-convert"],
        ["export-triton", "nothing:1", "--repo", "triton-repo"],
    ],
)
def test_registry_commands_import_neither_torch_nor_celery(
    tmp_path: Path, model_dir: Path, args: list[str]
) -> None:
    args = [str(model_dir) if a == "DIR" else a for a in args]
    assert _probed(PROBE, args, tmp_path, "HEAVY") == ""


def _probed(probe: str, args: list[str], tmp_path: Path, key: str) -> str:
    """What `probe` (a CLI run with `args` in a fresh interpreter) printed as KEY=... on stderr."""
    env = {"REGCTL_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", probe, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=60,
    )
    assert f"{key}=" in result.stderr, result.stderr
    return result.stderr.rsplit(f"{key}=", 1)[1].strip()


def test_the_supervisor_side_of_a_job_never_imports_torch() -> None:
    # The pool child (or embedded parent) runs every job's supervisor: torch there would mean a
    # stage's code (the format stages' included: aoti, executorch, onnx) ran outside its sandbox.
    # Every module of worker/supervisor/ (a module added later is covered without editing this list).
    probe = (
        "import importlib, pkgutil, sys\n"
        "import regctl.worker.supervisor as pkg, regctl.worker.tasks\n"
        "names = [m.name for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.')]\n"
        "assert 'regctl.worker.supervisor.pipeline' in names, names\n"
        "assert 'regctl.worker.supervisor.format_stage' in names, names\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


WARM_PROBE = """
import sys
import regctl.worker.supervisor.embedded as embedded

def start_child():
    # the job's child (and its zygote's torch import) starts here: say what the CLI had imported
    print("DATABASE_LAYER=" + str("sqlalchemy" in sys.modules), file=sys.stderr)
    raise SystemExit(0)

embedded.start_child = start_child
from regctl.cli.main import main
sys.argv = ["regctl", *sys.argv[1:]]
main()
"""


def test_register_wait_starts_its_jobs_child_before_importing_the_database_layer(
    tmp_path: Path, model_dir: Path
) -> None:
    # The child's zygote imports torch (1.5 s) while the CLI registers; the database layer (0.25 s to
    # import) would only delay its start.
    args = ["register", "m", str(model_dir), "--wait"]
    assert _probed(WARM_PROBE, args, tmp_path, "DATABASE_LAYER") == "False"
