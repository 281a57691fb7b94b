"""Following jobs for `--wait`, `jobs watch` and the embedded default, through whichever client is in use."""

from __future__ import annotations

import sys

from regctl.cli.render import echo, status_text
from regctl.registry.entities import JobInfo
from regctl.registry.errors import ConversionFailed
from regctl.worker.dispatch import dispatcher_for


def must_follow(client, wait: bool) -> bool:  # type: ignore[no-untyped-def]
    """True when the jobs must be followed: asked to, or direct where only a follower runs them."""
    return wait or (client.mode == "direct" and dispatcher_for(client.settings).runs_jobs_when_followed)


def must_run_here(client, wait: bool) -> bool:  # type: ignore[no-untyped-def]
    """True when this process will run the jobs it follows: direct, on the embedded default, following."""
    return (
        client.mode == "direct"
        and dispatcher_for(client.settings).runs_jobs_when_followed
        and must_follow(client, wait)
    )


def announce(jobs: list[JobInfo]) -> None:
    """Say which jobs were queued (when not following them)."""
    for job in jobs:
        echo(f"queued {job.kind} job {job.id} for {job.model}:{job.version} on queue {job.queue}")


def start_and_follow(client, jobs: list[JobInfo], *, wait: bool, quiet: bool = False) -> int:  # type: ignore[no-untyped-def]
    """Follow the jobs when waiting (always where only a follower runs them), else announce them.

    Returns the exit code: 0 when the chain succeeded (or was only queued), 1 when it failed.
    """
    if not jobs:
        return 0
    if not must_follow(client, wait):
        if not quiet:
            announce(jobs)
        return 0
    return watch(client, jobs[0], quiet=quiet)


def watch(client, job: JobInfo, *, quiet: bool = False) -> int:  # type: ignore[no-untyped-def]
    """Show live progress of the job chain on stderr and return its exit code (0 ok, 1 failed)."""
    last = job
    with _Display(quiet) as display:
        for update in client.follow(job):
            last = update
            display.show(update)
    if last.state == "succeeded":
        if not quiet:
            echo(
                f"{last.model}:{last.version} is ready"
                if last.kind == "validate" or (last.result or {}).get("proved")
                else f"job {last.id} succeeded",
                err=True,
            )
        return 0
    if not quiet and last.state == "failed":
        echo(f"error: {ConversionFailed.of_job(last)}", err=True)
    elif not quiet:
        echo(
            f"error: {last.kind} job {last.id} for {last.model}:{last.version} {last.state}: "
            f"{_one_line(last.error)}; details: regctl versions show {last.model}:{last.version} --json",
            err=True,
        )
    return 1


def _one_line(text: str | None) -> str:
    # Whitespace first (a newline becomes a space), then echo escapes whatever else is hidden.
    return " ".join((text or "no reason recorded").split())[:600]


class _Display:
    """A rich spinner on a terminal; plain lines (one per change) when stderr is piped."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.live = not quiet and sys.stderr.isatty()
        self.status = None

    def __enter__(self) -> _Display:
        if self.live:
            from regctl.cli.render import console

            self.status = console(stderr=True).status(status_text("starting"))
            self.status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.__exit__(*exc)

    def show(self, job: JobInfo) -> None:
        text = f"{job.model}:{job.version} {job.kind} job {job.id} [{job.state}] {job.progress}"
        if self.status is not None:
            self.status.update(status_text(" ".join(text.split())))
        elif not self.quiet:
            echo(" ".join(text.split()), err=True)
