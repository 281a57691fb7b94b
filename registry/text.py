"""Text a model or a registrant controls, made safe to show: one rule for every exit.

The rule, applied by `visible` everywhere such text leaves regctl (the CLI, the worker's log, the
web pages, the job error the supervisor records):

- every *hidden* character is replaced by a visible escape in Python's notation (`\\x1b`,
  `\\u202e`, `\\U000e0041`), so a reader sees that something was there, and what;
- a character is hidden when its Unicode category is Cc (C0 controls, DEL, C1 controls: escape
  sequences, BEL, NUL, carriage return), Cf (format characters: the bidi marks, embeddings,
  overrides and isolates U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069; the zero-width
  U+200B-U+200D, U+2060, U+FEFF; invisible tag characters), Cs (lone surrogates, which no terminal
  can print) or Zl/Zp (U+2028, U+2029, which break a line where none seems to be);
- newline and tab stay as they are in multi-line text (tracebacks, details) and are escaped in
  text that must be one line;
- everything else stays as given, markup-like text included (`[bold]`, `<b>`): escaping for a
  medium is its renderer's job (rich `Text` in the CLI, Jinja2's autoescape on the pages).

A literal backslash is not escaped: `\\u202e` typed by a user reads the same as an escaped U+202E,
which hides nothing. Emoji joined by U+200D show their joiner as `\\u200d`; a price worth paying.

Registration refuses hidden characters outright in descriptions and tags (`check_text`): what is
stored there is what a registrant meant to write, so there is nothing to escape later.
This module imports nothing beyond the standard library and the registry's errors.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from regctl.registry.errors.inputs import HiddenCharacter

HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_LINE_CHARACTERS = frozenset("\n\t")


def is_hidden(char: str) -> bool:
    """True for a character the rule escapes (see the module's docstring); newline and tab count."""
    # isprintable() is False for every hidden category (and for some harmless ones): a fast C test first.
    return not char.isprintable() and unicodedata.category(char) in HIDDEN_CATEGORIES


def escape_char(char: str) -> str:
    """The visible escape of one character: `\\x1b`, `\\u202e` or `\\U000e0041`."""
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str, *, multiline: bool = True) -> str:
    """`text` with every hidden character replaced by its visible escape.

    `multiline` keeps newline and tab (tracebacks, details); without it they are escaped too.
    Idempotent: the escapes themselves are printable.
    """
    if text.isprintable():  # the common case, decided in C
        return text
    keep = _LINE_CHARACTERS if multiline else frozenset()
    return "".join(escape_char(c) if c not in keep and is_hidden(c) else c for c in text)


def visible_data(value: Any, *, multiline: bool = True) -> Any:
    """A copy of plain data (dicts, lists, tuples, strings) with `visible` applied to every string."""
    if isinstance(value, str):
        return visible(value, multiline=multiline)
    if isinstance(value, dict):
        return {
            visible_data(k, multiline=False): visible_data(v, multiline=multiline) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [visible_data(v, multiline=multiline) for v in value]
    return value


def first_hidden(text: str, *, multiline: bool = False) -> tuple[int, str] | None:
    """The position and escape of the first hidden character in `text`, or None when there is none."""
    if text.isprintable():
        return None
    for position, char in enumerate(text):
        if (not multiline or char not in _LINE_CHARACTERS) and is_hidden(char):
            return position, escape_char(char)
    return None


def check_text(what: str, text: str, *, multiline: bool = False) -> str:
    """`text` as given, or InvalidInput naming `what`, the hidden character and where it is."""
    found = first_hidden(text, multiline=multiline)
    if found is not None:
        position, escaped = found
        lines = "" if multiline else ", nor line breaks or tabs"
        raise HiddenCharacter(what=what, escaped=escaped, position=position, lines=lines)
    return text


def human_size(size: int) -> str:
    """`1.5 MB`-style size (powers of 1024)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
