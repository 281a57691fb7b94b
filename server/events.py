"""Job events for server-sent-event streams: one poller for every watched job, however many streams.

A single task reads every watched job in one query a few times a second and hands each change to the
streams that follow it, so a thousand `--wait` clients cost one query per tick, not a thousand.
A finished job's stream moves on to the job its success created (`parent_id`), so a convert is
followed into its validate job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.concurrency import run_in_threadpool

from regctl.registry.entities import JobInfo
from regctl.registry.jobs import following_job, jobs_by_id
from regctl.registry.settings import Settings

log = logging.getLogger("regctl.events")
TICK_S = 0.25
KEEPALIVE_S = 15.0


class JobHub:
    """Polls the watched jobs and fans their changes out to the streams that follow them."""

    def __init__(self, settings: Settings, tick: float = TICK_S) -> None:
        self.settings, self.tick = settings, tick
        self._watchers: dict[int, set[asyncio.Queue[JobInfo]]] = defaultdict(set)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the poller on the running event loop."""
        self._task = asyncio.create_task(self._run(), name="regctl-job-hub")

    async def stop(self) -> None:
        """Stop the poller."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def stream(self, job: JobInfo, disconnected: Callable[[], Awaitable[bool]]) -> AsyncIterator[str]:
        """The event stream of a job chain, until it ends or the client goes away."""
        current: JobInfo | None = job
        while current is not None:
            last = current
            async for update in self._changes(current, disconnected):
                if update is None:
                    yield ": keepalive\n\n"
                    continue
                last = update
                yield _event("job", update.to_json())
            if not last.finished or last.state != "succeeded":
                break
            current = await run_in_threadpool(following_job, self.settings, last.id)
        yield _event("end", {"id": last.id, "state": last.state})

    async def _changes(
        self, job: JobInfo, disconnected: Callable[[], Awaitable[bool]]
    ) -> AsyncIterator[JobInfo | None]:
        """Yield the job at each change of state, progress or attempt; None now and then as a keep-alive."""
        # Only the newest state matters: a stream whose client reads slowly skips states, never piles them up.
        queue: asyncio.Queue[JobInfo] = asyncio.Queue(maxsize=1)
        self._watchers[job.id].add(queue)
        self._wake.set()
        seen, quiet_since = None, time.monotonic()
        try:
            update = job
            while True:
                key = (update.state, update.progress, update.attempts)
                if key != seen:
                    seen, quiet_since = key, time.monotonic()
                    yield update
                elif time.monotonic() - quiet_since > KEEPALIVE_S:
                    quiet_since = time.monotonic()
                    yield None
                if update.finished or await disconnected():
                    return
                update = await queue.get()
        finally:
            watchers = self._watchers.get(job.id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[job.id]

    async def _run(self) -> None:
        while True:
            if not self._watchers:
                await self._wake.wait()
                self._wake.clear()
            ids = list(self._watchers)
            try:
                found = await run_in_threadpool(jobs_by_id, self.settings, ids)
            except Exception:
                log.exception("cannot read watched jobs; trying again")
                found = []
            for job in found:
                for queue in list(self._watchers.get(job.id, ())):
                    if queue.full():
                        queue.get_nowait()
                    queue.put_nowait(job)
            await asyncio.sleep(self.tick)


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
