"""The server's copies of small blobs: read from the store once, again when the file changed, bounded."""

from __future__ import annotations

from regctl.server.verified import SmallBlobs


def test_a_small_blob_is_read_from_the_store_once_per_identity_and_the_cache_is_bounded() -> None:
    reads: list[str] = []

    def read(sha256: str) -> bytes:
        reads.append(sha256)
        return sha256.encode() * 100

    blobs = SmallBlobs(max_bytes=1000)
    assert blobs.read("a" * 4, None, read) == blobs.read("a" * 4, None, read) == b"aaaa" * 100
    assert reads == ["aaaa"]  # an object store's copy: kept
    blobs.read("b" * 4, (1, 2), read)
    blobs.read("b" * 4, (1, 3), read)  # the local file was rewritten: read and checked again
    assert reads == ["aaaa", "bbbb", "bbbb"]
    blobs.read("c" * 4, None, read)  # 400 + 400 + 400 bytes > 1000: the oldest goes
    blobs.read("a" * 4, None, read)
    assert reads[-1] == "aaaa" and len(reads) == 5
    big = SmallBlobs(max_bytes=10)
    assert big.read("d" * 4, None, read) == b"dddd" * 100  # larger than the cache: served, not kept
    big.read("d" * 4, None, read)
    assert reads[-2:] == ["dddd", "dddd"]
