"""``/metrics`` in the Prometheus text format: HTTP traffic, store size, projector lag."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from hub.ports import Engine
from hub.projectors import ProjectorRunner


class _StoreCollector(Collector):
    def __init__(self, engine: Engine, runner: ProjectorRunner) -> None:
        self.engine = engine
        self.runner = runner

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "pixelhub_projector_lag",
            "Changes committed but not yet projected",
            labels=["projector"],
        )
        for name, value in self.runner.lag().items():
            lag.add_metric([name], value)
        yield lag
        feed = GaugeMetricFamily("pixelhub_change_feed_last_seq", "Last change-feed sequence")
        feed.add_metric([], self.runner.feed.last_seq())
        yield feed
        count = GaugeMetricFamily("pixelhub_resources", "Current resources in the store")
        count.add_metric([], self.engine.repository.count())
        yield count


class HttpMetrics:
    """Request counters and latency histograms, labelled by route template, not raw path."""

    def __init__(self, engine: Engine, runner: ProjectorRunner) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pixelhub_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pixelhub_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.registry.register(_StoreCollector(engine, runner))

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        self.requests.labels(request.method, template, str(response.status_code)).inc()
        self.latency.labels(request.method, template).observe(time.perf_counter() - start)
        return response

    def render(self) -> bytes:
        return generate_latest(self.registry)
