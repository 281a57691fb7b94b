"""The battery's secret seed: drawn by the trusted side of a job, never by model code.

The supervisor draws one per job after the candidate builder's files are sealed and hands it only
to the reference runner and the judge (worker/supervisor/supervisor.py); the report records it, so a validate
job can draw the same battery again. torch-free, so the supervisor can use it.
"""

from __future__ import annotations

import secrets

SEED_BITS = 62  # fits torch.Generator's signed 64-bit seed with room for the per-case offsets


def draw_seed() -> int:
    """A fresh battery seed from the operating system's CSPRNG."""
    return secrets.randbits(SEED_BITS)
