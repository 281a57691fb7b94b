"""`Client(url, token)`: a registry served by `regctl serve`, over HTTP with httpx.

Errors come back as the same regctl errors (and so the same CLI exit codes) the server raised.
Downloads are verified against the sha256 the server announces and resume with `Range` after a
dropped connection. Job following reads the server-sent-event stream.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from functools import cache, cached_property
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import httpx

from regctl.client import Progress, RegistryClient
from regctl.destination import check_destination
from regctl.downloads import Downloader, segment
from regctl.events import job_events
from regctl.limits import ServerLimits, server_limits
from regctl.login import check_url, find_login
from regctl.registry.chunks import read_chunks
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
from regctl.registry.errors import (
    NotFound,
    RegctlError,
    ServiceUnavailable,
    TooManyRequests,
    error_classes,
)
from regctl.registry.errors.services import DownloadMismatch, ServerUnreachable
from regctl.registry.lineage import with_git
from regctl.registry.refs import check_model_name, parse_alias_ref, parse_ref, parse_version_ref
from regctl.registry.requests import (
    RegisterRequest,
    SubmitRequest,
    TokenRequest,
    VersionQuery,
    WebhookRequest,
)
from regctl.retries import MAX_WAIT_S, WAITS, RetryAfterTransport, reconnecting, retry_after

T = TypeVar("T")


@cache
def _adapter(kind: Any):  # type: ignore[no-untyped-def]
    from pydantic import TypeAdapter  # 15-40 ms: paid with the first answer, not by `import regctl`

    return TypeAdapter(kind)


def _parse(kind: type[T] | Any, data: Any) -> T:
    return _adapter(kind).validate_python(data)


class Client(RegistryClient):
    """A remote registry: `Client("https://regctl.example.com", token)`."""

    mode = "remote"

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.url = check_url(url)
        headers = {"User-Agent": "regctl-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
            transport=RetryAfterTransport(),  # a rate-limited answer is waited out (regctl/retries.py)
        )

    @classmethod
    def local(cls, settings: Any = None) -> RegistryClient:
        """This machine's registry, with the REGCTL_* settings (or `settings`)."""
        from regctl.local import LocalClient  # the database layer: only for a local registry

        return LocalClient(settings)

    @classmethod
    def from_env(cls) -> RegistryClient:
        """REGCTL_URL and REGCTL_TOKEN (or `regctl login`'s file) when set, else `Client.local()`."""
        login = find_login()
        return cls(login.url, login.token) if login else cls.local()

    @cached_property
    def _server_limits(self) -> ServerLimits:
        # Asked once per client: a server's caps do not change while a client talks to it.
        return server_limits(self._json)

    @property
    def _downloads(self) -> Downloader:
        # Made per use, so it always rides on the client's current connection pool.
        return Downloader(self._http, self._error, self._unreachable)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- transport ---------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _json(self, method: str, path: str, kind: Any, **kwargs: Any) -> Any:
        return _parse(kind, self._send(method, path, **kwargs).json())

    def _unreachable(self, exc: Exception) -> ServiceUnavailable:
        return ServerUnreachable(url=self.url, reason=f"{type(exc).__name__}: {exc}")

    def _error(self, response: httpx.Response) -> RegctlError:
        try:
            body = response.json()["error"]
            code, message = str(body["code"]), str(body["message"])
        except Exception:
            code, message = "", f"HTTP {response.status_code} {response.reason_phrase}"
        cls = error_classes().get(code)
        if cls is None:
            cls = {401: "unauthenticated", 403: "not_allowed", 404: "not_found", 422: "invalid_input"}.get(
                response.status_code, "service_unavailable" if response.status_code >= 500 else "error"
            )
            cls = error_classes()[cls]
        error = cls(message)
        wait = retry_after(response)
        if wait is not None:  # TooManyRequests.retry_after: when the server said to come back
            error.fields = {**error.fields, "retry_after": wait}
        return error

    # -- reading -----------------------------------------------------------------------------------

    def whoami(self) -> Identity:
        """Who the token acts as."""
        return self._json("GET", "/whoami", Identity)

    def models(self, search: str | None = None, *, limit: int = 100) -> list[ModelSummary]:
        """Every model the token may see; with `search`, those whose name, description or tags contain it."""
        params = {"q": search, "limit": limit} if search is not None and search.strip() else {}
        return self._json("GET", "/models", list[ModelSummary], params=params)

    def model(self, name: str) -> ModelDetail:
        """A model with its newest versions and its aliases."""
        return self._json("GET", f"/models/{segment(check_model_name(name))}", ModelDetail)

    def _versions(self, query: VersionQuery) -> list[VersionRow]:
        """The newest versions of a model, or of every model when the query names none."""
        archived = "true" if query.archived else "false"
        params: list[tuple[str, Any]] = [("limit", query.limit), ("archived", archived)]
        params += [("status", query.status)] if query.status else []
        params += [("tag", f"{k}={v}") for k, v in query.tags.items()]
        path = "/versions" if query.name is None else f"/models/{segment(query.name)}/versions"
        return self._json("GET", path, list[VersionRow], params=params)

    def tag(self, ref: str, set_tags: dict[str, str], remove: tuple[str, ...] = ()) -> dict[str, str]:
        """Set and remove tags on a version."""
        body = {"set": set_tags, "remove": list(remove)}
        return self._json(
            "PATCH", f"/versions/{segment(str(parse_ref(ref)))}/tags", dict[str, str], json=body
        )

    def archive(self, ref: str, archived: bool = True) -> str:
        """Archive or unarchive NAME:VERSION."""
        path = f"/versions/{segment(str(parse_version_ref(ref)))}/archive"
        return self._json("POST" if archived else "DELETE", path, dict)["ref"]

    def delete_version(self, ref: str, *, force: bool = False) -> dict:
        """Delete NAME:VERSION (admin)."""
        params = {"force": "true" if force else "false"}
        return self._json("DELETE", f"/versions/{segment(str(parse_version_ref(ref)))}", dict, params=params)

    def gc(self, *, dry_run: bool = False) -> dict:
        """Delete the blobs no row names (admin)."""
        return self._json("POST", "/gc", dict, params={"dry_run": "true" if dry_run else "false"})

    def version(self, ref: str) -> VersionInfo:
        """The version REF points at."""
        return self._json("GET", f"/versions/{segment(str(parse_ref(ref)))}", VersionInfo)

    def alias_history(self, name: str) -> list[AliasInfo]:
        """Every change to a model's aliases."""
        return self._json("GET", f"/models/{segment(check_model_name(name))}/alias-history", list[AliasInfo])

    def jobs(self, *, state: str | None = None, model: str | None = None, limit: int = 50) -> list[JobInfo]:
        """The newest jobs first."""
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["state"] = state
        if model:
            params["model"] = check_model_name(model)
        return self._json("GET", "/jobs", list[JobInfo], params=params)

    def job(self, job_id: int) -> JobInfo:
        """One job."""
        return self._json("GET", f"/jobs/{int(job_id)}", JobInfo)

    # -- changing ----------------------------------------------------------------------------------

    def _register(
        self, request: RegisterRequest, directory: Path, progress: Progress | None
    ) -> RegisteredVersion:
        """Build the bundle here (the same checks as a local register) and upload it.

        The git commit is read here, from the work tree the bundle comes from, and sent with it.
        """
        # ~65 ms with the spec's pydantic models, which only a registration needs (measured)
        from regctl.registry.bundle import build_bundle, weights_file
        from regctl.registry.spec import prepare_spec

        spec = prepare_spec(directory, request.method, request.device, request.formats)
        lineage = request.lineage
        params: list[tuple[str, Any]] = [("convert", "true" if request.convert else "false")]
        params += [("new_version", "true")] if request.new_version else []
        params += [("format", f) for f in request.formats or ()]
        for key, value in (
            ("method", request.method),
            ("device", request.device),
            ("description", lineage.description),
        ):
            if value is not None:
                params.append((key, value))
        params += [("tag", f"{k}={v}") for k, v in lineage.tags.items()]
        params += [("run_url", lineage.run_url)] if lineage.run_url else []
        with tempfile.TemporaryDirectory(prefix="regctl-bundle-") as tmp:
            caps = self._server_limits  # the server's caps, not this machine's
            weights_file(directory, spec, caps.max_weights_bytes)  # refused here rather than after an upload
            upload = Path(tmp) / "upload.tar"
            bundle = build_bundle(directory, spec, upload, caps.max_bundle_bytes, include_weights=True)
            lineage = with_git(lineage, directory, [*bundle.files, *spec.data_files()])
            params += [("git_commit", lineage.git_commit)] if lineage.git_commit else []
            if lineage.git_dirty is not None:
                params.append(("git_dirty", "true" if lineage.git_dirty else "false"))
            for waited in range(WAITS + 1):
                try:
                    return self._upload(request.name, bundle.path, bundle.size, params, progress)
                except TooManyRequests as exc:  # too many uploads of this token at once: wait and resend
                    wait = exc.retry_after
                    if wait is None or wait > MAX_WAIT_S or waited == WAITS:
                        raise
                    time.sleep(wait)
            raise AssertionError("unreachable")

    def _upload(
        self, name: str, bundle: Path, size: int, params: list[tuple[str, Any]], progress: Progress | None
    ) -> RegisteredVersion:
        with bundle.open("rb") as body:
            headers = {"Content-Type": "application/x-tar", "Content-Length": str(size)}
            return self._json(
                "POST",
                f"/models/{segment(name)}/versions",
                RegisteredVersion,
                params=params,
                content=_chunks(body, progress, size),
                headers=headers,
                timeout=httpx.Timeout(30.0, read=600.0),
            )

    def _submit(self, request: SubmitRequest) -> JobInfo:
        """Queue a job for NAME:VERSION."""
        body = {"kind": request.kind, "method": request.method, "device": request.device}
        return self._json("POST", f"/versions/{segment(request.ref)}/jobs", JobInfo, json=body)

    def cancel(self, job_id: int) -> JobInfo:
        """Cancel a job."""
        return self._json("POST", f"/jobs/{int(job_id)}/cancel", JobInfo)

    def retry(self, job_id: int) -> JobInfo:
        """Queue a failed or cancelled job again."""
        return self._json("POST", f"/jobs/{int(job_id)}/retry", JobInfo)

    def alias(self, target: str, version: int, *, force: bool = False) -> AliasInfo:
        """Point NAME@ALIAS at VERSION; `force` (admin tokens) overrides the promotion policy, audited."""
        ref = parse_alias_ref(target)
        path = f"/models/{segment(ref.name)}/aliases/{segment(ref.alias or '')}"
        return self._json("PUT", path, AliasInfo, json={"version": version, "force": force})

    def remove_alias(self, target: str) -> AliasInfo:
        """Remove NAME@ALIAS."""
        ref = parse_alias_ref(target)
        return self._json(
            "DELETE", f"/models/{segment(ref.name)}/aliases/{segment(ref.alias or '')}", AliasInfo
        )

    def request_alias(
        self, target: str, version: int, reason: str, *, force: bool = False
    ) -> PromotionRequestInfo:
        """Ask for the protected NAME@ALIAS to move to VERSION; a different admin approves it."""
        ref = parse_alias_ref(target)
        path = f"/models/{segment(ref.name)}/aliases/{segment(ref.alias or '')}/requests"
        body = {"version": version, "reason": reason, "force": force}
        return self._json("POST", path, PromotionRequestInfo, json=body)

    def approve_request(self, request_id: int, note: str | None = None) -> PromotionRequestInfo:
        """Approve a pending promotion request (an admin who did not file it): the alias moves."""
        path = f"/alias-requests/{int(request_id)}/approve"
        return self._json("POST", path, PromotionRequestInfo, json={"note": note})

    def reject_request(self, request_id: int, note: str | None = None) -> PromotionRequestInfo:
        """Reject a pending promotion request (an admin, or its requester withdrawing it)."""
        path = f"/alias-requests/{int(request_id)}/reject"
        return self._json("POST", path, PromotionRequestInfo, json={"note": note})

    def alias_requests(
        self, name: str | None = None, *, pending_only: bool = True, limit: int = 100
    ) -> list[PromotionRequestInfo]:
        """Promotion requests, newest first: the pending ones, or all with `pending_only=False`."""
        params: dict[str, str | int] = {"state": "pending" if pending_only else "all", "limit": limit}
        if name is not None:
            params["model"] = check_model_name(name)
        return self._json("GET", "/alias-requests", list[PromotionRequestInfo], params=params)

    def keys(self) -> list[KeyInfo]:
        """Every public key the registry signs (or signed) attestations with (no token needed)."""
        return self._json("GET", "/keys", list[KeyInfo])

    def attestation(self, ref: str, kind: str = "torchscript") -> bytes:
        """The signed attestations about an artifact of REF, one DSSE envelope per line."""
        parse_ref(ref)
        return self._send("GET", f"/versions/{segment(ref)}/artifacts/{segment(kind)}/attestation").content

    def _create_token(self, request: TokenRequest) -> NewToken:
        """Create a token (admin)."""
        body = {
            "name": request.name,
            "role": request.role,
            "model_pattern": request.model_pattern,
            "expires": request.expires,
        }
        return self._json("POST", "/tokens", NewToken, json=body)

    def tokens(self) -> list[TokenInfo]:
        """Every token (admin)."""
        return self._json("GET", "/tokens", list[TokenInfo])

    def revoke_token(self, name: str) -> TokenInfo:
        """Revoke a token (admin)."""
        return self._json("DELETE", f"/tokens/{segment(name)}", TokenInfo)

    def audit(self, *, model: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries (admin)."""
        params: dict[str, Any] = {"limit": limit}
        if model:
            params["model"] = check_model_name(model)
        return self._json("GET", "/audit", list[AuditEntry], params=params)

    def _add_webhook(self, request: WebhookRequest) -> NewWebhook:
        """Add a webhook (admin); its signing secret is returned once."""
        body = {"url": request.url, "events": list(request.events), "model_pattern": request.model_pattern}
        return self._json("POST", "/webhooks", NewWebhook, json=body)

    def webhooks(self, *, removed: bool = False) -> list[WebhookInfo]:
        """Every webhook (admin), never a secret."""
        params = {"removed": "true" if removed else "false"}
        return self._json("GET", "/webhooks", list[WebhookInfo], params=params)

    def remove_webhook(self, webhook_id: int) -> WebhookInfo:
        """Remove a webhook (admin)."""
        return self._json("DELETE", f"/webhooks/{int(webhook_id)}", WebhookInfo)

    def webhook_deliveries(self, webhook_id: int, *, limit: int = 50) -> list[DeliveryInfo]:
        """A webhook's newest deliveries with their attempts (admin)."""
        path = f"/webhooks/{int(webhook_id)}/deliveries"
        return self._json("GET", path, list[DeliveryInfo], params={"limit": limit})

    def redeliver(self, delivery_id: int) -> DeliveryInfo:
        """Send a delivery again now (admin); the server's workers, or the server itself, send it."""
        return self._json("POST", f"/webhooks/deliveries/{int(delivery_id)}/redeliver", DeliveryInfo)

    # -- following ---------------------------------------------------------------------------------

    def follow(self, job: JobInfo) -> Iterator[JobInfo]:
        """Follow the job chain through the server-sent-event stream, reconnecting if it drops."""
        current = job
        for attempt in reconnecting(lambda exc: isinstance(exc, httpx.TransportError)):
            with attempt:
                try:
                    for data in job_events(self._http, current.id, self._error):
                        current = _parse(JobInfo, data)
                        yield current
                    return
                except httpx.TransportError:
                    current = self.job(current.id)  # the stream dropped: pick up where the job is now
                    if current.finished:
                        yield current
                        return
                    raise
        raise self._unreachable(ConnectionError("the job event stream kept dropping"))

    # -- artifacts ---------------------------------------------------------------------------------

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
        """Download to `path`, resuming with Range after a dropped connection; verified before it appears.

        With `presign`, an S3-backed server redirects to a presigned URL and the bytes come straight
        from the store (still checked against the sha256 the server names).
        """
        dest = check_destination(Path(path), create_dirs=create_dirs)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                # None when the server streams instead (a local store): nothing was written yet.
                fetched = self._downloads.presigned(ref, kind, out, progress) if presign else None
                if fetched is None:
                    fetched = self._downloads.download(ref, kind, out, progress)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return FetchedArtifact(fetched.ref, str(dest), self._recorded(fetched))

    def _recorded(self, fetched: FetchedArtifact) -> Any:
        """The registry's full record of a downloaded artifact (uri, torch version, method, time)."""
        for artifact in self.version(fetched.ref).artifacts:
            if artifact.sha256 == fetched.artifact.sha256:
                return artifact
        return fetched.artifact

    def stream(self, ref: str, sink: BinaryIO, *, kind: str = "torchscript") -> FetchedArtifact:
        """Write an artifact to `sink` as it arrives; CorruptedArtifact at the end on a mismatch."""
        return self._downloads.download(ref, kind, sink, None)

    def export_triton(
        self, ref: str, repo: str, *, max_batch_size: int | None = None, instance_kind: str = "cpu"
    ):  # type: ignore[no-untyped-def]
        """Write a ready version into a Triton repository, downloading its TorchScript (and ONNX) files."""
        # protobuf and Triton's model config are loaded for this command only
        from regctl.registry.ops.triton import write_to_repo

        info = self.version(ref)

        def chunks(artifact: Any) -> Iterator[bytes]:
            with tempfile.TemporaryFile() as spool:
                got = self._downloads.download(info.ref, artifact.kind, spool, None).artifact.sha256
                if got != artifact.sha256:  # converted again since: not the file the report describes
                    raise DownloadMismatch(
                        ref=info.ref,
                        kind=artifact.kind,
                        source="download",
                        got=got[:16],
                        announced=artifact.sha256[:16],
                    )
                spool.seek(0)
                yield from read_chunks(spool)

        def attestation(artifact: Any) -> bytes | None:
            try:
                return self.attestation(info.ref, artifact.kind)
            except NotFound:  # not signed: the model file goes out alone
                return None

        return write_to_repo(
            info,
            chunks,
            repo,
            max_batch_size=max_batch_size,
            instance_kind=instance_kind,
            attestation_of=attestation,
        )


def _chunks(body: BinaryIO, progress: Progress | None = None, total: int = 0) -> Iterator[bytes]:
    """The upload's body in chunks, telling `progress(sent, total)` after each."""
    sent = 0
    for chunk in read_chunks(body):
        yield chunk
        sent += len(chunk)
        if progress is not None:
            progress(sent, total)
