"""Which versions an alias may point at: the promotion policy (pure rules, no I/O).

Any alias points only at a `ready` version: one that failed, was cancelled or was never converted
proves nothing. A protected alias (REGCTL_PROTECTED_ALIASES, `prod`) asks more: the version's
TorchScript artifact carries an attestation the registry signed, and it was proved under a torch
that REGCTL_PROMOTION_TORCH lists (when it lists any). An admin may still move an alias with
`--force`; the refusal it overrode is recorded in the audit trail and the alias history's detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """What the policy looks at in a version."""

    status: str
    signed: bool  # its TorchScript artifact has an attestation
    torch: str | None  # the torch its TorchScript artifact was proved under


def refusal(candidate: Candidate, *, protected: bool, allowed_torch: Sequence[str]) -> str | None:
    """Why the alias may not move to this version, or None when it may."""
    if candidate.status != "ready":
        return {
            "failed": "it failed its conversion or validation, so nothing about it is proved",
            "cancelled": "its conversion was cancelled, so nothing about it is proved",
            "registered": "it was never converted",
        }.get(candidate.status, f"it is still {candidate.status}, not ready")
    if not protected:
        return None
    if not candidate.signed:
        return "it carries no signed attestation (run 'regctl keys init', then validate it again)"
    if allowed_torch and candidate.torch not in allowed_torch:
        listed = ", ".join(allowed_torch)
        torch = candidate.torch
        return f"it was proved under torch {torch}, which REGCTL_PROMOTION_TORCH ({listed}) does not list"
    return None
