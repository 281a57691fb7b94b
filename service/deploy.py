"""Putting a ready version where a serving system loads it (a Triton model repository)."""

from __future__ import annotations

from regctl.registry.access import Caller
from regctl.registry.ops.triton import TritonExport
from regctl.registry.ops.triton import export_triton as write_export
from regctl.registry.refs import parse_ref
from regctl.registry.settings import Settings


def export_triton(
    settings: Settings,
    caller: Caller,
    ref: str,
    repo: str,
    *,
    max_batch_size: int | None = None,
    instance_kind: str = "cpu",
) -> TritonExport:
    """Write the version REF points at into the Triton model repository `repo` (a directory or URL).

    Exporting reads the TorchScript artifact, so it needs what fetching it does.
    """
    parsed = parse_ref(ref)
    caller.require("fetch", parsed.name)
    return write_export(settings, parsed, repo, max_batch_size=max_batch_size, instance_kind=instance_kind)
