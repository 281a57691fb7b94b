"""Rendering for humans (rich tables) and machines (`--json`: one JSON document on stdout)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def console(stderr: bool = False):  # type: ignore[no-untyped-def]
    """A rich console; imported lazily so JSON output never pays for rich."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a rich table."""
    from rich.table import Table

    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*(fmt(cell) for cell in row))
    console().print(out)


def fields(title: str, pairs: Iterable[tuple[str, Any]]) -> None:
    """Print a two-column key/value table."""
    from rich.table import Table

    out = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    out.add_column(style="bold")
    out.add_column()
    for key, value in pairs:
        out.add_row(key, fmt(value))
    console().print(out)


def fmt(value: Any) -> str:
    """A cell as text: times to the second, None as '-', sizes as given."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)
