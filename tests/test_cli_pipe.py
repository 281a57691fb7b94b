"""A reader that goes away early (`regctl ... | head`) ends the command quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REGCTL = str(Path(sys.executable).with_name("regctl"))


def test_a_closed_stdout_ends_the_command_without_an_internal_error(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [REGCTL, "sandbox"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "REGCTL_HOME": str(tmp_path)},
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before it writes a line: its first write meets a broken pipe
    with process.stderr:
        stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert stderr == ""
