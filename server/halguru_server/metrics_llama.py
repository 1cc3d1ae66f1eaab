"""Prometheus metrics of the llama.cpp models this process has loaded: slots, batches, tokens/s, prefill vs decode.

Read at scrape time from each model's ``stats()`` (plain numbers kept by its batching engine), so nothing is
counted twice; a model shows once an agent has asked for it. Labels: the model's name only (bounded).
"""

from __future__ import annotations

from collections.abc import Iterator

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
        from halguru.models.registry import loaded_models

        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for key, (name, text, counter) in _METRICS.items():
            families[key] = (CounterMetricFamily(name, text, labels=["model"]) if counter
                             else GaugeMetricFamily(name, text, labels=["model"]))
        for model in loaded_models():
            stats = getattr(model, "stats", None)
            if not callable(stats):
                continue
            figures = stats()
            for key, family in families.items():
                if key in figures:
                    family.add_metric([model.name], float(figures[key]))
        yield from families.values()
