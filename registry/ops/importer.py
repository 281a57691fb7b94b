"""`regctl import`: load an archive `regctl export` wrote (`regctl.registry.ops.export`) into this registry.

The archive is hostile input. It is read as a stream and never extracted: only regular members
named `manifest.json` or `blobs/<sha256>` listed in the manifest are accepted, every field of the
manifest is checked as registration checks it (registry/ops/manifest.py), and every blob is hashed
before it reaches the store and must match its name and size. Rows are written only after every blob
has arrived, in one transaction; on any failure the blobs this import added are removed again.
Version numbers are kept where the target model never handed them out, otherwise the next free
numbers are used, and the mapping is returned so the CLI can say so.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from regctl.registry import audit
from regctl.registry.access import Caller, local_caller
from regctl.registry.card import check_card
from regctl.registry.db import ensure_schema, session_scope
from regctl.registry.errors import CorruptedArtifact
from regctl.registry.errors.files import ArchiveDamaged, NotAnArchive
from regctl.registry.errors.lookup import NameTooLike
from regctl.registry.names import alias_key, name_key
from regctl.registry.ops.export import MANIFEST
from regctl.registry.ops.manifest import LEGACY_REPORT, check_manifest
from regctl.registry.schema import (
    REPORT_KINDS,
    Alias,
    AliasEvent,
    Artifact,
    Model,
    ModelVersion,
    VersionTag,
)
from regctl.registry.settings import Settings
from regctl.registry.store import ArtifactStore, open_store
from regctl.registry.timeline import parse_moment

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_BLOB_NAME = re.compile(r"blobs/([0-9a-f]{64})")
# A version caught mid-job is imported as registered: its jobs do not travel.
_IN_FLIGHT = {"converting": "registered", "validating": "registered"}


@dataclass
class Imported:
    """What an import did: each `name:version` in the archive and the `name:version` it became."""

    versions: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # `name@alias` -> what happened
    blobs_added: int = 0
    bytes_added: int = 0

    def to_json(self) -> dict:
        """The import as data (`regctl import --json`)."""
        return {
            "versions": self.versions,
            "aliases": self.aliases,
            "blobs_added": self.blobs_added,
            "bytes_added": self.bytes_added,
        }


def import_archive(settings: Settings, source: Path, caller: Caller | None = None) -> Imported:
    """Load the archive at `source` into this registry (module docstring); return what it became."""
    caller = caller or local_caller()
    ensure_schema(settings.database_url)
    store = open_store(settings.artifact_store)
    added: list[str] = []
    result = Imported()
    try:
        with open(source, "rb") as raw, _open_tar(raw, source) as tar:
            members = _members(tar, source)  # one pass: a stream cannot go back
            manifest = _read_manifest(tar, members, source)
            _receive_blobs(tar, members, manifest, store, added, result, source)
        _write_rows(settings, store, manifest, caller, result)
    except BaseException:
        for sha256 in added:  # nothing half-imported: the blobs this import brought go again
            store.delete_blob(sha256)
        raise
    return result


def _open_tar(raw: IO[bytes], source: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=raw, mode="r|")
    except tarfile.TarError as exc:
        raise NotAnArchive(source=source, why=exc) from None


def _members(tar: tarfile.TarFile, source: Path) -> Iterator[tarfile.TarInfo]:
    try:
        yield from tar
    except tarfile.TarError as exc:
        raise ArchiveDamaged(where=source, problem=f"cannot be read to its end ({exc})") from None


def _read_manifest(tar: tarfile.TarFile, members: Iterator[tarfile.TarInfo], source: Path) -> dict:
    first = next(members, None)
    if first is None or first.name != MANIFEST or not first.isfile():
        raise NotAnArchive(source=source, why=f"it does not start with {MANIFEST}")
    if first.size > MAX_MANIFEST_BYTES:
        raise ArchiveDamaged(
            where=f"{source}'s manifest", problem=f"is {first.size} bytes, more than any export writes"
        )
    data = tar.extractfile(first)
    try:
        manifest = json.loads(data.read() if data else b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveDamaged(where=f"{source}'s manifest", problem=f"is not JSON ({exc})") from None
    return check_manifest(manifest, source)


def _receive_blobs(
    tar: tarfile.TarFile,
    members: Iterator[tarfile.TarInfo],
    manifest: dict,
    store: ArtifactStore,
    added: list[str],
    result: Imported,
    source: Path,
) -> None:
    expected: dict[str, int] = manifest["blobs"]
    seen: set[str] = set()
    for member in members:
        found = _BLOB_NAME.fullmatch(member.name)
        if found is None or not member.isfile() or found.group(1) not in expected or found.group(1) in seen:
            problem = f"holds {member.name!r}, which is not a blob its manifest lists"
            raise ArchiveDamaged(where=source, problem=problem)
        sha256 = found.group(1)
        seen.add(sha256)
        new = not store.exists(sha256)
        try:
            # Checked as it is spooled, so a damaged blob never lands under any name.
            store.put_stream(tar.extractfile(member), expect=(sha256, expected[sha256]))  # type: ignore[arg-type]
        except CorruptedArtifact:
            problem = f"holds blob {sha256[:16]}…, which does not match its sha256"
            raise ArchiveDamaged(where=source, problem=problem) from None
        if new:
            added.append(sha256)
            result.blobs_added += 1
            result.bytes_added += expected[sha256]
    missing = sorted(set(expected) - seen)
    if missing:
        raise ArchiveDamaged(where=source, problem=f"lacks blob {missing[0][:16]}… its manifest lists")


def _write_rows(
    settings: Settings, store: ArtifactStore, manifest: dict, caller: Caller, result: Imported
) -> None:
    with session_scope(settings.database_url) as session:
        for entry in manifest["models"]:
            model = _model_for(session, entry)
            mapping: dict[int, int] = {}
            for version in sorted(entry["versions"], key=lambda v: v["version"]):
                number = version["version"]
                target = number if number > model.last_version else model.last_version + 1
                model.last_version = max(model.last_version, target)
                row = _version_row(session, store, model, target, version, caller)
                mapping[number] = target
                result.versions[f"{entry['name']}:{number}"] = f"{entry['name']}:{target}"
                audit.record(
                    session, caller, "version.import", f"{entry['name']}:{target}", model=entry["name"],
                    detail={"from": f"{entry['name']}:{number}", "source_sha256": row.source_sha256},
                )  # fmt: skip
            _import_aliases(session, model, entry, mapping, caller, result)


def _model_for(session: Session, entry: dict) -> Model:
    model = session.scalars(select(Model).where(Model.name == entry["name"]).with_for_update()).one_or_none()
    if model is None:
        existing = session.scalar(select(Model.name).where(Model.name_key == name_key(entry["name"])))
        if existing is not None:
            raise NameTooLike(name=entry["name"], existing=existing)
        model = Model(
            name=entry["name"],
            name_key=name_key(entry["name"]),
            description=entry.get("description") or "",
            last_version=0,
        )
        session.add(model)
        session.flush()
    return model


def _version_row(
    session: Session, store: ArtifactStore, model: Model, number: int, version: dict, caller: Caller
) -> ModelVersion:
    row = ModelVersion(
        model_id=model.id,
        version=number,
        status=_IN_FLIGHT.get(version["status"], version["status"]),
        spec=version["spec"],
        source_sha256=version["source_sha256"],
        weights_sha256=version.get("weights_sha256"),
        method=version.get("method"),
        summary=version.get("summary") if isinstance(version.get("summary"), dict) else None,
        created_by=str(version.get("created_by") or caller.name)[:128],
        created_at=_moment(version.get("created_at")) or datetime.now(UTC),
        description=version.get("description"),
        git_commit=version.get("git_commit"),
        git_dirty=version.get("git_dirty") if isinstance(version.get("git_dirty"), bool) else None,
        run_url=version.get("run_url"),
        card=check_card(version["card"]) if version.get("card") is not None else None,
        archived_at=_moment(version.get("archived_at")),
    )
    session.add(row)
    session.flush()
    session.add_all(
        VersionTag(version_id=row.id, key=k, value=v) for k, v in (version.get("tags") or {}).items()
    )
    kinds = named_reports([a["kind"] for a in version["artifacts"]])
    session.add_all(
        Artifact(
            version_id=row.id,
            kind=kind,
            sha256=a["sha256"],
            size=a["size"],
            uri=store.uri_for(a["sha256"]),
            torch_version=str(a["torch_version"])[:64] if a.get("torch_version") else None,
            method=str(a["method"])[:16] if a.get("method") else None,
        )
        for a, kind in zip(version["artifacts"], kinds, strict=True)
    )
    return row


def named_reports(kinds: list[str]) -> list[str]:
    """A version's artifact kinds in archive order, each old `report` named for what it reports.

    Archives written before the split call both reports `report`, and carry no jobs. A validate job
    records nothing but its report, while a convert job records its report after its candidates (or
    after the version's source when it failed), so a report that directly follows another report is
    a validation report. Migration 0007 names the rows of an older database by the same rule.
    """
    named: list[str] = []
    for kind in kinds:
        if kind == LEGACY_REPORT:
            follows_report = bool(named) and named[-1] in REPORT_KINDS
            kind = "validation-report" if follows_report else "conversion-report"
        named.append(kind)
    return named


def _import_aliases(
    session: Session, model: Model, entry: dict, mapping: dict[int, int], caller: Caller, result: Imported
) -> None:
    for spelled, number in sorted(entry.get("aliases", {}).items()):
        alias = alias_key(spelled)  # an archive from before names.py may spell one PROD
        key = f"{model.name}@{alias}"
        if session.scalars(select(Alias).where(Alias.model_id == model.id, Alias.name == alias)).first():
            result.aliases[key] = "kept: already set here"
            continue
        target = session.scalars(
            select(ModelVersion).where(
                ModelVersion.model_id == model.id, ModelVersion.version == mapping[number]
            )
        ).one()
        session.add(Alias(model_id=model.id, name=alias, version_id=target.id, updated_by=caller.name[:128]))
        session.add(
            AliasEvent(
                model_id=model.id,
                name=alias,
                action="set",
                to_version=target.version,
                actor=caller.name[:128],
            )
        )
        result.aliases[key] = f"set to {target.version}"


def _moment(value: Any) -> datetime | None:
    moment = parse_moment(value)
    if moment is None and isinstance(value, str):
        raise ArchiveDamaged(where=f"{value[:40]!r} in the archive's manifest", problem="is not a time")
    return moment
