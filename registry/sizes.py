"""Byte counts as people read them, one way for the terminal and the pages."""

from __future__ import annotations


def human_size(size: int) -> str:
    """`1.5 MB`-style size (powers of 1024)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
