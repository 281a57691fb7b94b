"""Starting jobs and following them for `--wait`, `jobs watch` and the embedded in-process mode."""

from __future__ import annotations

import sys

import click

from registry.entities import JobInfo
from registry.settings import Settings


def preflight(settings: Settings) -> None:
    """Before writing anything for a job: make sure the broker (if any) answers, so we fail fast."""
    if not settings.embedded:
        from worker.dispatch import check_broker

        check_broker(settings)


def start_and_follow(settings: Settings, jobs: list[JobInfo], *, wait: bool, quiet: bool = False) -> int:
    """Hand the jobs to the worker layer; follow them when waiting (always in embedded mode).

    Returns the exit code: 0 when the chain succeeded (or was only queued), 1 when it failed.
    """
    if settings.embedded:
        return watch(settings, jobs[0], run_here=True, quiet=quiet)
    from worker.dispatch import publish

    publish(settings, jobs)
    if not wait:
        if not quiet:
            for job in jobs:
                click.echo(
                    f"queued {job.kind} job {job.id} for {job.model}:{job.version} on queue {job.queue}"
                )
        return 0
    return watch(settings, jobs[0], quiet=quiet)


def watch(settings: Settings, job: JobInfo, *, run_here: bool = False, quiet: bool = False) -> int:
    """Show live progress of the job chain on stderr and return its exit code (0 ok, 1 failed)."""
    from worker.follow import follow

    last = job
    with _Display(quiet) as display:
        for update in follow(settings, job, run_here=run_here):
            last = update
            display.show(update)
    if last.state == "succeeded":
        if not quiet:
            click.echo(
                f"{last.model}:{last.version} is ready"
                if last.kind == "validate"
                else f"job {last.id} succeeded",
                err=True,
            )
        return 0
    if not quiet:
        click.echo(
            f"error: {last.kind} job {last.id} for {last.model}:{last.version} {last.state}: "
            f"{_one_line(last.error)}; details: regctl versions show {last.model}:{last.version} --json",
            err=True,
        )
    return 1


def _one_line(text: str | None) -> str:
    return " ".join((text or "no reason recorded").split())[:600]


class _Display:
    """A rich spinner on a terminal; plain lines (one per change) when stderr is piped."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.live = not quiet and sys.stderr.isatty()
        self.status = None

    def __enter__(self) -> _Display:
        if self.live:
            from cli.render import console

            self.status = console(stderr=True).status("starting")
            self.status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.__exit__(*exc)

    def show(self, job: JobInfo) -> None:
        text = f"{job.model}:{job.version} {job.kind} job {job.id} [{job.state}] {job.progress}"
        if self.status is not None:
            self.status.update(text)
        elif not self.quiet:
            click.echo(text, err=True)
