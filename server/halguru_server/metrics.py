"""Prometheus metrics, one registry per app (several apps in one process, as in tests, do not clash).

With ``PROMETHEUS_MULTIPROC_DIR`` set (``serve --workers N`` sets it for its workers) the figures are
prometheus_client's multiprocess ones: each process writes its own to files in that folder and a scrape, whichever
process answers it, sums every process's, so counters do not jump between processes. Process and GC figures then
describe no single process and are left out; llama.cpp's are mirrored into the shared files every few seconds.

Label values stay bounded: a tool label is one of the served agents' declared tools, any other name (a model
may call a tool that does not exist) counts under ``other``. ``render(agents=...)`` leaves out the samples
labelled with any other agent (a scrape without a key sees the public agents' only); ``render(models=...)`` renames
the ``model`` labels (a model only key-only agents use is ``private-N`` to such a scrape).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

OTHER_TOOL = "other"
RECENT_S = 300.0  # /status counts server errors over the last five minutes


MIRROR_EVERY_S = 5.0  # multiprocess mode: how often a process copies its llama.cpp figures to the shared files


def shared_dir() -> str | None:
    """The folder of prometheus_client's multiprocess mode, when this process is in it."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self, tools: set[str] | None = None) -> None:
        self.registry = CollectorRegistry()  # what a scrape of this process reads
        shared = shared_dir()
        # multiprocess: the metrics themselves belong to no registry; their values go to the shared files
        r = None if shared else self.registry
        self.tools = frozenset(tools or ())
        self.requests = Counter("halguru_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("halguru_http_request_duration_seconds", "HTTP latency (to the first byte "
                                 "for streams)", ["route"], registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.runs = Counter("halguru_runs", "agent runs by final status", ["agent", "status"], registry=r)
        self.run_duration = Histogram("halguru_run_duration_seconds", "agent run duration", ["agent"],
                                      registry=r, buckets=(0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
        self.tokens = Counter("halguru_tokens", "model tokens", ["agent", "direction"], registry=r)
        self.tool_calls = Counter("halguru_tool_calls", "tool calls (tool: a declared tool, else 'other')",
                                  ["agent", "tool"], registry=r)
        self.errors = Counter("halguru_errors", "error events (kind: the event's kind) and failed requests "
                              "(kind: http_4xx, http_5xx)", ["kind"], registry=r)
        self.queue_depth = Gauge("halguru_queue_depth", "runs waiting for a model", ["model"], registry=r,
                                 multiprocess_mode="livesum")
        self.streams = Gauge("halguru_sse_streams", "open event streams", registry=r, multiprocess_mode="livesum")
        self.jobs = Counter("halguru_jobs", "jobs this process's worker ran, by outcome (done, retried, dead, "
                            "released)", ["kind", "outcome"], registry=r)
        self.job_wait = Histogram("halguru_job_wait_seconds", "from a job being due to a worker starting it",
                                  ["kind"], registry=r, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.job_duration = Histogram("halguru_job_duration_seconds", "how long a job ran", ["kind"], registry=r,
                                      buckets=(0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
        from halguru_server.metrics_llama import LlamaCollector, LlamaMirror  # slots, batches, tokens/s

        self.llama_mirror = LlamaMirror() if shared else None
        if shared:
            self.registry.register(_SharedCollector(shared))
        else:
            ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, resident memory, open fds...
            # no PlatformCollector: its python_info names the interpreter's exact version to anyone who reads it
            GCCollector(registry=self.registry)
            self.registry.register(LlamaCollector())
        self.recent_5xx: deque[float] = deque(maxlen=10_000)

    async def keep_mirroring(self) -> None:
        """Multiprocess mode: copy this process's llama.cpp figures to the shared files every few seconds (a
        scrape answered by another process reads them there), until cancelled; otherwise return at once."""
        import asyncio

        while self.llama_mirror is not None:
            self.llama_mirror.sync()
            await asyncio.sleep(MIRROR_EVERY_S)

    def process_ended(self) -> None:
        """Multiprocess mode: this process's live gauges (open streams, queues) leave the shared sums."""
        if self.llama_mirror is not None and (shared := shared_dir()):
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid(), shared)

    def watch_jobs(self, stats: Callable[[], Mapping[str, float]]) -> None:
        """Expose the store's job counts (shared by every process) as gauges read at scrape time."""
        self.registry.register(_JobsCollector(stats))

    def watch_sources(self, channels: Mapping[str, Mapping[str, Any]]) -> None:
        """``halguru_channel_up{agent,channel}``: whether each fetching channel (an email inbox) this process
        runs is connected (only those that tried)."""
        self.registry.register(_SourcesCollector(channels))

    def tool_label(self, name: str) -> str:
        return name if name in self.tools else OTHER_TOOL

    def request_done(self, status: int) -> None:
        """Count a failed request (4xx or 5xx); 5xx that are this server's own faults are also kept for /status,
        so no client turns it red: not a 502 (the agent's run ended failed or at a limit: its trace and
        ``halguru_runs_total`` say so) nor a 503 (load shed or draining: the client was told when to retry)."""
        if status >= 500:
            self.errors.labels("http_5xx").inc()
            if status not in (502, 503):
                self.recent_5xx.append(time.monotonic())
        elif status >= 400:
            self.errors.labels("http_4xx").inc()

    def server_errors(self, within: float = RECENT_S) -> int:
        since = time.monotonic() - within
        while self.recent_5xx and self.recent_5xx[0] < since:
            self.recent_5xx.popleft()
        return len(self.recent_5xx)

    def render(self, agents: Collection[str] | None = None, models: Mapping[str, str] | None = None) -> bytes:
        """The exposition text; with ``agents``, without the samples whose ``agent`` label is another's; with
        ``models``, each ``model`` label renamed as it maps (a value it lacks: the sample left out)."""
        from prometheus_client import generate_latest

        if self.llama_mirror is not None:
            self.llama_mirror.sync()  # this process's own figures as of now
        if agents is None and models is None:
            return generate_latest(self.registry)
        return generate_latest(_Only(self.registry, None if agents is None else frozenset(agents), models))


class _Only(Collector):
    """A registry's metrics less the samples whose ``agent`` label is not one of ``agents``, their ``model`` labels
    renamed by ``models`` (a model it does not name: left out)."""

    def __init__(self, registry: CollectorRegistry, agents: frozenset[str] | None, models: Mapping[str, str] | None):
        self.registry = registry
        self.agents = agents
        self.models = models

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            kept = [s for s in map(self._shown, family.samples) if s is not None]
            if kept == family.samples:
                yield family
                continue
            only = Metric(family.name, family.documentation, family.type, family.unit)
            only.samples = kept
            yield only

    def _shown(self, sample: Sample) -> Sample | None:
        labels = sample.labels
        if self.agents is not None and "agent" in labels and labels["agent"] not in self.agents:
            return None
        if self.models is None or "model" not in labels:
            return sample
        name = self.models.get(labels["model"])
        if name is None:
            return None
        return sample if name == labels["model"] else sample._replace(labels={**labels, "model": name})


class _SharedCollector(Collector):
    """Every process's figures from the multiprocess folder, once the live gauges of processes that died without
    saying so (a killed worker, which uvicorn replaces) are dropped: their open streams and queues are gone."""

    def __init__(self, path: str):
        from prometheus_client.multiprocess import MultiProcessCollector

        self.path = path
        self.collector = MultiProcessCollector(None, path)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.multiprocess import mark_process_dead

        for pid in {_pid(name) for name in os.listdir(self.path) if name.startswith("gauge_live")}:
            if pid is not None and not _alive(pid):
                mark_process_dead(pid, self.path)
        yield from self.collector.collect()


def _pid(file_name: str) -> int | None:
    """The process id in a multiprocess file's name (``gauge_livesum_1234.db``)."""
    digits = file_name.removesuffix(".db").rpartition("_")[2]
    return int(digits) if digits.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class _SourcesCollector(Collector):
    def __init__(self, channels: Mapping[str, Mapping[str, Any]]):
        self.channels = channels

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from halguru.channels.base import source_statuses

        up = GaugeMetricFamily("halguru_channel_up", "whether a fetching channel (an email inbox) is connected",
                               labels=["agent", "channel"])
        for agent, name, status in source_statuses(self.channels):
            if status is not None:
                up.add_metric([agent, name], 1 if status.ok else 0)
        yield up


class _JobsCollector(Collector):
    def __init__(self, stats: Callable[[], Mapping[str, float]]):
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from halguru_server.probes import PROBE_TIMEOUT_S, within

        try:
            stats = within(PROBE_TIMEOUT_S, self.stats)
        except Exception:  # the store is down: the scrape answers at once, and says so
            stats = None
        yield GaugeMetricFamily("halguru_store_up", "whether the store answered this scrape's read",
                                value=0 if stats is None else 1)
        if stats is None:
            return
        by_status = GaugeMetricFamily("halguru_jobs_by_status", "jobs in the store by status", labels=["status"])
        for status in ("queued", "running", "done", "dead", "cancelled"):
            by_status.add_metric([status], stats.get(status, 0))
        yield by_status
        yield GaugeMetricFamily("halguru_jobs_oldest_queued_seconds", "how long the oldest runnable job has waited",
                                value=stats.get("oldest_queued_s", 0.0))
