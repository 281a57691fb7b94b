"""`Client.local()`: this machine's registry, through the same service layer the HTTP API uses.

Each method imports the service module it calls when it is called: a local command then loads only
the service (and the registry modules behind it) it uses. Importing all of them here added 110-130 ms
to a local `regctl models list` (measured after the CLI's start-up, three runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from regctl.client import Progress, RegistryClient
from regctl.destination import check_destination
from regctl.registry.access import Caller, local_caller
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
from regctl.registry.refs import parse_alias_ref
from regctl.registry.requests import (
    RegisterRequest,
    SubmitRequest,
    TokenRequest,
    VersionQuery,
    WebhookRequest,
)
from regctl.registry.settings import Settings


class LocalClient(RegistryClient):
    """Direct access with this machine's settings (database, store, broker); acts as the local user."""

    mode = "direct"

    def __init__(self, settings: Settings | None = None, caller: Caller | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.caller = caller or local_caller()

    def whoami(self) -> Identity:
        """The local user, trusted as an admin because it holds the database credentials."""
        return Identity(self.caller.name, self.caller.role, self.caller.model_pattern)

    def models(self, search: str | None = None, *, limit: int = 100) -> list[ModelSummary]:
        """Every model, by name; with `search`, those whose name, description or tags contain it."""
        from regctl.service.models import list_models

        if search is not None and search.strip():
            from regctl.registry.search import ModelSearch
            from regctl.service.catalog import search_models

            return search_models(self.settings, self.caller, ModelSearch(search, limit))
        return list_models(self.settings, self.caller)

    def model(self, name: str) -> ModelDetail:
        """A model with its newest versions and its aliases."""
        from regctl.service.models import show_model

        return show_model(self.settings, self.caller, name)

    def _versions(self, query: VersionQuery) -> list[VersionRow]:
        """The newest versions of a model, or of every model when the query names none."""
        from regctl.service.models import list_versions

        return list_versions(self.settings, self.caller, query)

    def version(self, ref: str) -> VersionInfo:
        """The version REF points at."""
        from regctl.service.models import show_version

        return show_version(self.settings, self.caller, ref)

    def _register(
        self, request: RegisterRequest, directory: Path, progress: Progress | None
    ) -> RegisteredVersion:
        """Register a model directory (or find it unchanged); in embedded mode its jobs run when followed."""
        from regctl.service.models import register_directory

        return register_directory(self.settings, self.caller, request, directory)

    def tag(self, ref: str, set_tags: dict[str, str], remove: tuple[str, ...] = ()) -> dict[str, str]:
        """Set and remove tags on a version."""
        from regctl.service.lifecycle import tag_version

        return tag_version(self.settings, self.caller, ref, set_tags, remove)

    def archive(self, ref: str, archived: bool = True) -> str:
        """Archive or unarchive NAME:VERSION."""
        from regctl.service.lifecycle import archive_version

        return archive_version(self.settings, self.caller, ref, archived)

    def delete_version(self, ref: str, *, force: bool = False) -> dict:
        """Delete NAME:VERSION."""
        from regctl.service.lifecycle import delete_version

        return delete_version(self.settings, self.caller, ref, force=force)

    def gc(self, *, dry_run: bool = False) -> dict:
        """Delete the blobs no row names."""
        from regctl.service.lifecycle import collect_garbage

        return collect_garbage(self.settings, self.caller, dry_run=dry_run)

    def _submit(self, request: SubmitRequest) -> JobInfo:
        """Queue a job for NAME:VERSION."""
        from regctl.service.jobs import submit

        return submit(self.settings, self.caller, request)

    def jobs(self, *, state: str | None = None, model: str | None = None, limit: int = 50) -> list[JobInfo]:
        """The newest jobs first."""
        from regctl.service.jobs import list_jobs

        return list_jobs(self.settings, self.caller, state=state, model=model, limit=limit)

    def job(self, job_id: int) -> JobInfo:
        """One job."""
        from regctl.service.jobs import show_job

        return show_job(self.settings, self.caller, job_id)

    def cancel(self, job_id: int) -> JobInfo:
        """Cancel a job."""
        from regctl.service.jobs import cancel

        return cancel(self.settings, self.caller, job_id)

    def retry(self, job_id: int) -> JobInfo:
        """Queue a failed or cancelled job again."""
        from regctl.service.jobs import retry

        return retry(self.settings, self.caller, job_id)

    def follow(self, job: JobInfo) -> Iterator[JobInfo]:
        """Follow the job chain; without a broker the jobs run in child processes of this one."""
        from regctl.service.jobs import follow

        return follow(self.settings, self.caller, job)

    def alias(self, target: str, version: int, *, force: bool = False) -> AliasInfo:
        """Point NAME@ALIAS at VERSION; `force` overrides the promotion policy, and is audited."""
        from regctl.service.aliases import set_alias

        ref = parse_alias_ref(target)
        return set_alias(self.settings, self.caller, ref.name, ref.alias or "", version, force=force)

    def remove_alias(self, target: str) -> AliasInfo:
        """Remove NAME@ALIAS."""
        from regctl.service.aliases import remove_alias

        ref = parse_alias_ref(target)
        return remove_alias(self.settings, self.caller, ref.name, ref.alias or "")

    def alias_history(self, name: str) -> list[AliasInfo]:
        """Every change to a model's aliases."""
        from regctl.service.aliases import alias_history

        return alias_history(self.settings, self.caller, name)

    def request_alias(
        self, target: str, version: int, reason: str, *, force: bool = False
    ) -> PromotionRequestInfo:
        """Ask for the protected NAME@ALIAS to move to VERSION; a different admin approves it."""
        from regctl.service.promotion_requests import file_request

        ref = parse_alias_ref(target)
        alias = ref.alias or ""
        return file_request(self.settings, self.caller, ref.name, alias, version, reason, force=force)

    def approve_request(self, request_id: int, note: str | None = None) -> PromotionRequestInfo:
        """Approve a pending promotion request (an admin who did not file it): the alias moves."""
        from regctl.service.promotion_requests import approve_request

        return approve_request(self.settings, self.caller, request_id, note)

    def reject_request(self, request_id: int, note: str | None = None) -> PromotionRequestInfo:
        """Reject a pending promotion request (an admin, or its requester withdrawing it)."""
        from regctl.service.promotion_requests import reject_request

        return reject_request(self.settings, self.caller, request_id, note)

    def alias_requests(
        self, name: str | None = None, *, pending_only: bool = True, limit: int = 100
    ) -> list[PromotionRequestInfo]:
        """Promotion requests, newest first: the pending ones, or all with `pending_only=False`."""
        from regctl.service.promotion_requests import list_requests

        return list_requests(self.settings, self.caller, name, pending_only=pending_only, limit=limit)

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
        """Copy an artifact to `path`, verified; `presign` changes nothing (the store is read directly)."""
        from regctl.service.artifacts import fetch_artifact

        check_destination(Path(path), create_dirs=create_dirs)
        version_ref, artifact = fetch_artifact(self.settings, self.caller, ref, Path(path), kind, progress)
        return FetchedArtifact(version_ref, str(path), artifact)

    def stream(self, ref: str, sink: BinaryIO, *, kind: str = "torchscript") -> FetchedArtifact:
        """Write an artifact to `sink` chunk by chunk; a checksum mismatch raises after the last chunk."""
        from regctl.registry.store import open_store
        from regctl.service.artifacts import find_artifact

        version_ref, artifact = find_artifact(self.settings, self.caller, ref, kind)
        for chunk in open_store(self.settings.artifact_store).open_chunks(artifact.sha256):
            sink.write(chunk)
        sink.flush()
        return FetchedArtifact(version_ref, "-", artifact)

    def keys(self) -> list[KeyInfo]:
        """Every public key the registry signs (or signed) attestations with."""
        from regctl.service.provenance import list_keys

        return list_keys(self.settings)

    def attestation(self, ref: str, kind: str = "torchscript") -> bytes:
        """The signed attestations about an artifact of REF, one DSSE envelope per line."""
        from regctl.service.provenance import attestation_of

        return attestation_of(self.settings, self.caller, ref, kind)[2]

    def export_triton(
        self, ref: str, repo: str, *, max_batch_size: int | None = None, instance_kind: str = "cpu"
    ):  # type: ignore[no-untyped-def]
        """Write a ready version into a Triton model repository."""
        from regctl.service.deploy import export_triton

        return export_triton(
            self.settings, self.caller, ref, repo, max_batch_size=max_batch_size, instance_kind=instance_kind
        )

    def _create_token(self, request: TokenRequest) -> NewToken:
        """Create an API token; run on the server host, this is how the first admin token is made."""
        from regctl.service.admin import create_token

        return create_token(self.settings, self.caller, request)

    def tokens(self) -> list[TokenInfo]:
        """Every token."""
        from regctl.service.admin import list_tokens

        return list_tokens(self.settings, self.caller)

    def revoke_token(self, name: str) -> TokenInfo:
        """Revoke a token."""
        from regctl.service.admin import revoke_token

        return revoke_token(self.settings, self.caller, name)

    def audit(self, *, model: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries."""
        from regctl.service.admin import list_audit

        return list_audit(self.settings, self.caller, model=model, limit=limit)

    def _add_webhook(self, request: WebhookRequest) -> NewWebhook:
        """Add a webhook; its signing secret is returned once."""
        from regctl.service.webhooks import add_webhook

        return add_webhook(self.settings, self.caller, request)

    def webhooks(self, *, removed: bool = False) -> list[WebhookInfo]:
        """Every webhook, never a secret."""
        from regctl.service.webhooks import list_webhooks

        return list_webhooks(self.settings, self.caller, removed=removed)

    def remove_webhook(self, webhook_id: int) -> WebhookInfo:
        """Remove a webhook."""
        from regctl.service.webhooks import remove_webhook

        return remove_webhook(self.settings, self.caller, webhook_id)

    def webhook_deliveries(self, webhook_id: int, *, limit: int = 50) -> list[DeliveryInfo]:
        """A webhook's newest deliveries with their attempts."""
        from regctl.service.webhooks import list_deliveries

        return list_deliveries(self.settings, self.caller, webhook_id, limit=limit)

    def redeliver(self, delivery_id: int) -> DeliveryInfo:
        """Send a delivery again now; without a broker, from a background thread of this process."""
        from regctl.service.webhooks import redeliver

        return redeliver(self.settings, self.caller, delivery_id)
