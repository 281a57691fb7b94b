"""Bad model directories end in one line with exit code 2 and leave nothing behind: no hang, no traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from regctl.registry.bundle import MAX_FILES
from regctl.registry.errors import InvalidSpec
from regctl.registry.requests import RegisterRequest
from regctl.registry.settings import Settings
from regctl.registry.spec import load_spec
from regctl.registry.versions import register_version
from tests.api_server import REGCTL
from tests.conftest import SPEC_TOML, write_model_dir


def _register(home: Path, directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "REGCTL_HOME": str(home),
        **dict(e.split("=", 1) for e in extra),
    }
    return subprocess.run(
        [REGCTL, "register", "m", str(directory), "--no-convert"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _nothing_stored(home: Path) -> None:
    blobs = (
        [p for p in (home / "artifacts").rglob("*") if p.is_file()] if (home / "artifacts").exists() else []
    )
    assert blobs == []


@pytest.mark.parametrize("where", ["pipe.py", "pkg/pipe.py"])
def test_a_named_pipe_among_the_code_is_refused_without_hanging(tmp_path: Path, where: str) -> None:
    directory = write_model_dir(tmp_path / "m")
    (directory / where).parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(directory / where)
    done = _register(tmp_path / "home", directory)
    assert done.returncode == 2, done.stderr
    assert "is not a regular file" in done.stderr and done.stderr.count("\n") == 1
    _nothing_stored(tmp_path / "home")


def test_a_named_pipe_as_the_weights_is_refused(tmp_path: Path) -> None:
    spec = 'weights = "w.safetensors"\n' + SPEC_TOML
    directory = write_model_dir(tmp_path / "m", spec=spec)
    os.mkfifo(directory / "w.safetensors")
    done = _register(tmp_path / "home", directory)
    assert done.returncode == 2 and "is not a regular file" in done.stderr, done.stderr
    _nothing_stored(tmp_path / "home")


@pytest.mark.parametrize("folder", [".hidden", "venv", "__pycache__"])
def test_an_entrypoint_the_bundle_would_leave_out_is_refused_at_registration(
    sqlite_settings: Settings, tmp_path: Path, folder: str
) -> None:
    spec = SPEC_TOML.replace('entrypoint = "model.py:build"', f'entrypoint = "{folder}/net.py:build"')
    directory = write_model_dir(tmp_path / "m", spec=spec)
    (directory / folder).mkdir()
    (directory / folder / "net.py").write_text((directory / "model.py").read_text())
    if folder == "venv":
        (directory / folder / "pyvenv.cfg").write_text("home = /usr/bin\n")
    with pytest.raises(InvalidSpec, match="lives where the bundle does not look"):
        register_version(sqlite_settings, RegisterRequest("m"), directory)


def test_a_symlink_loop_is_refused_in_one_line(tmp_path: Path) -> None:
    directory = write_model_dir(tmp_path / "m")
    (directory / "a.py").symlink_to(directory / "b.py")
    (directory / "b.py").symlink_to(directory / "a.py")
    done = _register(tmp_path / "home", directory)
    assert done.returncode == 2 and "symlink loop" in done.stderr and done.stderr.count("\n") == 1, (
        done.stderr
    )


def test_a_deeply_nested_spec_is_refused_in_one_line(tmp_path: Path) -> None:
    directory = write_model_dir(
        tmp_path / "m", spec=SPEC_TOML + "deep = " + "[" * 100_000 + "]" * 100_000 + "\n"
    )
    with pytest.raises(InvalidSpec, match="nest too deeply"):
        load_spec(directory)


def test_too_many_files_are_refused(tmp_path: Path) -> None:
    directory = write_model_dir(tmp_path / "m")
    for i in range(MAX_FILES + 1):
        (directory / f"f{i}.py").write_bytes(b"")
    done = _register(tmp_path / "home", directory)
    assert done.returncode == 2 and f"more than {MAX_FILES}" in done.stderr, done.stderr
    _nothing_stored(tmp_path / "home")


def test_the_bundle_cap_counts_what_the_tar_takes_not_just_the_file_bytes(tmp_path: Path) -> None:
    directory = write_model_dir(tmp_path / "m")
    for i in range(2000):  # 2 KB of file bytes, about 2 MB of tar
        (directory / f"f{i}.py").write_bytes(b"#")
    done = _register(tmp_path / "home", directory, "REGCTL_MAX_BUNDLE_BYTES=1048576")
    assert done.returncode == 2 and "REGCTL_MAX_BUNDLE_BYTES" in done.stderr, done.stderr
    _nothing_stored(tmp_path / "home")


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (
            ("[dims]", "[validation]\nsamples = 1000000\n\n[dims]"),
            "validation.samples = 1000000 is more than 1000",
        ),
        (("max = 8", "max = 4611686018427387904"), "is more than 16777216"),
        (('shape = [1, "n"]', 'shape = [1, "n", 65536, 65536]'), "elements at the dims' max"),
    ],
)
def test_absurd_sizes_are_refused_with_the_cap(tmp_path: Path, edit: tuple[str, str], fragment: str) -> None:
    assert edit[0] in SPEC_TOML
    directory = write_model_dir(tmp_path / "m", spec=SPEC_TOML.replace(*edit))
    with pytest.raises(InvalidSpec) as info:
        load_spec(directory)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_link_to_a_file_the_bundle_ignores_may_point_anywhere(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    directory = write_model_dir(tmp_path / "m")
    (tmp_path / "NOTES.md").write_text("outside")
    (directory / "NOTES.md").symlink_to(tmp_path / "NOTES.md")  # not bundled, so not refused
    info = register_version(sqlite_settings, RegisterRequest("m"), directory)
    assert info.version == 1
