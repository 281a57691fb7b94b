"""`regctl sandbox`: which protections model code runs under on this machine."""

from __future__ import annotations

import click

from regctl.cli.app import cli, settings_of
from regctl.cli.catalog import json_option
from regctl.cli.render import echo, emit_json
from regctl.registry.errors.inputs import SandboxUnavailable
from regctl.registry.formats import FORMATS
from regctl.registry.settings import Settings


def checked_protections(settings: Settings) -> dict:
    """Probe the sandbox; in strict mode, refuse (exit 2) when any protection is missing."""
    from regctl.worker.supervisor.probe import probe  # 30–46 ms (the supervisor): not at the CLI's start

    protections = probe(settings)
    missing = protections.get("missing") or []
    if settings.sandbox == "strict" and missing:
        raise SandboxUnavailable(missing=missing[0])
    return protections


@cli.command()
@json_option
@click.pass_context
def sandbox(ctx: click.Context, as_json: bool) -> None:
    """Show how model code and the judge are confined here (REGCTL_SANDBOX=auto|strict|off), and which
    formats this machine's workers can build."""
    from regctl.worker.supervisor.extras import format_lines, missing_extra
    from regctl.worker.supervisor.probe import describe  # as above

    protections = checked_protections(settings_of(ctx))
    if as_json:
        emit_json({**protections, "formats": {f: missing_extra(f) or "available" for f in FORMATS}})
        return
    for line in [*describe(protections), *format_lines()]:
        echo(line)
