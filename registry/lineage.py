"""Where a version came from: the git commit of its model directory, whether it was dirty, tags, a run URL.

The model directory is hostile input, and so is its `.git`: `git status` would run a repository's
`core.fsmonitor` hook or its clean filters, which are arbitrary commands. So git is asked only to
read objects (`rev-parse`, `ls-tree`), with the repository's own configuration unable to run
anything, and "dirty" is decided here: a bundled file whose git blob hash differs from the one
committed at HEAD, or that HEAD does not have. Files regctl does not bundle do not count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from regctl.registry.errors.inputs import (
    BadGitCommit,
    BadRunUrl,
    BadTagKey,
    BadTagPair,
    BadTagValue,
    TextTooLong,
    TooManyTags,
)
from regctl.registry.text import check_text, first_hidden

MAX_TAGS = 50
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 256
MAX_URL = 2048
MAX_DESCRIPTION = 4000
_TAG_KEY = re.compile(r"[A-Za-z0-9_.\-/]{1,64}")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
GIT_TIMEOUT_S = 10
# Neutralise everything in a repository's or the user's configuration that could run a command.
_GIT_SAFE = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "protocol.allow=never")


@dataclass(frozen=True)
class Lineage:
    """What a registration says about where a version came from (all optional)."""

    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    run_url: str | None = None
    git_commit: str | None = None  # given by a remote client, which read its own work tree
    git_dirty: bool | None = None

    def checked(self) -> Lineage:
        """The same lineage, or InvalidInput naming the first bad field."""
        if self.git_commit is not None and not _COMMIT.fullmatch(self.git_commit):
            raise BadGitCommit(commit=self.git_commit[:80])
        return Lineage(
            check_description(self.description),
            check_tags(self.tags),
            check_run_url(self.run_url),
            self.git_commit,
            self.git_dirty,
        )


@dataclass(frozen=True)
class GitState:
    """The commit a model directory is at, and whether its bundled files differ from that commit."""

    commit: str
    dirty: bool


def parse_tags(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`["k=v", ...]` as a dict; InvalidInput naming the first malformed pair."""
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise BadTagPair(pair=pair)
        tags[key] = value
    return check_tags(tags)


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """Tags as given, or InvalidInput: keys are short identifiers, values short single lines."""
    if len(tags) > MAX_TAGS:
        raise TooManyTags(whose="a version", count=len(tags), limit=MAX_TAGS)
    for key, value in tags.items():
        if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
            raise BadTagKey(key=key, limit=MAX_TAG_KEY)
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE or not value.isprintable():
            # isprintable() refuses every control, bidi and zero-width character (registry/text.py)
            found = first_hidden(value) if isinstance(value, str) else None
            where = f" (it has {found[1]} at position {found[0]})" if found else ""
            raise BadTagValue(key=key, limit=MAX_TAG_VALUE, where=where)
    return dict(tags)


def check_run_url(url: str | None) -> str | None:
    """A training run's address: http(s), one line, of sane length; None stays None."""
    if url is None:
        return None
    parts = urlsplit(url) if url.isprintable() and len(url) <= MAX_URL else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRunUrl(url=url[:100], limit=MAX_URL)
    return url


def check_description(text: str | None) -> str | None:
    """A version's description: one line of text of sane length, nothing hidden; None stays None.

    Control, bidi and zero-width characters are refused (registry/text.py), so a description reads
    the same in a terminal, on a page and in JSON.
    """
    if text is not None and len(text) > MAX_DESCRIPTION:
        raise TextTooLong(what="the description", length=len(text), fix=f"keep it under {MAX_DESCRIPTION}")
    return None if text is None else check_text("the description", text)


def git_state(directory: Path, bundled: list[Path]) -> GitState | None:
    """The commit `directory` is at and whether a `bundled` file differs from it; None outside git."""
    commit = _git(directory, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    top = _git(directory, "rev-parse", "--show-toplevel")
    if commit is None or top is None:
        return None
    fmt = _git(directory, "rev-parse", "--show-object-format") or "sha1"
    committed = _committed_blobs(directory)
    if committed is None:
        return None
    root = Path(top).resolve()
    for path in bundled:
        try:
            relative = path.resolve().relative_to(root).as_posix()
        except ValueError:
            continue  # outside the work tree (a symlink the bundle followed): not git's to judge
        if committed.get(relative) != _blob_id(path, fmt):
            return GitState(commit, dirty=True)
    return GitState(commit, dirty=False)


def with_git(lineage: Lineage, directory: Path, members: Iterable[str]) -> Lineage:
    """`lineage` with the commit `directory` is at and whether its `members` differ from it.

    A lineage that names a commit already (a remote client read its own work tree) is kept as it is.
    """
    if lineage.git_commit is not None:
        return lineage
    state = git_state(directory, [directory / member for member in members])
    if state is None:
        return lineage
    return dataclasses.replace(lineage, git_commit=state.commit, git_dirty=state.dirty)


def _committed_blobs(directory: Path) -> dict[str, str] | None:
    listing = _git(directory, "ls-tree", "-r", "-z", "--full-tree", "HEAD", raw=True)
    if listing is None:
        return None
    blobs = {}
    for entry in listing.split("\0"):
        meta, _, path = entry.partition("\t")
        fields = meta.split()
        if len(fields) == 3 and fields[1] == "blob":
            blobs[path] = fields[2]
    return blobs


def _blob_id(path: Path, fmt: str) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    digest = hashlib.sha256() if fmt == "sha256" else hashlib.sha1(usedforsecurity=False)
    digest.update(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def _git(directory: Path, *args: str, raw: bool = False) -> str | None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",  # no user configuration either
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }
    try:
        done = subprocess.run(
            ["git", *_GIT_SAFE, "-C", str(directory), *args],
            capture_output=True,
            env=env,
            timeout=GIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None  # no git here, or a repository too slow to read: no lineage, not an error
    if done.returncode != 0:
        return None
    text = done.stdout.decode("utf-8", errors="replace")
    return text if raw else text.strip()
