"""prometheus_client's multiprocess mode as ``serve --workers N`` runs it: each process's figures in a shared
folder, summed by whichever process answers a scrape. Real processes: the mode is chosen when prometheus_client
is imported, so it cannot be switched on inside the test process."""

from __future__ import annotations

import re
import subprocess
import sys

SCRIPT = """
import sys
from halguru.models import registry
from halguru_server.metrics import Metrics

class Model:  # what the llama.cpp provider's model offers the metrics
    name = "smol"
    def stats(self):
        n = int(sys.argv[1])
        return {"slots": 2, "active_slots": n, "generated_tokens": 10 * n, "mean_batch_tokens": 3.0 + n}

registry._INSTANCES["smol"] = Model()
metrics = Metrics()
metrics.llama_mirror.sync()
metrics.llama_mirror.sync()  # a second sync adds nothing: counters go in as increments
if sys.argv[2] == "render":
    sys.stdout.write(metrics.render().decode())
else:
    print("ready", flush=True)
    sys.stdin.read()  # alive until the test closes stdin or kills it
"""


def value(text: str, sample: str) -> list[float]:
    return [float(v) for v in re.findall(rf"^{re.escape(sample)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)]


def test_a_scrape_sums_the_live_processes_llama_figures_and_keeps_dead_ones_counters(tmp_path, subprocess_env):
    env = {**subprocess_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    other = subprocess.Popen([sys.executable, "-c", SCRIPT, "1", "wait"], env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert other.stdout is not None and other.stdout.readline() == "ready\n"
        both = subprocess.run([sys.executable, "-c", SCRIPT, "2", "render"], env=env, text=True,
                              capture_output=True, check=True).stdout
    finally:
        other.kill()
        other.wait()
    assert value(both, "halguru_llama_slots") == [4.0]  # two processes' slots
    assert value(both, "halguru_llama_active_slots") == [3.0]
    assert value(both, "halguru_llama_generated_tokens_total") == [30.0]
    assert sorted(value(both, "halguru_llama_mean_batch_tokens")) == [4.0, 5.0]  # per process (pid label)
    assert "process_resident_memory_bytes" not in both
    # the killed process's gauges are gone from the sums (its slots no longer exist); its counters stay
    later = subprocess.run([sys.executable, "-c", SCRIPT, "0", "render"], env=env, text=True,
                           capture_output=True, check=True).stdout
    assert value(later, "halguru_llama_slots") == [2.0]
    assert value(later, "halguru_llama_active_slots") == [0.0]
    assert value(later, "halguru_llama_generated_tokens_total") == [30.0]
