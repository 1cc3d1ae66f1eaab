"""The worker as serve mode runs it: in-process beside the API (``halguru serve``), or alone
(``halguru worker PATH...``). Both serve the same agents, channels and schedules from the same store."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from halguru.agents.loader import Agent
from halguru.channels.base import Channel, load_channels
from halguru.errors import HalguruError
from halguru.jobs.handlers import RUN, JobContext
from halguru.jobs.worker import Worker, WorkerSettings
from halguru.store.base import Store
from halguru.store.records import JobRecord
from halguru_server.agents import ServedAgent
from halguru_server.gate import ModelGate, QueueFull
from halguru_server.metrics import Metrics
from halguru_server.push import Pusher

log = logging.getLogger("halguru.worker")
WORKER_CLIENT = "worker"  # the worker's line in each model's fair queue: web users are not starved by jobs


def load_all_channels(agents: Mapping[str, ServedAgent]) -> dict[str, dict[str, Channel]]:
    """Every served agent's ``channels:``; a bad one fails start-up with one line naming its agent."""
    channels: dict[str, dict[str, Channel]] = {}
    for name, served in agents.items():
        spec = served.agent.spec
        if spec.channels:
            try:
                channels[name] = load_channels(name, spec.channels, served.agent.path or Path.cwd())
            except HalguruError as exc:
                raise HalguruError(f"agent {name}: {exc}" if name not in str(exc) else str(exc)) from None
    return channels


def gate_admit(gate: ModelGate, agents: Mapping[str, ServedAgent], concurrency: int) -> Any:
    """Jobs take their turn in the same per-model fair queue as API requests; a full queue makes them wait
    (a job is not refused like a request: it is already accepted)."""

    @asynccontextmanager
    async def admit(agent: Agent) -> AsyncIterator[None]:
        served = agents.get(agent.name)
        model = served.model if served else agent.spec.model
        limit = served.slots if served is not None and served.slots is not None else concurrency
        while True:
            try:
                reservation = gate.reserve(model, WORKER_CLIENT, limit)
                break
            except QueueFull:
                await asyncio.sleep(0.25)
        async with reservation:
            yield

    return admit


def observer(metrics: Metrics) -> Any:
    def observe(outcome: str, job: JobRecord, seconds: float) -> None:
        if outcome == "started":
            metrics.job_wait.labels(job["kind"]).observe(max(0.0, seconds))
        else:
            metrics.jobs.labels(job["kind"], outcome).inc()
            metrics.job_duration.labels(job["kind"]).observe(seconds)

    return observe


def notifier(pusher: Pusher | None) -> Any:
    """A queued run (``POST /v1/jobs``) answered: its conversation's signed-in owner gets a notification."""

    def finished(job: JobRecord, result: dict[str, Any]) -> None:
        if (pusher is not None and job["kind"] == RUN and result.get("status") == "ok"
                and result.get("conversation_id") and str(result.get("output") or "").strip()):
            pusher.notify(str(result["conversation_id"]), f"{job['agent']} answered", str(result["output"]))

    return finished


def make_worker(store: Store, agents: Mapping[str, ServedAgent], channels: Mapping[str, Mapping[str, Channel]],
                gate: ModelGate, metrics: Metrics, settings: WorkerSettings, concurrency: int,
                pusher: Pusher | None = None) -> Worker:
    from functools import partial

    from halguru_server.deployments import AgentRegistry, AgentsView, unpack_for

    check_retention(agents)
    ctx = JobContext(store=store, agents=AgentsView(agents), channels=channels,
                     admit=gate_admit(gate, agents, concurrency), unpack=partial(unpack_for, store),
                     max_conversation_chars=settings.max_conversation_chars)
    worker = Worker(ctx, settings, observe=observer(metrics), finished=notifier(pusher))
    if isinstance(agents, AgentRegistry):  # a version published or rolled back: its schedules and inboxes now
        agents.listeners.append(worker.agents_changed)
    return worker


def check_retention(agents: Mapping[str, ServedAgent]) -> None:
    """A bad ``metadata.retention_days`` of an agent given on the command line fails start-up with one line
    naming it; a published version's is logged by the worker, which keeps that agent's conversations."""
    from halguru.jobs.retention import retention_days

    for name in getattr(agents, "given", agents):
        retention_days(agents[name].agent)


def serve_metrics(metrics: Metrics, store: Store, channels: Mapping[str, Mapping[str, Channel]], host: str,
                  port: int) -> None:
    """Prometheus' text format on ``host:port`` (any path), from a daemon thread: this worker's job counters
    and histograms, its fetching channels' ``halguru_channel_up``, and the store's job gauges as serve's
    /metrics has them."""
    from prometheus_client import start_http_server

    metrics.watch_jobs(store.job_stats)
    metrics.watch_sources(channels)
    try:
        start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise HalguruError(f"--metrics-port: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    log.info("metrics served", extra={"fields": {"address": f"{host}:{port}"}})


def run_worker_process(config: Any, metrics_port: int | None = None, **options: Any) -> None:
    """`halguru worker PATH...`: the agents' jobs, schedules and fetched channels, until SIGTERM or Ctrl-C
    (running jobs then get the shutdown timeout to finish; the rest go back to the queue). ``metrics_port``:
    its metrics over HTTP (without the API, `halguru serve`'s /metrics never has this process's)."""
    from halguru.store import open_store
    from halguru_server.agents import load_agents
    from halguru_server.deployments import AgentRegistry, follow, sync_registry
    from halguru_server.middleware import configure_logging
    from halguru_server.settings import load_settings

    settings = load_settings(config, **options)
    from halguru_server.cli import folders, operator_metrics_dir

    settings.agents = folders(settings)
    operator_metrics_dir()  # before any figure is made: a bad folder is one line, an old run's files go
    configure_logging(settings.log_level)
    agents = AgentRegistry(load_agents(settings.agents, settings.web_chat))
    channels = load_all_channels(agents)
    store = open_store()
    sync_registry(store, agents, settings.web_chat, channels)  # published agents (`halguru publish`)
    metrics = Metrics()
    if metrics_port is not None:
        serve_metrics(metrics, store, channels, settings.host, metrics_port)
    pusher = Pusher(store, settings.push, settings.auth.public_url) if settings.push.enabled else None
    worker = make_worker(store, agents, channels, ModelGate(settings.queue_size), metrics,
                         settings.worker_settings(), settings.concurrency, pusher)
    log.info("worker started", extra={"fields": {"agents": sorted(agents), "holder": worker.holder}})
    import typer

    typer.echo(f"halguru worker {worker.holder}: {len(agents)} agent(s), {settings.worker_concurrency} job(s) "
               "at a time; Ctrl-C stops", err=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)

        following = asyncio.create_task(follow(  # versions published or rolled back meanwhile
            lambda: sync_registry(store, agents, settings.web_chat, channels), settings.deployments_poll))
        await worker.run()
        following.cancel()

    asyncio.run(main())
    log.info("worker stopped", extra={"fields": {"holder": worker.holder}})
