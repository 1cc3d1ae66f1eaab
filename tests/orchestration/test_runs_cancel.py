"""`halguru runs cancel ID` stops a run that another process runs (here `halguru run`, a real subprocess on the same
SQLite store): the run ends cancelled with its answer so far, and that process says so and exits."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import yaml

from halguru.store import open_store

WORDS = 100


def test_runs_cancel_stops_a_run_of_another_process(tmp_path: Path, write_agent, halguru_cmd, subprocess_env,
                                                    cli, cli_error) -> None:
    script = tmp_path / "slow.yaml"
    script.write_text(yaml.safe_dump([{"text": " ".join(f"w{i}" for i in range(WORDS)), "token_delay": 0.1}]))
    folder = write_agent(f"name: slow\nmodel: scripted:{script}\ninstructions: Slow.\n")
    proc = subprocess.Popen([*halguru_cmd, "run", str(folder), "go"], env=subprocess_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        store = open_store()
        deadline = time.monotonic() + 30
        while not (running := store.list_runs(1, status="running")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        run_id = running[0]["id"]
        time.sleep(0.5)  # a few words in
        out = cli("runs", "cancel", run_id[:12]).output  # a unique prefix, as `halguru runs` takes
        assert out.strip() == f"Run {run_id} cancelled."
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    run = store.get_run(run_id)
    assert run["status"] == "cancelled" and run["output"].startswith("w0 w1") and len(run["output"].split()) < WORDS
    assert proc.returncode != 0 and f"cancelled by the user (run {run_id})" in err and "Traceback" not in err
    entry, = store.list_audit(action="run.cancel")  # audited as serve's cancel is: who stopped whose run
    assert entry["target"] == run_id and entry["details"] == {"agent": "slow", "owner": run["owner"]}
    assert cli_error("runs", "cancel", run_id) == \
        f"Error: run {run_id} has already ended (cancelled): there is nothing to cancel"
