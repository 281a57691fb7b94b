"""What every regctl client can do, whether it talks HTTP (`Client`) or to this machine (`LocalClient`).

The CLI is written against this interface only, so a command behaves the same in both modes.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from regctl.registry.entities import (
    AliasInfo,
    AuditEntry,
    DeliveryInfo,
    FetchedArtifact,
    Identity,
    JobInfo,
    KeyInfo,
    ModelDetail,
    ModelSummary,
    NewToken,
    NewWebhook,
    PromotionRequestInfo,
    RegisteredVersion,
    TokenInfo,
    VersionInfo,
    VersionRow,
    WebhookInfo,
)
from regctl.registry.errors import RegctlError
from regctl.registry.requests import (
    RegisterRequest,
    SubmitRequest,
    TokenRequest,
    VersionQuery,
    WebhookRequest,
)

Progress = Callable[[int, int], None]


class WaitTimeout(RegctlError):
    """Raised when `wait` gives up before the job chain finished."""

    exit_code = 1
    template = (
        "job {job_id} is still {state} after {timeout:g}s; it goes on: wait longer, or follow it with "
        "'regctl jobs watch {job_id}'"
    )


class RegistryClient(abc.ABC):
    """The operations of a registry; each returns a typed record."""

    mode: str = ""

    @abc.abstractmethod
    def whoami(self) -> Identity:
        """Who this client acts as (a token's name and role, or the local user as admin)."""

    @abc.abstractmethod
    def models(self, search: str | None = None, *, limit: int = 100) -> list[ModelSummary]:
        """Every model this client may see; with `search`, the first `limit` whose name, description or
        tags contain that text (ignoring case)."""

    @abc.abstractmethod
    def model(self, name: str) -> ModelDetail:
        """A model with its newest versions and its aliases."""

    def versions(self, query: VersionQuery | str | None, **options: Any) -> list[VersionRow]:
        """The newest versions of a model (of every model when the name is None, each naming its model),
        filtered by status and tags; archived ones on request.

        `query` is a `VersionQuery`, or the model's name (or None) with the query's options as
        keywords: `versions("resnet", status="ready", tags={"team": "vision"}, limit=10)`.
        """
        return self._versions(_built(VersionQuery, query, options))

    @abc.abstractmethod
    def _versions(self, query: VersionQuery) -> list[VersionRow]:
        """Carry out `versions` with the query as built."""

    @abc.abstractmethod
    def version(self, ref: str) -> VersionInfo:
        """The version REF (NAME, NAME:VERSION or NAME@ALIAS) points at, with artifacts and jobs."""

    def register(
        self,
        request: RegisterRequest | str,
        directory: str | Path,
        *,
        progress: Progress | None = None,
        **options: Any,
    ) -> RegisteredVersion:
        """Register a model directory as the next version of a model; conversion starts unless told not to.

        `request` is a `RegisterRequest`, or the model's name with the request's options as keywords:
        `register("resnet", "models/resnet", method="trace", formats=("torchscript", "aoti"))`
        (see `regctl.registry.requests.RegisterRequest` for every option). When the code, weights and
        spec equal the newest version's, nothing is created and that version comes back with
        `unchanged=True` (its jobs as they stand); `new_version=True` registers a new one anyway.
        `progress(sent, total)` follows an upload to a server (a local client reads the files in place).
        """
        return self._register(_built(RegisterRequest, request, options), Path(directory), progress)

    @abc.abstractmethod
    def _register(
        self, request: RegisterRequest, directory: Path, progress: Progress | None
    ) -> RegisteredVersion:
        """Carry out `register` with the request as built."""

    @abc.abstractmethod
    def tag(self, ref: str, set_tags: dict[str, str], remove: tuple[str, ...] = ()) -> dict[str, str]:
        """Set and remove tags on a version; its tags afterwards."""

    @abc.abstractmethod
    def archive(self, ref: str, archived: bool = True) -> str:
        """Hide NAME:VERSION from NAME resolution and lists (or show it again)."""

    @abc.abstractmethod
    def delete_version(self, ref: str, *, force: bool = False) -> dict:
        """Delete NAME:VERSION; `force` also removes the aliases pointing at it."""

    @abc.abstractmethod
    def gc(self, *, dry_run: bool = False) -> dict:
        """Delete the blobs no row names (admin)."""

    def submit(self, request: SubmitRequest | str, kind: str | None = None, **options: Any) -> JobInfo:
        """Queue a `convert` or `validate` job for NAME:VERSION.

        `request` is a `SubmitRequest`, or the version's NAME:VERSION with the job's kind and its
        options as keywords: `submit("resnet:3", "convert", method="script")`.
        """
        return self._submit(_built(SubmitRequest, request, options, kind=kind))

    @abc.abstractmethod
    def _submit(self, request: SubmitRequest) -> JobInfo:
        """Carry out `submit` with the request as built."""

    @abc.abstractmethod
    def jobs(self, *, state: str | None = None, model: str | None = None, limit: int = 50) -> list[JobInfo]:
        """The newest jobs first."""

    @abc.abstractmethod
    def job(self, job_id: int) -> JobInfo:
        """One job."""

    @abc.abstractmethod
    def cancel(self, job_id: int) -> JobInfo:
        """Cancel a job (a running one stops at its next stage)."""

    @abc.abstractmethod
    def retry(self, job_id: int) -> JobInfo:
        """Queue a failed or cancelled job again."""

    @abc.abstractmethod
    def follow(self, job: JobInfo) -> Iterator[JobInfo]:
        """Yield the job at each change, then the job its success created, until the chain ends."""

    @abc.abstractmethod
    def alias(self, target: str, version: int, *, force: bool = False) -> AliasInfo:
        """Point NAME@ALIAS at VERSION; `force` (admins) overrides the promotion policy, and is audited."""

    @abc.abstractmethod
    def remove_alias(self, target: str) -> AliasInfo:
        """Remove NAME@ALIAS."""

    @abc.abstractmethod
    def alias_history(self, name: str) -> list[AliasInfo]:
        """Every change to a model's aliases, oldest first."""

    @abc.abstractmethod
    def request_alias(
        self, target: str, version: int, reason: str, *, force: bool = False
    ) -> PromotionRequestInfo:
        """Ask for the protected NAME@ALIAS to move to VERSION; a different admin approves it."""

    @abc.abstractmethod
    def approve_request(self, request_id: int, note: str | None = None) -> PromotionRequestInfo:
        """Approve a pending promotion request (an admin who did not file it): the alias moves."""

    @abc.abstractmethod
    def reject_request(self, request_id: int, note: str | None = None) -> PromotionRequestInfo:
        """Reject a pending promotion request (an admin, or its requester withdrawing it)."""

    @abc.abstractmethod
    def alias_requests(
        self, name: str | None = None, *, pending_only: bool = True, limit: int = 100
    ) -> list[PromotionRequestInfo]:
        """Promotion requests, newest first: the pending ones, or all with `pending_only=False`."""

    @abc.abstractmethod
    def fetch(
        self,
        ref: str,
        path: str | Path,
        *,
        kind: str = "torchscript",
        progress: Progress | None = None,
        presign: bool = False,
        create_dirs: bool = False,
    ) -> FetchedArtifact:
        """Copy an artifact to `path`; the file appears only once its sha256 is verified.

        `path` must be a new file or a regular file in an existing directory (regctl/destination.py;
        `create_dirs` makes the directory). `presign` asks a served S3-backed registry for the bytes
        straight from the store.
        """

    @abc.abstractmethod
    def stream(self, ref: str, sink: BinaryIO, *, kind: str = "torchscript") -> FetchedArtifact:
        """Write an artifact to `sink` as it arrives; raises CorruptedArtifact at the end on a mismatch."""

    @abc.abstractmethod
    def keys(self) -> list[KeyInfo]:
        """Every public key the registry signs (or signed) attestations with."""

    @abc.abstractmethod
    def attestation(self, ref: str, kind: str = "torchscript") -> bytes:
        """The signed attestations about an artifact of REF, one DSSE envelope per line."""

    @abc.abstractmethod
    def export_triton(
        self, ref: str, repo: str, *, max_batch_size: int | None = None, instance_kind: str = "cpu"
    ):  # type: ignore[no-untyped-def]
        """Write a ready version into a Triton model repository (a directory or fsspec URL)."""

    def create_token(self, request: TokenRequest | str, role: str | None = None, **options: Any) -> NewToken:
        """Create an API token (admin); the secret is returned once.

        `request` is a `TokenRequest`, or the token's name with its role and options as keywords:
        `create_token("ci", "writer", model_pattern="resnet*", expires="90d")`.
        """
        return self._create_token(_built(TokenRequest, request, options, role=role))

    @abc.abstractmethod
    def _create_token(self, request: TokenRequest) -> NewToken:
        """Carry out `create_token` with the request as built."""

    @abc.abstractmethod
    def tokens(self) -> list[TokenInfo]:
        """Every token (admin)."""

    @abc.abstractmethod
    def revoke_token(self, name: str) -> TokenInfo:
        """Revoke a token (admin)."""

    @abc.abstractmethod
    def audit(self, *, model: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries (admin)."""

    def add_webhook(
        self, request: WebhookRequest | str, events: Iterable[str] | None = None, **options: Any
    ) -> NewWebhook:
        """Add a webhook (admin); its signing secret is returned once.

        `request` is a `WebhookRequest`, or the URL with its events and options as keywords:
        `add_webhook("https://hooks.example.com/x", ["version.ready"], model_pattern="resnet*")`.
        """
        return self._add_webhook(_built(WebhookRequest, request, options, events=events))

    @abc.abstractmethod
    def _add_webhook(self, request: WebhookRequest) -> NewWebhook:
        """Carry out `add_webhook` with the request as built."""

    @abc.abstractmethod
    def webhooks(self, *, removed: bool = False) -> list[WebhookInfo]:
        """Every webhook (admin), never a secret; removed ones on request."""

    @abc.abstractmethod
    def remove_webhook(self, webhook_id: int) -> WebhookInfo:
        """Remove a webhook (admin)."""

    @abc.abstractmethod
    def webhook_deliveries(self, webhook_id: int, *, limit: int = 50) -> list[DeliveryInfo]:
        """A webhook's newest deliveries with their attempts (admin)."""

    @abc.abstractmethod
    def redeliver(self, delivery_id: int) -> DeliveryInfo:
        """Send a delivery again now (admin)."""

    def wait(self, job: JobInfo | int, timeout: float | None = None) -> JobInfo:
        """Follow a job chain to its end and return the last job (a convert's validate job, say).

        Raises WaitTimeout after `timeout` seconds; the job goes on (on the embedded default, where
        this process was running it, it goes back to the queue and runs when next followed).
        """
        current = self.job(job) if isinstance(job, int) else job
        deadline = None if timeout is None else time.monotonic() + timeout
        for update in self.follow(current):
            current = update
            if deadline is not None and time.monotonic() > deadline and not update.finished:
                raise WaitTimeout(job_id=update.id, state=update.state, timeout=timeout)
        return current

    def close(self) -> None:  # noqa: B027  (a hook: only the HTTP client holds connections)
        """Release connections (nothing to do for a local client)."""

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Request = TypeVar("Request", RegisterRequest, SubmitRequest, TokenRequest, WebhookRequest, VersionQuery)


def _built(
    cls: type[Request], request: Request | str | None, options: dict[str, Any], **second: Any
) -> Request:
    """The request a call asked for: given whole, or built here from its first field and its options.

    `second` is a call's second positional parameter (a job's kind, a token's role, a webhook's
    events) by name; None when the call left it out.
    """
    options = {**options, **{key: value for key, value in second.items() if value is not None}}
    if isinstance(request, cls):
        if options:
            raise TypeError(f"pass a {cls.__name__} or its options, not both (got {', '.join(options)})")
        return request
    return cls(request, **options)
