"""A PostgreSQL outage under `halguru serve` and `halguru worker`: the database refuses connections for longer
than a request waits for one (the pool's wait is 10 s), then comes back.

Checked as an operator would: during the outage requests get a quick 503 with Retry-After that names no
database host, /readyz says 503 within seconds, and the log stays JSON; afterwards the API answers again and
both workers, the one inside serve and a standalone one, are still alive and run the jobs queued after it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from tests.server.conftest import free_port

POSTGRES_ADMIN = os.environ.get("HALGURU_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
OUTAGE_S = 14  # longer than POOL_WAIT_S: a claim fails, as a request does


def _outage(name: str, on: bool) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {'false' if on else 'true'}")
        if on:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


@pytest.fixture
def served(tmp_path: Path, halguru_cmd: list[str], subprocess_env: dict[str, str],
           new_postgres_database) -> Iterator[tuple[str, str, str, list[subprocess.Popen[str]]]]:
    url = new_postgres_database()
    name = url.rsplit("/", 1)[1]
    agents = tmp_path / "agents"
    (agents / "echo").mkdir(parents=True)
    (agents / "echo" / "agent.yaml").write_text(yaml.safe_dump({"name": "echo", "model": "scripted"}))
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump({"job_poll": 0.2, "job_backoff": 0.2,
                                                         "shutdown_timeout": 1, "log_level": "info"}))
    env = {**subprocess_env, "HALGURU_DATABASE_URL": url}
    made = subprocess.run([*halguru_cmd, "keys", "create", "ops", "--admin"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    port = free_port()
    config = ["--config", str(tmp_path / "serve.yaml")]
    procs = [subprocess.Popen([*halguru_cmd, "serve", str(agents), "--port", str(port), *config], env=env,
                              text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
             subprocess.Popen([*halguru_cmd, "worker", str(agents), *config], env=env, text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)]
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert procs[0].poll() is None, procs[0].communicate()[1][-3000:]
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not start"
        time.sleep(0.1)
    try:
        yield base, made.stdout.strip(), name, procs
    finally:
        _outage(name, False)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _jobs_done(client: httpx.Client, count: int) -> list[dict]:
    ids = []
    for i in range(count):
        response = client.post("/v1/jobs", json={"agent": "echo", "input": f"job {i}"})
        assert response.status_code in (200, 201, 202), response.text
        ids.append(response.json()["id"])
    deadline = time.monotonic() + 60
    while True:
        jobs = [client.get(f"/v1/jobs/{i}").json() for i in ids]
        if all(j["status"] == "done" for j in jobs):
            return jobs
        assert time.monotonic() < deadline, [j["status"] for j in jobs]
        time.sleep(0.2)


def test_an_outage_is_a_quick_503_and_every_worker_carries_on_after_it(served) -> None:
    base, key, name, procs = served
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    _jobs_done(client, 3)
    _outage(name, True)
    try:
        started = time.monotonic()
        answer = client.get("/v1/conversations")
        waited = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert answer.headers.get("retry-after") and waited < 12, waited
        assert "127.0.0.1" not in answer.text and name not in answer.text
        started = time.monotonic()
        ready = httpx.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 503 and time.monotonic() - started < 5
        # What a monitor reads just then answers within seconds (was 22 s and 10 s: Prometheus' whole timeout).
        probed = time.monotonic()
        status = httpx.get(f"{base}/status", headers={"Accept": "application/json"}, timeout=30)
        assert status.status_code == 503 and status.json()["components"]["store"]["ok"] is False
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
        assert "halguru_store_up 0.0" in metrics and time.monotonic() - probed < 6, time.monotonic() - probed
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
    finally:
        _outage(name, False)
    assert all(proc.poll() is None for proc in procs), "a worker or the server exited during the outage"
    deadline = time.monotonic() + 30
    while httpx.get(f"{base}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "not ready again after the outage"
        time.sleep(0.2)
    _jobs_done(client, 6)
    procs[1].send_signal(signal.SIGTERM)  # the standalone worker: it waited the outage out
    assert procs[1].wait(30) == 0
    worker_log = procs[1].stderr.read() if procs[1].stderr else ""
    assert "store unavailable; retrying" in worker_log and "store reachable again" in worker_log, worker_log[-2000:]
    _jobs_done(client, 3)  # only the worker inside serve is left: it carried on too
    procs[0].send_signal(signal.SIGTERM)
    procs[0].wait(30)
    log = procs[0].stderr.read() if procs[0].stderr else ""
    plain = [line for line in log.splitlines() if not line.startswith("{")]  # the start-up banner
    assert not [line for line in plain if "connect" in line], "psycopg's pool wrote plain text into the log"
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any("store unavailable" in r.get("msg", "") for r in records), records[-5:]
    assert sum("job notifications lost" in r.get("msg", "") for r in records) <= 2


def test_a_keyed_scrape_in_an_outage_is_answered_as_an_anonymous_one_within_seconds(
        new_postgres_database, monkeypatch: pytest.MonkeyPatch, serve, api_key) -> None:
    """README: Prometheus scrapes with a key. In an outage that key cannot be looked up; the scrape, /readyz and
    /status still answer within ~2 s (they waited out the pool's 10 s and said 503 "the store is unavailable",
    so `halguru_store_up 0` never reached the monitor), as to a caller without a key: no key-only agent named."""
    from halguru.config import reset_settings

    url = new_postgres_database()
    monkeypatch.setenv("HALGURU_DATABASE_URL", url)
    reset_settings()
    server = serve()
    key = {"Authorization": f"Bearer {api_key(scope='admin')}"}
    server.state.metrics.runs.labels("private", "ok").inc()  # a key-only agent's sample
    assert 'agent="private"' in httpx.get(f"{server.url}/metrics", headers=key).text
    name = url.rsplit("/", 1)[1]
    _outage(name, True)
    try:
        for path, code in (("/metrics", 200), ("/readyz", 503), ("/status", 503)):
            started = time.monotonic()
            answer = httpx.get(f"{server.url}{path}", headers={**key, "Accept": "application/json"}, timeout=30)
            waited = time.monotonic() - started
            assert answer.status_code == code and waited < 3.5, (path, answer.status_code, waited, answer.text)
            assert "private" not in answer.text, (path, answer.text)  # the anonymous view: no key-only agent
        assert "halguru_store_up 0.0" in httpx.get(f"{server.url}/metrics", headers=key, timeout=30).text
        status = httpx.get(f"{server.url}/status", headers={**key, "Accept": "application/json"}, timeout=30).json()
        assert status["components"]["store"]["ok"] is False
    finally:
        _outage(name, False)
    deadline = time.monotonic() + 30  # back: the key is the operator's again
    while 'agent="private"' not in httpx.get(f"{server.url}/metrics", headers=key, timeout=30).text:
        assert time.monotonic() < deadline, "the key was not recognised after the outage"
        time.sleep(0.2)


def test_an_outage_is_one_log_line_as_it_starts_and_one_as_it_ends(serve, monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """README: in an outage the server logs `store unavailable; retrying` once. The deployments poller logged
    "looking for published versions failed" with a traceback at every poll, /readyz "store check failed" with
    one at every probe."""
    import logging

    from halguru.errors import StoreUnavailable

    server = serve(deployments_poll=0.05)
    store = server.state.store
    down = True

    def unavailable(real):
        def call(*args, **kwargs):
            if down:
                raise StoreUnavailable("the PostgreSQL store at postgresql://db:5432/x failed: connection refused")
            return real(*args, **kwargs)
        return call

    caplog.set_level(logging.INFO, logger="halguru.server")
    monkeypatch.setattr(store, "active_deployments", unavailable(store.active_deployments))
    monkeypatch.setattr(store, "ping", unavailable(store.ping))
    for _ in range(3):
        assert httpx.get(f"{server.url}/readyz").status_code == 503
    time.sleep(0.5)  # ~10 polls
    down = False
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    deadline = time.monotonic() + 10
    while not any("published versions: store reachable again" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
        time.sleep(0.05)
    said = [r.getMessage() for r in caplog.records if r.name == "halguru.server"]
    assert not [r for r in caplog.records if r.exc_info], said  # no traceback: an outage is no bug
    assert [m for m in said if "published versions" in m] == [
        "looking for published versions: store unavailable; retrying",
        "looking for published versions: store reachable again"], said
    assert [m for m in said if "store check" in m] == ["store check: store unavailable; retrying",
                                                       "store check: store reachable again"], said


def test_a_request_whose_statement_runs_too_long_is_a_503_saying_so(
        serve, api_key, new_postgres_database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A statement that does not end (here: a table locked by a stuck transaction of another program) held the
    request and its pooled connection for as long as it ran. Past the statement timeout it is cancelled: a 503
    whose one line says why, and the server answers the next request once the table is free."""
    from halguru.config import reset_settings

    url = new_postgres_database()
    monkeypatch.setenv("HALGURU_DATABASE_URL", url)
    monkeypatch.setenv("HALGURU_DATABASE_STATEMENT_TIMEOUT", "0.5")
    reset_settings()
    server = serve(worker=False)
    headers = {"Authorization": f"Bearer {api_key(scope='admin')}"}
    assert httpx.get(f"{server.url}/v1/runs", headers=headers, timeout=10).status_code == 200
    with psycopg.connect(url) as stuck:
        stuck.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        start = time.monotonic()
        answer = httpx.get(f"{server.url}/v1/runs", headers=headers, timeout=30)
        assert time.monotonic() - start < 5
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    error = answer.json()["error"]
    assert error["type"] == "store_timeout"
    assert error["message"] == ("the store took too long to answer this request and it was stopped "
                                "(database_statement_timeout); try a narrower request or again shortly")
    assert httpx.get(f"{server.url}/v1/runs", headers=headers, timeout=10).status_code == 200
