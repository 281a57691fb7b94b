"""When two names are the same name to a reader: model names and aliases compared as they look.

Model names are ASCII letters, digits, '.', '_' and '-' (refs.py), so the look-alikes left are case
and the characters Unicode's confusables table (UTS #39) maps together within that set: capital I
and digit 1 read as lowercase l, digit 0 as o. Case folded first, capital I is also i, so i, I, l
and 1 share one class. A model's `name_key` is that skeleton, unique in the database, so `LINEAR`,
`1inear` or `Iinear` cannot be registered beside `linear`. Aliases compare by case
alone and are kept lowercase: `linear@PROD` is `linear@prod`, protected like it.
"""

from __future__ import annotations

_LOOK_ALIKE = str.maketrans({"0": "o", "1": "l", "i": "l"})


def name_key(name: str) -> str:
    """The skeleton two model names share when a reader could take one for the other."""
    return name.lower().translate(_LOOK_ALIKE)


def alias_key(alias: str) -> str:
    """The one spelling an alias is stored, looked up and protected under: lowercase."""
    return alias.lower()
