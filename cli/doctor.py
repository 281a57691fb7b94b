"""`regctl doctor`: check the registry's database and artifact store, one line per problem."""

from __future__ import annotations

import click

from regctl.cli.app import cli, settings_of
from regctl.cli.catalog import json_option
from regctl.cli.render import echo, emit_json
from regctl.registry.errors import RegistryNeedsAttention
from regctl.registry.text import human_size

PROBLEMS_EXIT = RegistryNeedsAttention.exit_code


@cli.command()
@click.option(
    "--quick", is_flag=True, help="Check that blobs exist with their recorded size; do not re-hash them."
)
@json_option
@click.pass_context
def doctor(ctx: click.Context, quick: bool, as_json: bool) -> None:
    """Check the whole registry: schema, database pages, every blob's presence and sha256, orphans.

    Runs against the database and the store directly (REGCTL_DATABASE_URL, REGCTL_ARTIFACT_STORE),
    like 'regctl db upgrade'. Exits 6 when it finds a problem; changes nothing.
    """
    from regctl.registry.ops.doctor import check_registry  # SQLAlchemy: 240–320 ms, never at the CLI's start

    checkup = check_registry(settings_of(ctx), quick=quick)
    if as_json:
        emit_json(checkup.to_json())
    else:
        for problem in checkup.problems:
            echo(f"{problem.kind}: {problem.message}")
        how = "size only" if quick else "sha256"
        echo(
            f"checked {checkup.blobs_checked} blobs ({human_size(checkup.bytes_checked)}, {how}) in "
            f"{checkup.store} against {checkup.database}: "
            + (f"{len(checkup.problems)} problem(s)" if checkup.problems else "no problems"),
            err=True,
        )
    if not checkup.ok:
        ctx.exit(PROBLEMS_EXIT)
