"""What became of the exported program, as the model side (worker/model/export.py) and the judge
(worker/judge/program.py) both report it, and the quiet in which torch.export runs.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: the judge fills it in; no module of engine/ imports the judge
    from regctl.worker.judge.evaluate import CandidateCheck


@dataclass
class ExportOutcome:
    """Where the program is once exported (model side) or once it matched eager (judge side); else why not."""

    saved: Path | None = None
    error: str | None = None
    detail: str | None = None
    failed_input: str | None = None
    notes: list[str] = field(default_factory=list)
    check: CandidateCheck | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.saved is not None


@contextmanager
def quiet_torch() -> Iterator[io.StringIO]:
    """torch.export logs its guesses and prints partial graphs on stderr; keep them for the report instead."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    printed = io.StringIO()
    try:
        with redirect_stderr(printed):
            yield printed
    finally:
        logger.setLevel(level)
