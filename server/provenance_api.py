"""The registry's public keys (no token: a deployer verifies offline with them) and the attestation
beside each artifact."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from regctl.registry.access import Caller
from regctl.registry.entities import KeyInfo
from regctl.registry.formats import FILE_SUFFIX
from regctl.server.artifacts_api import Kind
from regctl.server.auth import current_caller, settings_of
from regctl.server.errors import error_responses
from regctl.service import provenance

router = APIRouter(tags=["provenance"])


@router.get("/keys", response_model=list[KeyInfo], responses=error_responses(503))
def list_keys(request: Request) -> list[KeyInfo]:
    """Every public key the registry has signed attestations with, oldest first: no token needed.

    `retired_at` marks a key trusted for nothing it signed after that moment; `current` is the key
    new attestations are signed with.
    """
    return provenance.list_keys(settings_of(request))


@router.get(
    "/versions/{ref}/artifacts/{kind}/attestation",
    response_class=Response,
    responses={
        200: {
            "content": {"application/jsonl": {"schema": {"type": "string"}}},
            "description": "One DSSE envelope (an in-toto Statement v1) per line",
        },
        **error_responses(400, 401, 403, 404, 422, 503),
    },
)
def attestation(
    request: Request,
    ref: Annotated[str, Path(description="NAME, NAME:VERSION or NAME@ALIAS", max_length=200)],
    kind: Kind,
    caller: Annotated[Caller, Depends(current_caller)],
) -> Response:
    """The signed attestations about the artifact `kind` of the version REF points at."""
    version_ref, artifact, body = provenance.attestation_of(settings_of(request), caller, ref, kind)
    name = f"{version_ref.replace(':', '-')}{FILE_SUFFIX[kind]}{FILE_SUFFIX['attestation']}"
    headers = {
        "X-Regctl-Ref": version_ref,
        "X-Regctl-Sha256": artifact.sha256,  # the artifact's: what the statement's subject must name
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "private, no-cache",
    }
    return Response(body, media_type="application/jsonl", headers=headers)
