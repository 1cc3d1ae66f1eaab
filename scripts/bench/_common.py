"""Shared benchmark plumbing: an isolated HALGURU_HOME, medians, and goal tables.

Every bench imports this module *before* halguru, so that settings (cached on
first use) point at a throwaway home and nothing touches ~/.halguru.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


def _isolate_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="halguru-bench-"))
    os.environ["HALGURU_HOME"] = str(home)
    os.environ.pop("HALGURU_DB_PATH", None)  # an explicit database would escape the temp home
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


HOME = _isolate_home()


@dataclass
class Result:
    """One benchmark figure: the goal-bearing value, its ratio to the same-run baseline, and raw numbers."""

    bench: str
    metric: str
    value: float
    unit: str  # "x" for a ratio, "+ms" for a signed difference, else "µs", "ms"...
    goal: float
    higher_is_better: bool
    ratio: float  # against the baseline measured in the same run
    baseline: str  # what the ratio is against
    detail: str  # absolute figures
    runs: int

    @property
    def passed(self) -> bool:
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal

    @property
    def goal_text(self) -> str:
        return f"{'≥' if self.higher_is_better else '≤'} {fmt(self.goal, self.unit)}"


def stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Terminate a server the bench started; killed if it has not exited within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path, seconds: float = 60) -> None:
    """Wait for a server the bench started to answer /healthz; exit with its log's end if it stopped first."""
    import time

    import httpx

    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"server did not start in {seconds:.0f} s")
        time.sleep(0.1)


def fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.3f}x"
    if unit.startswith("+"):  # a difference from the baseline: keep its sign
        return f"{value:+.1f} {unit[1:]}"
    if not unit:  # a score such as recall@5: 0.87 is not 0.9
        return f"{value:.2f}"
    return f"{value:.1f} {unit}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], unit: str = "", digits: int = 1) -> str:
    """``median (min–max)``: the range shows how noisy the machine was."""
    return f"{median(values):.{digits}f}{unit} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def print_table(title: str, results: Sequence[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=True)
    for column in ("metric", "value", "goal", "status", "ratio vs baseline", "absolute figures"):
        table.add_column(column, overflow="fold")
    for r in results:
        status = "[green]PASS[/green]" if r.passed else "[red]MISS[/red]"
        table.add_row(r.metric, fmt(r.value, r.unit), r.goal_text, status,
                      f"{r.ratio:.3f}x {r.baseline}", f"{r.detail} [dim](median of {r.runs})[/dim]")
    Console(width=max(140, shutil.get_terminal_size().columns)).print(table)


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--json", type=Path, help="also write the results to this file (for run_all.py)")
    return parser.parse_args()


def main(title: str, measure: Callable[[bool], list[Result]], description: str) -> None:
    """Run one bench as a script: measure, print its table, optionally dump JSON. MISS is not a failure."""
    args = parse_args(description)
    results = measure(args.quick)
    print_table(title, results)
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r), "passed": r.passed} for r in results]))
    sys.stdout.flush()


def write_agent(folder: Path, instructions: str, max_tokens: int, seed: int = 1234) -> Path:
    """A tool-less agent project on the bundled model, greedy and seeded so that runs repeat exactly."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    spec = {"name": "bench", "model": "smollm2", "instructions": instructions,
            "sampling": {"temperature": 0, "seed": seed}, "limits": {"max_tokens": max_tokens}}
    (folder / "agent.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder


def scripted_agents(root: Path, names: Sequence[str]) -> Path:
    """A project folder of scripted echo agents, one per name (the console benches serve them)."""
    import yaml

    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "agent.yaml").write_text(yaml.safe_dump({"name": name, "model": "scripted",
                                                                "instructions": "Echo."}))
    return root
