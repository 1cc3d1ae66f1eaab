"""Operations that tell the truth: /status and /readyz, metrics with bounded labels, SSE keep-alives, a --dev
server that answers only loopback Host names, and the public chat's rate limit keyed by the real client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import yaml


def test_status_is_red_with_server_errors_and_stuck_runs_and_shows_no_secrets(client, agents_dir: Path) -> None:
    state = client.server.state
    page = httpx.get(f"{client.server.url}/status")
    assert page.status_code == 200 and "All good" in page.text
    assert str(agents_dir) not in page.text and "private" not in page.text  # no path, no key-only agent
    assert "echo" in page.text and "1 more agent(s) need an API key" in page.text
    status = httpx.get(f"{client.server.url}/status", headers={"Accept": "application/json"}).json()
    assert status["status"] == "ok" and set(status["components"]) >= {"store", "errors", "runs", "queue", "server"}
    assert str(agents_dir.parent) not in json.dumps(status)

    state.metrics.request_done(503)  # load shed: a client that sends too much cannot turn /status red
    state.metrics.request_done(502)  # nor one whose run ended failed or at a limit
    assert httpx.get(f"{client.server.url}/status").status_code == 200
    state.metrics.request_done(500)  # a server error a minute ago
    red = httpx.get(f"{client.server.url}/status", headers={"Accept": "application/json"})
    assert red.status_code == 503 and red.json()["status"] == "degraded"
    assert red.json()["components"]["errors"] == {"ok": False,
                                                  "detail": "1 server errors (5xx) in the last 5 minutes"}
    again = httpx.get(f"{client.server.url}/status")
    assert again.status_code == 503 and state.metrics.server_errors() == 1  # a red /status is not itself an error
    state.metrics.recent_5xx.clear()
    assert httpx.get(f"{client.server.url}/status").status_code == 200

    state.store.start_run("run_0000000000000001", "conv_stuck", "echo", "scripted", "hi", owner=None)
    assert httpx.get(f"{client.server.url}/status").status_code == 200  # running, not stuck yet
    state.agents["echo"].agent.spec.limits.timeout = 0.01  # its timeout long past (plus the grace)
    import halguru_server.ops as ops

    grace, ops.STUCK_GRACE_S = ops.STUCK_GRACE_S, 0.0
    try:
        stuck = httpx.get(f"{client.server.url}/status", headers={"Accept": "application/json"}).json()
    finally:
        ops.STUCK_GRACE_S = grace
    assert stuck["components"]["runs"]["ok"] is False and "1 stuck" in stuck["components"]["runs"]["detail"]


def test_probes_and_the_chat_page_answer_head(client) -> None:
    """Load balancers and uptime checks often probe with HEAD: the same status and headers, no body."""
    url = client.server.url
    for path in ("/healthz", "/readyz", "/status", "/chat/", "/"):
        got, head = httpx.get(f"{url}{path}"), httpx.head(f"{url}{path}")
        assert head.status_code == got.status_code and head.status_code in (200, 307), path
        for name in ("content-type", "location"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
        assert head.content == b"", path
    assert "head" not in client.get("/openapi.json").json()["paths"]["/healthz"]  # the API's docs: GET only


def test_readyz_and_status_hide_model_paths(serve, agents_dir: Path, tmp_path: Path, api_key) -> None:
    gguf = tmp_path / "secret-folder" / "local-helper.gguf"  # a file named as its key-only agent might be
    (agents_dir / "local").mkdir()
    (agents_dir / "local" / "agent.yaml").write_text(yaml.safe_dump({"name": "local", "model": str(gguf)}))
    server = serve()
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 503
    text = ready.text + httpx.get(f"{server.url}/status").text
    assert "secret-folder" not in text and str(tmp_path) not in text and "local-helper" not in text
    assert ready.json()["components"]["model:private-1"]["ok"] is False  # said, but not named to anyone
    keyed = httpx.get(f"{server.url}/readyz", headers={"Authorization": f"Bearer {api_key()}"})  # a developer's
    assert "model:local-helper.gguf" in keyed.json()["components"] and "secret-folder" not in keyed.text
    assert httpx.get(f"{server.url}/readyz", headers={"Authorization": "Bearer hg_wrong"}).status_code == 401
    chat = httpx.get(f"{server.url}/chat/api/agents").json()["data"]
    assert all(str(tmp_path) not in a["model"] for a in chat)  # the anonymous chat's list too


def test_a_chat_only_key_sees_no_server_path_in_agents_or_runs(serve, agents_dir: Path, tmp_path: Path,
                                                                api_key) -> None:
    """`slow` runs ``scripted:/.../slow.yaml``: /v1/agents and /v1/runs gave that path to any key, a chat-only
    (``user``) key's app included; it sees what anonymous visitors see. Keys that may read metrics (a
    developer's, an operator's) still see it whole."""
    server = serve()
    chat_only, developer = api_key("app", scope="user"), api_key("dev")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {chat_only}"}, timeout=30) as http:
        conv = http.post("/v1/conversations", json={"agent": "slow"}).json()["id"]
        run = http.post(f"/v1/conversations/{conv}/messages", json={"content": "hi"}).json()["run_id"]
        seen = [a["model"] for a in http.get("/v1/agents").json()["data"] if a["name"] == "slow"]
        seen += [http.get("/v1/agents/slow").json()["model"], http.get(f"/v1/runs/{run}").json()["model"]]
        seen += [r["model"] for r in http.get("/v1/runs").json()["data"]]
        # its run's events too: stored (GET /v1/runs/{id}), resumed (SSE) and live
        seen += [e["model"] for e in http.get(f"/v1/runs/{run}").json()["events"] if "model" in e]
        resumed = http.get(f"/v1/runs/{run}/events").text
        with http.stream("POST", f"/v1/conversations/{conv}/messages", json={"content": "hi", "stream": True}) as r:
            live = "".join(r.iter_lines())
    assert seen == ["scripted:slow.yaml"] * 6, seen
    assert '"run_started"' in resumed and '"run_started"' in live and '"model_call"' in live
    assert str(tmp_path) not in resumed + live and resumed.count('"scripted:slow.yaml"') == 2
    whole = f"scripted:{tmp_path / 'slow.yaml'}"
    assert httpx.get(f"{server.url}/v1/agents/slow", headers={"Authorization": f"Bearer {developer}"}
                     ).json()["model"] == whole
    operator = {"Authorization": f"Bearer {api_key('ops', scope='operator')}"}  # may read everyone's runs
    assert httpx.get(f"{server.url}/v1/runs/{run}", headers=operator).json()["model"] == whole


def test_a_missing_model_file_is_not_hidden_by_another_of_the_same_name(serve, agents_dir: Path, tmp_path: Path,
                                                                         api_key) -> None:
    """Models are shown by their file's name: with model.gguf in two projects, the later one's entry replaced
    the earlier's, so a deleted file could read ready."""
    for project, exists in (("a", False), ("b", True)):
        gguf = tmp_path / project / "model.gguf"
        gguf.parent.mkdir()
        if exists:
            gguf.write_bytes(b"GGUF")
        (agents_dir / f"m{project}").mkdir()
        (agents_dir / f"m{project}" / "agent.yaml").write_text(yaml.safe_dump({"name": f"m{project}",
                                                                                "model": str(gguf)}))
    server = serve()
    ready = httpx.get(f"{server.url}/readyz", headers={"Authorization": f"Bearer {api_key()}"})
    assert ready.status_code == 503 and ready.json()["components"]["model:model.gguf"]["ok"] is False


def test_metrics_bound_tool_labels_count_failed_requests_and_expose_the_process(client) -> None:
    metrics = client.server.state.metrics
    metrics.tool_calls.labels("echo", metrics.tool_label("made_up_tool_1")).inc()
    metrics.tool_calls.labels("echo", metrics.tool_label("made_up_tool_2")).inc()
    assert client.get("/v1/conversations/nope").status_code == 404
    for made_up in ("MADEUP1", "MADEUP2"):  # methods anyone can invent: one series each would grow for ever
        assert client.request(made_up, "/healthz").status_code == 405
    text = client.get("/metrics").text
    assert 'halguru_tool_calls_total{agent="echo",tool="other"} 2.0' in text and "made_up" not in text
    assert 'halguru_http_requests_total{method="other",route="/healthz",status="405"} 2.0' in text
    assert "MADEUP" not in text
    assert 'halguru_errors_total{kind="http_4xx"}' in text
    assert "process_resident_memory_bytes" in text and "process_cpu_seconds_total" in text
    assert "python_info" not in text  # the interpreter's exact version is nobody's business on a public /metrics


def test_metrics_name_a_key_only_agent_only_to_a_key_that_may_read_them(client, api_key) -> None:
    """README: /metrics shows no key-only agent's name without a key; an operator's key (Prometheus'
    ``authorization: credentials: KEY``) scrapes every agent's numbers."""
    for agent in ("echo", "private"):  # echo is public, private key-only
        conv = client.post("/v1/conversations", json={"agent": agent}).json()["id"]
        assert client.post(f"/v1/conversations/{conv}/messages", json={"content": "hi"}).status_code == 200
    url = f"{client.server.url}/metrics"
    anonymous = httpx.get(url).text
    assert 'halguru_runs_total{agent="echo",status="ok"} 1.0' in anonymous
    assert 'halguru_tokens_total{agent="echo",direction="out"}' in anonymous
    assert "private" not in anonymous  # not in runs, durations, tokens: anywhere
    assert 'halguru_http_requests_total{method="POST",route="/v1/conversations",status="201"} 2.0' in anonymous

    scraped = client.get("/metrics").text  # the client's key: a developer's, which may read metrics
    assert 'halguru_runs_total{agent="private",status="ok"} 1.0' in scraped
    assert 'halguru_run_duration_seconds_count{agent="private"} 1.0' in scraped
    assert 'halguru_runs_total{agent="echo",status="ok"} 1.0' in scraped
    narrow = httpx.get(url, headers={"Authorization": f"Bearer {api_key('narrow', agents=['echo'])}"}).text
    assert "private" not in narrow and 'agent="echo"' in narrow  # a key limited to echo learns no other
    wrong = httpx.get(url, headers={"Authorization": "Bearer hg_not_a_key"})
    assert wrong.status_code == 401  # a misconfigured scrape says so instead of quietly seeing less


def test_metrics_name_a_key_only_agents_model_as_status_does(serve, agents_dir: Path, tmp_path: Path,
                                                              api_key) -> None:
    """A model only key-only agents use is ``model:private-N`` on /status; anonymous /metrics named it in
    ``halguru_queue_depth{model=...}`` (its script's or file's name may be the agent's)."""
    script = tmp_path / "hidden-script.yaml"
    script.write_text(yaml.safe_dump([{"text": "psst"}]))
    (agents_dir / "hidden").mkdir()
    (agents_dir / "hidden" / "agent.yaml").write_text(yaml.safe_dump({"name": "hidden", "model": f"scripted:{script}"}))
    server = serve()
    key = {"Authorization": f"Bearer {api_key()}"}
    for agent in ("hidden", "echo"):  # the gate sets each model's queue depth
        conv = httpx.post(f"{server.url}/v1/conversations", json={"agent": agent}, headers=key).json()["id"]
        assert httpx.post(f"{server.url}/v1/conversations/{conv}/messages", json={"content": "hi"},
                          headers=key).status_code == 200
    status = httpx.get(f"{server.url}/status", headers={"Accept": "application/json"}).json()["components"]
    assert "model:private-1" in status
    anonymous = httpx.get(f"{server.url}/metrics").text
    assert "hidden-script" not in anonymous, anonymous
    assert 'halguru_queue_depth{model="private-1"} 0.0' in anonymous
    assert 'halguru_queue_depth{model="scripted"} 0.0' in anonymous  # a public agent's model, as it is
    scraped = httpx.get(f"{server.url}/metrics", headers=key).text  # a key that may read metrics: named
    assert 'halguru_queue_depth{model="scripted:hidden-script.yaml"} 0.0' in scraped


def test_sse_sends_keep_alive_comments_while_a_run_is_silent(serve, agents_dir: Path) -> None:
    script = agents_dir.parent / "pause.yaml"
    script.write_text(yaml.safe_dump([{"text": "late answer", "token_delay": 0.6}]))
    (agents_dir / "quiet").mkdir()
    (agents_dir / "quiet" / "agent.yaml").write_text(yaml.safe_dump({"name": "quiet", "model": f"scripted:{script}"}))
    server = serve(dev=True, sse_keepalive=0.2)
    conv = httpx.post(f"{server.url}/v1/conversations", json={"agent": "quiet"}).json()["id"]
    with httpx.stream("POST", f"{server.url}/v1/conversations/{conv}/messages",
                      json={"content": "hi", "stream": True}, timeout=30) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines.count(": keep-alive") >= 2
    assert lines[-2:] == ["event: run_finished", lines[-1]] and json.loads(lines[-1][6:])["status"] == "ok"


def test_dev_server_answers_only_loopback_host_names(serve) -> None:
    server = serve(dev=True)
    for host in ("localhost", "127.0.0.1", "[::1]", f"localhost:{server.url.rsplit(':', 1)[1]}"):
        assert httpx.get(f"{server.url}/v1/agents", headers={"Host": host}).status_code == 200, host
    for host in ("attacker.example", "attacker.example:80", "127.0.0.1.nip.io", "0.0.0.0"):
        refused = httpx.get(f"{server.url}/v1/agents", headers={"Host": host})
        assert refused.status_code == 421 and "loopback Host" in refused.json()["error"]["message"], host


def test_public_rate_limit_trusts_forwarded_for_only_from_configured_proxies(serve) -> None:
    plain = serve(public_rate_per_minute=2)
    # a long timeout: a second server's first request on a loaded CI machine once took over httpx's default 5 s
    session = {"X-Chat-Session": httpx.post(f"{plain.url}/chat/api/session", timeout=30).json()["token"]}

    def new(url: str, **headers: str) -> int:
        return httpx.post(f"{url}/chat/api/conversations", json={"agent": "echo"},
                          headers={**session, **headers}, timeout=30).status_code

    # a client cannot dodge the limit by writing its own X-Forwarded-For (the session call counted too)
    assert [new(plain.url, **{"X-Forwarded-For": f"10.0.0.{i}"}) for i in range(2)] == [201, 429]
    proxied = serve(public_rate_per_minute=1, trusted_proxies=["127.0.0.0/8"])
    session = {"X-Chat-Session": httpx.post(f"{proxied.url}/chat/api/session",
                                            headers={"X-Forwarded-For": "203.0.113.9"}, timeout=30).json()["token"]}
    # behind a trusted proxy, each forwarded client has its own budget; the spoofed first hop is ignored
    assert new(proxied.url, **{"X-Forwarded-For": "203.0.113.1"}) == 201
    assert new(proxied.url, **{"X-Forwarded-For": "203.0.113.1"}) == 429
    assert new(proxied.url, **{"X-Forwarded-For": "6.6.6.6, 203.0.113.2"}) == 201
    assert new(proxied.url, **{"X-Forwarded-For": "7.7.7.7, 203.0.113.2"}) == 429


def test_an_ipv6_client_cannot_dodge_the_limits_by_changing_addresses_within_its_64(serve) -> None:
    """A host on IPv6 holds a whole /64 (2^64 addresses): counted per address, it had a fresh budget at every
    request (8 new chats in a row at 1 a minute, and as many password-reset mails and sign-in tries). Its /64
    is one client now; another /64 is another."""
    from tests.server.localaccounts import post_form

    server = serve(public_rate_per_minute=1, trusted_proxies=["127.0.0.0/8"])

    def session(address: str) -> int:
        return httpx.post(f"{server.url}/chat/api/session", headers={"X-Forwarded-For": address}).status_code

    assert [session(f"2001:db8:1:2::{i:x}") for i in range(1, 5)] == [201, 429, 429, 429]
    assert session("2001:db8:1:2:ffff:ffff:ffff:ffff") == 429
    assert session("2001:db8:1:3::1") == 201  # the next /64: another client
    assert [session(f"203.0.113.{i}") for i in range(1, 3)] == [201, 201]  # IPv4: per address, as before
    with httpx.Client(base_url=server.url, headers={"Origin": server.url}) as browser:
        tries = []
        for i in range(12):  # login_rate_per_minute is 10 (the form's GET does not count)
            browser.headers["X-Forwarded-For"] = f"2001:db8:9:9::{i + 1:x}"
            tries.append(post_form(browser, "/auth/login", "/auth/login", email="x@example.com",
                                   password="wrong!").status_code)
    assert tries == [401] * 10 + [429] * 2


def test_a_forwarded_address_with_a_port_is_one_client_whatever_its_port(serve) -> None:
    """Some proxies (Azure Application Gateway) write the client's address with its source port into
    X-Forwarded-For: each connection had a budget of its own (4 new chats at 1 a minute: 201 x4), and a port-
    stamped address never matched a trusted proxy. The port is not part of who the client is."""
    server = serve(public_rate_per_minute=1, trusted_proxies=["127.0.0.0/8", "10.0.0.0/8"])

    def session(forwarded: str) -> int:
        return httpx.post(f"{server.url}/chat/api/session", headers={"X-Forwarded-For": forwarded}).status_code

    assert [session(f"203.0.113.7:{port}") for port in range(40001, 40005)] == [201, 429, 429, 429]
    assert session("203.0.113.7") == 429
    assert [session(f"[2001:db8:5::1]:{port}") for port in (443, 444)] == [201, 429]
    assert session("198.51.100.1:5000, 10.1.2.3:6000") == 201  # the trusted hop, port and all, is skipped
    assert session("198.51.100.1") == 429


def test_memory_limiter_forgets_old_hits() -> None:
    from halguru_server.ratelimit import MemoryLimiter

    limiter = MemoryLimiter(2)
    assert limiter.retry_after("a") is None and limiter.retry_after("a") is None
    wait = limiter.retry_after("a")
    assert wait is not None and 59 < wait <= 60
    limiter.hits["a"] = type(limiter.hits["a"])([time.monotonic() - 61, time.monotonic() - 61])
    assert limiter.retry_after("a") is None and limiter.retry_after("b") is None


def test_anonymous_visitors_get_no_model_error_details(serve, agents_dir: Path, api_key, caplog) -> None:
    script = agents_dir.parent / "broken.yaml"
    script.write_text(yaml.safe_dump([{"error": "connect to /srv/secret/model.sock refused"}]))
    (agents_dir / "broken").mkdir()
    (agents_dir / "broken" / "agent.yaml").write_text(yaml.safe_dump({
        "name": "broken", "model": f"scripted:{script}", "metadata": {"web_chat": "public"},
        "instructions": "The discount code is OPERATORS-ONLY."}))
    server = serve()
    session = {"X-Chat-Session": httpx.post(f"{server.url}/chat/api/session").json()["token"]}
    conv = httpx.post(f"{server.url}/chat/api/conversations", json={"agent": "broken"}, headers=session).json()["id"]
    path = f"{server.url}/chat/api/conversations/{conv}/messages"
    answer = httpx.post(path, json={"content": "hi"}, headers=session, timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "failed"
    assert "secret" not in answer.text and answer.json()["run_id"] in answer.json()["error"]
    with httpx.stream("POST", path, json={"content": "hi", "stream": True}, headers=session, timeout=30) as r:
        streamed = "".join(r.iter_lines())
    assert "secret" not in streamed and "run_finished" in streamed
    # nor the prompt (the operator's instructions) or where the server keeps the model's file, live or replayed
    assert '"model_call"' in streamed and "OPERATORS-ONLY" not in streamed and str(script.parent) not in streamed
    assert '"model":"scripted:broken.yaml"' in streamed
    stored = "".join(httpx.get(f"{server.url}/chat/api/runs/{run['id']}/events", headers=session).text
                     for run in server.state.store.list_runs(agent="broken"))  # replayed: as resumed
    assert stored.count('"run_finished"') == 2
    assert "OPERATORS-ONLY" not in stored and str(script.parent) not in stored and "secret" not in stored
    assert any("secret" in str(getattr(rec, "fields", "")) for rec in caplog.records)  # the log has it
    keyed = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30)
    conv = keyed.post("/v1/conversations", json={"agent": "broken"}).json()["id"]
    assert "secret" in keyed.post(f"/v1/conversations/{conv}/messages", json={"content": "hi"}).json()["error"]


def test_anonymous_visitors_get_no_tool_error_details(serve, agents_dir: Path) -> None:
    """A tool's traceback (its error event's detail: server paths and source lines) reached anonymous visitors,
    live and replayed, and so did a failed call's own words in its tool_result."""
    folder = agents_dir / "toolish"
    folder.mkdir()
    (folder / "tools.py").write_text("from halguru import tool\n\n\n@tool\ndef lookup(q: str) -> str:\n"
                                     "    \"\"\"Look up.\"\"\"\n    raise RuntimeError('db at /srv/secret refused')\n")
    (folder / "s.yaml").write_text(yaml.safe_dump([{"tool_calls": [{"name": "lookup", "arguments": {"q": "x"}}]},
                                                   "Sorry."]))
    (folder / "agent.yaml").write_text(yaml.safe_dump({"name": "toolish", "model": "scripted:s.yaml",
                                                       "tools": ["lookup"], "metadata": {"web_chat": "public"}}))
    server = serve()
    session = {"X-Chat-Session": httpx.post(f"{server.url}/chat/api/session").json()["token"]}
    conv = httpx.post(f"{server.url}/chat/api/conversations", json={"agent": "toolish"}, headers=session).json()["id"]
    with httpx.stream("POST", f"{server.url}/chat/api/conversations/{conv}/messages",
                      json={"content": "hi", "stream": True}, headers=session, timeout=30) as r:
        streamed = "".join(r.iter_lines())
    assert "run_finished" in streamed and '"tool_result"' in streamed
    assert "secret" not in streamed and "tools.py" not in streamed and "RuntimeError" not in streamed
    [run] = server.state.store.list_runs(agent="toolish")
    replayed = httpx.get(f"{server.url}/chat/api/runs/{run['id']}/events", headers=session, timeout=30).text
    assert "lookup" in replayed and "secret" not in replayed and "tools.py" not in replayed
    stored = [e for e in server.state.store.get_events(run["id"]) if e["type"] == "error"]
    assert "tools.py" in stored[0]["detail"]  # the operator keeps it


def test_a_json_answer_cut_by_the_end_of_the_grace_period_is_a_503_and_stored_interrupted(client) -> None:
    import threading

    conv = client.post("/v1/conversations", json={"agent": "slow"}).json()["id"]
    result: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: result.setdefault(
        "r", client.post(f"/v1/conversations/{conv}/messages", json={"content": "go"})))
    thread.start()
    lifecycle, store = client.server.state.lifecycle, client.server.state.store
    deadline = time.monotonic() + 20
    # the run is streaming (its model_call is flushed to the store during the generation): a cut before its
    # start is recorded would leave no run, or one stored as cancelled
    while not ((runs := store.list_runs(conversation_id=conv))
               and any(e["type"] == "model_call" for e in store.get_events(runs[0]["id"]))):
        assert time.monotonic() < deadline, "the run never started streaming"
        time.sleep(0.02)
    lifecycle.loop.call_soon_threadsafe(lifecycle.interrupt)
    thread.join(10)
    response = result["r"]
    assert response.status_code == 503 and response.json()["error"]["type"] == "shutdown"
    [run] = client.server.state.store.list_runs(conversation_id=conv)
    assert run["status"] == "interrupted" and "shutdown" in run["error"]


def test_an_inbox_that_cannot_connect_shows_on_status_and_metrics(serve, agents_dir: Path, api_key,
                                                                  monkeypatch) -> None:
    """An email channel whose IMAP server is down was only in the log: /status and /metrics said all was well."""
    import time

    from tests.server.conftest import free_port

    monkeypatch.setenv("HG_TEST_IMAP", "secret")
    (agents_dir / "mailer").mkdir()
    (agents_dir / "mailer" / "agent.yaml").write_text(yaml.safe_dump({"name": "mailer", "model": "scripted",
        "channels": {"email": {"address": "help@example.com", "imap": {
            "host": "127.0.0.1", "port": free_port(), "security": "none", "password": "HG_TEST_IMAP"},
            "smtp": {"host": "127.0.0.1", "port": free_port(), "security": "none"}}}}))
    server = serve(worker=True)
    admin = {"Authorization": f"Bearer {api_key(scope='admin')}", "Accept": "application/json"}
    deadline = time.monotonic() + 20
    while (part := httpx.get(f"{server.url}/status", headers=admin).json()["components"].get("channels", {})).get(
            "ok", True):
        assert time.monotonic() < deadline, "the failing inbox never showed"
        time.sleep(0.1)
    assert part["detail"].startswith("mailer/email: IMAP 127.0.0.1:") and "retrying" in part["detail"]
    anonymous = httpx.get(f"{server.url}/status", headers={"Accept": "application/json"}).json()
    assert anonymous["components"]["channels"]["detail"] == ("1 of 1 fetching channels cannot connect (see the "
                                                             "server log)")  # no agent name, no mail server
    metrics = httpx.get(f"{server.url}/metrics", headers=admin).text
    assert 'halguru_channel_up{agent="mailer",channel="email"} 0.0' in metrics
    assert "mailer" not in httpx.get(f"{server.url}/metrics").text  # a key-only agent's name is not public


def test_a_chat_only_key_sees_a_failed_models_error_without_server_folders(serve, agents_dir: Path, tmp_path: Path,
                                                                           api_key) -> None:
    """A model file missing: the run's error said "GGUF model file not found: /srv/secret-folder/x.gguf" to a
    chat-only key, in the answer, its stream, GET /v1/runs and its events, though ``model`` was ``x.gguf``
    there. It now names the file without its folders; an operator still reads the whole path."""
    gguf = tmp_path / "secret-folder" / "helper.gguf"
    (agents_dir / "local").mkdir()
    (agents_dir / "local" / "agent.yaml").write_text(yaml.safe_dump({"name": "local", "model": str(gguf)}))
    server = serve()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key('app', scope='user')}"},
                      timeout=30) as http:
        conv = http.post("/v1/conversations", json={"agent": "local"}).json()["id"]
        answer = http.post(f"/v1/conversations/{conv}/messages", json={"content": "hi"})
        run = answer.json()["run_id"]
        keyed = {"json": {"content": "hi"}, "headers": {"Idempotency-Key": "k"}}
        again, repeat = (http.post(f"/v1/conversations/{conv}/messages", **keyed) for _ in range(2))
        seen = [answer.text, again.text, repeat.text, http.get(f"/v1/runs/{run}").text, http.get("/v1/runs").text,
                http.get(f"/v1/runs/{run}/events").text]
        with http.stream("POST", f"/v1/conversations/{conv}/messages", json={"content": "hi", "stream": True}) as r:
            seen.append("".join(r.iter_lines()))
    assert answer.json()["status"] == "failed" and "helper.gguf" in answer.json()["error"], answer.text
    for text in seen:
        assert "helper.gguf" in text and "secret-folder" not in text and str(tmp_path) not in text, text
    operator = {"Authorization": f"Bearer {api_key('ops', scope='operator')}"}
    operator = httpx.get(f"{server.url}/v1/runs/{run}", headers=operator)
    assert str(gguf) in operator.json()["error"]
