"""The cheap benchmarks run to the end (quick mode): a bench that patches what no longer exists fails here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench"


@pytest.mark.parametrize("name", ["overhead", "orchestration", "jobs", "publish", "slow_clients", "logs"])
def test_bench_runs_and_reports_ratios(name: str, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = tmp_path / f"{name}.json"
    done = subprocess.run([sys.executable, str(BENCH / f"bench_{name}.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, env=subprocess_env, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results and all(r["bench"] == name and r["ratio"] > 0 and r["baseline"] for r in results)
