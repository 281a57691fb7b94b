"""Finding and copying out a version's artifacts, and reading a few files of its source bundle."""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Collection
from contextlib import closing
from pathlib import Path

from regctl.registry import artifacts as registry_artifacts
from regctl.registry.access import Caller
from regctl.registry.chunks import ChunkReader
from regctl.registry.entities import ArtifactInfo, VersionInfo
from regctl.registry.errors.lookup import MissingArtifact
from regctl.registry.errors.services import BundleDamaged
from regctl.registry.refs import parse_ref
from regctl.registry.settings import Settings
from regctl.registry.store import open_store

# A bundle up to this size is read to its end, so its sha256 is checked; a larger one (code with its
# recorded inputs can reach REGCTL_MAX_BUNDLE_BYTES) is read only up to the files asked for.
VERIFIED_BUNDLE_BYTES = 16 * 1024 * 1024


def find_artifact(settings: Settings, caller: Caller, ref: str, kind: str) -> tuple[str, ArtifactInfo]:
    """The artifact of `kind` of the version REF points at, with that version's NAME:VERSION."""
    parsed = parse_ref(ref)
    caller.require("fetch", parsed.name)
    return registry_artifacts.find_artifact(settings, parsed, kind)


def fetch_artifact(
    settings: Settings,
    caller: Caller,
    ref: str,
    dest: Path,
    kind: str,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[str, ArtifactInfo]:
    """Copy the artifact to `dest`; the file appears only once its sha256 is verified."""
    version_ref, artifact = find_artifact(settings, caller, ref, kind)
    report = None if progress is None else (lambda done: progress(done, artifact.size))
    open_store(settings.artifact_store).copy_to(artifact.sha256, dest, progress=report)
    return version_ref, artifact


def read_bundle_files(
    settings: Settings, caller: Caller, version: VersionInfo, names: Collection[str], max_bytes: int
) -> dict[str, bytes | None]:
    """The files `names` of the version's stored source bundle, for showing (never for running).

    Each name found as a regular file maps to its bytes, or to None when it is over `max_bytes`; a
    name the bundle does not hold is left out. Only exact member names match, so a name can reach
    nothing outside the bundle. The caller must be allowed to fetch the version's artifacts.
    """
    caller.require("fetch", version.model)
    source = next((a for a in reversed(version.artifacts) if a.kind == "source"), None)
    if source is None:
        raise MissingArtifact(ref=version.ref, kind="source", hint="it was registered without one")
    wanted = set(names)
    found: dict[str, bytes | None] = {}
    if not wanted:
        return found
    chunks = open_store(settings.artifact_store).open_chunks(source.sha256)
    with closing(chunks):  # leaving the tar early still closes the store's file
        reader = ChunkReader(chunks)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[arg-type]
                for member in tar:
                    if member.name not in wanted or member.name in found or not member.isreg():
                        continue
                    data = tar.extractfile(member) if member.size <= max_bytes else None
                    found[member.name] = data.read(max_bytes) if data is not None else None
                    if len(found) == len(wanted):
                        break
            if source.size <= VERIFIED_BUNDLE_BYTES:
                reader.drain()  # the store's stream checks the sha256 once it has been read through
        except tarfile.TarError as exc:
            raise BundleDamaged(name=f"{version.ref} source", reason=exc) from None
    return found
