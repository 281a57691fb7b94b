"""`regctl register`, `regctl fetch` and `regctl db upgrade`: putting models in and artifacts out."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from regctl.cli.app import cli, client_of, settings_of
from regctl.cli.follow import must_follow, must_run_here, start_and_follow, watch
from regctl.cli.render import console, echo, emit_json
from regctl.registry.formats import FORMATS as ALL_FORMATS  # each is what an attestation covers
from regctl.registry.formats import parse_formats
from regctl.registry.lineage import Lineage, parse_tags
from regctl.registry.requests import RegisterRequest
from regctl.registry.text import human_size
from regctl.worker.dispatch import warmed

FORMATS = {f: f for f in ALL_FORMATS}


@cli.group()
def db() -> None:
    """Manage the registry database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to upgrade to.")
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Create or upgrade the registry schema (run once per release on PostgreSQL; SQLite upgrades itself)."""
    # The database layer and Alembic (SQLAlchemy: 150–300 ms) only for this command, never at the CLI's start.
    from regctl.registry.db import current_revision
    from regctl.registry.engines import redact
    from regctl.registry.migrate import upgrade

    settings = settings_of(ctx)
    upgrade(settings.database_url, revision)
    echo(f"{redact(settings.database_url)} is at {current_revision(settings.database_url)}")


@cli.command()
@click.argument("name")
@click.argument("directory", type=click.Path(path_type=Path), metavar="DIR")
@click.option("--method", type=click.Choice(["auto", "trace", "script"]), help="Override the spec's method.")
@click.option(
    "--device", type=click.Choice(["cpu", "cuda"]), help="Override the spec's device (picks the queue)."
)
@click.option("--description", help="Describe this version (the model keeps the newest description too).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag the version (repeatable).")
@click.option("--run-url", help="The training run that produced it (an http(s) URL).")
@click.option(
    "--format",
    "formats",
    metavar="FORMATS",
    help="What to produce besides TorchScript, overriding the spec's `formats`: exported (the "
    "torch.export .pt2), aoti (an AOTInductor package, proved in Python and C++), executorch (a .pte "
    "proved in executorch.runtime), onnx (proved in onnxruntime), or several: onnx,executorch.",
)
@click.option("--no-convert", is_flag=True, help="Only record the version; start no conversion.")
@click.option(
    "--new-version",
    is_flag=True,
    help="Register a new version even when the code, weights and spec equal the newest version's.",
)
@click.option(
    "--wait", is_flag=True, help="Follow the conversion and exit with its outcome (0 ready, 1 failed)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON.")
@click.pass_context
def register(
    ctx: click.Context,
    name: str,
    directory: Path,
    method: str | None,
    device: str | None,
    description: str | None,
    tags: tuple[str, ...],
    run_url: str | None,
    formats: str | None,
    no_convert: bool,
    new_version: bool,
    wait: bool,
    as_json: bool,
) -> None:
    """Register the model in DIR (code, weights, regctl.toml) as the next version of NAME.

    Conversion to TorchScript and validation start by themselves unless --no-convert is given. Where
    DIR is in a git work tree, the commit and whether DIR's files differ from it are recorded.

    When the code, weights and spec equal the newest version's, nothing is created: it says
    "unchanged: identical to NAME:N" and exits 0 (--new-version registers one anyway). With --wait it
    follows that version's unfinished jobs, and exits with its outcome (0 ready, 1 failed).
    """
    request = RegisterRequest(
        name,
        method=method,
        device=device,
        lineage=Lineage(description=description, tags=parse_tags(tags), run_url=run_url),
        formats=parse_formats(formats) if formats is not None else None,
        convert=not no_convert,
        new_version=new_version,
    )
    client = client_of(ctx)
    with warmed(client.settings if request.convert and must_run_here(client, wait) else None):
        # A bar while the bundle uploads to a server; a local register reads the directory in place.
        bar = client.mode == "remote" and not as_json and sys.stderr.isatty()
        with _progress_bar(enabled=bar) as progress:
            info = client.register(request, directory, progress=progress)
        if info.unchanged:
            ctx.exit(_unchanged(client, info, wait=wait, convert=request.convert, as_json=as_json))
        if not as_json:
            echo(f"registered {info.ref} ({info.status})", err=wait)
        if info.jobs:
            code = start_and_follow(client, list(info.jobs), wait=wait, quiet=as_json)
            if as_json:
                emit_json({**client.version(info.ref).to_json(), "unchanged": False})
            ctx.exit(code)
    if as_json:
        emit_json(info.to_json())


def _unchanged(client, info, *, wait: bool, convert: bool, as_json: bool) -> int:  # type: ignore[no-untyped-def]
    """Say that nothing changed; follow the existing version's unfinished jobs where register would.

    Embedded, that runs a job an interrupted earlier register left queued (not with --no-convert,
    unless --wait). Returns the exit code: 0, or with --wait the version's outcome (1 when it failed).
    """
    if not as_json:
        echo(f"unchanged: identical to {info.ref} ({info.status}){_unchanged_hint(info)}", err=wait)
    pending = [job for job in info.jobs if not job.finished]
    code = 0
    if pending and (wait or (convert and must_follow(client, wait))):
        code = watch(client, pending[0], quiet=as_json)
    elif wait and _ended_badly(info):
        code = 1
    if as_json:
        emit_json({**client.version(info.ref).to_json(), "unchanged": True})
    return code


def _ended_badly(info) -> bool:  # type: ignore[no-untyped-def]
    """True when the version's job chain is over and did not make it ready."""
    if info.status == "ready" or any(not job.finished for job in info.jobs):
        return False
    return info.status in ("failed", "cancelled") or any(
        job.state in ("failed", "cancelled") for job in info.jobs
    )


def _unchanged_hint(info) -> str:  # type: ignore[no-untyped-def]
    """What to do when the identical version is not what the caller hoped for."""
    if _ended_badly(info):
        last = [job for job in info.jobs if job.state in ("failed", "cancelled")][-1:]
        retry = f"run 'regctl jobs retry {last[0].id}'" if last else "retry its job"
        return f"; {retry} or register with --new-version to try again"
    if not info.jobs and info.status == "registered":
        return f"; convert it with 'regctl submit {info.ref} --job convert'"
    return ""


@cli.command()
@click.argument("ref", metavar="REF")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path, allow_dash=True),
    help="Where to write the artifact; '-' writes to stdout.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    default="torchscript",
    show_default=True,
    help="torchscript (.pt for torch.jit.load / LibTorch), exported (torch.export .pt2), aoti (an "
    "AOTInductor package .pt2, for AOTIModelPackageLoader), executorch (a .pte for ExecuTorch's Module) "
    "or onnx (for onnxruntime); each but torchscript exists when the version was registered with it in "
    "--format.",
)
@click.option(
    "--kind",
    type=click.Choice(
        [
            "source",
            "weights",
            "torchscript",
            "exported",
            "conversion-report",
            "validation-report",
            "aoti",
            "executorch",
            "onnx",
        ]
    ),
    help="Fetch any stored artifact kind (overrides --format).",
)
@click.option(
    "--presign",
    is_flag=True,
    help="From a regctl server on an S3 store: take the bytes straight from the store through a "
    "presigned URL (still checked against the sha256).",
)
@click.option("--create-dirs", is_flag=True, help="Create the output file's directory if it is missing.")
@click.option(
    "--key",
    "key_files",
    multiple=True,
    metavar="PUB",
    help="Trust this public key (PEM): the bytes are written only when an attestation it signed names "
    "them (exit 6 otherwise); repeatable [default: REGCTL_TRUSTED_KEYS].",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was fetched as JSON.")
@click.pass_context
def fetch(
    ctx: click.Context,
    ref: str,
    output: Path,
    fmt: str,
    kind: str | None,
    presign: bool,
    create_dirs: bool,
    key_files: tuple[str, ...],
    as_json: bool,
) -> None:
    """Fetch the artifact of REF to a file; the checksum is verified before the file appears.

    An existing regular file is replaced once the new one is verified (like cp and curl -o); a
    directory, link, pipe or device is refused, and so is a missing directory without --create-dirs.
    """
    from regctl.attested import trusted_keys

    client = client_of(ctx)
    kind = kind or FORMATS[fmt]
    trusted = trusted_keys(key_files)
    if trusted or (kind in ALL_FORMATS and str(output) != "-"):
        _fetch_attested(ctx, client, ref, output, kind, trusted, presign, create_dirs, as_json)
        return
    if str(output) == "-":
        # Chunks go out as they arrive; a checksum mismatch at the end raises (exit 1), so a pipe
        # consumer sees a failed command rather than a silently wrong file.
        _stream_to_stdout(client, ref, kind)
        return
    with _progress_bar(enabled=not as_json and sys.stderr.isatty()) as progress:
        fetched = client.fetch(
            ref, output, kind=kind, progress=progress, presign=presign, create_dirs=create_dirs
        )
    artifact = fetched.artifact
    if as_json:
        emit_json({"ref": fetched.ref, "path": str(output), **artifact.to_json()})
    else:
        echo(
            f"{fetched.ref} {kind} -> {output} ({human_size(artifact.size)}, sha256 {artifact.sha256[:16]}…)"
        )


def _fetch_attested(  # type: ignore[no-untyped-def]
    ctx: click.Context,
    client,
    ref: str,
    output: Path,
    kind: str,
    trusted: list,
    presign: bool,
    create_dirs: bool,
    as_json: bool,
) -> None:
    """Fetch beside its attestation (`FILE.intoto.jsonl`); with trusted keys, only verified bytes land."""
    import tempfile

    from regctl.attested import ATTESTATION_SUFFIX, check
    from regctl.destination import check_destination
    from regctl.registry.errors import NotFound

    to_stdout = str(output) == "-"
    if to_stdout:
        spool = Path(tempfile.mkdtemp(prefix="regctl-fetch-"))
        staged = spool / "artifact"
    else:
        check_destination(output, create_dirs=create_dirs)  # a directory, link or device is refused
        staged = output.with_name(f".{output.name}.{os.getpid()}.unverified")
    try:
        with _progress_bar(enabled=not as_json and not to_stdout and sys.stderr.isatty()) as progress:
            fetched = client.fetch(ref, staged, kind=kind, progress=progress, presign=presign)
        artifact = fetched.artifact
        try:
            attestation = client.attestation(fetched.ref, kind) if kind in ALL_FORMATS else None
        except NotFound:  # unsigned (a server says not_found, whichever artifact is missing)
            attestation = None
        if trusted:
            known = client.keys()
            retired = {k.key_id: k.retired_at for k in known if k.retired_at is not None}
            check(f"{fetched.ref} {kind}", artifact.sha256, attestation, trusted, retired)
        if to_stdout:
            sys.stdout.buffer.write(staged.read_bytes())
            sys.stdout.buffer.flush()
            return
        os.replace(staged, output)
        if attestation is not None:
            beside = output.with_name(output.name + ATTESTATION_SUFFIX)
            partial = beside.with_name(f".{beside.name}.{os.getpid()}.part")
            partial.write_bytes(attestation)
            os.replace(partial, beside)
    finally:
        staged.unlink(missing_ok=True)
        if to_stdout:
            spool.rmdir()
    verified = "verified against a trusted key" if trusted else ("attested" if attestation else "unsigned")
    if as_json:
        emit_json({"ref": fetched.ref, "path": str(output), **artifact.to_json(), "attestation": verified})
    else:
        echo(
            f"{fetched.ref} {kind} -> {output} ({human_size(artifact.size)}, sha256 {artifact.sha256[:16]}…, "
            f"{verified})"
        )


EXIT_READER_GONE = 141  # what a shell reports for a writer killed by SIGPIPE, as `cat file | head` is


def _stream_to_stdout(client, ref: str, kind: str) -> None:  # type: ignore[no-untyped-def]
    """Write the artifact to stdout; a reader that stops early (`| head`) ends the command quietly."""
    try:
        client.stream(ref, sys.stdout.buffer, kind=kind)
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit: point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(EXIT_READER_GONE) from None


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on a terminal; nothing when piped or printing JSON."""
    if not enabled:
        yield None
        return
    from rich.progress import (  # ~18 ms, only when a bar is shown (cli/render.py: rich is lazy)
        BarColumn,
        DownloadColumn,
        Progress,
        TransferSpeedColumn,
    )

    with Progress(
        BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console(stderr=True), transient=True
    ) as bar:
        task = bar.add_task("fetch", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
