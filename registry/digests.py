"""The sha256 of a file: one helper for the store and for the judge, which must not import the store
(and with it fsspec) into a sandboxed process."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of the file at `path`, reading it in small buffers."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
