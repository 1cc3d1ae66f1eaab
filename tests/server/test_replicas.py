"""Scale-out end to end: 2 `halguru serve` replicas (--no-worker) and 2 `halguru worker` processes on one database
(a SQLite file, and a fresh PostgreSQL database),
a client alternating between the replicas, one replica and one worker SIGKILLed in the middle.

Checked as a user would: every conversation has all its turns, in order, once; every queued job ran exactly once
as seen by its side effect (the reply the "hook" channel plugin delivers to a recording HTTP server, or the
conversation a `/v1/jobs` run answered in); queuing a job with one idempotency key on both replicas queues one;
no run is left `running` (the killed processes' runs read `interrupted` once their lease passes).
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from halguru.channels.base import Inbound
from halguru.jobs.pipeline import StoreSink
from halguru.store import open_store
from tests.jobs.hook_channel import Provider, install_hook_channel
from tests.server.conftest import free_port
from tests.server.test_runs_api import FLOW, FLOW_TOOLS, write_project

CONVERSATIONS, TURNS, THREADS = 200, 3, 16
CHANNEL_JOBS, API_JOBS, SENDERS = 30, 20, 10
KILL_AFTER = 60  # conversations done when a replica and a worker are SIGKILLed
PUBLIC_RATE = 8  # anonymous web-chat requests a minute per client address, counted across the replicas
LEASE = "1.5"  # HALGURU_RUN_LEASE and job_lease: a killed process's runs and jobs are free again this soon
REPO = Path(__file__).resolve().parents[2]
POSTGRES_ADMIN = os.environ.get("HALGURU_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def database(backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The environment naming the shared database: SQLite (one file in the shared HALGURU_HOME), or a fresh
    PostgreSQL database made here (an unreachable server fails the test, never skips it); this process's own
    store (the channel sink, job records) opens the same."""
    if backend == "sqlite":
        yield {}
        return
    import psycopg

    from halguru.config import reset_settings
    from halguru.store import sqlite as store_module

    name = f"halguru_e2e_{secrets.token_hex(5)}"
    try:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN}: {exc}")
    url = POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + name
    monkeypatch.setenv("HALGURU_DATABASE_URL", url)
    reset_settings()
    try:
        yield {"HALGURU_DATABASE_URL": url}
    finally:
        store = store_module._STORES.pop(url, None)
        if store is not None:
            store.close()
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Cluster:
    """Real `halguru serve` and `halguru worker` processes on one project and one database."""

    def __init__(self, cmd: list[str], env: dict[str, str], project: Path):
        self.cmd, self.env, self.project = cmd, env, project
        self.procs: list[subprocess.Popen[str]] = []

    def _start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([*self.cmd, *args, "--config", str(self.project / "serve.yaml")], env=self.env,
                                text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def replica(self) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        proc = self._start("serve", str(self.project / "agents"), "--no-worker", "--port", str(port))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"a replica did not start: {proc.communicate()[1][-3000:]}")
            time.sleep(0.1)

    def worker(self) -> subprocess.Popen[str]:
        return self._start("worker", str(self.project / "agents"))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.close()


@pytest.fixture
def cluster(tmp_path: Path, halguru_cmd: list[str], subprocess_env: dict[str, str], database: dict[str, str],
            provider: Provider) -> Iterator[Cluster]:
    agents = tmp_path / "agents"
    script = tmp_path / "noted.yaml"  # a channel reply streams for ~1.6 s: workers are busy when one is killed
    script.write_text(yaml.safe_dump([{"text": " ".join(["noted"] * 40), "token_delay": 0.04}]))
    for name, model in (("echo", "scripted"), ("notes", f"scripted:{script}")):
        (agents / name).mkdir(parents=True)
        (agents / name / "agent.yaml").write_text(yaml.safe_dump({
            "name": name, "model": model, "instructions": "Echo.", "channels": {"hook": {"url": provider.url}},
            "metadata": {"web_chat": "public"}}))
    write_mailer(agents / "mailer", tmp_path / "mailer.yaml")
    write_project(agents / "flow", FLOW, FLOW_TOOLS)
    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump([{"text": " ".join(f"word{i}" for i in range(60)), "token_delay": 0.05}]))
    (agents / "slow").mkdir()
    (agents / "slow" / "agent.yaml").write_text(yaml.safe_dump({"name": "slow", "model": f"scripted:{slow}"}))
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump({
        "session_secret": "shared-by-every-replica", "job_lease": float(LEASE), "job_poll": 0.1,
        "job_backoff": 0.1, "shutdown_timeout": 1, "log_level": "warning", "public_rate_per_minute": PUBLIC_RATE}))
    site = install_hook_channel(tmp_path / "site")
    path = os.pathsep.join([str(site), str(REPO), str(REPO / "server"), os.environ.get("PYTHONPATH", "")])
    env = {**subprocess_env, **database, "PYTHONPATH": path, "HALGURU_RUN_LEASE": LEASE}
    made = subprocess.run([*halguru_cmd, "keys", "create", "e2e", "--admin"], env=env, capture_output=True,
                          text=True, timeout=60, cwd=agents / "echo")
    assert made.returncode == 0, made.stderr
    running = Cluster(halguru_cmd, {**env, "HALGURU_E2E_KEY": made.stdout.strip()}, tmp_path)
    yield running
    running.close()


class RoundRobin:
    """The client: requests alternate between the replicas; one that refuses connections is dropped, and a
    failed request is retried on the other (the caller makes sure a retry is idempotent)."""

    def __init__(self, urls: list[str], key: str):
        # A long timeout: a turn that is slow on a loaded machine is not abandoned and retried while the server
        # still answers it (a message has no idempotency key: the retry would store the turn twice). A killed
        # replica's requests fail at once, refused or cut.
        self.clients = [httpx.Client(base_url=u, headers={"Authorization": f"Bearer {key}"}, timeout=180)
                        for u in urls]
        self.alive = [True] * len(urls)
        self.turn = itertools.count()
        self.failures = Counter[str]()

    def request(self, method: str, path: str, retry: Callable[[], bool] | None = None,
                **kwargs: Any) -> httpx.Response | None:
        """The response, or None when ``retry`` (asked after a failure) says the request took effect."""
        for _ in range(10):
            index = next(self.turn) % len(self.clients)
            if not self.alive[index]:
                index = self.alive.index(True)
            try:
                response = self.clients[index].request(method, path, **kwargs)
                if response.status_code == 429 and "too_many_in_flight" in response.text:
                    # the key's requests in flight at max_in_flight (every thread on the one replica left, and the
                    # main thread's): refused before anything was done, so sent again after Retry-After, as the
                    # clients do
                    self.failures["in flight"] += 1
                    time.sleep(float(response.headers.get("retry-after", "1")) / 4)
                    continue
                busy = response.status_code == 409 and "conversation_busy" in response.text
                if response.status_code < 500 and not busy:
                    return response
                # busy: the killed replica's run holds the conversation until its lease ends (or the cut
                # request's run still answers on the other): wait as Retry-After says, then retry if not there
                self.failures["busy" if busy else f"http {response.status_code}"] += 1
                if busy:
                    time.sleep(float(response.headers.get("retry-after", "1")) / 4)
            except httpx.ConnectError:
                self.alive[index] = False
                self.failures["refused"] += 1
            except httpx.TransportError as exc:  # cut mid-request: it may or may not have taken effect
                self.failures[type(exc).__name__] += 1
            if retry is not None and not retry():
                return None
            time.sleep(0.05)
        raise AssertionError(f"{method} {path} failed 10 times: {self.failures}")

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.request("GET", path, **kwargs)
        assert response is not None and response.status_code == 200, response and response.text
        return response.json()


def converse(client: RoundRobin, i: int) -> str:
    created = client.request("POST", "/v1/conversations", json={"agent": "echo"})
    assert created is not None and created.status_code == 201, created and created.text
    conv = created.json()["id"]
    for turn in range(TURNS):
        text = f"conversation {i} turn {turn}"

        def not_there(conv: str = conv, text: str = text) -> bool:  # retry only a turn the conversation lacks
            messages = client.get(f"/v1/conversations/{conv}/messages")["data"]
            return not any(m["role"] == "user" and m["content"] == text for m in messages)

        answered = client.request("POST", f"/v1/conversations/{conv}/messages", retry=not_there,
                                  json={"content": text})
        assert answered is None or answered.json()["output"] == f"You said: {text}", answered and answered.text
    return conv


def _post_past_in_flight(replica: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST, sent again after a 429 too_many_in_flight (the key's 16 places are counted across the replicas, and
    the conversation threads hold most of them), as the clients do."""
    for _ in range(40):
        response = replica.post(path, json=body)
        if response.status_code != 429 or "too_many_in_flight" not in response.text:
            return response
        time.sleep(float(response.headers.get("retry-after", "1")) / 4)
    raise AssertionError(f"POST {path}: too many in flight 40 times")


def queue_jobs(client: RoundRobin, first: int, last: int) -> list[str]:
    """Channel messages (reply jobs, through the store as a webhook would) and /v1/jobs runs, each of those
    posted to both replicas with one idempotency key."""
    sink, ids = StoreSink(open_store()), []
    for n in range(first, last):
        sender = f"+1555{n % SENDERS}"
        assert sink.accept(Inbound(channel="hook", agent="notes", message_id=f"M{n}", sender=sender,
                                   thread=sender, text=f"note {n}", reply={"to": sender}))
        if n < API_JOBS:
            body = {"agent": "echo", "input": f"job {n}", "idempotency_key": f"job-{n}"}
            posted = set()
            for replica in client.clients:
                try:
                    response = _post_past_in_flight(replica, "/v1/jobs", body)
                except httpx.TransportError:  # the killed replica
                    continue
                assert response.status_code == 202, response.text
                posted.add(response.json()["id"])
            assert len(posted) == 1, posted  # one job, whichever replica got the key first
            ids.extend(posted)
    return ids


def test_two_replicas_and_two_workers_survive_a_kill(cluster: Cluster, provider: Provider) -> None:
    started = time.monotonic()
    (victim, url_a), (_, url_b) = cluster.replica(), cluster.replica()
    client = RoundRobin([url_a, url_b], cluster.env["HALGURU_E2E_KEY"])
    doomed_worker = cluster.worker()
    api_jobs = queue_jobs(client, 0, CHANNEL_JOBS // 2)
    doomed = holding(lambda job: True)["holder"]  # the only worker yet: what it holds is its own
    cluster.worker()
    done, halfway = itertools.count(1), threading.Event()

    def one(i: int) -> str:
        conv = converse(client, i)
        if next(done) == KILL_AFTER:
            halfway.set()
        return conv

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(one, i) for i in range(CONVERSATIONS)]
        assert halfway.wait(60), "the load did not get halfway"
        victim.send_signal(signal.SIGKILL)
        api_jobs += queue_jobs(client, CHANNEL_JOBS // 2, CHANNEL_JOBS)  # the replica left gets these
        # the worker dies in the middle of a job: a channel reply (~1.6 s) it claimed just now, not a /v1/jobs
        # echo (done in milliseconds) nor a reply near its end, either of which could finish before the kill
        cut = holding(lambda job: job["holder"] == doomed and job["agent"] == "notes" and job["attempts"] == 1
                      and time.time() - job["started"] < 0.5)
        doomed_worker.send_signal(signal.SIGKILL)
        conversations = [f.result() for f in futures]
    assert victim.wait(5) == -signal.SIGKILL and doomed_worker.wait(5) == -signal.SIGKILL
    assert client.alive == [False, True] and client.failures["refused"] >= 1  # the client saw the replica die

    for i, conv in enumerate(conversations):  # all turns, in order, once each
        messages = [(m["role"], m["content"]) for m in client.get(f"/v1/conversations/{conv}/messages")["data"]]
        expected = [(role, f"{prefix}conversation {i} turn {t}") for t in range(TURNS)
                    for role, prefix in (("user", ""), ("assistant", "You said: "))]
        assert messages == expected, (conv, messages, client.failures)

    check_jobs(client, provider, api_jobs)
    assert client.get(f"/v1/jobs/{cut['id']}")["attempts"] == 2  # the killed attempt, then another worker's
    time.sleep(float(LEASE) + 0.5)  # the killed replica's and worker's runs: their leases pass
    assert client.get("/v1/runs", params={"status": "running", "limit": 100})["data"] == []
    assert time.monotonic() - started < 120


def holding(which: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """A running job that ``which`` picks (the store's record, which names the worker holding it)."""
    deadline = time.monotonic() + 20
    while True:
        found = [dict(j) for j in open_store().list_jobs(100, status="running") if which(dict(j))]
        if found:
            return found[0]
        assert time.monotonic() < deadline, "no running job to pick"
        time.sleep(0.02)


def check_jobs(client: RoundRobin, provider: Provider, api_jobs: list[str]) -> None:
    """Every job done; each channel message answered exactly once, in order per sender; each /v1/jobs run
    answered once in its conversation."""
    deadline = time.monotonic() + 60
    while len(provider.messages) < CHANNEL_JOBS or not all(
            client.get(f"/v1/jobs/{j}")["status"] == "done" for j in api_jobs):
        assert time.monotonic() < deadline, f"jobs not done: {len(provider.messages)} replies"
        time.sleep(0.2)
    time.sleep(0.5)  # a duplicate reply would arrive now
    sent = Counter(m["job"] for m in provider.messages)
    assert len(sent) == CHANNEL_JOBS and set(sent.values()) == {1}, sent
    order: dict[str, list[int]] = {}
    for message in provider.messages:
        job = client.get(f"/v1/jobs/{message['job']}")
        assert job["status"] == "done"
        order.setdefault(message["to"], []).append(int(job["payload"]["message_id"][1:]))
    assert all(numbers == sorted(numbers) for numbers in order.values()), order
    for n, job_id in enumerate(api_jobs):
        job = client.get(f"/v1/jobs/{job_id}")
        messages = client.get(f"/v1/conversations/{job['result']['conversation_id']}/messages")["data"]
        assert [m["content"] for m in messages] == [f"job {n}", f"You said: job {n}"]


MAILER_TOOLS = """\
from pathlib import Path
from halguru import tool


@tool
def send_email(to: str) -> str:
    \"\"\"Send an email.\"\"\"
    with open(Path(__file__).parent / "sent.log", "a") as f:
        f.write(to + "\\n")
    return f"sent to {to}"
"""


def write_mailer(folder: Path, script: Path) -> None:
    """`mailer`: send_email waits for a human's approval; its model says what ``script`` holds."""
    folder.mkdir(parents=True)
    (folder / "agent.yaml").write_text(yaml.safe_dump({"name": "mailer", "model": f"scripted:{script}",
                                                       "tools": ["send_email"], "approvals": ["send_email"]}))
    (folder / "tools.py").write_text(MAILER_TOOLS)
    script.write_text(yaml.safe_dump([{"tool_calls": [{"id": "c1", "name": "send_email",
                                                        "arguments": {"to": "ann@example.com"}}]}]))


def test_approvals_and_streams_work_from_the_other_replica(cluster: Cluster, tmp_path: Path) -> None:
    """A run paused on one replica is approved on either, once however many ask (a failed workflow run is
    resumed likewise); a stream cut by its replica's death resumes on the other from the stored events and
    ends when the run's lease passes."""
    (victim, url_a), (_, url_b) = cluster.replica(), cluster.replica()
    key = {"Authorization": f"Bearer {cluster.env['HALGURU_E2E_KEY']}"}
    a, b = (httpx.Client(base_url=u, headers=key, timeout=30) for u in (url_a, url_b))
    conv = a.post("/v1/conversations", json={"agent": "mailer"}).json()["id"]
    paused = a.post(f"/v1/conversations/{conv}/messages", json={"content": "mail ann"}).json()
    assert paused["status"] == "paused"
    (tmp_path / "mailer.yaml").write_text(yaml.safe_dump(["Sent."]))  # what the continuation's model says
    with ThreadPoolExecutor(2) as pool:  # both replicas at once: the store's claim decides
        answers = list(pool.map(lambda c: c.post(f"/v1/runs/{paused['run_id']}/approve", json={}), (a, b)))
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    assert next(r for r in answers if r.status_code == 200).json()["output"] == "Sent."
    assert (tmp_path / "agents" / "mailer" / "sent.log").read_text() == "ann@example.com\n"

    anonymous_chat_spans_replicas(url_a, url_b)
    resume_from_both(a, b, tmp_path / "agents" / "flow")

    conv = a.post("/v1/conversations", json={"agent": "slow"}).json()["id"]
    with a.stream("POST", f"/v1/conversations/{conv}/messages", json={"content": "go", "stream": True}) as cut:
        lines = cut.iter_lines()
        last = ""
        while (line := next(lines)) != "event: token":
            last = line[4:] if line.startswith("id: ") else last
        victim.send_signal(signal.SIGKILL)  # the replica dies mid-answer; the client reconnects to the other
        with pytest.raises(httpx.TransportError):
            list(lines)
    run_id = last.split(":")[0]
    with b.stream("GET", f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": last}) as resumed:
        assert resumed.status_code == 200
        rest = [line for line in resumed.iter_lines() if line.startswith(("id: ", "event: "))]
    assert rest[-2:] == [f"id: {run_id}:end", "event: error"]  # after the run's lease passed: interrupted
    assert b.get(f"/v1/runs/{run_id}").json()["status"] == "interrupted"
    assert b.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": f"{run_id}:end"}).status_code == 204


def anonymous_chat_spans_replicas(url_a: str, url_b: str) -> None:
    """A web-chat session made on one replica works on the other (one session_secret), and the public rate
    limit counts a client's requests on both (kept in the store), not per replica."""
    token = httpx.post(f"{url_a}/chat/api/session").json()["token"]  # request 1 of the minute
    session = {"X-Chat-Session": token}
    made = httpx.post(f"{url_b}/chat/api/conversations", json={"agent": "echo"}, headers=session)  # request 2
    assert made.status_code == 201, made.text
    path = f"/chat/api/conversations/{made.json()['id']}/messages"
    statuses = [httpx.post(f"{url}{path}", json={"content": "hi"}, headers=session, timeout=30).status_code
                for url in [url_a, url_b] * (PUBLIC_RATE // 2 + 1)]
    assert statuses == [200] * (PUBLIC_RATE - 2) + [429] * (len(statuses) - PUBLIC_RATE + 2), statuses


def resume_from_both(a: httpx.Client, b: httpx.Client, flow: Path) -> None:
    """A workflow run that failed on one replica, resumed on both at once: one continues it from its
    checkpoint (the finished step is not run again), the other answers 409."""
    (flow / "BROKEN").touch()
    conv = a.post("/v1/conversations", json={"agent": "flow"}).json()["id"]
    failed = a.post(f"/v1/conversations/{conv}/messages", json={"content": "A-7"}).json()
    assert failed["status"] == "failed", failed
    (flow / "BROKEN").unlink()
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda c: c.post(f"/v1/runs/{failed['run_id']}/resume", json={}), (a, b)))
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    assert next(r for r in answers if r.status_code == 200).json()["output"] == "paid and shipped A-7"
    assert (flow / "side-effects.log").read_text().splitlines() == ["charge 40", "ship A-7 failed", "ship A-7"]
