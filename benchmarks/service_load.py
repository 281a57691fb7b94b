"""Closed-loop HTTP load for benchmarks/service.py: N client threads, each with its own keep-alive connection.

Each client sends its next request as soon as the previous answer is read in full, so the measured rate
is what the server sustains at that concurrency. Threads with one `httpx.Client` each were chosen over an
`httpx.AsyncClient`: on this kind of small machine the async client spent about three times the CPU per
request, so the load generator, not the server under test, would have set the pace.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class Call:
    """One kind of request in the mix: a label for the report, the path, extra headers, the right status."""

    label: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    expect: int = 200


@dataclass
class LoadResult:
    """What a load run saw: answers by (label, status), transport errors by message, latencies."""

    seconds: float
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def answered(self) -> int:
        """Requests that got an HTTP answer, whatever its status."""
        return sum(self.statuses.values())

    def count(self, low: int, high: int) -> int:
        """Answers with a status in [low, high)."""
        return sum(n for (_, status), n in self.statuses.items() if low <= status < high)

    def unexpected(self, calls: list[Call]) -> int:
        """Answers whose status is not the one their call should get."""
        expected = {call.label: call.expect for call in calls}
        return sum(n for (label, status), n in self.statuses.items() if status != expected.get(label))

    def by_label(self) -> dict[str, dict[str, int]]:
        """{label: {status: count}} for the JSON report."""
        table: dict[str, dict[str, int]] = {}
        for (label, status), n in sorted(self.statuses.items()):
            table.setdefault(label, {})[str(status)] = n
        return table

    def latency_ms(self) -> dict[str, float]:
        """Median, 99th percentile and maximum latency in milliseconds."""
        if len(self.latencies) < 2:
            return {}
        cuts = statistics.quantiles(self.latencies, n=100)
        return {
            "p50": round(cuts[49] * 1e3, 1),
            "p99": round(cuts[98] * 1e3, 1),
            "max": round(max(self.latencies) * 1e3, 1),
        }

    def merge(self, other: LoadResult) -> None:
        """Add another run's (or client's) counts to these; seconds are not touched."""
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)
        self.latencies.extend(other.latencies)


def closed_loop(
    base_url: str,
    token: str,
    calls: list[Call],
    *,
    clients: int,
    seconds: float,
    timeout: float = 30.0,
) -> LoadResult:
    """Run `clients` threads for `seconds`; client i cycles through `calls` starting at call i.

    Clients are created before the clock starts (an httpx.Client takes milliseconds to build), and all
    start together on a barrier. `timeout` is the real remote client's, so a server slower than that
    counts as a transport error just as it would fail a `regctl` command.
    """
    results = [LoadResult(seconds) for _ in range(clients)]
    clock = [0.0, 0.0]  # start and deadline, set once every client is ready, read by all of them

    def start_clock() -> None:
        clock[0] = time.monotonic()
        clock[1] = clock[0] + seconds

    barrier = threading.Barrier(clients + 1, action=start_clock)  # the action runs before anyone is released

    def client(index: int) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(base_url=base_url, headers=headers, timeout=timeout, limits=limits) as http:
            barrier.wait()
            _drive(http, calls, index, clock, results[index])

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    for thread in threads:
        thread.join()
    total = LoadResult(time.monotonic() - clock[0])
    for result in results:
        total.merge(result)
    return total


def _drive(http: httpx.Client, calls: list[Call], index: int, clock: list[float], out: LoadResult) -> None:
    """One client's loop: send, read the whole answer, record, repeat until the deadline."""
    turn = index
    while time.monotonic() < clock[1]:
        call = calls[turn % len(calls)]
        turn += 1
        start = time.perf_counter()
        try:
            response = http.get(call.path, headers=call.headers)
        except httpx.HTTPError as exc:
            out.errors[f"{call.label}: {type(exc).__name__}: {exc}"] += 1
            continue
        out.latencies.append(time.perf_counter() - start)
        out.statuses[(call.label, response.status_code)] += 1
