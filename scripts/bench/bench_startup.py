"""Startup: `halguru --help` wall time against a bare `python -c pass` (goal: at most +150 ms).

A CLI that imports llama_cpp, lancedb or textual up front makes every command
feel slow; the bare interpreter is the floor no Python CLI can beat.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import _common
from _common import Result, median, spread

GOAL_MS = 150.0


def halguru_command() -> list[str]:
    """The console script next to this interpreter (the venv's), else the one on PATH."""
    script = Path(sys.executable).parent / "halguru"
    if not script.exists():
        found = shutil.which("halguru")
        if found is None:
            raise SystemExit("bench_startup: no `halguru` console script; install the project first")
        script = Path(found)
    return [str(script), "--help"]


def wall_ms(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env=os.environ)
    return (time.perf_counter() - started) * 1000


def measure(quick: bool) -> list[Result]:
    runs = 10 if quick else 25
    halguru, bare = halguru_command(), [sys.executable, "-c", "pass"]
    wall_ms(halguru), wall_ms(bare)  # warm the page cache and .pyc files
    cli_ms: list[float] = []
    bare_ms: list[float] = []
    for _ in range(runs):  # interleaved, so a burst of load hits both alike
        cli_ms.append(wall_ms(halguru))
        bare_ms.append(wall_ms(bare))
    diff = median(cli_ms) - median(bare_ms)
    return [Result(
        bench="startup", metric="`halguru --help` − `python -c pass`", value=diff, unit="+ms", goal=GOAL_MS,
        higher_is_better=False, ratio=median(cli_ms) / median(bare_ms), baseline="of `python -c pass`",
        detail=f"halguru --help {spread(cli_ms, ' ms')}, python -c pass {spread(bare_ms, ' ms')}",
        runs=runs)]


if __name__ == "__main__":
    _common.main("Startup", measure, __doc__ or "")
