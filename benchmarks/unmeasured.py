"""regctl's conversion with its two measurements as no-ops: what the engine costs besides them.

Coverage recording (issue 24: the reference runner's coverage.py tracer and the conversion patch,
`coverage_support.recording(False)`) and the latency measurement (issue 25: the builder's interleaved
Timer blocks of eager, the candidate and its optimized form) are work a bare conversion script does
not do. With both replaced, what remains is the engine's own cost: the second build of the model for
the reference runner, the files the roles exchange, the report. engine_overhead.py reports the ratio
both ways, so the share the two measurements take is a figure, not a guess.

The stand-in latency gives every form the same figures, so the optimize step finds the optimized
form "not slower" and keeps it, as it does on the examples when measured.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from benchmarks.coverage_support import recording
from regctl.worker.engine.latency import Latency
from regctl.worker.model import model_side

_SAME = Latency(median_ms=0.01, q1_ms=0.01, q3_ms=0.01, runs=1, blocks=1)


def _unmeasured(forms: dict[str, Any], *_: Any, **__: Any) -> dict[str, Latency]:
    return dict.fromkeys(forms, _SAME)


@contextlib.contextmanager
def measurements_off() -> Iterator[None]:
    """Coverage recording and the latency measurement as no-ops for the duration of the block."""
    timed = model_side.interleaved
    model_side.interleaved = _unmeasured
    try:
        with recording(False):
            yield
    finally:
        model_side.interleaved = timed
