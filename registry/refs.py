"""Names and references: `NAME`, `NAME:VERSION`, `NAME@ALIAS`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from regctl.registry.errors import InvalidInput
from regctl.registry.errors.lookup import (
    BadRefVersion,
    InvalidAliasName,
    InvalidModelName,
    RefWithoutAlias,
    RefWithoutVersion,
    UnparsedRef,
)
from regctl.registry.names import alias_key

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # always fullmatch: `$` would allow a "\n"
MAX_VERSION = 2**31 - 1  # the database's integer column
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_DIGITS = re.compile(r"[0-9]{1,10}")  # ASCII only: str.isdigit() also takes "²" and "٣"


@dataclass(frozen=True)
class Ref:
    """A parsed reference: exactly one of `version` and `alias` is set, or neither (newest ready)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def check_model_name(name: str) -> str:
    """Return `name` if it is a valid model name, else raise InvalidInput saying what is allowed."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidModelName(name=name)
    return name


def check_alias_name(alias: str) -> str:
    """`alias` as stored (lowercase: `PROD` is `prod`) if valid, else InvalidInput; starts with a letter."""
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise InvalidAliasName(alias=alias)
    return alias_key(alias)


def parse_ref(text: str) -> Ref:
    """Parse `NAME`, `NAME:VERSION` or `NAME@ALIAS`; raise InvalidInput with the accepted forms."""
    if not text or text.count(":") + text.count("@") > 1:
        raise UnparsedRef(text=text)
    if ":" in text:
        name, _, number = text.partition(":")
        if not _DIGITS.fullmatch(number) or not 1 <= int(number) <= MAX_VERSION:
            raise BadRefVersion(text=text, number=number)
        return Ref(check_model_name(name), version=int(number))
    if "@" in text:
        name, _, alias = text.partition("@")
        return Ref(check_model_name(name), alias=check_alias_name(alias))
    try:
        return Ref(check_model_name(text))
    except InvalidInput:
        raise UnparsedRef(text=text) from None


def parse_alias_ref(text: str) -> Ref:
    """Parse a reference that must name an alias (`NAME@ALIAS`)."""
    ref = parse_ref(text)
    if ref.alias is None:
        raise RefWithoutAlias(text=text, name=ref.name)
    return ref


def parse_version_ref(text: str) -> Ref:
    """Parse a reference that must name an exact version (`NAME:VERSION`)."""
    ref = parse_ref(text)
    if ref.version is None:
        raise RefWithoutVersion(text=text, name=ref.name)
    return ref
