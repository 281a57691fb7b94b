"""The exported program the judge proved, loaded again by a format stage (aoti, executorch, onnx).

Every format is built from the program the judge already ran against eager, never from anything
else the model process left: the file must still have the sha256 the judge proved, must pass the
archive checker again (program_check.py: torch.export.load evals strings of the archive), and is
loaded with tensors and plain data only (program.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from regctl.registry.digests import sha256_file
from regctl.worker.engine.exported import quiet_torch
from regctl.worker.judge.program import plain_data_only
from regctl.worker.judge.program_check import ProgramRefused, check_program


class NotProved(Exception):
    """The program is not the one proved, or is refused before loading; the message is one line."""


def load_proved_program(program: Path, expected_sha256: str, *, built: str = "built") -> Any:
    """The proved program as a torch.export.ExportedProgram; NotProved when it may not be used.

    `built` names what would have been done with it ("compiled", "built") in the refusal.
    """
    if sha256_file(program) != expected_sha256:
        raise NotProved(f"the exported program changed after the judge proved it; not {built}")
    try:
        check_program(program)
    except ProgramRefused as exc:
        raise NotProved(f"the exported program was refused before loading: {exc}") from exc
    with quiet_torch(), plain_data_only():
        return torch.export.load(str(program))
