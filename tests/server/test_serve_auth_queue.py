"""API keys, the fair bounded queue (503 + Retry-After), disconnect cancellation and the plugin route hook."""

from __future__ import annotations

import time

import httpx
import pytest

from halguru.errors import HalguruError
from halguru.store import open_store


def test_every_v1_route_needs_a_valid_key(serve, api_key) -> None:
    server = serve()
    anonymous = httpx.get(f"{server.url}/v1/agents")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "unauthorized"
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    assert httpx.get(f"{server.url}/v1/agents", headers={"Authorization": "Bearer hg_wrong"}).status_code == 401
    good = api_key()
    assert httpx.get(f"{server.url}/v1/agents", headers={"X-API-Key": good}).status_code == 200
    assert httpx.get(f"{server.url}/v1/agents", headers={"api-key": good}).status_code == 200  # Azure OpenAI's
    assert httpx.get(f"{server.url}/v1/agents", headers={"api-key": "hg_wrong"}).status_code == 401
    expired = api_key("old", expires_in=0.001)
    time.sleep(0.01)
    assert httpx.get(f"{server.url}/v1/agents", headers={"Authorization": f"Bearer {expired}"}).status_code == 401


def test_a_key_scoped_to_agents_sees_only_those(serve, api_key) -> None:
    """A key limited with --agents gets the same answer for an agent it may not use as for one that does not
    exist, on every route that takes an agent's name (it was a 403 "may not use agent 'private'" beside a 404),
    so it cannot find the others' names by guessing; an unlimited key's answers are unchanged."""
    server = serve()
    scoped = httpx.Client(base_url=server.url, timeout=30,
                          headers={"Authorization": f"Bearer {api_key('scoped', agents=['echo'], scope='admin')}"})
    whole = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {api_key('all')}"})
    with scoped, whole:
        assert [a["name"] for a in scoped.get("/v1/agents").json()["data"]] == ["echo"]
        hi = [{"role": "user", "content": "hi"}]

        def routes(name: str) -> list[httpx.Response]:
            return [scoped.get(f"/v1/agents/{name}"), scoped.get(f"/v1/models/{name}"),
                    scoped.post("/v1/conversations", json={"agent": name}),
                    scoped.post("/chat/api/conversations", json={"agent": name}),
                    scoped.post("/v1/chat/completions", json={"model": name, "messages": hi}),
                    scoped.post("/v1/chat/completions", json={"model": name, "messages": hi, "stream": True}),
                    scoped.post("/v1/jobs", json={"agent": name, "input": "hi"}),
                    scoped.post(f"/v1/deployments/{name}/rollback", json={"version": 1})]

        for hidden, missing in zip(routes("private"), routes("nosuch"), strict=True):
            assert hidden.status_code == missing.status_code, (hidden.request.url, hidden.text, missing.text)
            assert hidden.text.replace("private", "NAME") == missing.text.replace("nosuch", "NAME"), hidden.text
        # publishing (a rollback) is refused for a name outside the key's agents whether or not it exists (it was a
        # 409 "served from FOLDER" for an agent served here, where another name got the 403)
        assert scoped.post("/v1/deployments/private/rollback", json={"version": 1}).status_code == 403
        assert scoped.get("/v1/agents/private").json()["error"] == {
            "type": "not_found", "message": "no agent 'private'; GET /v1/agents lists them"}
        assert scoped.post("/v1/chat/completions", json={"model": "private", "messages": hi}).json()["error"] == {
            "message": "no model 'private' (a model here is an agent's name); GET /v1/models lists them",
            "type": "not_found_error",
            "param": "model", "code": "model_not_found"}
        assert scoped.get("/v1/conversations", params={"agent": "private"}).json()["data"] == []
        assert whole.get("/v1/agents/private").status_code == 200 and whole.get("/v1/agents/nosuch").status_code == 404
        assert whole.post("/v1/conversations", json={"agent": "private"}).status_code == 201


def test_revoked_key_stops_working_at_once(serve, api_key, cli) -> None:
    server = serve()
    secret = api_key("ci")
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{server.url}/v1/agents", headers=headers).status_code == 200
    cli("keys", "revoke", "ci")
    assert httpx.get(f"{server.url}/v1/agents", headers=headers).status_code == 401


@pytest.mark.sqlite_only(reason="searches the SQLite file's bytes for the secret; the secret is hashed before "
                                "any store sees it (create_key takes the hash), so the backend changes nothing")
def test_keys_cli_prints_once_and_stores_only_a_hash(cli, halguru_home, agents_dir, monkeypatch) -> None:
    monkeypatch.chdir(agents_dir)  # --agents is checked against the agents `halguru serve` would serve here
    result = cli("keys", "create", "mobile-app", "--agents", "echo,slow", "--expires", "30d")
    secret = result.stdout.strip().splitlines()[0]
    assert secret.startswith("hg_") and len(secret) > 40
    listing = cli("keys", "list").stdout
    assert "mobile-app" in listing and "echo,slow" in listing and "active" in listing and secret not in listing
    assert secret.encode() not in (halguru_home / "halguru.db").read_bytes()
    cli("keys", "revoke", "mobile-app")
    assert "revoked" in cli("keys", "list").stdout
    assert "no active key" in str(cli("keys", "revoke", "mobile-app", code=1).exception)
    assert "is not a duration" in str(cli("keys", "create", "x", "--expires", "soon", code=1).exception)
    # a lifetime past any date, or digits that are not ASCII ("３d"), are refused; the listing is untouched
    assert "longer than 100 years" in str(cli("keys", "create", "x", "--expires", "999999999999d",
                                              code=1).exception)
    assert "is not a duration" in str(cli("keys", "create", "x", "--expires", "\uff13d", code=1).exception)
    assert cli("keys", "list").stdout == listing.replace("active", "revoked")


def test_revoking_a_name_two_active_keys_share_is_refused(cli) -> None:
    ids = [cli("keys", "create", "my-app").stdout.split("_")[1] for _ in range(2)]
    error = str(cli("keys", "revoke", "my-app", code=1).exception)
    assert error == f"2 active keys are named 'my-app' ({ids[0]}, {ids[1]}); revoke one by its id"
    assert cli("keys", "list").stdout.count("active") == 2  # nothing revoked
    assert cli("keys", "revoke", ids[0]).stdout == f"revoked {ids[0]} (my-app)\n"
    assert cli("keys", "revoke", "my-app").stdout == f"revoked {ids[1]} (my-app)\n"  # one left: by name again


def test_dev_mode_needs_no_key_and_refuses_public_addresses(serve) -> None:
    from halguru_server import ServerSettings

    server = serve(dev=True)
    assert httpx.get(f"{server.url}/v1/agents").status_code == 200
    with pytest.raises(HalguruError, match="loopback"):
        ServerSettings(dev=True, host="0.0.0.0").check()


def test_full_queue_answers_503_with_retry_after(client) -> None:
    client.server.state.settings.concurrency = 1
    client.server.state.gate.queue_size = 1
    convs = [client.post("/v1/conversations", json={"agent": "slow"}).json()["id"] for _ in range(3)]
    with client.stream("POST", f"/v1/conversations/{convs[0]}/messages", json={"content": "a", "stream": True}) as a:
        lines = a.iter_lines()  # kept: a dropped iterator closes the stream
        assert next(lines).startswith("id: run_") and next(lines) == "event: run_started"  # running
        with client.stream("POST", f"/v1/conversations/{convs[1]}/messages",
                           json={"content": "b", "stream": True}) as b:
            assert b.status_code == 200  # queued
            time.sleep(0.1)
            full = client.post(f"/v1/conversations/{convs[2]}/messages", json={"content": "c"})
            assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1
            assert full.json()["error"]["type"] == "queue_full"
            metrics = client.get("/metrics").text  # public: the model's file name, never its folders
            assert 'halguru_queue_depth{model="scripted:slow.yaml"} 1.0' in metrics
            assert client.server.state.agents["slow"].model.partition(":")[2] not in metrics  # /tmp/.../slow.yaml


def test_one_client_cannot_fill_a_models_queue(client, api_key) -> None:
    """One key's 30 messages took every place (8 running + 16 waiting): everyone else's got 503. A client now
    holds at most its share of the waiting places (half the queue by default); another still gets in. The
    refusal names the model by its file's name, not its folders (anonymous visitors saw the path)."""
    import contextlib

    state = client.server.state
    state.settings.concurrency = 1
    state.gate.queue_size, state.gate.per_client = 4, 2
    other = httpx.Client(base_url=str(client.base_url), headers={"Authorization": f"Bearer {api_key('b')}"},
                         timeout=30)
    convs = [client.post("/v1/conversations", json={"agent": "slow"}).json()["id"] for _ in range(4)]
    theirs = other.post("/v1/conversations", json={"agent": "slow"}).json()["id"]
    with contextlib.ExitStack() as streams:
        for conv in convs[:3]:  # one running, two waiting
            response = streams.enter_context(client.stream("POST", f"/v1/conversations/{conv}/messages",
                                                           json={"content": "a", "stream": True}))
            assert response.status_code == 200
            time.sleep(0.1)
        refused = client.post(f"/v1/conversations/{convs[3]}/messages", json={"content": "d"})
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "queue_full"
        message = refused.json()["error"]["message"]
        assert message == "model scripted:slow.yaml is busy: you have 2 runs waiting for it, the most one client " \
                          "may queue; retry in 2 s"
        with other.stream("POST", f"/v1/conversations/{theirs}/messages",
                          json={"content": "b", "stream": True}) as admitted:
            assert admitted.status_code == 200
            assert state.gate.depth(state.agents["slow"].model) == 3
    other.close()


def test_client_disconnect_cancels_the_run_and_keeps_the_partial_answer(client) -> None:
    conv = client.post("/v1/conversations", json={"agent": "slow"}).json()["id"]
    tokens = 0
    with client.stream("POST", f"/v1/conversations/{conv}/messages", json={"content": "go", "stream": True}) as r:
        for line in r.iter_lines():
            tokens += line == "event: token"
            if tokens == 3:
                break
    store = open_store()
    deadline = time.monotonic() + 5
    while (run := store.list_runs(conversation_id=conv)[0])["status"] == "running":
        assert time.monotonic() < deadline, "the run was not cancelled"
        time.sleep(0.05)
    assert run["status"] == "cancelled"
    assert run["output"].startswith("word0 word1") and "word39" not in run["output"]
    assert client.server.state.gate.queues[client.server.state.agents["slow"].model].active == 0


def test_plugins_add_routes_through_register_routes(serve) -> None:
    import types

    from halguru.plugins import hookimpl
    from halguru.plugins.manager import get_plugin_manager

    plugin = types.ModuleType("hello_routes")

    @hookimpl
    def register_routes(app):
        @app.get("/hello")
        def hello() -> dict[str, str]:
            return {"hello": "plugin"}

    plugin.register_routes = register_routes  # type: ignore[attr-defined]
    get_plugin_manager().register(plugin, name="hello_routes")
    server = serve(dev=True)
    assert httpx.get(f"{server.url}/hello").json() == {"hello": "plugin"}
