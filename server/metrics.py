"""`/metrics` in Prometheus' text format (prometheus-client): the registry's jobs and this server's requests.

Job numbers come from the database at scrape time (`registry.stats`), so every API server reports
the whole fleet; request latency is this process's own. Labels never carry model names or tokens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regctl.registry.settings import Settings
from regctl.registry.stats import registry_stats

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RegistryCollector(Collector):
    """Reads the registry's job counts at each scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        """The job metrics, fresh from the database."""
        stats = registry_stats(self.settings)
        jobs = GaugeMetricFamily("regctl_jobs", "Jobs by kind and state", labels=["kind", "state"])
        for (kind, state), count in sorted(stats.jobs.items()):
            jobs.add_metric([kind, state], count)
        yield jobs
        queued = GaugeMetricFamily("regctl_queue_depth", "Jobs waiting per queue", labels=["queue"])
        for queue, count in sorted(stats.queued.items()):
            queued.add_metric([queue], count)
        yield queued
        versions = GaugeMetricFamily("regctl_versions", "Model versions by status", labels=["status"])
        for status, count in sorted(stats.versions.items()):
            versions.add_metric([status], count)
        yield versions
        outcomes = GaugeMetricFamily(
            "regctl_conversions",
            "Finished conversions by chosen method and outcome",
            labels=["method", "outcome"],
        )
        for (method, outcome), count in sorted(stats.conversions.items()):
            outcomes.add_metric([method, outcome], count)
        yield outcomes
        durations = HistogramMetricFamily(
            "regctl_job_duration_seconds", "Run time of finished jobs, by kind (stage)", labels=["kind"]
        )
        for kind, histogram in sorted(stats.durations.items()):
            buckets = [(repr(bound), count) for bound, count in histogram.buckets] + [
                ("+Inf", histogram.count)
            ]
            durations.add_metric([kind], buckets, histogram.total)
        yield durations


class RequestLatency:
    """ASGI middleware: observe each request's duration, to its last byte, by route template and status."""

    def __init__(self, app: ASGIApp, histogram: Histogram, prefix: str) -> None:
        self.app, self.histogram, self.prefix = app, histogram, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on and time it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            elapsed = time.perf_counter() - started
            self.histogram.labels(scope["method"], self._template(scope), str(status[0])).observe(elapsed)

    def _template(self, scope: Scope) -> str:
        """The route's template (/api/v1/versions/{ref}), never a concrete path with a model name."""
        template = getattr(scope.get("route"), "path", None)
        if template is None:
            return "unmatched"
        # Routes of an included router carry their path without the router's prefix.
        if scope.get("path", "").startswith(self.prefix + "/") and not template.startswith(self.prefix):
            template = self.prefix + template
        return template


def install_metrics(app: FastAPI, settings: Settings, prefix: str) -> None:
    """Add `/metrics` and the request-latency middleware to `app`."""
    registry = CollectorRegistry()
    registry.register(RegistryCollector(settings))
    latency = Histogram(
        "regctl_api_request_duration_seconds",
        "API request latency",
        ["method", "route", "status"],
        buckets=REQUEST_BUCKETS,
        registry=registry,
    )

    # Plain ASGI, not BaseHTTPMiddleware: artifact downloads and the event stream pass through untouched.
    app.add_middleware(RequestLatency, histogram=latency, prefix=prefix)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
