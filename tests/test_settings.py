"""Settings from the environment: parsed strictly in one place, each mistake one line with exit code 2."""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from regctl.registry.errors import InvalidInput
from regctl.registry.settings import Settings, parse_flag
from tests.api_server import REGCTL


@pytest.mark.parametrize(
    ("key", "raw", "fragment"),
    [
        ("REGCTL_MAX_ATTEMPTS", "2.7", "is not a whole number of at least 1"),
        ("REGCTL_MAX_ATTEMPTS", "0", "is not a whole number of at least 1"),
        ("REGCTL_MAX_ATTEMPTS", "-1", "is not a whole number of at least 1"),
        ("REGCTL_MAX_BUNDLE_BYTES", "1e9", "is not a whole number"),
        ("REGCTL_MAX_WEIGHTS_BYTES", "lots", "is not a whole number"),
        ("REGCTL_SANDBOX_UID", "0", "of at least 1000"),  # never root
        ("REGCTL_JOB_TIME_LIMIT", "0", "is not a number of seconds above 0"),
        ("REGCTL_JOB_TIME_LIMIT", "inf", "is not a number of seconds above 0"),
        ("REGCTL_HEARTBEAT_TIMEOUT", "nan", "is not a number of seconds above 0"),
        ("REGCTL_QUEUED_TIMEOUT", "-5", "is not a number of seconds above 0"),
        ("REGCTL_GPU_ON_CPU", "maybe", "is not on or off"),
        ("REGCTL_SANDBOX", "loose", "is not a sandbox mode"),
        ("REGCTL_RATE_LIMIT", "lots", 'is not a rate such as "1200/minute" (or "off")'),
        ("REGCTL_ADDRESS_RATE_LIMIT", "10 per minute", "is not a rate such as"),
        ("REGCTL_UPLOADS_PER_TOKEN", "0", "is not a whole number of at least 1"),
        ("REGCTL_BODY_TIMEOUT_S", "0", "is not a number of seconds above 0"),
    ],
)
def test_a_malformed_setting_is_refused_by_name(key: str, raw: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Settings.from_env({key: raw})
    message = str(info.value)
    assert message.startswith(f"{key}={raw!r}") and fragment in message and "\n" not in message


def test_well_formed_settings_are_read_as_given(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "REGCTL_HOME": str(tmp_path),
            "REGCTL_MAX_ATTEMPTS": " 4 ",
            "REGCTL_JOB_SOFT_TIME_LIMIT": "2.5",
            "REGCTL_SANDBOX_MEMORY_MB": "0",  # 0 means "the default share of the machine"
            "REGCTL_GPU_ON_CPU": "On",
        }
    )
    assert (settings.max_attempts, settings.job_soft_time_limit) == (4, 2.5)
    assert settings.sandbox_memory_mb == 0 and settings.gpu_on_cpu is True


def test_every_on_off_setting_follows_one_rule() -> None:
    for raw, value in [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False), ("No", False)]:
        assert parse_flag("REGCTL_X", raw, default=not value) is value
    assert (
        parse_flag("REGCTL_X", "", default=True) is True
        and parse_flag("REGCTL_X", None, default=False) is False
    )
    with pytest.raises(InvalidInput, match="REGCTL_X='2' is not on or off"):
        parse_flag("REGCTL_X", "2", default=True)


def test_a_heartbeat_slower_than_its_timeout_is_refused() -> None:
    with pytest.raises(InvalidInput, match="must be below REGCTL_HEARTBEAT_TIMEOUT"):
        Settings.from_env({"REGCTL_HEARTBEAT_INTERVAL": "10", "REGCTL_HEARTBEAT_TIMEOUT": "5"})


def test_a_home_that_is_a_file_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "not-a-dir"
    home.write_text("x")
    with pytest.raises(InvalidInput, match="is a file, not a directory"):
        Settings.from_env({"REGCTL_HOME": str(home)})


def _regctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([REGCTL, *args], env={**base, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("nonsense", "does not parse as a URL; use sqlite:///PATH or postgresql://"),
        ("postgresql://u@h:port/db", "does not parse as a URL"),
        ("mysql://user@host/db", "names the database 'mysql', which regctl does not run on"),
    ],
)
def test_a_database_url_regctl_cannot_use_is_a_usage_error(tmp_path: Path, url: str, fragment: str) -> None:
    done = _regctl({"REGCTL_HOME": str(tmp_path), "REGCTL_DATABASE_URL": url}, "models", "list")
    assert done.returncode == 2, done.stderr
    assert fragment in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_settings_errors_reach_the_cli_as_exit_2(tmp_path: Path) -> None:
    done = _regctl({"REGCTL_HOME": str(tmp_path), "REGCTL_MAX_ATTEMPTS": "2.7"}, "models", "list")
    assert done.returncode == 2 and "REGCTL_MAX_ATTEMPTS='2.7' is not a whole number" in done.stderr


@pytest.mark.postgres
def test_a_database_on_another_schema_revision_exits_6(postgres_url: str) -> None:
    from tests.conftest import create_postgres_database, drop_postgres_database

    empty = create_postgres_database()
    try:
        done = _regctl({"REGCTL_DATABASE_URL": empty, "REGCTL_HOME": "/tmp"}, "models", "list")
        assert done.returncode == 6, done.stderr
        assert "run 'regctl db upgrade'" in done.stderr and done.stderr.count("\n") == 1
    finally:
        drop_postgres_database(empty)


# -- one reader ----------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("registry", "worker", "server", "service", "cli", "regctl")
# The sandbox hands its zygote a socket through these; they carry no setting of regctl's.
NOT_SETTINGS = {"REGCTL_ZYGOTE_FD", "REGCTL_ZYGOTE_PARENT"}


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _regctl_constants(trees: dict[Path, ast.Module]) -> dict[str, str]:
    """Every module-level NAME = "REGCTL_..." in the code, by name (imports keep the name or alias it)."""
    found: dict[str, str] = {}
    for tree in trees.values():
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                value = node.value.value
                if isinstance(value, str) and value.startswith("REGCTL_"):
                    found.update({t.id: value for t in node.targets if isinstance(t, ast.Name)})
    for tree in trees.values():  # SWITCH_ENV = LIBTORCH_ENV and `import X as Y`
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id in found:
                found.update({t.id: found[node.value.id] for t in node.targets if isinstance(t, ast.Name)})
            if isinstance(node, ast.ImportFrom):
                found.update({a.asname: found[a.name] for a in node.names if a.asname and a.name in found})
    return found


def _key(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name | ast.Attribute):
        return constants.get(node.id if isinstance(node, ast.Name) else node.attr)
    return None


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _reads(tree: ast.Module, constants: dict[str, str]) -> list[tuple[int, str]]:
    """(line, variable) of every read of a variable: env.get(K), getenv(K), environ[K], K in environ."""
    reads = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute | ast.Name):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            if name in {"get", "getenv", "pop", "setdefault"}:
                key = _key(node.args[0], constants)
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
            key = _key(node.slice, constants)
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            key = _key(node.left, constants)
        if key and key.startswith("REGCTL_") and key not in NOT_SETTINGS:
            reads.append((node.lineno, key))
    return reads


def test_no_module_but_settings_reads_a_regctl_variable() -> None:
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in _modules()}
    constants = _regctl_constants(trees)
    assert "REGCTL_WORKER_CONCURRENCY" in constants.values()  # the scan sees constants, not only literals
    readers = [
        f"{path.relative_to(ROOT)}:{line} reads {key}"
        for path, tree in trees.items()
        if path != ROOT / "registry" / "settings.py"
        for line, key in _reads(tree, constants)
    ]
    assert readers == []


def test_the_scan_finds_a_read_however_it_is_spelled() -> None:
    code = 'import os\nK = "REGCTL_X"\nos.environ.get(K)\nos.getenv("REGCTL_Y")\nos.environ["REGCTL_Z"]\n'
    tree = ast.parse(code)
    assert [key for _, key in _reads(tree, _regctl_constants({Path("m.py"): tree}))] == [
        "REGCTL_X",
        "REGCTL_Y",
        "REGCTL_Z",
    ]


def test_machine_settings_come_from_this_process_when_a_mapping_lacks_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REGCTL_LIBTORCH", "off")
    monkeypatch.setenv("REGCTL_LIBTORCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("REGCTL_WORKER_CONCURRENCY", "3")
    monkeypatch.setenv("REGCTL_WORKER_GPUS", "0,2")
    settings = Settings.from_env({"REGCTL_HOME": str(tmp_path)})
    assert (settings.libtorch, settings.libtorch_cache) == (False, tmp_path / "cache")
    assert (settings.worker_concurrency, settings.worker_gpus) == (3, ("0", "2"))
    assert "REGCTL_LIBTORCH" not in settings.to_env()  # each worker keeps its own
    given = Settings.from_env({"REGCTL_HOME": str(tmp_path), "REGCTL_LIBTORCH": "on"})
    assert given.libtorch is True


def test_a_malformed_worker_concurrency_is_refused_by_name() -> None:
    with pytest.raises(InvalidInput, match="REGCTL_WORKER_CONCURRENCY='many' is not a whole number"):
        Settings.from_env({"REGCTL_WORKER_CONCURRENCY": "many"})
