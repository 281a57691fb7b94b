"""Tags, archive, delete and garbage collection, with the caller's rights checked first."""

from __future__ import annotations

from regctl.registry.access import Caller
from regctl.registry.refs import parse_ref, parse_version_ref
from regctl.registry.settings import Settings


def tag_version(
    settings: Settings, caller: Caller, ref: str, set_tags: dict[str, str], remove: tuple[str, ...] = ()
) -> dict[str, str]:
    """Set and remove tags on a version; return its tags afterwards."""
    from regctl.registry.lifecycle import tag_version as tag

    parsed = parse_ref(ref)
    caller.require("tag", parsed.name)
    return tag(settings, parsed, set_tags, remove, caller)


def archive_version(settings: Settings, caller: Caller, ref: str, archived: bool = True) -> str:
    """Archive (or unarchive) NAME:VERSION; return it."""
    from regctl.registry.lifecycle import archive_version as archive

    parsed = parse_version_ref(ref)
    caller.require("archive", parsed.name)
    return archive(settings, parsed, archived, caller)


def delete_version(settings: Settings, caller: Caller, ref: str, *, force: bool = False) -> dict:
    """Delete NAME:VERSION (admin); `force` removes the aliases that point at it."""
    from regctl.registry.lifecycle import delete_version as delete

    parsed = parse_version_ref(ref)
    caller.require("delete", parsed.name)
    removed = delete(settings, parsed, force=force, caller=caller)
    if removed.get("aliases"):
        from regctl.service.dispatch import send_webhooks

        send_webhooks(settings)  # each alias it removed is an alias.moved event
    return removed


def collect_garbage(settings: Settings, caller: Caller, *, dry_run: bool = False) -> dict:
    """Delete the blobs no row names (admin); the pass as data."""
    from regctl.registry.ops.gc import collect_garbage as collect

    caller.require("gc")
    return collect(settings, dry_run=dry_run, caller=caller).to_json()
