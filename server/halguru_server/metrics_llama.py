"""Prometheus metrics of the llama.cpp models this process has loaded: slots, batches, tokens/s, prefill vs decode.

Read at scrape time from each model's ``stats()`` (plain numbers kept by its batching engine), so nothing is
counted twice; a model shows once an agent has asked for it. Labels: the model's name only (bounded).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# stats() key -> (metric name, help, counter?)
_METRICS: dict[str, tuple[str, str, bool]] = {
    "slots": ("halguru_llama_slots", "generations the model can batch at once", False),
    "active_slots": ("halguru_llama_active_slots", "slots generating now", False),
    "waiting": ("halguru_llama_waiting", "requests waiting for a free slot inside the model", False),
    "last_batch_tokens": ("halguru_llama_batch_tokens", "tokens in the last llama_decode batch", False),
    "mean_batch_tokens": ("halguru_llama_mean_batch_tokens", "tokens per llama_decode batch, on average", False),
    "tokens_per_second": ("halguru_llama_tokens_per_second", "generated tokens per second, all slots, last 10 s",
                          False),
    "steps": ("halguru_llama_steps", "llama_decode batches", True),
    "generated_tokens": ("halguru_llama_generated_tokens", "tokens generated", True),
    "prefill_tokens": ("halguru_llama_prefill_tokens", "prompt tokens evaluated", True),
    "reused_tokens": ("halguru_llama_reused_tokens", "prompt tokens found in the KV cache (not evaluated)", True),
    "prefill_seconds": ("halguru_llama_prefill_seconds", "time in batches that evaluated prompt tokens", True),
    "decode_seconds": ("halguru_llama_decode_seconds", "time in batches that only generated", True),
    "generations": ("halguru_llama_generations", "generations started", True),
}


class LlamaCollector(Collector):
    """Collects every loaded model that has ``stats()`` (the llama.cpp provider's)."""

    def collect(self) -> Iterator[Metric]:

        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for key, (name, text, counter) in _METRICS.items():
            families[key] = (CounterMetricFamily(name, text, labels=["model"]) if counter
                             else GaugeMetricFamily(name, text, labels=["model"]))
        for model, figures in _figures():
            for key, family in families.items():
                if key in figures:
                    family.add_metric([model], float(figures[key]))
        yield from families.values()


class LlamaMirror:
    """The same figures in prometheus_client's multiprocess mode (``serve --workers N``): each process writes its
    models' figures to the shared files (gauges summed over the live processes, the two batch sizes per
    process; counters as increments), so a scrape that one process answers has every process's."""

    def __init__(self) -> None:
        self.gauges: dict[str, Gauge] = {}
        self.counters: dict[str, Counter] = {}
        for key, (name, text, counter) in _METRICS.items():
            if counter:
                self.counters[key] = Counter(name, text, ["model"], registry=None)
            else:
                per_process = key in ("last_batch_tokens", "mean_batch_tokens")  # a sum of sizes means nothing
                self.gauges[key] = Gauge(name, text, ["model"], registry=None,
                                         multiprocess_mode="liveall" if per_process else "livesum")
        self.written: dict[tuple[str, str], float] = {}  # counters' values as last written
        self.lock = threading.Lock()  # a scrape's thread and the event loop's mirroring task both sync

    def sync(self) -> None:
        with self.lock:
            for name, figures in _figures():
                self._write(name, figures)

    def _write(self, name: str, figures: dict[str, float]) -> None:
        for key, value in figures.items():
            if key in self.gauges:
                self.gauges[key].labels(name).set(float(value))
            elif key in self.counters and float(value) > (before := self.written.get((name, key), 0.0)):
                self.counters[key].labels(name).inc(float(value) - before)
                self.written[(name, key)] = float(value)


def _figures() -> Iterator[tuple[str, dict[str, float]]]:
    """(model name, its ``stats()``) of each model this process has loaded that keeps them (llama.cpp's)."""
    from halguru.models.registry import loaded_models

    for model in loaded_models():
        stats = getattr(model, "stats", None)
        if callable(stats):
            yield str(model.name), stats()
