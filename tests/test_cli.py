"""The regctl CLI through click's CliRunner: exit codes, stdout, stderr, and nothing half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from regctl.cli.app import cli
from regctl.cli.main import main as _main  # noqa: F401  (registers every command)
from regctl.registry.settings import Settings
from tests.conftest import cli_invoker, write_model_dir
from tests.factories import promotable


@pytest.fixture
def run(settings: Settings):  # type: ignore[no-untyped-def]
    """Invoke regctl against the test registry; returns the click Result."""
    return cli_invoker(settings)


def _blobs(settings: Settings) -> list[Path]:
    root = Path(settings.artifact_store) / "sha256"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_register_then_show_and_list_as_json(run, model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("register", "doubler", str(model_dir), "--no-convert", "--description", "x2")
    assert result.exit_code == 0, result.output
    assert "registered doubler:1 (registered)" in result.output
    listed = json.loads(run("models", "list", "--json").stdout)
    assert [(m["name"], m["versions"], m["description"]) for m in listed] == [("doubler", 1, "x2")]
    shown = json.loads(run("models", "show", "doubler", "--json").stdout)
    assert shown["version_count"] == 1 and shown["versions"][0]["status"] == "registered"
    version = json.loads(run("versions", "show", "doubler:1", "--json").stdout)
    assert version["spec"]["entrypoint"] == "model.py:build"
    assert [a["kind"] for a in version["artifacts"]] == ["source"]


def test_human_output_is_a_table(run, model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    run("register", "doubler", str(model_dir), "--no-convert")
    result = run("models", "list")
    assert result.exit_code == 0
    assert "doubler" in result.stdout and "versions" in result.stdout


def test_alias_set_and_fetch_by_alias(run, settings: Settings, model_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("register", "doubler", str(model_dir), "--no-convert")
    refused = run("alias", "set", "doubler@prod", "1")  # never converted: the promotion policy says no
    assert refused.exit_code == 2 and "cannot move to version 1: it was never converted" in refused.stderr
    promotable(settings, "doubler")
    assert run("alias", "set", "doubler@prod", "1").exit_code == 0
    out = tmp_path / "bundle.tar.gz"
    result = run("fetch", "doubler@prod", "--kind", "source", "-o", str(out))
    assert result.exit_code == 0, result.output
    import tarfile

    with tarfile.open(out) as bundle:
        assert {"regctl.toml", "model.py"} <= set(bundle.getnames())
    history = json.loads(run("alias", "history", "doubler", "--json").stdout)
    assert [h["version"] for h in history] == [1]
    assert run("alias", "rm", "doubler@prod").exit_code == 0
    assert run("fetch", "doubler@prod", "--kind", "source", "-o", str(out)).exit_code == 3


def test_fetch_to_stdout_writes_the_blob(run, model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    run("register", "doubler", str(model_dir), "--no-convert")
    result = run("fetch", "doubler:1", "--kind", "source", "-o", "-")
    assert result.exit_code == 0
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(result.stdout_bytes)) as bundle:
        assert "model.py" in bundle.getnames()


def test_fetch_of_a_version_without_torchscript_is_not_found(run, model_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("register", "doubler", str(model_dir), "--no-convert")
    result = run("fetch", "doubler:1", "-o", str(tmp_path / "m.pt"))
    assert result.exit_code == 3
    assert "has no torchscript artifact" in result.stderr
    assert not (tmp_path / "m.pt").exists()


def _bad_dirs(tmp_path: Path) -> dict[str, tuple[list[str], int, str]]:
    """Each case: the register arguments, the expected exit code and a fragment of the message."""
    spec = lambda body: write_model_dir(tmp_path / str(abs(hash(body))), spec=body)  # noqa: E731
    inputs = '[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [1]\n'
    escaping = write_model_dir(tmp_path / "escape", spec='weights = "../w.safetensors"\n' + inputs)
    (tmp_path / "w.safetensors").write_bytes(b"w")
    symlinked = write_model_dir(tmp_path / "symlinked", spec='weights = "w.safetensors"\n' + inputs)
    os.symlink("/etc/passwd", symlinked / "w.safetensors")
    no_toml = tmp_path / "no-toml"
    no_toml.mkdir()
    return {
        "missing directory": (["m", str(tmp_path / "nowhere")], 2, "does not exist"),
        "no regctl.toml": (["m", str(no_toml)], 2, "regctl.toml"),
        "toml syntax error": (["m", str(spec("entrypoint = \n"))], 2, "line 1"),
        "unknown key": (["m", str(spec('methd = "auto"\n' + inputs))], 2, "methd"),
        "wrong dtype": (["m", str(spec(inputs.replace("float32", "flaot32")))], 2, "flaot32"),
        "negative size": (["m", str(spec(inputs.replace("[1]", "[1, -3]")))], 2, "-3"),
        "undeclared dim": (["m", str(spec(inputs.replace("[1]", '[1, "seq"]')))], 2, "seq"),
        "missing entrypoint": (["m", str(spec('entrypoint = "nope.py:build"\n' + inputs))], 2, "nope.py"),
        "missing weights": (
            ["m", str(spec('weights = "gone.safetensors"\n' + inputs))],
            2,
            "gone.safetensors",
        ),
        "escaping path": (["m", str(escaping)], 2, "../w.safetensors"),
        "symlink to /etc/passwd": (["m", str(symlinked)], 2, "w.safetensors"),
        "name with a space": (["my model", str(spec(inputs))], 2, "is not valid"),
        "name with a slash": (["my/model", str(spec(inputs))], 2, "is not valid"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing directory",
        "no regctl.toml",
        "toml syntax error",
        "unknown key",
        "wrong dtype",
        "negative size",
        "undeclared dim",
        "missing entrypoint",
        "missing weights",
        "escaping path",
        "symlink to /etc/passwd",
        "name with a space",
        "name with a slash",
    ],
)
def test_bad_registration_is_one_line_with_exit_2_and_writes_nothing(
    run,
    settings: Settings,
    tmp_path: Path,
    case: str,  # type: ignore[no-untyped-def]
) -> None:
    args, code, fragment = _bad_dirs(tmp_path)[case]
    result = run("register", *args, "--no-convert")
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert json.loads(run("models", "list", "--json").stdout) == []
    assert _blobs(settings) == []


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["versions", "show", "m:x"], 2, "not a positive integer"),
        (["versions", "show", "m:²"], 2, "not a positive integer"),  # str.isdigit() says yes
        (["versions", "show", "m:1\n"], 2, "not a positive integer"),
        (["versions", "show", "m\n:1"], 2, "model name 'm\\n' is not valid"),
        (["alias", "set", "m@prod\n", "1"], 2, "alias 'prod\\n' is not valid"),
        (["versions", "show", "m:1:2"], 2, "does not parse"),
        (["versions", "show", "m:9"], 3, "m:9 not found"),
        (["versions", "show", "ghost:1"], 3, "model 'ghost' not found"),
        (["fetch", "m@@x", "-o", "out.pt"], 2, "does not parse"),
        (["alias", "set", "m@prod", "9"], 3, "m:9 not found"),
        (["alias", "set", "m@1bad", "1"], 2, "alias '1bad' is not valid"),
        (["alias", "rm", "m@prod"], 3, "is not set"),
        (["models", "show", "ghost"], 3, "not found"),
    ],
)
def test_bad_references_get_their_exit_code(
    run, model_dir: Path, args: list[str], code: int, fragment: str
) -> None:  # type: ignore[no-untyped-def]
    run("register", "m", str(model_dir), "--no-convert")
    result = run(*args)
    assert result.exit_code == code, result.output
    assert fragment in result.stderr and result.stderr.count("\n") == 1


def test_debug_shows_the_traceback(run) -> None:  # type: ignore[no-untyped-def]
    result = run("--debug", "versions", "show", "ghost:1")
    assert result.exit_code == 3
    assert "Traceback" in result.stderr and result.stderr.rstrip().endswith(
        "not found; 'regctl models list' shows the registered models"
    )


def test_unreachable_database_exits_4_naming_the_url_without_password(tmp_path: Path) -> None:
    url = "postgresql://regctl:s3cret@127.0.0.1:1/registry"
    result = CliRunner().invoke(cli, ["--database-url", url, "--home", str(tmp_path), "models", "list"])
    assert result.exit_code == 4, result.output
    assert "127.0.0.1:1" in result.stderr and "s3cret" not in result.stderr


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((prefix + name, command))
        if isinstance(command, click.Group):
            found += _commands(command, prefix + name + " ")
    return found


def test_every_command_has_help_text() -> None:
    missing = [name for name, command in _commands(cli) if not (command.help or "").strip()]
    assert missing == []
    for name, _ in _commands(cli):
        result = CliRunner().invoke(cli, [*name.split(), "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output


# -- fetch -o: where an artifact may land -------------------------------------------------------------------


def _source_bytes(run, tmp_path: Path) -> bytes:  # type: ignore[no-untyped-def]
    out = tmp_path / "expected.tar"
    assert run("fetch", "m:1", "--kind", "source", "-o", str(out)).exit_code == 0
    return out.read_bytes()


def test_fetch_replaces_an_existing_regular_file_like_cp(run, model_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("register", "m", str(model_dir), "--no-convert")
    expected = _source_bytes(run, tmp_path)
    target = tmp_path / "old.tar"
    target.write_bytes(b"an older download")
    assert run("fetch", "m:1", "--kind", "source", "-o", str(target)).exit_code == 0
    assert target.read_bytes() == expected


def test_fetch_refuses_special_targets_and_leaves_them_as_they_were(
    run, model_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    run("register", "m", str(model_dir), "--no-convert")
    directory = tmp_path / "somewhere"
    directory.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.tar"
    link.symlink_to(victim)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    cases = [
        (directory, "is a directory; name the file to write"),
        (link, "is a symbolic link"),
        (fifo, "is a named pipe; fetch to a regular file, or use '-o -'"),
        (Path(os.devnull), "is a character device"),
    ]
    for target, fragment in cases:
        result = run("fetch", "m:1", "--kind", "source", "-o", str(target))
        assert result.exit_code == 2, (target, result.output)
        assert fragment in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert list(directory.iterdir()) == []
    assert link.is_symlink() and victim.read_text() == "keep me"
    assert fifo.is_fifo() and Path(os.devnull).is_char_device()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files


def test_fetch_into_a_missing_directory_needs_create_dirs(run, model_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("register", "m", str(model_dir), "--no-convert")
    target = tmp_path / "new" / "dir" / "m.tar"
    refused = run("fetch", "m:1", "--kind", "source", "-o", str(target))
    assert refused.exit_code == 2 and "does not exist; create it, or pass --create-dirs" in refused.stderr
    assert not (tmp_path / "new").exists()
    assert run("fetch", "m:1", "--kind", "source", "-o", str(target), "--create-dirs").exit_code == 0
    assert target.read_bytes() == _source_bytes(run, tmp_path)


def test_fetch_to_a_pipe_whose_reader_stops_early_ends_quietly(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    import subprocess

    from tests.api_server import REGCTL

    spec = 'weights = "w.safetensors"\n[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [2]\n'
    directory = write_model_dir(tmp_path / "m", spec=spec, files={"w.safetensors": os.urandom(4 << 20)})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REGCTL_HOME": str(sqlite_settings.home)}
    registered = subprocess.run(
        [REGCTL, "register", "m", str(directory), "--no-convert"], env=env, capture_output=True, timeout=120
    )
    assert registered.returncode == 0, registered.stderr
    with subprocess.Popen(
        [REGCTL, "fetch", "m:1", "--kind", "weights", "-o", "-"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as fetch:
        assert fetch.stdout is not None and fetch.stderr is not None
        assert len(fetch.stdout.read(10)) == 10
        fetch.stdout.close()  # what `| head -c 10` does
        assert fetch.wait(timeout=60) == 141  # documented: the reader went away
        assert fetch.stderr.read() == b""  # no traceback, no "Exception ignored"
