"""The upload caps of the server a remote client talks to (the client asks once and keeps them).

The caps are the server's (its REGCTL_MAX_BUNDLE_BYTES and REGCTL_MAX_WEIGHTS_BYTES), not this
machine's: a client refuses an upload the server would refuse, before it sends a byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from regctl.registry.errors import NotFound
from regctl.registry.settings import Settings

LIMITS_PATH = "/limits"


@dataclass(frozen=True)
class ServerLimits:
    """What the server accepts in one registration upload, in bytes."""

    max_bundle_bytes: int
    max_weights_bytes: int


# The class defaults, for a server from before /limits: it still checks the upload itself.
_OLDER_SERVER = ServerLimits(Settings.max_bundle_bytes, Settings.max_weights_bytes)


def server_limits(get_json: Callable[..., Any]) -> ServerLimits:
    """The caps of the server behind `get_json` (a client's `_json`); the defaults for an older server."""
    try:
        return get_json("GET", LIMITS_PATH, ServerLimits)
    except NotFound:
        return _OLDER_SERVER
