"""`halguru worker` as real processes on one store (SQLite, and PostgreSQL through HALGURU_DATABASE_URL): a
worker SIGKILLed before or after the side effect (its reply reaching the provider) is replaced, the job retried,
and exactly one reply is sent; two workers never run a job twice."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from halguru.channels.base import Inbound
from halguru.config import reset_settings
from halguru.jobs.pipeline import StoreSink
from halguru.store import open_store
from tests.jobs.hook_channel import Provider, install_hook_channel
from tests.jobs.test_worker import billing_flow


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.close()


@pytest.fixture
def project(tmp_path: Path, provider: Provider) -> Path:
    script = tmp_path / "slow.yaml"  # the first answer streams for ~2 s: time to kill a worker mid-run
    script.write_text(yaml.safe_dump([{"text": " ".join(["slowly"] * 40), "token_delay": 0.05}]))
    folder = tmp_path / "agents" / "echo"
    folder.mkdir(parents=True)
    (folder / "agent.yaml").write_text(yaml.safe_dump({
        "name": "echo", "model": "scripted", "instructions": "Echo.",
        "channels": {"hook": {"url": provider.url}}}))
    slow = tmp_path / "agents" / "slow"
    slow.mkdir()
    (slow / "agent.yaml").write_text(yaml.safe_dump({
        "name": "slow", "model": f"scripted:{script}", "channels": {"hook": {"url": provider.url}}}))
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"job_lease": 1.5, "job_poll": 0.1, "job_backoff": 0.1,
                                      "shutdown_timeout": 1}))
    return tmp_path


@pytest.fixture
def database(store_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test on both backends: PostgreSQL through HALGURU_DATABASE_URL (the workers' and this process's
    ``open_store()``), SQLite as configured by default (HALGURU_HOME)."""
    if not store_url.startswith("sqlite:"):
        monkeypatch.setenv("HALGURU_DATABASE_URL", store_url)
        reset_settings()
    return store_url


@pytest.fixture
def start_worker(database: str, project: Path, halguru_cmd: list[str], subprocess_env: dict[str, str]
                 ) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    site = install_hook_channel(project / "site")
    env = {**subprocess_env, "PYTHONPATH": os.pathsep.join([str(site), str(Path(__file__).parents[2])]),
           "HALGURU_RUN_LEASE": "1.5"}  # a killed worker's run reads interrupted soon after
    procs: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([*halguru_cmd, "worker", str(project / "agents"), "--config",
                                 str(project / "serve.yaml"), *extra], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def accept(agent: str, text: str, message_id: str, sender: str = "+1555") -> None:
    StoreSink(open_store()).accept(Inbound(channel="hook", agent=agent, message_id=message_id, sender=sender,
                                           thread=sender, text=text, reply={"to": sender}))


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_killed_after_the_side_effect_sends_once(start_worker: Callable[[], subprocess.Popen[str]],
                                                 provider: Provider) -> None:
    first = start_worker()
    provider.victim, provider.kill_on = first.pid, 1  # dies as its reply reaches the provider
    accept("echo", "hello", "M1")
    first.wait(30)
    assert first.returncode == -signal.SIGKILL
    job = open_store().list_jobs(1)[0]
    assert job["status"] == "running"  # held by a dead worker until its lease passes
    start_worker()
    wait_for(lambda: open_store().get_job(job["id"])["status"] == "done", what="the retried job")
    assert len(provider.messages) == 1 and provider.messages[0]["text"].endswith("hello")
    done = open_store().get_job(job["id"])
    assert done["attempts"] == 2 and done["result"]["sent"] == ["msg1"]
    assert len(open_store().list_runs(10, conversation_id=done["result"]["conversation_id"])) == 1


def test_killed_before_the_side_effect_sends_once(start_worker: Callable[[], subprocess.Popen[str]],
                                                  provider: Provider) -> None:
    first = start_worker()
    accept("slow", "take your time", "M2")
    store = open_store()
    wait_for(lambda: any(r["status"] == "running" for r in store.list_runs(5)), what="the run to start")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert provider.messages == []
    start_worker()
    job = store.list_jobs(1)[0]
    wait_for(lambda: store.get_job(job["id"])["status"] == "done", what="the retried job")
    assert len(provider.messages) == 1 and provider.messages[0]["text"].startswith("slowly")
    runs = store.list_runs(10, conversation_id=store.get_job(job["id"])["result"]["conversation_id"])
    assert sorted(r["status"] for r in runs) == ["interrupted", "ok"]  # the killed run, then the answer


def test_a_workflow_job_killed_mid_run_resumes_its_own_checkpoint(start_worker: Callable[[], subprocess.Popen[str]],
                                                                  project: Path) -> None:
    """A worker SIGKILLed after a workflow job's charge step: its run is left running until its lease passes; the
    next worker resumes that run (found by the job id it records) from its checkpoint, so the card is charged
    once."""
    log = project / "charges.log"
    billing_flow(project / "agents", log)
    store = open_store()
    job, _ = store.enqueue_job("run", "flow", {"input": "bill me"})
    first = start_worker()
    wait_for(lambda: log.exists() and store.list_runs(1)[0]["checkpoint"] == "step pay ok", what="the charge")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    start_worker()
    wait_for(lambda: store.get_job(job["id"])["status"] == "done", what="the retried job")
    result = store.get_job(job["id"])["result"]
    assert log.read_text() == "5\n" and result["output"].startswith("word")
    continuation, killed = store.list_runs(5, job_id=job["id"])
    assert continuation["id"] == result["run_id"]
    assert (killed["status"], killed["resumed_by"]) == ("interrupted", result["run_id"])


def test_two_workers_never_share_a_job(start_worker: Callable[[], subprocess.Popen[str]],
                                       provider: Provider) -> None:
    for worker in (start_worker(), start_worker()):
        # both up before the jobs are queued: on a slow machine one worker's start-up (its imports) can take
        # longer than the other needs to answer all 30 echoes, and then only one took part
        assert worker.stderr is not None
        said: list[str] = []
        while not (line := worker.stderr.readline()).startswith("halguru worker "):
            said.append(line)
            assert line, f"the worker exited before it started (exit {worker.wait()}): {''.join(said)}"
    for i in range(30):
        accept("echo", f"message {i}", f"M{i}", sender=f"+1{i % 7}")  # 7 threads, in order within each
    store = open_store()
    wait_for(lambda: store.job_stats()["done"] == 30, timeout=60, what="30 jobs")
    texts = [m["text"] for m in provider.messages]
    # each exactly once
    assert sorted(t.removeprefix("You said: ") for t in texts) == sorted(f"message {i}" for i in range(30))
    for thread in range(7):  # answered in order within a thread
        mine = [int(t.split()[-1]) for t, m in zip(texts, provider.messages, strict=True) if m["to"] == f"+1{thread}"]
        assert mine == sorted(mine)
    holders = {j["holder"] for j in store.list_jobs(30)}
    assert len(holders) == 2  # both workers took part


def test_a_standalone_worker_serves_its_own_metrics(start_worker: Callable[..., subprocess.Popen[str]],
                                                    provider: Provider) -> None:
    """Beside `serve --no-worker` (deploy/compose.yaml), the jobs' counters and histograms existed nowhere."""
    import httpx

    from tests.server.conftest import free_port

    port = free_port()
    start_worker("--metrics-port", str(port))
    for i in range(2):
        accept("echo", f"message {i}", f"M{i}")
    store = open_store()
    wait_for(lambda: store.job_stats()["done"] == 2, timeout=60, what="2 jobs")
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'halguru_jobs_total{kind="reply",outcome="done"} 2.0' in text, text
    assert "halguru_job_duration_seconds_count" in text and 'halguru_jobs_by_status{status="done"} 2.0' in text
    assert "halguru_store_up 1.0" in text
