"""Byte chunks: `read_chunks` reads a file as chunks and `ChunkReader` reads chunks as a file.

The one pair every streaming copy uses (the store, bundles, exports, the remote client); a module
of its own so that the remote client gets it without the store and fsspec.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

CHUNK_SIZE = 1 << 20


def read_chunks(f: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield what `f` holds, `chunk_size` bytes at a time."""
    while chunk := f.read(chunk_size):
        yield chunk


class ChunkReader:
    """A read-only, forward-only file over an iterable of byte chunks (what tarfile reads from).

    `read(n)` returns `n` bytes unless the chunks ran out: tarfile.addfile takes a short read for the
    end of the data.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()  # deleting from its front is cheap, unlike slicing bytes

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left when `size` < 0); b"" at the end."""
        if size < 0:
            rest = bytes(self._buffer) + b"".join(self._chunks)
            self._buffer.clear()
            return rest
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        piece = bytes(self._buffer[:size])
        del self._buffer[:size]
        return piece

    def drain(self) -> None:
        """Read what is left unseen, so a verifying stream runs its end-of-stream check."""
        self._buffer.clear()
        for _ in self._chunks:
            pass
