"""The model card: a version's `README.md`, markdown kept as written and shown on its pages.

A card is read from the model directory at registration (it travels in the source bundle, so an
upload to a server carries it too) and stored with the version. It is bounded (MAX_CARD_BYTES) and
must be UTF-8 text without hidden characters (registry/text.py's rule, for multi-line text):
Windows line endings become newlines and a leading byte-order mark is dropped, since editors write
both without anyone seeing them; every other control, bidi or zero-width character is refused.
Rendering it safely is the pages' job (server/cards.py); the API hands out the markdown as stored.
"""

from __future__ import annotations

from pathlib import Path

from regctl.registry.errors import InvalidInput, InvalidSpec
from regctl.registry.errors.files import CardNotAFile, CardNotText, CardNotUtf8, CardTooLarge
from regctl.registry.text import check_text

CARD_FILENAME = "README.md"
MAX_CARD_BYTES = 256 * 1024


def card_file(directory: Path) -> Path | None:
    """The card file of a model directory, or None when it has none (a folder of that name is refused)."""
    path = directory / CARD_FILENAME
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_file():
        raise CardNotAFile(path=path)
    return path


def read_card(directory: Path) -> str | None:
    """The checked card of `directory` (its README.md), or None; InvalidSpec in one line when it is bad."""
    path = card_file(directory)
    if path is None:
        return None
    with path.open("rb") as source:  # read one byte past the cap: a huge file is never read whole
        data = source.read(MAX_CARD_BYTES + 1)
    return check_card(data, str(path))


def check_card(data: bytes | str, where: str = "the model card") -> str:
    """Card text as stored: UTF-8, at most MAX_CARD_BYTES, newlines only, nothing hidden; else InvalidSpec."""
    if not isinstance(data, bytes | str):
        raise CardNotText(where=where, kind=type(data).__name__)
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > MAX_CARD_BYTES:
        raise CardTooLarge(where=where, limit_kb=MAX_CARD_BYTES // 1024)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CardNotUtf8(where=where, position=exc.start) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    try:
        return check_text(where, text, multiline=True)
    except InvalidInput as exc:  # a card belongs to the model directory: refused like its spec
        raise InvalidSpec(str(exc)) from None
