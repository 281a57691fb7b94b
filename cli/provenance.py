"""`regctl keys …` (the registry's signing key) and `regctl verify` (an artifact against its
attestation, offline)."""

from __future__ import annotations

from pathlib import Path

import click

from regctl.cli.app import cli, client_of, settings_of
from regctl.cli.catalog import json_option
from regctl.cli.render import echo, emit_json, table
from regctl.registry.errors import InvalidInput


@cli.group()
def keys() -> None:
    """The key the registry signs attestations with: init, rotate and retire on the registry's host."""


def _local(ctx: click.Context):  # type: ignore[no-untyped-def]
    """The direct client: a key file is made where the workers run, never through a server."""
    from regctl.local import LocalClient
    from regctl.login import find_login

    if find_login(url=ctx.find_root().obj["options"].get("url")) is not None:
        raise InvalidInput(
            "signing keys are made on the registry's own host (where REGCTL_SIGNING_KEY lives): "
            "run this there without --url or REGCTL_URL"
        )
    return LocalClient(settings_of(ctx))


def _show(found, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    if as_json:
        emit_json([k.to_json() for k in found])
        return
    for k in found:
        state = (
            "current"
            if k.current
            else ("retired " + f"{k.retired_at:%Y-%m-%d %H:%M}" if k.retired_at else "")
        )
        echo(f"key {k.key_id}{' (' + state + ')' if state else ''}")
        echo(k.public_pem.rstrip())


@keys.command("init")
@json_option
@click.pass_context
def keys_init(ctx: click.Context, as_json: bool) -> None:
    """Create the signing key (REGCTL_SIGNING_KEY, readable by this user only) and print its public half."""
    from regctl.service.provenance import init_key

    client = _local(ctx)
    _show([init_key(client.settings, client.caller)], as_json)


@keys.command("rotate")
@json_option
@click.pass_context
def keys_rotate(ctx: click.Context, as_json: bool) -> None:
    """Replace the signing key: new attestations use the new key, old ones keep verifying."""
    from regctl.service.provenance import init_key

    client = _local(ctx)
    _show([init_key(client.settings, client.caller, rotate=True)], as_json)


@keys.command("retire")
@click.argument("key_id")
@json_option
@click.pass_context
def keys_retire(ctx: click.Context, key_id: str, as_json: bool) -> None:
    """Trust KEY_ID (or a prefix of it) for nothing it signs from now on; what it signed before stands."""
    from regctl.service.provenance import retire_key

    client = _local(ctx)
    _show([retire_key(client.settings, client.caller, key_id)], as_json)


@keys.command("show")
@json_option
@click.pass_context
def keys_show(ctx: click.Context, as_json: bool) -> None:
    """Print every public key the registry signs (or signed) with, and its key id."""
    found = client_of(ctx).keys()
    if not found and not as_json:
        echo("no signing key yet: run 'regctl keys init' on the registry's host", err=True)
        return
    if as_json or any(k.current for k in found):
        _show(found, as_json)
        return
    table(None, ("key id", "created", "retired"), [(k.key_id, k.created_at, k.retired_at) for k in found])


@cli.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--attestation",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The attestation (one DSSE envelope per line) [default: FILE.intoto.jsonl].",
)
@click.option(
    "--key",
    "key_files",
    multiple=True,
    metavar="PUB",
    help="A trusted public key (PEM, as 'regctl keys show' prints it); repeatable "
    "[default: REGCTL_TRUSTED_KEYS].",
)
@json_option
def verify(file: Path, attestation: Path | None, key_files: tuple[str, ...], as_json: bool) -> None:
    """Check FILE against its attestation with the public key alone: no registry, no network.

    Exit 0 when a trusted key signed a statement naming FILE's sha256; exit 6 otherwise.
    """
    from regctl.attested import ATTESTATION_SUFFIX, check, describe, sha256_of, trusted_keys

    trusted = trusted_keys(key_files)
    if not trusted:
        raise InvalidInput(
            "no trusted key: pass --key PUB (a PEM from 'regctl keys show') or set REGCTL_TRUSTED_KEYS"
        )
    path = attestation or file.with_name(file.name + ATTESTATION_SUFFIX)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the attestation {path}: {exc.strerror}; pass --attestation F"
        ) from None
    sha256 = sha256_of(file)
    verified = check(str(file), sha256, data, trusted, consequence="do not deploy it")
    if as_json:
        emit_json(
            {"file": str(file), "sha256": sha256, "key_id": verified.key_id, "statement": verified.statement}
        )
        return
    echo(f"verified: {file} (sha256 {sha256[:16]}…) is {describe(verified)}")
