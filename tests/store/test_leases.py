"""Run liveness is a lease renewed by the process running it, never a process id (in a container
``halguru serve`` is PID 1 after every restart, so a pid says nothing). On both backends, but for runs written
before leases (SQLite only: PostgreSQL never had them)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from halguru.agents.events import RunFinished
from halguru.store import SQLiteStore
from halguru.store.sql_runs import BOOT_ID

HOLDER = """
import sys, time
from pathlib import Path
from halguru.store import SQLiteStore

target, lease = sys.argv[1], float(sys.argv[2])
if target.startswith("sqlite:"):
    store = SQLiteStore(Path(target.removeprefix("sqlite:")), lease=lease)
else:
    from halguru.store.postgres import PostgresStore
    store = PostgresStore(target, lease=lease)
store.start_run("run_killed01", "conv_1", "agent", "scripted", "hello")
print("started", flush=True)
time.sleep(600)
"""


def test_a_killed_run_reads_interrupted_once_its_lease_passes_not_before(store_url: str, store_factory,
                                                                         raw_sql) -> None:
    lease = 6.0  # room for a slow machine to open a store and read the run well before the lease passes
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, store_url, str(lease)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    [(first,)] = raw_sql("SELECT lease_expires FROM runs")
    deadline = time.monotonic() + 30
    while raw_sql("SELECT lease_expires FROM runs")[0][0] == first:  # the holder renews its lease (every lease/3)
        assert time.monotonic() < deadline, "the holder never renewed its lease"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    killed_at = time.time()
    try:
        os.kill(proc.pid, 0)
        raise AssertionError("the holder's pid is still alive")
    except ProcessLookupError:
        pass
    store = store_factory(lease=lease)
    run = store.get_run("run_killed01")
    assert run["lease_expires"] is not None and run["lease_expires"] > max(first, killed_at)  # it was renewed
    assert run["status"] == "running"  # the pid is dead, but the lease is live: still running
    assert [r["id"] for r in store.list_runs(status="running")] == ["run_killed01"]
    assert store.list_runs(status="interrupted") == []
    while time.time() <= run["lease_expires"]:
        time.sleep(0.1)
    assert store.get_run("run_killed01")["status"] == "interrupted"
    assert [r["id"] for r in store.list_runs(status="interrupted")] == ["run_killed01"]
    assert store.list_runs(status="running") == []
    assert store.reap_expired_runs() == 1  # and now for good, in the table itself
    assert raw_sql("SELECT status FROM runs")[0][0] == "interrupted"


def test_a_live_run_keeps_its_lease_and_lets_go_when_it_finishes(store_factory) -> None:
    # renewed every lease/3: a 1.5 s lease outlasts a renewal a slow machine delays by up to a second
    store = store_factory(lease=1.5)
    store.start_run("run_live0001", "conv_1", "agent", "scripted", "hello")
    run = store.get_run("run_live0001")
    assert run["holder"] == BOOT_ID
    time.sleep(3.5)  # more than two leases: renewed all along
    assert store.get_run("run_live0001")["status"] == "running"
    assert store.reap_expired_runs() == 0
    done = RunFinished(run_id="run_live0001", seq=0, status="ok", output="hi")
    store.finish_run("run_live0001", "conv_1", done.model_dump(), [done], [])
    time.sleep(0.5)
    assert store.get_run("run_live0001")["status"] == "ok"
    assert not store._held  # the store's own test looks inside: nothing left to renew


def test_runs_written_before_leases_read_interrupted(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    store.start_run("run_old00001", "conv_1", "agent", "scripted", "hello")
    store.close()
    db = sqlite3.connect(tmp_path / "t.db")
    db.execute("UPDATE runs SET lease_expires = NULL, holder = NULL, pid = ?", (os.getpid(),))  # a live pid
    db.commit()
    store = SQLiteStore(tmp_path / "t.db")
    assert store.get_run("run_old00001")["status"] == "interrupted"
    store.close()
