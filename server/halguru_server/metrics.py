"""Prometheus metrics, one registry per app (several apps in one process, as in tests, do not clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("halguru_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("halguru_http_request_duration_seconds", "HTTP latency (to the first byte "
                                 "for streams)", ["route"], registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.runs = Counter("halguru_runs", "agent runs by final status", ["agent", "status"], registry=r)
        self.run_duration = Histogram("halguru_run_duration_seconds", "agent run duration", ["agent"],
                                      registry=r, buckets=(0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
        self.tokens = Counter("halguru_tokens", "model tokens", ["agent", "direction"], registry=r)
        self.tool_calls = Counter("halguru_tool_calls", "tool calls", ["agent", "tool"], registry=r)
        self.errors = Counter("halguru_errors", "error events and failed requests", ["kind"], registry=r)
        self.queue_depth = Gauge("halguru_queue_depth", "runs waiting for a model", ["model"], registry=r)
        self.streams = Gauge("halguru_sse_streams", "open event streams", registry=r)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
