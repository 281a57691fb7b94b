"""`regctl spec schema`: the JSON Schema of regctl.toml, so editors check a spec as it is typed."""

from __future__ import annotations

import json
from pathlib import Path

import click

from regctl.cli.app import cli
from regctl.cli.render import echo


@cli.group(name="spec")
def spec_group() -> None:
    """The model spec, regctl.toml."""


@spec_group.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the schema to this file (e.g. regctl.schema.json) instead of stdout.",
)
def schema(output: Path | None) -> None:
    """Print the JSON Schema of regctl.toml, for Even Better TOML or taplo to check it as you type.

    \b
    regctl spec schema -o regctl.schema.json
    then start regctl.toml with the line:  #:schema ./regctl.schema.json
    """
    # Here, not at the top: the spec's pydantic models add ~100 ms to every CLI start (-X importtime).
    from regctl.registry.spec import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        echo(f"wrote the JSON Schema of regctl.toml to {output}", err=True)
