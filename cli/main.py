"""Entry point of the `regctl` console script."""

from __future__ import annotations

from cli import catalog, deploy, jobs, lifecycle, sandbox, service  # noqa: F401  (registers the commands)
from cli.app import cli


def main() -> None:
    """Run the regctl command line."""
    cli(prog_name="regctl")


if __name__ == "__main__":
    main()
