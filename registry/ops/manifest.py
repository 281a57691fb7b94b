"""The manifest of an export archive (`manifest.json`), as pydantic models: every field checked.

The archive is hostile input. The models check each field's type; their validators check it as a
registration would (model and alias names, the spec, the lineage, the card) and check that the parts
agree (each artifact is one of the archive's blobs, each alias points at a version the archive holds).
The domain's own checks raise their InvalidInput unchanged; a wrong type is told in the same words,
naming the model and version it belongs to (`manifest_error`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from regctl.registry.card import check_card
from regctl.registry.errors import InvalidInput
from regctl.registry.errors.files import ArchiveDamaged, ArchiveFormatTooNew, NotAnArchive
from regctl.registry.lineage import Lineage
from regctl.registry.ops.export import FORMAT, FORMAT_VERSION
from regctl.registry.refs import check_alias_name, check_model_name
from regctl.registry.schema import ARTIFACT_KINDS, VERSION_STATUSES
from regctl.registry.spec import parse_spec

NOT_A_BLOB = "has an artifact that is not one of the archive's blobs"
LEGACY_REPORT = "report"  # both reports' kind in archives written before they were named apart
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Entry(BaseModel):
    # Keys a later export adds are left alone; the ones read here are typed strictly.
    model_config = ConfigDict(strict=True, extra="ignore")


class ArtifactEntry(_Entry):
    """One artifact of a version: a blob of the archive."""

    kind: Literal[(*ARTIFACT_KINDS, LEGACY_REPORT)]  # type: ignore[valid-type]
    sha256: Sha256
    size: int = Field(ge=0)


class VersionEntry(_Entry):
    """One version of a model, with its spec, lineage, card and artifacts."""

    version: int = Field(ge=1, le=2**31 - 1)
    status: Literal[VERSION_STATUSES]  # type: ignore[valid-type]
    spec: dict[str, Any]
    artifacts: list[ArtifactEntry]
    source_sha256: Sha256 | None = None
    weights_sha256: Sha256 | None = None
    description: Any = None
    tags: Any = None
    run_url: Any = None
    git_commit: Any = None
    card: Any = None


class ModelEntry(_Entry):
    """One model: its name, description, versions and aliases (alias -> version number)."""

    name: str
    description: str = ""
    versions: list[VersionEntry]
    aliases: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return check_model_name(name)


class Manifest(_Entry):
    """An export archive's manifest.json."""

    format: Literal[FORMAT]  # type: ignore[valid-type]
    format_version: Literal[FORMAT_VERSION]  # type: ignore[valid-type]
    blobs: dict[Sha256, Annotated[int, Field(ge=0)]]
    models: list[ModelEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _agrees(self, info: ValidationInfo) -> Manifest:
        where = (info.context or {}).get("where", "the manifest")
        for model in self.models:
            numbers = {v.version for v in model.versions}
            for version in model.versions:
                _check_version(version, self.blobs, f"{where}, {model.name}:{version.version}")
            for alias, number in model.aliases.items():
                check_alias_name(alias)
                if number not in numbers:
                    lacking = f"{model.name}@{alias} points at a version the archive lacks"
                    raise ArchiveDamaged(where=f"{where}:", problem=lacking)
        return self


def _check_version(version: VersionEntry, blobs: dict[str, int], here: str) -> None:
    parse_spec(_as_toml_shape(version.spec), f"{here} spec")
    Lineage(version.description, version.tags or {}, version.run_url, version.git_commit).checked()
    if version.card is not None:
        check_card(version.card, f"{here} card")
    if any(blobs.get(a.sha256) != a.size for a in version.artifacts):
        raise ArchiveDamaged(where=here, problem=NOT_A_BLOB)
    shas = {a.sha256 for a in version.artifacts}
    for key in ("source_sha256", "weights_sha256"):
        if getattr(version, key) is not None and getattr(version, key) not in shas:
            raise ArchiveDamaged(where=f"{here}'s {key}", problem="is not among its artifacts")
    if version.source_sha256 is None:
        raise ArchiveDamaged(where=here, problem="has no source")


def _as_toml_shape(spec: dict) -> dict:
    """A stored spec (`ModelSpec.to_dict`) in regctl.toml's shape, so `parse_spec` checks it."""
    data = {k: v for k, v in spec.items() if v is not None and k not in ("inputs", "dims", "validation")}
    data["inputs"] = [
        {k: v for k, v in item.items() if v is not None}
        for item in spec.get("inputs") or []
        if isinstance(item, dict)
    ]
    dims = spec.get("dims") or {}
    data["dims"] = {
        name: {k: v for k, v in d.items() if k != "name"} for name, d in dims.items() if isinstance(d, dict)
    }
    validation = spec.get("validation") or {}
    if isinstance(validation, dict):
        data["validation"] = {k: v for k, v in validation.items() if v is not None}
    return data


def check_manifest(manifest: Any, source: Any) -> dict:
    """The manifest, each field checked as a registration checks it; InvalidInput names the first bad one."""
    where = f"{source}'s manifest"
    try:
        Manifest.model_validate(manifest, context={"where": where})
    except ValidationError as exc:
        raise manifest_error(exc.errors(include_url=False)[0], manifest, source) from None
    return manifest


def manifest_error(error: ErrorDetails, manifest: Any, source: Any) -> InvalidInput:
    """A type error in the manifest, in words that name the model and version it is in."""
    loc, where = error["loc"], f"{source}'s manifest"
    if not loc or loc[0] == "format" or not isinstance(manifest, dict):
        return NotAnArchive(source=source, why=f"no '{FORMAT}' manifest")
    if loc[0] == "format_version":
        return ArchiveFormatTooNew(where=where, found=manifest.get("format_version"), reads=FORMAT_VERSION)
    if loc[0] == "blobs":
        return ArchiveDamaged(where=where, problem="lists blobs that are not sha256 -> size")
    if len(loc) == 1:
        return ArchiveDamaged(where=where, problem="holds no models")
    model = manifest["models"][loc[1]]
    if len(loc) == 2 or (loc[2] == "versions" and len(loc) == 3):
        return ArchiveDamaged(where=where, problem="has a model entry that is not a table of versions")
    if loc[2] == "name":
        return ArchiveDamaged(where=where, problem="has a model whose name is not text")
    if loc[2] == "description":
        return ArchiveDamaged(where=f"{where}:", problem=f"model {model['name']}'s description is not text")
    if loc[2] == "aliases":
        return ArchiveDamaged(where=f"{where}:", problem=f"{model['name']}'s aliases are not a table")
    return _version_error(loc[3:], model["versions"][loc[3]], f"{where}, {model['name']}")


def _version_error(loc: tuple[int | str, ...], version: Any, where: str) -> InvalidInput:
    if len(loc) == 1:
        return ArchiveDamaged(where=where, problem="has a version entry that is not a table")
    if loc[1] == "version":
        return ArchiveDamaged(where=where, problem="has a version number that is not a positive integer")
    here, field = f"{where}:{version['version']}", loc[1]
    if field == "status":
        return ArchiveDamaged(where=here, problem=f"has status {version.get('status')!r}")
    if field == "spec":
        return ArchiveDamaged(where=here, problem="has no spec")
    if field == "artifacts" and len(loc) == 2:
        return ArchiveDamaged(where=here, problem="lists no artifacts")
    if field == "artifacts":
        return ArchiveDamaged(where=here, problem=NOT_A_BLOB)
    return ArchiveDamaged(where=f"{here}'s {field}", problem="is not among its artifacts")
