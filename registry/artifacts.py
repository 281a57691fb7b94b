"""Artifacts of a version: finding the stored one of a kind (fetching goes through service.artifacts)."""

from __future__ import annotations

from sqlalchemy import select

from regctl.registry.db import session_scope
from regctl.registry.entities import ArtifactInfo
from regctl.registry.errors.lookup import MissingArtifact, NotAChoice
from regctl.registry.lookup import find_version, pointed_at
from regctl.registry.records import artifact_info
from regctl.registry.refs import Ref
from regctl.registry.schema import ARTIFACT_KINDS, Artifact, Model, ModelVersion
from regctl.registry.settings import Settings


def find_artifact(settings: Settings, ref: Ref, kind: str = "torchscript") -> tuple[str, ArtifactInfo]:
    """The newest artifact of `kind` of the version `ref` points at, with that version's `name:version`."""
    if kind not in ARTIFACT_KINDS:
        raise NotAChoice(what="artifact kind", value=kind, choices=ARTIFACT_KINDS)
    with session_scope(settings.database_url) as session:
        # One statement on the hot path (every download asks); a miss asks again to say what is missing.
        target = pointed_at(
            select(ModelVersion.id).join(Model, Model.id == ModelVersion.model_id),
            ref.name,
            ref.version,
            ref.alias,
        ).scalar_subquery()
        found = session.execute(
            select(Model.name, ModelVersion.version, Artifact)
            .join(ModelVersion, ModelVersion.model_id == Model.id)
            .join(Artifact, Artifact.version_id == ModelVersion.id)
            .where(ModelVersion.id == target, Artifact.kind == kind)
            .order_by(Artifact.id.desc())
            .limit(1)
        ).first()
        if found is not None:
            return f"{found[0]}:{found[1]}", artifact_info(found[2])
        model, version = find_version(session, ref)
        row = session.scalars(
            select(Artifact)
            .where(Artifact.version_id == version.id, Artifact.kind == kind)
            .order_by(Artifact.id.desc())
            .limit(1)
        ).one_or_none()
        if row is None:
            hint = "its conversion has not produced one yet ('regctl versions show')"
            if kind == "exported":
                hint = (
                    "its formats did not ask for it (register with --format exported), or torch.export "
                    "did not succeed for it (see the report in 'regctl versions show')"
                )
            raise MissingArtifact(ref=f"{model.name}:{version.version}", kind=kind, hint=hint)
        return f"{model.name}:{version.version}", artifact_info(row)
