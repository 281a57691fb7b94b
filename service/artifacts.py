"""Finding and copying out a version's artifacts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from regctl.registry import artifacts as registry_artifacts
from regctl.registry.access import Caller
from regctl.registry.entities import ArtifactInfo
from regctl.registry.refs import parse_ref
from regctl.registry.settings import Settings
from regctl.registry.store import open_store


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
