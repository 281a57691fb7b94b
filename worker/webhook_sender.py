"""Sending webhook deliveries: claim one, POST its signed body, record the attempt.

Used by the Celery task (worker/tasks.py) and, without a broker, by whichever process ran the job
or made the change: it sends in a background thread (`send_in_background`), so a receiver that is
slow or down never holds up a job or a command's result; receivers are served in parallel lanes,
one delivery at a time per receiver (`send_due`). Each POST has a total deadline of
DELIVERY_TIMEOUT_S, whatever the receiver does (a slow drip of bytes included), and follows no
redirect. No Celery here, no SQL (registry/deliveries.py), no torch.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable

from regctl.registry.deliveries import (
    ClaimedDelivery,
    SendResult,
    claim_delivery,
    due_deliveries,
    due_urls,
    record_attempt,
)
from regctl.registry.entities import DeliveryInfo
from regctl.registry.schema import utcnow
from regctl.registry.settings import Settings
from regctl.webhook_signature import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from regctl.worker.webhook_target import TargetRefused, checked_target

log = logging.getLogger("regctl.webhooks")
DELIVERY_TIMEOUT_S = 10.0
BATCH = 100
PARALLEL = 8  # receivers sent to at once by one sender
USER_AGENT = "regctl-webhooks"


def headers_for(claimed: ClaimedDelivery, timestamp: int) -> dict[str, str]:
    """The headers of one attempt, signed at `timestamp` (unix seconds)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: claimed.event,
        DELIVERY_HEADER: str(claimed.id),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(claimed.secret, claimed.body, timestamp),
    }


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float = DELIVERY_TIMEOUT_S,
    allowed: tuple[str, ...] = (),
) -> SendResult:
    """POST `body` and report the status code, or why there is none; never longer than `timeout` seconds.

    The host is resolved and checked first, and the request goes to the address checked
    (worker/webhook_target.py; `allowed` is REGCTL_WEBHOOK_ALLOW_PRIVATE). httpx's timeouts bound
    each network operation, not the whole exchange, so the request runs on a helper thread that is
    abandoned at the deadline (it ends at its own next timeout). The response body is never read:
    the status code is all a delivery needs.
    """
    import httpx  # here, not at the top: ~115 ms a direct `regctl alias set` never pays without webhooks

    # httpx logs every request's URL at INFO, and a receiver's URL often carries its own secret.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
    outcome: dict[str, object] = {}

    def send() -> None:
        try:
            target = checked_target(url, allowed)
        except TargetRefused as exc:
            outcome["error"] = f"refused: {exc}"
            return
        # the address checked, by name: the Host header, and TLS's server name and certificate check
        named = {**headers, "Host": target.authority}
        extensions = {"sni_hostname": target.host} if target.url.startswith("https:") else {}
        try:
            # trust_env=False: no proxy variables and no .netrc credentials go to a receiver's host.
            with (
                httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
                client.stream(
                    "POST", target.url, content=body, headers=named, extensions=extensions
                ) as response,
            ):
                outcome["status"] = response.status_code
                if response.is_redirect:
                    where = response.headers.get("location", "?")[:200]
                    outcome["error"] = f"redirected to {where}; redirects are not followed"
        except Exception as exc:
            outcome["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    started_at, start = utcnow(), time.monotonic()
    helper = threading.Thread(target=send, name="regctl-webhook-post", daemon=True)
    helper.start()
    helper.join(timeout)
    duration_ms = int((time.monotonic() - start) * 1000)
    if helper.is_alive():
        return SendResult(started_at, duration_ms, None, f"no answer within {timeout:g} s")
    status = outcome.get("status")
    error = outcome.get("error")
    return SendResult(
        started_at,
        duration_ms,
        status if isinstance(status, int) else None,
        error if isinstance(error, str) else None,
    )


def deliver(settings: Settings, delivery_id: int) -> DeliveryInfo | None:
    """One attempt at delivery `delivery_id` if it is due; None when it is not (sent, waiting, or taken)."""
    claimed = claim_delivery(settings, delivery_id)
    if claimed is None:
        return None
    signed = headers_for(claimed, int(time.time()))
    result = post(claimed.url, claimed.body, signed, allowed=settings.webhook_allow_private)
    return record_attempt(settings, claimed, result)


def send_due(settings: Settings, *, stop: Callable[[], bool] = lambda: False) -> int:
    """Attempt every delivery due now until none is left or `stop()`; how many were attempted.

    Receivers are served side by side, up to PARALLEL at once, each by one lane (a thread) that
    sends its deliveries in turn: a receiver that never answers costs only its own lane its 10 s per
    attempt. Plain threads, not an executor: a one-shot command sends from an exit hook, after
    `concurrent.futures` has stopped taking work.
    """
    done = 0
    lanes: dict[str, threading.Thread] = {}
    finished: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
    while True:
        # once asked to stop, no lane starts and each running one ends after its current attempt
        for url in due_urls(settings, BATCH) if not stop() else ():
            if url not in lanes and len(lanes) < PARALLEL:
                lanes[url] = threading.Thread(
                    target=_lane,
                    args=(settings, url, stop, finished),
                    name="regctl-webhook-lane",
                    daemon=True,
                )
                lanes[url].start()
        if not lanes:
            return done
        url, count = finished.get()
        lanes.pop(url)
        done += count


def _lane(
    settings: Settings, url: str, stop: Callable[[], bool], finished: queue.SimpleQueue[tuple[str, int]]
) -> None:
    """Send what is due to `url`, one delivery after another, until none is left or `stop()`."""
    done = 0
    try:
        while not stop():
            due = due_deliveries(settings, BATCH, url=url)
            for delivery_id in due:
                if stop():
                    break
                if deliver(settings, delivery_id) is not None:
                    done += 1
            if len(due) < BATCH:
                break
    except Exception:  # the database went away: what is left stays due for the next sender
        log.warning("cannot send webhook deliveries to one receiver now; they stay queued", exc_info=True)
    finally:
        finished.put((url, done))


# -- in-process sending (no broker) -----------------------------------------------------------------

_lock = threading.Lock()
_threads: dict[str, threading.Thread] = {}
_again: set[str] = set()
_exiting = threading.Event()
_exit_hook: list[Callable[[], None]] = []
EXIT_WAIT_S = DELIVERY_TIMEOUT_S + 2.0


def send_in_background(settings: Settings) -> threading.Thread:
    """Send what is due from a daemon thread of this process; one per database, asked again if busy.

    At interpreter exit, sending goes on for up to EXIT_WAIT_S; what is left stays in the outbox
    for the next sender (the next embedded job, command or server, or a worker's reconciler).
    """
    key = settings.database_url
    with _lock:
        running = _threads.get(key)
        if running is not None and running.is_alive():
            _again.add(key)
            return running
        if not _exit_hook:
            atexit.register(_wait_at_exit)
            _exit_hook.append(_wait_at_exit)
        thread = threading.Thread(target=_passes, args=(settings,), name="regctl-webhooks", daemon=True)
        _threads[key] = thread
        thread.start()
        return thread


def _passes(settings: Settings) -> None:
    key = settings.database_url
    while True:
        try:
            send_due(settings, stop=_exiting.is_set)
        except Exception:  # the database went away: the deliveries stay due for the next sender
            log.warning("cannot send webhook deliveries now; they stay queued", exc_info=True)
        with _lock:
            if key not in _again or _exiting.is_set():
                _threads.pop(key, None)
                return
            _again.discard(key)


def wait_for_background(timeout: float) -> bool:
    """Wait up to `timeout` seconds for this process's background sends; True when none is left."""
    deadline = time.monotonic() + timeout
    while True:
        with _lock:
            threads = list(_threads.values())
        if not threads:
            return True
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if time.monotonic() >= deadline:
            with _lock:
                return not any(t.is_alive() for t in _threads.values())


def _wait_at_exit() -> None:
    # A one-shot command sends what it caused before it goes, but never waits longer than one
    # attempt's timeout (and a little): after that, no new attempt starts.
    wait_for_background(EXIT_WAIT_S)
    _exiting.set()
