"""Run every halguru benchmark and print a summary: ``python scripts/bench/run_all.py [--quick]``.

Each bench runs in its own process, so a loaded llama.cpp model or a warm
SQLite store from one cannot flatter or slow another. A MISS is reported, not
failed on (benchmarks are not tests); the exit code is non-zero only if a
bench crashed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# cheapest first (batch builds llama-server once, minutes)
BENCHES = ["startup", "overhead", "orchestration", "checkpoints", "jobs", "publish", "console", "admin", "tui",
           "tui_open", "decode", "multiturn", "serve", "slow_clients", "inflight", "logs", "kb", "scale", "batch"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("only", nargs="*", metavar="BENCH",
                        help=f"run only these ({', '.join(BENCHES)}); default: all")
    args = parser.parse_args()
    unknown = sorted(set(args.only) - set(BENCHES))
    if unknown:
        parser.error(f"unknown bench {', '.join(unknown)}; choose from {', '.join(BENCHES)}")

    rows: list[dict[str, object]] = []
    crashed: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="halguru-bench-results-") as tmp:
        for name in args.only or BENCHES:
            out = Path(tmp) / f"{name}.json"
            command = [sys.executable, str(HERE / f"bench_{name}.py"), "--json", str(out)]
            if args.quick:
                command.append("--quick")
            print(f"\n▶ bench_{name}.py{' --quick' if args.quick else ''}", flush=True)
            bench_started = time.perf_counter()
            code = subprocess.call(command)
            print(f"  ({time.perf_counter() - bench_started:.0f} s)", flush=True)
            if code != 0 or not out.exists():
                crashed.append(name)
                continue
            rows += json.loads(out.read_text())

    # Imported only now: importing _common creates a temp HALGURU_HOME this process does not need earlier.
    from _common import Result, fmt
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Summary ({'quick' if args.quick else 'full'} run, "
                        f"{time.perf_counter() - started:.0f} s)", title_justify="left")
    for column in ("bench", "metric", "value", "goal", "status", "ratio vs baseline"):
        table.add_column(column)
    for row in rows:
        r = Result(**{k: v for k, v in row.items() if k != "passed"})  # type: ignore[arg-type]
        status = "[green]PASS[/green]" if r.passed else "[red]MISS[/red]"
        table.add_row(r.bench, r.metric, fmt(r.value, r.unit), r.goal_text, status,
                      f"{r.ratio:.3f}x {r.baseline}")
    for name in crashed:
        table.add_row(name, "[red]crashed[/red] (see its output above)", "", "", "[red]ERROR[/red]", "")
    print()
    Console(width=max(140, Console().width)).print(table)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
