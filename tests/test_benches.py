"""The cheap benchmarks run to the end (quick mode): a bench that patches what no longer exists fails here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench"


@pytest.mark.parametrize("name", ["overhead", "orchestration", "jobs", "publish", "console", "admin", "slow_clients",
                                  "inflight", "logs", "tui_open", "checkpoints"])
def test_bench_runs_and_reports_ratios(name: str, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = tmp_path / f"{name}.json"
    done = subprocess.run([sys.executable, str(BENCH / f"bench_{name}.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, env=subprocess_env, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results and all(r["bench"] == name and r["ratio"] > 0 and r["baseline"] for r in results)
    # a ratio against itself, or a "higher is better" goal of 0, says nothing
    assert not [r["metric"] for r in results if r["baseline"].strip(" ()-—") in ("", "itself")]
    assert not [r["metric"] for r in results if r["higher_is_better"] and r["goal"] <= 0]


def test_kb_eval_admin_set_labels_name_listed_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_kb.py stops on a label that names no page only after rendering the corpus (man, ~40 s): a typo in the
    blind admin set shows here instead, without man. Its pages are new (none of the man set's), and no page answers
    more than two of its questions (kept spread over the corpus)."""
    monkeypatch.syspath_prepend(str(BENCH))
    from kb_eval.questions import SETS, split

    listed = (BENCH / "kb_eval" / "admin_pages.txt").read_text().split()
    pages = {Path(path).name.removesuffix(".gz") for path in listed}
    labels = [label for _, answer in SETS["admin"] for label in answer]
    assert set(labels) <= pages, sorted(set(labels) - pages)
    assert max(labels.count(label) for label in labels) <= 2
    assert not set(listed) & set((BENCH / "kb_eval" / "man_pages.txt").read_text().split())
    assert len(split(SETS["admin"], "dev")) == len(split(SETS["admin"], "test")) >= 32


def test_run_all_runs_every_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    """`run_all.py` is the one command that runs every bench: a bench_*.py missing from its list never runs."""
    monkeypatch.syspath_prepend(str(BENCH))
    from run_all import BENCHES

    assert sorted(BENCHES) == sorted(path.stem.removeprefix("bench_") for path in BENCH.glob("bench_*.py"))
