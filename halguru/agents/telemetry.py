"""OpenTelemetry traces of runs, exported over OTLP/HTTP: off, and free, unless an endpoint is configured.

The standard SDK environment variables turn it on and configure it: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), ``OTEL_SERVICE_NAME`` (default ``halguru``), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``; ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none`` turn it off again. Without an endpoint this module is all that loads: nothing
from ``opentelemetry`` is imported, and a run pays one environment lookup.

``run()`` hands each run's trace an ``observer``; it builds the spans from the events as they are traced
(halguru.agents.otel). Serve mode sets a ``RequestTrace`` per request (the worker one per job): a run started
in it joins the caller's ``traceparent`` and leaves its trace and span ids for the request's JSON log lines.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from halguru.agents.events import BaseEvent

ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_broken: list[str] = []  # why telemetry could not start (said once, then runs go on untraced)
_SPANS_MODULE = "halguru.agents.otel"


def enabled() -> bool:
    """An OTLP endpoint is set and the SDK is not switched off."""
    env = os.environ
    if not (env.get(ENDPOINTS[0]) or env.get(ENDPOINTS[1])):
        return False
    return (env.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"
            and env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none")


def observer(kind: str | None) -> Callable[[BaseEvent], None] | None:
    """What turns one run's events into spans (``kind``: the agent's driver, "team", "workflow" or None for a
    plain agent), or None when telemetry is off."""
    if not enabled() or _broken:
        return None
    try:
        from halguru.agents.otel import RunSpans

        return RunSpans(kind)
    except Exception as exc:  # not installed, or the SDK refuses its settings: runs go on without traces
        _broken.append(f"{type(exc).__name__}: {exc}")
        hint = " (pip install 'halguru[otel]')" if isinstance(exc, ImportError) else ""
        logging.getLogger(__name__).warning("OpenTelemetry is configured but cannot start, no traces are "
                                            "exported: %s%s", _broken[0], hint)
        return None


@dataclass
class RequestTrace:
    """One serve-mode request or worker job: the caller's trace context (W3C headers) and the ids of the first
    run it started."""

    traceparent: str = ""
    tracestate: str = ""
    trace_id: str = ""
    span_id: str = ""


REQUEST: ContextVar[RequestTrace | None] = ContextVar("halguru_request_trace", default=None)


def log_ids() -> dict[str, Any]:
    """``trace_id`` and ``span_id`` for a log line written while a request that started a run is handled."""
    current = REQUEST.get()
    if current is None or not current.trace_id:
        return {}
    return {"trace_id": current.trace_id, "span_id": current.span_id}


def shutdown() -> None:
    """Export what is buffered and stop the exporter (also done at process exit); nothing when never started."""
    spans = sys.modules.get(_SPANS_MODULE)
    if spans is not None:
        spans.shutdown()
