"""`regctl doctor`: check the whole registry, database and artifact store, and say what is damaged.

Checked, each problem reported in one line:
- the schema is the one this regctl runs on;
- the database file is sound (SQLite's `PRAGMA quick_check`; PostgreSQL checks its own pages);
- every blob a row references exists, has its recorded size and, unless `quick`, its sha256;
- no blob is an orphan (referenced by no row), and no upload temp was left behind;
- no job scratch folder was left that could not be removed (`regctl-undeletable-*` in the work
  directory: the worker sets aside what a model made impossible to delete, and goes on).

Blobs and temps younger than `grace_s` are not reported: a registration may be uploading them right
now, and its row comes only after the upload. Nothing is changed; repairs are the operator's call.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import select, text

from regctl.registry.db import current_revision, session_scope
from regctl.registry.engines import get_engine, redact
from regctl.registry.errors import CorruptedArtifact, RegctlError, RegistryNeedsAttention
from regctl.registry.ops.owned import UPLOAD_PREFIX, abandoned_folders
from regctl.registry.schema import HEAD_REVISION, Artifact, Model, ModelVersion
from regctl.registry.settings import Settings
from regctl.registry.store import ArtifactStore, StoredFile, open_store
from regctl.registry.store.blobs import IncompleteUpload

GRACE_S = 3600.0  # a registration uploads its blobs before it writes its rows
SHOWN_INTEGRITY_LINES = 10
# The worker renames a scratch folder it could not remove to this prefix (worker/supervisor/scratch.py).
UNDELETABLE_PREFIX = "regctl-undeletable-"
SHOWN_UNDELETABLE = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the registry, in one line, with what to do about it."""

    # schema | database | missing_blob | corrupted_blob | orphan_blob | leftover_temp | undeletable_scratch
    # | abandoned_upload | incomplete_upload
    kind: str
    subject: str  # what it is about: a sha256, a path, the database URL
    message: str


@dataclass
class Checkup:
    """What `regctl doctor` looked at and what it found."""

    database: str
    store: str
    schema: str | None
    blobs_checked: int = 0
    bytes_checked: int = 0
    hashed: bool = True
    recent_unreferenced: int = 0  # blobs and temps within the grace period, not reported
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def to_json(self) -> dict:
        """The same report as data (`regctl doctor --json`)."""
        return {**asdict(self), "ok": self.ok}


def check_registry(settings: Settings, *, quick: bool = False, grace_s: float = GRACE_S) -> Checkup:
    """Check the database and the store of `settings` and return every problem found (module docstring)."""
    url = settings.database_url
    store = open_store(settings.artifact_store)
    checkup = Checkup(redact(url), store.root, schema=None, hashed=not quick)
    try:
        _check(settings, store, checkup, quick, grace_s)
    except RegistryNeedsAttention as exc:  # a database too damaged to read rows from
        if isinstance(exc, CorruptedArtifact):
            raise
        checkup.problems.append(Problem("database", checkup.database, str(exc)))
    checkup.problems += undeletable_scratch(settings.work_dir)
    checkup.problems += abandoned_uploads(settings.work_dir)
    return checkup


def abandoned_uploads(work_dir: str | None) -> list[Problem]:
    """The upload folders of a server that was killed mid-upload: the next `regctl serve` sweeps them."""
    return [
        Problem(
            "abandoned_upload",
            str(path),
            f"{path} holds an upload ({_folder_mb(path):.1f} MB) of a server that stopped mid-request; "
            "the next 'regctl serve' start removes it (or remove it now)",
        )
        for path in abandoned_folders(work_dir, UPLOAD_PREFIX)
    ]


def _folder_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total / 1e6


def undeletable_scratch(work_dir: str | None) -> list[Problem]:
    """The scratch folders the worker could not remove, under `work_dir` (None: the system's temp)."""
    base = work_dir or tempfile.gettempdir()
    try:
        with os.scandir(base) as entries:
            found = sorted(e.name for e in entries if e.name.startswith(UNDELETABLE_PREFIX))
    except OSError:
        return []
    problems = [
        Problem(
            "undeletable_scratch",
            os.path.join(base, name),
            f"{os.path.join(base, name)} is a job's scratch folder that could not be removed (a mount, "
            "an immutable file or another uid's files inside); the worker's log says why: remove it as root",
        )
        for name in found[:SHOWN_UNDELETABLE]
    ]
    if len(found) > SHOWN_UNDELETABLE:
        more = len(found) - SHOWN_UNDELETABLE
        problems.append(Problem("undeletable_scratch", base, f"and {more} more such folders in {base}"))
    return problems


def stale_uploads(store: ArtifactStore, grace_s: float) -> list[IncompleteUpload]:
    """Multipart uploads a killed writer never completed, older than `grace_s`: gc aborts them."""
    return [upload for upload in store.incomplete_uploads() if time.time() - upload.started > grace_s]


def incomplete_uploads(store: ArtifactStore, grace_s: float) -> list[Problem]:
    """The stale multipart uploads as problems, each with what gc will do about it."""
    return [
        Problem(
            "incomplete_upload",
            upload.key,
            f"{upload.key} is a multipart upload started {time.time() - upload.started:.0f}s ago and never "
            f"completed (upload id {upload.upload_id}); 'regctl gc' aborts it and frees its parts",
        )
        for upload in stale_uploads(store, grace_s)
    ]


def _check(settings: Settings, store: ArtifactStore, checkup: Checkup, quick: bool, grace_s: float) -> None:
    url = settings.database_url
    checkup.schema = current_revision(url)
    if checkup.schema != HEAD_REVISION:
        found = checkup.schema or "an empty schema"
        checkup.problems.append(
            Problem(
                "schema",
                redact(url),
                f"database {redact(url)} is at {found}, this regctl needs {HEAD_REVISION}; "
                "run 'regctl db upgrade'",
            )
        )
        return  # the rows cannot be read reliably under another schema
    checkup.problems += _database_integrity(url)
    referenced = referenced_blobs(settings)
    files = list(store.listing())
    checkup.problems += _check_referenced(store, files, referenced, checkup, quick)
    stale, checkup.recent_unreferenced = unreferenced(files, referenced, grace_s)
    checkup.problems += [_stray(found) for found in stale]
    checkup.problems += incomplete_uploads(store, grace_s)


def _database_integrity(url: str) -> list[Problem]:
    engine = get_engine(url)
    if engine.dialect.name != "sqlite":
        return []  # PostgreSQL verifies page checksums as it reads; its damage surfaces as errors
    with engine.connect() as conn:
        lines = [row[0] for row in conn.execute(text("PRAGMA quick_check"))]
    if lines == ["ok"]:
        return []
    detail = "; ".join(str(line).replace("\n", "; ") for line in lines[:SHOWN_INTEGRITY_LINES])
    return [
        Problem(
            "database",
            redact(url),
            f"the registry database {redact(url)} is damaged ({detail[:300]}); restore it from a backup",
        )
    ]


@dataclass(frozen=True)
class _Reference:
    size: int | None
    users: tuple[str, ...]  # `model:version kind`, for the message


def referenced_blobs(settings: Settings) -> dict[str, _Reference]:
    """Every sha256 a row names, with its recorded size and the versions that use it (doctor and gc)."""
    users: dict[str, list[str]] = defaultdict(list)
    sizes: dict[str, int] = {}
    with session_scope(settings.database_url) as session:
        artifacts = session.execute(
            select(Artifact.sha256, Artifact.size, Artifact.kind, Model.name, ModelVersion.version)
            .join(ModelVersion, ModelVersion.id == Artifact.version_id)
            .join(Model, Model.id == ModelVersion.model_id)
            .order_by(Model.name, ModelVersion.version, Artifact.id)
        )
        for sha256, size, kind, name, version in artifacts:
            users[sha256].append(f"{name}:{version} {kind}")
            sizes[sha256] = size
        versions = session.execute(
            select(
                ModelVersion.source_sha256, ModelVersion.weights_sha256, Model.name, ModelVersion.version
            ).join(Model, Model.id == ModelVersion.model_id)
        )
        for source, weights, name, version in versions:
            for sha256, kind in ((source, "source"), (weights, "weights")):
                if sha256 and f"{name}:{version} {kind}" not in users[sha256]:
                    users[sha256].append(f"{name}:{version} {kind}")
    return {sha: _Reference(sizes.get(sha), tuple(names)) for sha, names in users.items()}


def _who(reference: _Reference) -> str:
    shown = ", ".join(reference.users[:3])
    more = len(reference.users) - 3
    return shown + (f" and {more} more" if more > 0 else "")


def _check_referenced(
    store: ArtifactStore,
    files: list[StoredFile],
    referenced: dict[str, _Reference],
    checkup: Checkup,
    quick: bool,
) -> list[Problem]:
    problems = []
    present = {f.sha256: f for f in files if f.sha256 is not None}
    for sha256, reference in sorted(referenced.items()):
        checkup.blobs_checked += 1
        stored = present.get(sha256)
        if stored is None:
            problems.append(
                Problem(
                    "missing_blob",
                    sha256,
                    f"blob sha256:{sha256} of {_who(reference)} is missing from the store {store.root}; "
                    "restore it from a backup",
                )
            )
            continue
        checkup.bytes_checked += stored.size
        if reference.size is not None and stored.size != reference.size:
            problems.append(
                _damaged(sha256, reference, f"it holds {stored.size} bytes, not {reference.size}")
            )
        elif not quick:
            try:
                store.verify(sha256)
            except CorruptedArtifact:
                problems.append(_damaged(sha256, reference, "its bytes no longer match that sha256"))
            except RegctlError as exc:
                problems.append(_damaged(sha256, reference, str(exc)))
    return problems


def _damaged(sha256: str, reference: _Reference, why: str) -> Problem:
    return Problem(
        "corrupted_blob",
        sha256,
        f"blob sha256:{sha256} of {_who(reference)} is damaged: {why}; restore it from a backup",
    )


def unreferenced(
    files: Iterable[StoredFile], referenced: Mapping[str, object], grace_s: float
) -> tuple[list[StoredFile], int]:
    """The files no row names and older than `grace_s` (doctor reports them, gc deletes them), and
    how many more are unnamed but younger: a registration may be uploading them right now."""
    stale, recent = [], 0
    cutoff = time.time() - grace_s
    for found in files:
        if found.sha256 is not None and found.sha256 in referenced:
            continue
        if found.modified > cutoff:
            recent += 1
        else:
            stale.append(found)
    return stale, recent


def _stray(found: StoredFile) -> Problem:
    if found.area == "tmp":
        return Problem(
            "leftover_temp",
            found.path,
            f"{found.path} ({found.size} bytes) is an upload that never finished; delete it",
        )
    if found.area == "trash":
        return Problem(
            "leftover_temp",
            found.path,
            f"{found.path} was set aside by an interrupted 'regctl gc'; if doctor reports its blob "
            "missing, move it back under sha256/, else delete it",
        )
    if found.sha256 is None:
        return Problem(
            "leftover_temp", found.path, f"{found.path} is not a blob regctl wrote; move it out of the store"
        )
    return Problem(
        "orphan_blob",
        found.sha256,
        f"blob sha256:{found.sha256} ({found.size} bytes) is referenced by no version; it is an orphan "
        "left by a failed registration or a lost database: delete it, or restore the database that names it",
    )
