"""Tags, archive, delete and garbage collection, with the caller's rights checked first."""

from __future__ import annotations

from regctl.registry import lifecycle as registry_lifecycle
from regctl.registry.access import Caller
from regctl.registry.ops import gc as registry_gc
from regctl.registry.refs import parse_ref, parse_version_ref
from regctl.registry.settings import Settings
from regctl.service import dispatch


def tag_version(
    settings: Settings, caller: Caller, ref: str, set_tags: dict[str, str], remove: tuple[str, ...] = ()
) -> dict[str, str]:
    """Set and remove tags on a version; return its tags afterwards."""
    parsed = parse_ref(ref)
    caller.require("tag", parsed.name)
    return registry_lifecycle.tag_version(settings, parsed, set_tags, remove, caller)


def archive_version(settings: Settings, caller: Caller, ref: str, archived: bool = True) -> str:
    """Archive (or unarchive) NAME:VERSION; return it."""
    parsed = parse_version_ref(ref)
    caller.require("archive", parsed.name)
    return registry_lifecycle.archive_version(settings, parsed, archived, caller)


def delete_version(settings: Settings, caller: Caller, ref: str, *, force: bool = False) -> dict:
    """Delete NAME:VERSION (admin); `force` removes the aliases that point at it."""
    parsed = parse_version_ref(ref)
    caller.require("delete", parsed.name)
    removed = registry_lifecycle.delete_version(settings, parsed, force=force, caller=caller)
    if removed.get("aliases"):
        dispatch.send_webhooks(settings)  # each alias it removed is an alias.moved event
    return removed


def collect_garbage(settings: Settings, caller: Caller, *, dry_run: bool = False) -> dict:
    """Delete the blobs no row names (admin); the pass as data."""
    caller.require("gc")
    return registry_gc.collect_garbage(settings, dry_run=dry_run, caller=caller).to_json()
