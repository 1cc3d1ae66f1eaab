"""`halguru serve` as a real process: start-up log, JSON logs, SIGTERM during a stream, and the real model."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest


def start(halguru_cmd, env, *args: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*halguru_cmd, "serve", *args, "--port", str(port)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)


def test_sigterm_drains_then_interrupts_the_stream_and_stores_the_partial_answer(
        halguru_cmd, subprocess_env, agents_dir, home_sql):
    env = {**subprocess_env, "HALGURU_SERVE_SHUTDOWN_TIMEOUT": "0.5", "HALGURU_SERVE_DRAIN_DELAY": "1"}
    proc, url = start(halguru_cmd, env, str(agents_dir), "--dev")
    assert httpx.get(f"{url}/readyz").status_code == 200
    conv = httpx.post(f"{url}/v1/conversations", json={"agent": "slow"}).json()["id"]
    with httpx.stream("POST", f"{url}/v1/conversations/{conv}/messages", json={"content": "go", "stream": True},
                      timeout=30) as response:
        lines = response.iter_lines()
        while next(lines) != "event: token":
            pass
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        # draining: still answering, but not ready (polled: on a slow machine the signal is handled later)
        while (ready := httpx.get(f"{url}/readyz")).status_code == 200:
            assert time.monotonic() < deadline, "the server never started draining"
            time.sleep(0.02)
        assert ready.status_code == 503 and ready.json()["components"]["server"]["ok"] is False
        rest = list(lines)  # ends cleanly: no cut connection
    assert proc.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down cleanly
    events = [line[7:] for line in rest if line.startswith("event: ")]
    assert events[-1] == "error" and "run_finished" not in events
    final = json.loads([line for line in rest if line.startswith("data: ")][-1][6:])
    assert final["kind"] == "shutdown" and final["fatal"] is True and "interrupted" in final["message"]
    stderr = proc.stderr.read()
    assert "web chat" in stderr and "/swagger" in stderr
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = [entry for entry in logs if entry["msg"] == "request"]
    assert access and all(entry["request_id"] for entry in access)
    assert any(entry["msg"] == "draining" for entry in logs)
    [(status, error, output)] = home_sql("SELECT status, error, output FROM runs WHERE conversation_id = ?", (conv,))
    assert status == "interrupted" and "shutdown" in error  # not "cancelled": nobody pressed stop
    assert output.startswith("word0") and "word39" not in output
    [(messages,)] = home_sql("SELECT count(*) FROM messages WHERE conversation_id = ?", (conv,))
    assert messages == 2  # the question and the partial answer


@contextlib.contextmanager
def answering(halguru_cmd, env, tmp_path: Path, home_sql, seconds: int
              ) -> Iterator[tuple[subprocess.Popen, str, str, Future[httpx.Response]]]:
    """`halguru serve` (``env``) answering a JSON message for ``seconds``, its run started: the server, its URL,
    the conversation and the answer to come."""
    agent = tmp_path / "slower"
    agent.mkdir()
    (agent / "s.yaml").write_text(json.dumps([{"text": "word " * (20 * seconds), "token_delay": 0.05}]))
    (agent / "agent.yaml").write_text("name: slower\nmodel: scripted:s.yaml\n")
    proc, url = start(halguru_cmd, env, str(agent), "--dev")
    conv = httpx.post(f"{url}/v1/conversations", json={"agent": "slower"}).json()["id"]
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(httpx.post, f"{url}/v1/conversations/{conv}/messages", json={"content": "go"},
                             timeout=3 * seconds)
        deadline = time.monotonic() + 10
        while not home_sql("SELECT id FROM runs WHERE conversation_id = ?", (conv,)):
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        yield proc, url, conv, answer


def test_ctrl_c_drains_as_sigterm_does_a_json_answer_is_a_503_and_the_run_interrupted(
        halguru_cmd, subprocess_env, tmp_path: Path, home_sql):
    """Ctrl-C is how a newcomer stops `halguru serve`; left to uvicorn, it made a JSON answer in flight a 500 with
    a traceback in the log, after uvicorn's own grace period, and stored the run as cancelled by the user."""
    env = {**subprocess_env, "HALGURU_SERVE_SHUTDOWN_TIMEOUT": "0.5"}
    with answering(halguru_cmd, env, tmp_path, home_sql, 10) as (proc, _, conv, answer):
        proc.send_signal(signal.SIGINT)
        response = answer.result()
    assert proc.wait(15) in (0, -signal.SIGINT)
    assert response.status_code == 503 and response.json()["error"]["type"] == "shutdown", response.text
    assert "Traceback" not in proc.stderr.read()
    [(status,)] = home_sql("SELECT status FROM runs WHERE conversation_id = ?", (conv,))
    assert status == "interrupted"


def test_a_second_ctrl_c_quits_at_once_and_the_run_reads_interrupted(halguru_cmd, subprocess_env, tmp_path: Path,
                                                                    home_sql):
    """A second Ctrl-C while serve drains quits at once, as it says; the run it cut was stored as cancelled (by
    the user) though nobody pressed stop: it reads interrupted by the shutdown, as after the grace period."""
    env = {**subprocess_env, "HALGURU_SERVE_SHUTDOWN_TIMEOUT": "60", "HALGURU_SERVE_DRAIN_DELAY": "30"}
    with answering(halguru_cmd, env, tmp_path, home_sql, 20) as (proc, url, conv, answer):
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/readyz").status_code == 200:  # draining
            assert time.monotonic() < deadline, "the server never started draining"
            time.sleep(0.05)
        quit_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) is not None and time.monotonic() - quit_at < 10
        with contextlib.suppress(httpx.TransportError):
            answer.result()
    assert "Traceback" not in proc.stderr.read()
    [(status, error)] = home_sql("SELECT status, error FROM runs WHERE conversation_id = ?", (conv,))
    assert status == "interrupted" and "shutdown" in (error or ""), (status, error)


def test_serve_refuses_bad_paths_in_one_line(cli_error, tmp_path: Path) -> None:
    assert "no such agent project" in cli_error("serve", str(tmp_path / "nope"))
    assert "loopback" in cli_error("serve", str(tmp_path), "--dev", "--host", "0.0.0.0")


@pytest.mark.llama
def test_openai_client_on_the_real_model(halguru_cmd, subprocess_env, tmp_path: Path) -> None:
    import openai

    templates = Path(__file__).resolve().parents[2] / "agents-templates"
    proc, url = start(halguru_cmd, subprocess_env, str(templates / "basic"), "--dev")
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused-in-dev", max_retries=0, timeout=120)
        completion = client.chat.completions.create(model="basic", max_tokens=16, temperature=0,
                                                    messages=[{"role": "user", "content": "Say hello."}])
        assert completion.choices[0].message.content.strip()
        assert completion.usage.prompt_tokens > 10
        stream = client.chat.completions.create(model="basic", max_tokens=8, stream=True,
                                                messages=[{"role": "user", "content": "Name a colour."}])
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip()
        assert httpx.get(f"{url}/readyz").json()["components"]["model:smollm2"]["ok"]
    finally:
        proc.terminate()
        proc.wait(15)


def test_public_rate_limit_holds_across_processes(halguru_cmd, subprocess_env, agents_dir):
    """Workers (``--workers N``) and replicas are processes of their own: the limit is counted in the store
    they share, so two processes do not allow twice the messages a minute. Two servers on one store show it
    deterministically (which worker accepts a connection is up to the kernel)."""
    env = {**subprocess_env, "HALGURU_SERVE_PUBLIC_RATE_PER_MINUTE": "4"}
    first, one = start(halguru_cmd, env, str(agents_dir))
    second, two = start(halguru_cmd, env, str(agents_dir))
    try:
        codes = [httpx.post(f"{url}/chat/api/session").status_code for url in (one, two, one, two, one, two)]
    finally:
        for proc in (first, second):
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert codes == [201, 201, 201, 201, 429, 429]


def test_workers_share_the_session_secret(halguru_cmd, subprocess_env, agents_dir):
    """A chat session issued by one worker is valid on every other (they take the secret from the store)."""
    proc, url = start(halguru_cmd, subprocess_env, str(agents_dir), "--workers", "2")
    try:
        token = httpx.post(f"{url}/chat/api/session").json()["token"]
        for _ in range(12):  # new connections: both workers get some
            with httpx.Client(base_url=url, headers={"Connection": "close", "X-Chat-Session": token}) as client:
                assert client.post("/chat/api/conversations", json={"agent": "echo"}).status_code == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_every_worker_writes_json_request_lines(halguru_cmd, subprocess_env, agents_dir):
    """With ``--workers 2`` each worker logs as one worker does: its start-up lines and one JSON access line
    (with a request id) per request; they were lost because logging was set up in the parent only."""
    proc, url = start(halguru_cmd, subprocess_env, str(agents_dir), "--workers", "2")
    try:
        ids = set()
        for _ in range(8):  # new connections: both workers get some
            with httpx.Client(base_url=url, headers={"Connection": "close"}) as client:
                ids.add(client.get("/v1/agents").headers["x-request-id"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    logs = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]
    access = [entry for entry in logs if entry["logger"] == "halguru.server.access" and entry["msg"] == "request"]
    assert ids <= {entry["request_id"] for entry in access}
    assert all(entry["path"] and entry["status"] for entry in access)
    assert sum(entry["msg"].startswith("Started server process") for entry in logs) == 2


def test_port_0_serves_on_the_free_port_its_banner_names(halguru_cmd, subprocess_env, agents_dir):
    """The banner said http://127.0.0.1:0 while uvicorn listened elsewhere."""
    import re

    proc = subprocess.Popen([*halguru_cmd, "serve", str(agents_dir), "--dev", "--port", "0"], env=subprocess_env,
                            text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        banner = "".join(proc.stderr.readline() for _ in range(3))
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/v1", banner).group(1))  # type: ignore[union-attr]
        assert port != 0
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, banner
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_banner_names_the_admin_console_and_each_page_it_names_opens(halguru_cmd, subprocess_env, agents_dir):
    """A newcomer found the API, Swagger, the web chat and /status in the banner, but not the admin console:
    nothing said it was at /admin. The banner now names it, and every page the banner names answers."""
    import re

    proc = subprocess.Popen([*halguru_cmd, "serve", str(agents_dir), "--dev", "--port", "0"], env=subprocess_env,
                            text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(6)]
        banner = "".join(line for line in lines if not line.startswith("{"))
        assert re.search(r"console +http://127\.0\.0\.1:\d+/admin ", banner), banner
        urls = [url for url in re.findall(r"http://127\.0\.0\.1:\d+[^\s,)]*", banner) if not url.endswith("/v1")]
        assert len(urls) == 6, banner  # the API's base URL is no page: /swagger documents it
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(urls[0])
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, banner
                time.sleep(0.1)
        answers = {url: httpx.get(url, follow_redirects=True).status_code for url in urls}
        assert set(answers.values()) == {200}, answers
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_workers_metrics_count_every_workers_requests(halguru_cmd, subprocess_env, agents_dir, tmp_path):
    """With ``--workers 2`` a scrape is answered by one worker: each showed only its own counters, so the totals
    jumped between scrapes. Every scrape now has both workers' requests, and the shared folder goes with serve."""
    import re

    env = {**subprocess_env, "TMPDIR": str(tmp_path)}
    proc, url = start(halguru_cmd, env, str(agents_dir), "--workers", "2")
    try:
        for _ in range(20):  # new connections: both workers get some
            with httpx.Client(base_url=url, headers={"Connection": "close"}) as client:
                assert client.get("/v1/agents").status_code == 401  # no key: counted all the same
        pattern = re.compile(r'^halguru_http_requests_total\{method="GET",route="/v1/agents",status="401"\} (\S+)$',
                             re.M)
        texts = []
        for _ in range(8):
            with httpx.Client(base_url=url, headers={"Connection": "close"}) as client:
                texts.append(client.get("/metrics").text)
        assert [float(pattern.search(text).group(1)) for text in texts] == [20.0] * 8  # type: ignore[union-attr]
        # one process's memory or CPU would pass for the server's
        assert not any("process_resident_memory_bytes" in text for text in texts)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith("halguru-metrics-")]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("halguru-metrics-")]


def test_workers_refuse_a_metrics_folder_they_cannot_write(halguru_cmd, subprocess_env, agents_dir, tmp_path,
                                                           monkeypatch):
    """Each worker died writing its figures to a PROMETHEUS_MULTIPROC_DIR that did not exist, and uvicorn restarted
    them for ever: nothing was served. An operator's folder is emptied of an earlier run's figures."""
    missing = tmp_path / "no-such-folder"
    proc = subprocess.run([*halguru_cmd, "serve", str(agents_dir), "--workers", "2", "--port", "0"],
                          env={**subprocess_env, "PROMETHEUS_MULTIPROC_DIR": str(missing)}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
        f"Error: PROMETHEUS_MULTIPROC_DIR={missing} is not a writable folder; create it (or unset it: serve "
        "--workers makes one of its own)")
    from halguru_server.cli import operator_metrics_dir

    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"old")
    (folder / "notes.txt").write_text("mine")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    assert operator_metrics_dir() == folder
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_workers_share_their_figures_in_halguru_home_when_no_temporary_folder_is_usable(tmp_path, monkeypatch):
    """A container's read-only root without a tmpfs at /tmp (`docker run --read-only`) has no usable temporary
    folder: `serve --workers 2` stopped after its banner with "No usable temporary directory found". The workers'
    shared metrics folder goes to HALGURU_HOME instead, removed at exit as before (tests/deploy runs the image so)."""
    from halguru_server.cli import shared_metrics_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "read-only-root" / "tmp"))  # nothing usable there
    monkeypatch.setenv("HALGURU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with shared_metrics_dir(None):
        folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert folder.parent == tmp_path / "home" and folder.is_dir()
    assert not folder.exists() and "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_one_process_checks_and_empties_prometheus_multiproc_dir_too(halguru_cmd, subprocess_env, agents_dir,
                                                                     tmp_path):
    """Without --workers the variable still puts prometheus_client in multiprocess mode, but the folder was
    neither checked (``Error: /x/gauge_livesum_16830.db: No such file or directory``) nor emptied (a restarted
    server's /metrics added the requests of the run before)."""
    import re

    missing = tmp_path / "no-such-folder"
    env = {**subprocess_env, "PROMETHEUS_MULTIPROC_DIR": str(missing)}
    for command in (["serve", str(agents_dir), "--dev", "--port", "0"], ["worker", str(agents_dir)]):
        proc = subprocess.run([*halguru_cmd, *command], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
            f"Error: PROMETHEUS_MULTIPROC_DIR={missing} is not a writable folder; create it (or unset it: serve "
            "--workers makes one of its own)"], (command, proc.stderr)

    folder = tmp_path / "metrics"
    folder.mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    pattern = re.compile(r'^halguru_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$', re.M)
    for _run in range(2):
        proc, url = start(halguru_cmd, env, str(agents_dir), "--dev")
        try:
            with httpx.Client(base_url=url) as client:
                for _ in range(2):
                    assert client.get("/healthz").status_code == 200
                found = pattern.search(client.get("/metrics").text)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        # start() polled /healthz once too: 3 requests each run, never the run before's added
        assert found is not None and float(found.group(1)) == 3.0


def test_answers_while_draining_close_their_connection(halguru_cmd, subprocess_env, agents_dir):
    """After SIGTERM a pooled client is told to drop its connection (``Connection: close``) rather than reuse it
    as the server closes its idle ones at the drain's end, which resets a request sent just then."""
    env = {**subprocess_env, "HALGURU_SERVE_DRAIN_DELAY": "3"}
    proc, url = start(halguru_cmd, env, str(agents_dir), "--dev")
    try:
        with httpx.Client() as client:
            before = client.get(f"{url}/healthz")
            assert before.status_code == 200 and "close" not in before.headers.get("connection", "")
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while client.get(f"{url}/readyz").status_code == 200:  # until the signal is handled
                assert time.monotonic() < deadline, "the server never started draining"
                time.sleep(0.02)
            during = client.get(f"{url}/healthz")
            assert during.status_code == 200 and during.headers["connection"] == "close"
        assert proc.wait(15) in (0, -signal.SIGTERM)
    finally:
        proc.kill()
        proc.communicate()
