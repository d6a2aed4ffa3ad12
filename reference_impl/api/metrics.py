"""The gateway's Prometheus metrics, in a registry per app.

A registry per app (not prometheus_client's global one) lets many apps live in one process,
as they do in the tests, without "duplicated timeseries" errors; the runtime may pass its own
registry so its collectors are exported by the same /metrics.

Latency is labelled by the route template (`/v1/payments/{payment_id}`), never the raw path,
so label cardinality stays bounded whatever ids clients send.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Ack latency of a payment gateway sits in the low milliseconds; long-polls run up to 30 s.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.request_seconds = Histogram(
            "testbed_gateway_request_duration_seconds",
            "HTTP request latency by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
            buckets=_BUCKETS,
        )
        self.payments = Counter(
            "testbed_gateway_payments",
            "POST /v1/payments answers by outcome: accepted (new payment, status received), "
            "replayed, invalid, key_reused, in_flight.",
            ["outcome"],
            registry=registry,
        )


class MetricsMiddleware:
    """Times every HTTP request and records it under its route template and status code."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_seconds.labels(template, scope["method"], str(status)).observe(
                time.perf_counter() - started
            )
