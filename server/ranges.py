"""HTTP conditional and range requests (RFC 9110): `If-None-Match`, `If-Range` and one `Range`."""

from __future__ import annotations

import re

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


class Unsatisfiable(Exception):
    """Raised when a byte range lies outside the representation (answered with 416)."""


def etag_matches(header: str | None, etag: str) -> bool:
    """True when an `If-None-Match` header names `etag` (weak or strong) or is `*`."""
    if not header:
        return False
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


def byte_range(header: str | None, size: int, if_range: str | None, etag: str) -> tuple[int, int] | None:
    """The (start, end inclusive) that a `Range` header asks for, or None to send the whole body.

    Several ranges, a malformed header, or an `If-Range` naming another version all fall back to the
    whole body, as RFC 9110 allows; a range entirely past the end raises Unsatisfiable.
    """
    if not header or (if_range is not None and if_range.strip() != etag):
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        suffix = int(last)
        if suffix == 0:
            raise Unsatisfiable
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        raise Unsatisfiable
    if end < start:
        return None
    return start, end
