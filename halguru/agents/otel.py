"""The spans of a run, built from its events (imported only when telemetry is on: halguru.agents.telemetry).

One tree per top-level run, with the GenAI semantic conventions' names::

    invoke_agent <agent> | invoke_workflow <agent>     the run (root; a child of the caller's span if any)
      chat <model>                                     a model call (ModelCall .. ModelResult)
      execute_tool <tool>                              a tool call (ToolCall .. ToolResult)
        invoke_agent <specialist>                      a team's ask_<agent>: the sub-run
      retrieval <knowledge base>                       a knowledge search
      step <step id>                                   a workflow step (StepStarted .. StepFinished)
        invoke_agent <agent> | execute_tool <tool>     what the step ran

Spans take their times from the events (``ts``; ``duration_ms`` where an event reports a finished piece of
work), so they are as long as the work was, not as the export. A failed run, call or step has status ERROR
and ``error.type``. A sub-run has no events of its own at its start and end: it opens with its first event,
under the step or tool call that is open in its parent, and ends with that step or call.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace as api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from halguru import __version__
from halguru.agents import telemetry

log = logging.getLogger(__name__)
_lock = threading.Lock()
_provider: TracerProvider | None = None
_tracer: api.Tracer | None = None
_registered: list[bool] = []  # the atexit hook, once
_ENDS_SUB_RUN = frozenset({"timeout", "model", "context", "internal", "limit"})  # a sub-run's errors that end it
_PROVIDERS: dict[str, str] = {}  # model name -> its provider (gen_ai.provider.name), "" when unknown
_SAMPLING = {"temperature": "gen_ai.request.temperature", "top_p": "gen_ai.request.top_p",
             "max_tokens": "gen_ai.request.max_tokens", "seed": "gen_ai.request.seed"}
# A command's exit waits at most this long for spans still buffered: a collector that is down would otherwise hold
# every `halguru run` for the exporter's retries (OTEL_EXPORTER_OTLP_TIMEOUT, 10 s). serve and the worker flush in
# full when they stop (shutdown() without a timeout).
EXIT_FLUSH_S = 2.0


def tracer() -> api.Tracer:
    """halguru's tracer on its own provider (the global one is left to the application), made once."""
    global _provider, _tracer
    with _lock:
        if _tracer is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            if protocol.strip() != "http/protobuf":
                log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s: halguru exports over http/protobuf only", protocol)
            resource = Resource.create({"service.version": __version__})
            if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
                resource = resource.merge(Resource({"service.name": "halguru"}))
            _provider = TracerProvider(resource=resource, shutdown_on_exit=False)  # ours is capped: _at_exit
            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            _tracer = _provider.get_tracer("halguru", __version__)
            if not _registered:
                atexit.register(_at_exit)
                _registered.append(True)
        return _tracer


def shutdown(timeout: float | None = None) -> None:
    """Flush and stop the exporter; a later run starts a new one. ``timeout``: wait at most that many seconds (None:
    as long as the exporter retries), then leave the spans unsent, said in one warning."""
    global _provider, _tracer
    with _lock:
        provider, _provider, _tracer = _provider, None, None
    if provider is None:
        return
    if timeout is None:
        provider.shutdown()
        return
    # the SDK's flush takes no deadline: it runs on a daemon thread, which the process's exit does not wait for
    flushing = threading.Thread(target=provider.shutdown, name="halguru-otel-flush", daemon=True)
    flushing.start()
    flushing.join(timeout)
    if flushing.is_alive():
        log.warning("OpenTelemetry: the collector did not take this run's spans within %g s; they are not "
                    "exported", timeout)


def _at_exit() -> None:
    shutdown(EXIT_FLUSH_S)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _provider_of(model: str) -> str:
    """The provider serving a model name (llama-cpp, openai, scripted...), looked up once per name."""
    if model not in _PROVIDERS:
        from halguru.models.registry import find_entry

        try:
            _PROVIDERS[model] = find_entry(model).provider
        except Exception:  # a model passed as an object under a name no registry knows
            _PROVIDERS[model] = ""
    return _PROVIDERS[model]


@dataclass
class _Run:
    """A run or sub-run: its span, what names its next sub-run, and its open calls and steps."""

    run_id: str
    span: Span
    conversation_id: str
    parent_key: tuple[str, str] | None = None  # the call or step of the parent run it runs in
    next_agent: str = ""  # the target of the last handoff (a team's ask_<agent> opens a sub-run of it)
    last_ns: int = 0
    error: str | None = None
    tokens: list[int] = field(default_factory=lambda: [0, 0])  # a sub-run's input and output tokens
    open: dict[str, Span] = field(default_factory=dict)  # "model", "tool:<call id>", "step:<step id>"
    steps: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # step id -> (number, kind, name)


class RunSpans:
    """One top-level run's events -> spans; called by the run's Trace for each event it numbers."""

    def __init__(self, kind: str | None):
        self.kind = kind
        self.tracer = tracer()
        self.runs: dict[str, _Run] = {}
        self.inside: dict[tuple[str, str], list[str]] = {}  # (run id, open key) -> the sub-runs it holds

    def __call__(self, event: Any) -> None:
        handler = _HANDLERS.get(event.type)
        if handler is None:
            return
        try:
            handler(self, event)
        except Exception:  # telemetry never breaks a run
            log.debug("span for %s event failed", event.type, exc_info=True)

    # -- spans ------------------------------------------------------------------------------------------

    def start(self, run: _Run, key: str, name: str, start: float, attributes: dict[str, Any],
              kind: SpanKind = SpanKind.INTERNAL, parent: Span | None = None) -> Span:
        """A span in ``run`` (under ``parent``, else the run's span), open under ``key`` until ``finish``."""
        span = self.tracer.start_span(name, api.set_span_in_context(parent or run.span), kind,
                                      {**attributes, "halguru.run_id": run.run_id}, start_time=_ns(start))
        run.open[key] = span
        return span

    def finish(self, run_id: str, key: str, end_ns: int, error: str | None = None, detail: str = "") -> Span | None:
        """End an open span (and the sub-runs it holds, first) at ``end_ns``, failed with ``error`` if given."""
        run = self.runs[run_id]
        span = run.open.pop(key, None)
        for child in self.inside.pop((run_id, key), []):
            self.end_run(child, None)
        if span is None:
            return None
        _end(span, end_ns, error, detail)
        return span

    def end_run(self, run_id: str, end_ns: int | None, error: str | None = None, detail: str = "") -> None:
        """End a run's open spans, then its own (a sub-run: at its last event)."""
        run = self.runs.get(run_id)
        if run is None or not run.span.is_recording():
            return
        end = end_ns if end_ns is not None else run.last_ns
        for key in list(run.open):
            self.finish(run_id, key, end, "interrupted" if error else None)
        if run_id != next(iter(self.runs)):  # a sub-run (the top-level run's totals come with run_finished)
            run.span.set_attributes({"gen_ai.usage.input_tokens": run.tokens[0],
                                     "gen_ai.usage.output_tokens": run.tokens[1]})
        _end(run.span, end, error or run.error, detail)

    # -- runs -------------------------------------------------------------------------------------------

    def root(self, event: Any) -> None:
        operation = "invoke_workflow" if self.kind == "workflow" else "invoke_agent"
        attributes = {"gen_ai.operation.name": operation, "gen_ai.agent.name": event.agent,
                      "gen_ai.conversation.id": event.conversation_id, "gen_ai.request.model": event.model}
        if self.kind == "workflow":
            attributes["gen_ai.workflow.name"] = event.agent
        if self.kind:
            attributes["halguru.orchestration"] = self.kind
        for key in ("request_id", "job_id"):  # serve mode's request, the worker's job
            if event.metadata.get(key):
                attributes[f"halguru.{key}"] = str(event.metadata[key])
        request = telemetry.REQUEST.get()
        parent = _caller(request)
        span = self.tracer.start_span(f"{operation} {event.agent}", parent, SpanKind.INTERNAL,
                                      {**attributes, "halguru.run_id": event.run_id}, start_time=_ns(event.ts))
        self.runs[event.run_id] = _Run(event.run_id, span, event.conversation_id, last_ns=_ns(event.ts))
        if request is not None and not request.trace_id:
            ids = span.get_span_context()
            request.trace_id, request.span_id = f"{ids.trace_id:032x}", f"{ids.span_id:016x}"

    def run_of(self, event: Any, start: float | None = None) -> _Run:
        """The run an event belongs to; a sub-run's first event opens its span."""
        run = self.runs.get(event.run_id)
        if run is None:
            run = self.sub_run(event, event.ts if start is None else start)
        run.last_ns = max(run.last_ns, _ns(event.ts))
        return run

    def sub_run(self, event: Any, start: float) -> _Run:
        parent_id = event.parent_run_id if event.parent_run_id in self.runs else next(iter(self.runs))
        parent = self.runs[parent_id]
        key = _enclosing(parent, event.step)
        name = parent.steps[key[5:]][2] if key and key.startswith("step:") else parent.next_agent or "agent"
        holder = parent.open.get(key) if key else None
        span = self.tracer.start_span(
            f"invoke_agent {name}", api.set_span_in_context(holder or parent.span), SpanKind.INTERNAL,
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name,
             "gen_ai.conversation.id": parent.conversation_id, "halguru.run_id": event.run_id,
             "halguru.parent_run_id": parent_id}, start_time=_ns(start))
        run = self.runs[event.run_id] = _Run(event.run_id, span, parent.conversation_id,
                                             (parent_id, key) if key else None)
        self.inside.setdefault((parent_id, key or ""), []).append(event.run_id)
        return run


def _caller(request: telemetry.RequestTrace | None) -> Context | None:
    """The context a serve-mode request came with (its ``traceparent``), else the current one."""
    if request is None or not request.traceparent:
        return None
    carrier = {"traceparent": request.traceparent, "tracestate": request.tracestate}
    return TraceContextTextMapPropagator().extract(carrier)


def _enclosing(parent: _Run, step: int) -> str:
    """The open step or call of ``parent`` a new sub-run runs in: its agent step (by number, else the last
    one started), else its last open tool call (a team's ask_<agent>); "" when none is open."""
    agent_steps = [sid for sid, (_, kind, _) in parent.steps.items()
                   if kind == "agent" and f"step:{sid}" in parent.open]
    numbered = [sid for sid in agent_steps if parent.steps[sid][0] == step]
    if numbered or agent_steps:
        return f"step:{(numbered or agent_steps)[-1]}"
    tools = [key for key in parent.open if key.startswith("tool:")]
    return tools[-1] if tools else ""


def _end(span: Span, end_ns: int, error: str | None, detail: str = "") -> None:
    if error:
        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR, detail or error))
    start = getattr(span, "start_time", None) or 0
    span.end(end_time=max(end_ns, start))


# -- events -> spans --------------------------------------------------------------------------------------


def _run_started(spans: RunSpans, event: Any) -> None:
    if not spans.runs:
        spans.root(event)


def _model_call(spans: RunSpans, event: Any) -> None:
    run = spans.run_of(event)
    attributes = {name: event.settings[key] for key, name in _SAMPLING.items() if event.settings.get(key) is not None}
    provider = _provider_of(event.model)
    if provider:
        attributes["gen_ai.provider.name"] = provider
    spans.start(run, "model", f"chat {event.model}", event.ts, {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": event.model,
        "gen_ai.conversation.id": run.conversation_id, **attributes}, SpanKind.CLIENT)


def _model_result(spans: RunSpans, event: Any) -> None:
    run = spans.run_of(event)
    span = run.open.get("model")
    if span is None:
        return
    span.set_attributes({"gen_ai.usage.input_tokens": event.prompt_tokens,
                         "gen_ai.usage.output_tokens": event.completion_tokens,
                         "gen_ai.response.finish_reasons": [event.finish_reason]})
    if event.cached_tokens:
        span.set_attribute("gen_ai.usage.cache_read.input_tokens", event.cached_tokens)
    if event.ttft_ms is not None:
        span.set_attribute("halguru.ttft_ms", round(event.ttft_ms, 3))
    run.tokens[0] += event.prompt_tokens
    run.tokens[1] += event.completion_tokens
    spans.finish(event.run_id, "model", _ns(event.ts))


def _tool_call(spans: RunSpans, event: Any) -> None:
    if event.client:  # the caller runs it, after this run: a mark on the run, not a span of work done here
        return _marker(spans, event)
    run = spans.run_of(event)
    step = run.open.get(f"step:{event.call_id}")  # a workflow's tool step calls its tool under the step's id
    spans.start(run, f"tool:{event.call_id}", f"execute_tool {event.name}", event.ts, {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": event.name,
        "gen_ai.tool.call.id": event.call_id, "gen_ai.tool.type": "function"}, parent=step)


def _tool_result(spans: RunSpans, event: Any) -> None:
    if event.client:  # the caller's result for a call an earlier run left to it
        return _marker(spans, event)
    spans.run_of(event)
    spans.finish(event.run_id, f"tool:{event.call_id}", _ns(event.ts), "tool_error" if event.is_error else None,
                 event.content[:200] if event.is_error else "")


def _retrieval(spans: RunSpans, event: Any) -> None:
    started = event.ts - event.duration_ms / 1000
    run = spans.run_of(event, started)
    tools = [span for key, span in run.open.items() if key.startswith("tool:")]  # search_knowledge, if open
    span = spans.start(run, "retrieval", f"retrieval {event.knowledge_base}".strip(), started, {
        "gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": event.knowledge_base,
        "halguru.retrieval.hits": len(event.hits)}, parent=tools[-1] if tools else None)
    run.open.pop("retrieval", None)
    span.end(end_time=max(_ns(event.ts), _ns(started)))


def _step_started(spans: RunSpans, event: Any) -> None:
    run = spans.run_of(event)
    run.steps[event.step_id] = (event.step, event.kind, event.name)
    spans.start(run, f"step:{event.step_id}", f"step {event.step_id}", event.ts, {
        "halguru.step.id": event.step_id, "halguru.step.kind": event.kind, "halguru.step.name": event.name})


def _step_finished(spans: RunSpans, event: Any) -> None:
    run = spans.run_of(event)
    key = f"step:{event.step_id}"
    span = run.open.get(key)
    if span is None:  # skipped: it never started
        run_span = run.span
        run_span.add_event("halguru.step_skipped", {"halguru.step.id": event.step_id}, _ns(event.ts))
        return
    span.set_attribute("halguru.step.status", event.status)
    failed = event.status == "failed"
    spans.finish(event.run_id, key, _ns(event.ts), "step_failed" if failed else None, event.error or "")


def _handoff(spans: RunSpans, event: Any) -> None:
    run = spans.run_of(event)
    run.next_agent = event.to_agent
    run.span.add_event("halguru.handoff", {"halguru.from_agent": event.from_agent,
                                           "halguru.to_agent": event.to_agent}, _ns(event.ts))


def _marker(spans: RunSpans, event: Any) -> None:
    """Approvals, checkpoints, resumes, a client's tool calls: events on the run's span."""
    run = spans.run_of(event)
    attributes = {name: getattr(event, attr) for name, attr in (
        ("gen_ai.tool.name", "name"), ("gen_ai.tool.call.id", "call_id"), ("halguru.label", "label"),
        ("halguru.from_run_id", "from_run_id")) if getattr(event, attr, None)}
    run.span.add_event(f"halguru.{event.type}", attributes, _ns(event.ts))


def _error(spans: RunSpans, event: Any) -> None:
    run = spans.run_of(event)
    run.span.add_event("halguru.error", {"halguru.error.kind": event.kind, "halguru.error.fatal": event.fatal,
                                         "halguru.error.message": event.message[:500]}, _ns(event.ts))
    if event.kind in ("model", "context"):
        spans.finish(event.run_id, "model", _ns(event.ts), "model_error", event.message[:200])
    if event.fatal or (event.parent_run_id and event.kind in _ENDS_SUB_RUN):
        run.error = event.kind


def _run_finished(spans: RunSpans, event: Any) -> None:
    run = spans.runs.get(event.run_id)
    if run is None:
        return
    run.span.set_attributes({"halguru.run.status": event.status, "gen_ai.usage.input_tokens": event.prompt_tokens,
                             "gen_ai.usage.output_tokens": event.completion_tokens, "halguru.steps": event.steps})
    failed = event.status in ("failed", "cancelled", "limited", "interrupted")
    error = (run.error or event.status) if failed else None
    end = _ns(event.ts)
    for run_id in list(spans.runs)[1:][::-1]:  # sub-runs still open (a cancelled run), the latest first
        spans.end_run(run_id, end, "interrupted" if failed else None)
    spans.end_run(event.run_id, end, error, event.error or "")


_HANDLERS = {
    "run_started": _run_started, "model_call": _model_call, "model_result": _model_result,
    "tool_call": _tool_call, "tool_result": _tool_result, "retrieval": _retrieval,
    "step_started": _step_started, "step_finished": _step_finished, "handoff": _handoff,
    "approval_requested": _marker, "approval_approved": _marker, "approval_rejected": _marker,
    "checkpoint": _marker, "resumed": _marker, "error": _error, "run_finished": _run_finished,
}
