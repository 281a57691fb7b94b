"""The artifact store on a remote fsspec filesystem: `s3://bucket/prefix` through s3fs (`memory://` in tests).

An upload goes to `<root>/tmp/<uuid>` and is then moved with `fs.mv`; on S3 that is a server-side
copy, and an object only becomes visible to readers once its PUT or copy completes, so readers
never see a partial blob. The filesystem's transport failures become ServiceUnavailable naming
the store.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from regctl.registry.errors import RegctlError
from regctl.registry.errors.services import StoreUnreachable
from regctl.registry.store.base import ArtifactStore
from regctl.registry.store.blobs import IncompleteUpload, check_sha


def _storage_options(root: str) -> dict[str, Any]:
    """Options for remote filesystems: S3 fails fast when unreachable and honours a custom endpoint.

    Credentials and region come from the usual AWS variables; `AWS_ENDPOINT_URL_S3` (or
    `AWS_ENDPOINT_URL`) points at MinIO or another S3-compatible store.
    """
    if not root.startswith(("s3://", "s3a://")):
        return {}
    options: dict[str, Any] = {
        # one client per process (open_store), its pool bounded: enough for a server's threads at once
        "config_kwargs": {
            "connect_timeout": 3,
            "read_timeout": 60,
            "retries": {"max_attempts": 2},
            "max_pool_connections": 32,
        },
        "skip_instance_cache": True,
        # s3fs buffers 50 MB per open file by default; 8 MB parts keep memory flat and uploads multipart.
        "default_block_size": 8 << 20,
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_url"] = endpoint
    return options


class RemoteStore(ArtifactStore):
    """Blobs as objects under a prefix of any fsspec filesystem other than the local one."""

    def __init__(self, root: str) -> None:
        """Bind the store to the URL `root`; nothing is created until the first write."""
        super().__init__(root, **_storage_options(root))
        self.root = root.rstrip("/")

    @contextlib.contextmanager
    def _reachable(self) -> Iterator[None]:
        """Turn the filesystem's transport failures into ServiceUnavailable naming the store."""
        try:
            yield
        except (FileNotFoundError, IsADirectoryError, FileExistsError):
            raise
        except Exception as exc:  # ConnectionError, TimeoutError and botocore's own errors
            if isinstance(exc, RegctlError):
                raise
            raise StoreUnreachable(where=f"artifact store {self.root}", reason=exc) from exc

    def exists(self, sha256: str) -> bool:
        """Return True when the blob `sha256` is in the store (its content is not checked)."""
        key = self._key(check_sha(sha256))
        # Not fs.isfile: s3fs answers False when the endpoint is down, which would read as "missing".
        try:
            with self._reachable():
                self.fs.info(key)
        except FileNotFoundError:
            return False
        return True

    def _new_temp(self) -> str:
        return f"{self._base}/tmp/{uuid.uuid4().hex}"

    def _open_temp(self, tmp: str) -> BinaryIO:
        return self.fs.open(tmp, "wb")

    def _close_temp(self, f: BinaryIO) -> None:
        f.close()  # this is where the upload completes

    def _discard(self, tmp: str) -> None:
        with contextlib.suppress(Exception):  # best effort: the original error matters more
            self.fs.rm(tmp)

    def _move_into_place(self, tmp: str, key: str) -> None:
        with self._reachable():
            self.fs.mv(tmp, key)

    def _copy_into(self, sha256: str, f: BinaryIO, progress: Callable[[int], None] | None) -> int:
        copied = 0
        for chunk in self.open_chunks(sha256):
            f.write(chunk)
            copied += len(chunk)
            if progress is not None:
                progress(copied)
        return copied

    def _remove(self, path: str) -> None:
        self.fs.rm(path)

    def _refresh(self, sha256: str) -> None:
        """Nothing to do: an object's LastModified changes only by copying it; a reused one keeps its age."""

    def set_aside(self, path: str) -> str:
        """Move a file the listing returned into the store's trash/ (gc's first step); its new path."""
        trash = self._trash_key(path)
        with self._reachable():
            self.fs.mv(path, trash)
        return trash

    def put_back(self, trash: str, path: str) -> None:
        """Undo `set_aside`: a row came to name the blob while gc was deciding."""
        with self._reachable():
            self.fs.mv(trash, path)

    def incomplete_uploads(self) -> list[IncompleteUpload]:
        """S3 multipart uploads under this store's prefix never completed: a writer killed mid-upload.

        Their parts are billed storage no listing of objects shows; `regctl gc` aborts them once they
        are older than its grace period. Other filesystems have none.
        """
        if not hasattr(self.fs, "call_s3"):
            return []
        bucket, _, prefix = self._base.partition("/")
        found: list[IncompleteUpload] = []
        with self._reachable():
            pages = self.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix)
            for upload in pages.get("Uploads", []):
                started = upload["Initiated"].timestamp()
                found.append(IncompleteUpload(f"{bucket}/{upload['Key']}", upload["UploadId"], started))
        return found

    def abort_upload(self, upload: IncompleteUpload) -> None:
        """Abort `upload`: its parts are deleted; one already gone is not an error."""
        bucket, _, key = upload.key.partition("/")
        with self._reachable(), contextlib.suppress(FileNotFoundError):
            self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload.upload_id)

    def presign(self, sha256: str, expires_s: int = 300) -> str | None:
        """A time-limited URL that serves blob `sha256` without credentials (None where fs cannot sign)."""
        if not hasattr(self.fs, "sign"):
            return None
        with self._reachable():
            return str(self.fs.sign(self._key(check_sha(sha256)), expiration=expires_s))
