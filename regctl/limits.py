"""The upload caps of the server a remote client talks to, asked once per client.

The caps are the server's (its REGCTL_MAX_BUNDLE_BYTES and REGCTL_MAX_WEIGHTS_BYTES), not this
machine's: a client refuses an upload the server would refuse, before it sends a byte.
"""

from __future__ import annotations

import weakref
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
_ASKED: weakref.WeakKeyDictionary[Any, ServerLimits] = weakref.WeakKeyDictionary()


def server_limits(get_json: Callable[..., Any]) -> ServerLimits:
    """The caps of the server behind `get_json` (a client's bound `_json`), asked once per client."""
    client = getattr(get_json, "__self__", get_json)
    known = _ASKED.get(client)
    if known is None:
        try:
            known = get_json("GET", LIMITS_PATH, ServerLimits)
        except NotFound:
            known = _OLDER_SERVER
        _ASKED[client] = known
    return known
