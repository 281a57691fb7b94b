"""The root click group: global options, settings, and the one place errors become exit codes."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import click

from regctl.cli.render import echo
from regctl.login import find_login
from regctl.registry.errors import RegctlError
from regctl.registry.settings import Settings


class RegctlGroup(click.Group):
    """A click group that turns RegctlError into a one-line message and its documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; map known errors to exit codes, show tracebacks only with --debug."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except RegctlError as exc:
            _report(ctx, str(exc))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            echo("error: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            # The reader went away (`regctl ... | head`): nothing to say, and Python's final flush of
            # stdout must not fail again (the Python docs' recipe for SIGPIPE).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(1)
        except Exception as exc:
            _report(ctx, f"internal error: {type(exc).__name__}: {exc}; rerun with --debug for the traceback")
            ctx.exit(1)


def _report(ctx: click.Context, message: str) -> None:
    if (ctx.obj or {}).get("debug"):
        traceback.print_exc(file=sys.stderr)
    first = " ".join(message.split("\n")[0].split())
    echo(f"error: {first}", err=True)  # errors quote model and user text: escaped, never raw


def client_of(ctx: click.Context):  # type: ignore[no-untyped-def]
    """The registry this invocation talks to: the server at --url / REGCTL_URL / `regctl login`, else direct.

    Remote mode imports only httpx and pydantic (never SQLAlchemy, Celery or torch).
    """
    obj = ctx.find_root().obj
    if "client" not in obj:
        login = find_login(url=obj["options"].get("url"))
        if login is not None:
            from regctl.remote import Client  # only the client this invocation uses: httpx, 60–90 ms

            obj["client"] = Client(login.url, login.token)
        else:
            from regctl.local import LocalClient  # likewise: the direct client, 3–6 ms

            obj["client"] = LocalClient(settings_of(ctx))
        ctx.call_on_close(obj["client"].close)
    return obj["client"]


def settings_of(ctx: click.Context) -> Settings:
    """The settings for this invocation, built once from the environment and the global options."""
    obj = ctx.find_root().obj
    if "settings" not in obj:
        opts = obj["options"]
        obj["settings"] = Settings.from_env(
            home=opts["home"],
            database_url=opts["database_url"],
            artifact_store=opts["artifact_store"],
            broker_url=opts["broker_url"],
        )
    return obj["settings"]


@click.group(
    cls=RegctlGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option("--home", envvar="REGCTL_HOME", help="Where the embedded registry lives [default: ~/.regctl].")
@click.option(
    "--database-url",
    envvar="REGCTL_DATABASE_URL",
    help="SQLAlchemy URL of the registry database, e.g. postgresql://user:pw@host/db "
    "[default: sqlite:///$REGCTL_HOME/registry.db].",
)
@click.option(
    "--artifact-store",
    envvar="REGCTL_ARTIFACT_STORE",
    help="Where artifacts are stored: a directory or s3://bucket/prefix [default: $REGCTL_HOME/artifacts].",
)
@click.option(
    "--broker-url",
    envvar="REGCTL_BROKER_URL",
    help="Celery broker URL, e.g. redis://localhost:6379/0; unset runs jobs in-process.",
)
@click.option(
    "--url",
    envvar="REGCTL_URL",
    help="A regctl server (regctl serve) to talk to instead of the database; the token comes from "
    "REGCTL_TOKEN or 'regctl login' [default: the URL 'regctl login' saved, else direct mode].",
)
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
@click.version_option(package_name="regctl")
@click.pass_context
def cli(
    ctx: click.Context,
    home: str | None,
    database_url: str | None,
    artifact_store: str | None,
    broker_url: str | None,
    url: str | None,
    debug: bool,
) -> None:
    """regctl: register PyTorch models, convert them to TorchScript proven against eager PyTorch,
    and fetch versioned artifacts for deployment.

    \b
    REF is NAME (newest ready version), NAME:VERSION or NAME@ALIAS.
    Exit codes: 0 success, 1 a job or validation failed, 2 bad usage or input,
    3 not found, 4 a service (server, database, broker, store) is unreachable,
    5 not allowed (no valid token, or its role or model pattern does not cover the action),
    6 the registry's data needs attention (outdated schema, damaged database or blob: regctl doctor).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["options"] = {
        "home": home,
        "database_url": database_url,
        "artifact_store": artifact_store,
        "broker_url": broker_url,
        "url": url,
    }
