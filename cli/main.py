"""Entry point of the `regctl` console script."""

from __future__ import annotations

from regctl.cli import (  # noqa: F401  (registers commands)
    access,
    catalog,
    deploy,
    doctor,
    jobs,
    lifecycle,
    promotion,
    provenance,
    retire,
    sandbox,
    serve,
    spec,
    transfer,
    webhooks,
    workers,
)
from regctl.cli.app import cli


def main() -> None:
    """Run the regctl command line."""
    cli(prog_name="regctl")


if __name__ == "__main__":
    main()
