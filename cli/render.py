"""Rendering for humans (rich tables) and machines (`--json`: one JSON document on stdout).

Every text a human sees goes out through this module: `table`, `fields`, `echo` and `status_text`.
What a model or a registrant wrote (job errors, progress, warnings, descriptions, tags) is shown as
text, never as markup: cells are rich `Text` objects, which rich never parses for `[style]` tags,
and hidden characters (controls, escape sequences, bidi overrides, zero-width characters) become
visible escapes by the one rule of registry/text.py. `--json` prints the stored data unchanged:
JSON's own escaping already keeps it inert.

rich is imported inside the functions that draw, never at the top: it costs 16–26 ms (measured with
-X importtime), which `--json`, `--help` and every plain-text line would otherwise pay.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from regctl.registry.text import visible

if TYPE_CHECKING:
    from rich.text import Text


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def console(stderr: bool = False):  # type: ignore[no-untyped-def]
    """A rich console (rich is lazy: see the module docstring).

    Markup and emoji codes are off: a string that reaches it by mistake is still printed as text.
    """
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False, markup=False, emoji=False)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a rich table."""
    from rich.table import Table

    out = Table(title=_title(title), title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*(_cell(cell) for cell in row))
    console().print(out)


def fields(title: str, pairs: Iterable[tuple[str, Any]]) -> None:
    """Print a two-column key/value table."""
    from rich.table import Table

    out = Table(title=_title(title), title_justify="left", show_header=False, box=None, padding=(0, 2))
    out.add_column(style="bold")
    out.add_column()
    for key, value in pairs:
        out.add_row(_cell(key), _cell(value))
    console().print(out)


def echo(message: Any, *, err: bool = False) -> None:
    """Print one line (or a few) as plain text, hidden characters escaped; click.echo does no markup."""
    click.echo(shown(message), err=err)


def status_text(message: Any) -> Text:
    """Text for a rich live status (spinner): never parsed as markup, hidden characters escaped."""
    return _cell(message)


def shown(value: Any, *, multiline: bool = True) -> str:
    """A value as a human reads it: `fmt`, then hidden characters escaped (registry/text.py)."""
    return visible(fmt(value), multiline=multiline)


def _title(title: str | None) -> Text | None:
    return None if title is None else _cell(title)


def _cell(value: Any) -> Text:
    from rich.text import Text

    return Text(shown(value))


def fmt(value: Any) -> str:
    """A cell as text: times to the second, None as '-', sizes as given."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)
