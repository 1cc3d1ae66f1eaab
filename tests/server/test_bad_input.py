"""Bad input gets a 4xx with one clear line, never a 500: cursors, lone surrogates, oversized OpenAI chats,
and `halguru keys create` with a zero lifetime or agents that are not served."""

from __future__ import annotations

import base64
import re

import httpx
import pytest


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [_cursor("o:" + "9" * 30), _cursor("o:99999999999999999999"), _cursor("o:²"),
                                    _cursor("o:-1"), "!!", _cursor("x:1")])
def test_a_bad_or_overflowing_cursor_is_a_400(client, cursor: str) -> None:
    response = client.get("/v1/conversations", params={"cursor": cursor})
    assert response.status_code == 400 and "invalid cursor" in response.json()["error"]["message"]


def test_a_malformed_or_foreign_list_cursor_is_a_400(serve, api_key) -> None:
    """Each list takes only its own cursors: a keyset for conversations and jobs, never an offset (an older
    server's) or another list's, and no time that is not a finite number."""
    cases = [("/v1/conversations", "o:2"), ("/v1/conversations", "j:7"), ("/v1/conversations", "c:nan:conv_a"),
             ("/v1/conversations", "c:1e400:conv_a"), ("/v1/conversations", "c:soon:conv_a"),
             ("/v1/conversations", "c:17.5:"), ("/v1/conversations", "c"), ("/v1/admin/conversations", "j:7"),
             ("/v1/admin/conversations", "c:-inf:x"), ("/v1/jobs", "c:17.5:conv_a"), ("/v1/jobs", "j:" + "9" * 30),
             ("/v1/jobs", "j:-1"), ("/v1/jobs", "j:\u00b2"), ("/v1/jobs", "o:1")]
    server = serve()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key(scope='admin')}"}) as admin:
        for path, text in cases:
            response = admin.get(path, params={"cursor": _cursor(text)})
            assert response.status_code == 400, (path, text, response.text)
            message = response.json()["error"]["message"]
            assert message.startswith("invalid cursor: pass the next_cursor of a previous page"), message
        assert admin.get("/v1/jobs", params={"cursor": "!!"}).status_code == 400


def test_lone_surrogates_are_refused_everywhere_text_is_stored(client) -> None:
    raw = '{"model": "echo", "messages": [{"role": "user", "content": "hi \\ud800 there"}]}'
    completion = client.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert completion.status_code == 400, completion.text
    assert "lone surrogate" in completion.json()["error"]["message"]
    history = ('{"model": "echo", "messages": [{"role": "system", "content": "\\udfff"}, '
               '{"role": "user", "content": "fine"}]}')
    assert client.post("/v1/chat/completions", content=history,
                       headers={"Content-Type": "application/json"}).status_code == 400
    title = client.post("/v1/conversations", content='{"agent": "echo", "title": "\\ud83d"}',
                        headers={"Content-Type": "application/json"})
    assert title.status_code == 422 and title.json()["error"]["message"].startswith("title:")
    conv = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
    message = client.post(f"/v1/conversations/{conv}/messages", content='{"content": "a\\ud800"}',
                          headers={"Content-Type": "application/json"})
    assert message.status_code == 422
    assert client.get(f"/v1/conversations/{conv}/messages").json()["data"] == []  # nothing half-stored


def test_a_body_that_is_not_json_is_a_415_that_says_so(client) -> None:
    conv = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        for path in (f"/v1/conversations/{conv}/messages", "/v1/chat/completions", "/v1/responses",
                     "/v1/conversations"):
            sent = client.post(path, content='{"content": "hi"}', headers={"Content-Type": content_type})
            assert sent.status_code == 415, (path, content_type, sent.text)
            assert "Content-Type: application/json" in sent.json()["error"]["message"]
    assert client.post(f"/v1/conversations/{conv}/messages", content='{"content": "hi"}',
                       headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 200
    wrong = client.post(f"/v1/conversations/{conv}/messages", json={"content": 5})  # JSON, wrong: still a 422
    assert wrong.status_code == 422 and wrong.json()["error"]["message"].startswith("content:")
    untyped = client.build_request("POST", f"/v1/conversations/{conv}/messages", content=b'{"content": 1}')
    assert "content-type" not in untyped.headers  # no type at all: the same 415, not "a valid dictionary"
    answer = client.send(untyped)
    assert answer.status_code == 415 and "has no Content-Type" in answer.json()["error"]["message"], answer.text
    empty = client.post(f"/v1/conversations/{conv}/messages")  # no body at all: a missing field, 422
    assert empty.status_code == 422, empty.text
    for broken in (b'{"content": "\xff\xfe"}', b'{"content": "hi"', b"[" * 10_000):  # bad UTF-8, cut, deep
        answer = client.post(f"/v1/conversations/{conv}/messages", content=broken,
                             headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["message"].startswith("the body is not valid JSON"), answer.text


def test_openai_endpoint_limits_message_count_and_total_size(client) -> None:
    settings = client.server.state.settings
    settings.max_messages, settings.max_history_chars = 5, 1000
    many = [{"role": "user", "content": "x"}] * 6
    too_many = client.post("/v1/chat/completions", json={"model": "echo", "messages": many})
    assert too_many.status_code == 413 and "HALGURU_SERVE_MAX_MESSAGES" in too_many.json()["error"]["message"]
    big = [{"role": "system", "content": "y" * 600}, {"role": "user", "content": "z" * 600}]
    too_big = client.post("/v1/chat/completions", json={"model": "echo", "messages": big})
    assert too_big.status_code == 413 and "1000 characters" in too_big.json()["error"]["message"]
    fine = client.post("/v1/chat/completions", json={"model": "echo", "messages": many[:5]})
    assert fine.status_code == 200


def test_a_compressed_body_is_a_415_that_names_its_encoding(client) -> None:
    """A gzip body (Content-Encoding: gzip, which HTTP clients can be set to send) was answered "the body is not
    valid JSON (not UTF-8, or nested too deeply)", though it was valid JSON compressed."""
    import gzip
    import json

    body = gzip.compress(json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}).encode())
    for encoding in ("gzip", "br"):
        sent = client.post("/v1/chat/completions", content=body,
                           headers={"Content-Type": "application/json", "Content-Encoding": encoding})
        assert sent.status_code == 415, sent.text
        assert sent.json()["error"]["message"] == (f"the body is sent with Content-Encoding: {encoding}; send it "
                                                   "uncompressed")
    plain = client.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
                        headers={"Content-Encoding": "identity"})
    assert plain.status_code == 200, plain.text


def test_openai_endpoint_names_the_message_past_max_input_chars(client) -> None:
    """An OpenAI client reads the field at fault from ``param``: it was null, the message "the message is ..."
    naming none of the request's messages."""
    client.server.state.settings.max_input_chars = 10
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x" * 11}]
    for stream in (False, True):
        refused = client.post("/v1/chat/completions", json={"model": "echo", "messages": chat, "stream": stream})
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"] == {
            "message": "messages.1.content: 11 characters; the limit is 10 (HALGURU_SERVE_MAX_INPUT_CHARS)",
            "type": "invalid_request_error", "param": "messages.1.content", "code": "message_too_long"}


def test_keys_create_refuses_a_zero_lifetime_and_unknown_agents(cli, agents_dir, monkeypatch) -> None:
    monkeypatch.chdir(agents_dir)
    for lifetime in ("0s", "0d"):
        error = str(cli("keys", "create", "x", "--expires", lifetime, code=1).exception)
        assert "longer than 0" in error and "\n" not in error
    error = str(cli("keys", "create", "x", "--agents", "echo,nope", code=1).exception)
    assert "'nope'" in error and "echo" in error and "\n" not in error
    assert cli("keys", "list").stdout.startswith("no keys")  # nothing created by a refused command
    assert cli("keys", "create", "ok", "--agents", "echo", "--expires", "1s").stdout.startswith("hg_")


def test_keys_create_refuses_a_name_past_100_characters_on_either_store(cli, store_url: str, monkeypatch) -> None:
    """As the API's POST /v1/keys does: SQLite stored a 4,000-character name, PostgreSQL refused its index entry."""
    import secrets

    from halguru.config import reset_settings

    if not store_url.startswith("sqlite:"):
        monkeypatch.setenv("HALGURU_DATABASE_URL", store_url)
        reset_settings()
    error = str(cli("keys", "create", secrets.token_urlsafe(3000), code=1).exception)
    assert error == "a key's name is at most 100 characters, not 4000"
    assert cli("keys", "list").stdout.startswith("no keys")  # nothing created by a refused command
    assert cli("keys", "create", "k" * 100).stdout.startswith("hg_")


def test_keys_create_checks_agents_only_where_there_are_some(cli, tmp_path, monkeypatch) -> None:
    """README runs `halguru keys create my-app --agents basic --expires 30d` beside agents-templates/: no
    project there, so the names are kept as given, with a one-line note."""
    (tmp_path / "agents-templates").mkdir()
    monkeypatch.chdir(tmp_path)
    result = cli("keys", "create", "my-app", "--agents", "basic", "--expires", "30d")
    assert result.stdout.startswith("hg_")
    assert "note: --agents kept as given, unchecked (no agent project in" in result.stderr
    assert "basic" in cli("keys", "list").stdout
    import json

    [key] = json.loads(cli("keys", "list", "--json").stdout)
    assert (key["name"], key["agents"], key["state"]) == ("my-app", ["basic"], "active") and key["expires"] > 0
    assert result.stdout.strip() not in json.dumps(key)  # never the secret
    assert cli("keys", "create", "all-agents").stdout.startswith("hg_")  # no --agents: nothing to check
    error = str(cli("keys", "create", "x", "--agents", "echo", "--config", str(tmp_path / "none.yaml"),
                    code=1).exception)
    assert error.startswith("cannot check --agents: cannot read the serve config") and "\n" not in error


def test_a_broken_sibling_agent_does_not_stop_a_key_for_a_valid_one(cli, agents_dir, monkeypatch) -> None:
    (agents_dir / "broken").mkdir()
    (agents_dir / "broken" / "agent.yaml").write_text("name: [\n")
    monkeypatch.chdir(agents_dir)
    assert cli("keys", "create", "app", "--agents", "echo").stdout.startswith("hg_")
    error = str(cli("keys", "create", "x", "--agents", "nope", code=1).exception)
    assert "no agent named 'nope'" in error and "not loaded:" in error and "broken" in error and "\n" not in error


def test_keys_create_knows_the_published_agents(cli, agents_dir, tmp_path, monkeypatch) -> None:
    """On a hosting server (agents published with `halguru publish`), `keys create --agents shop` checked the
    name against the folder it ran in: refused beside another project ('no agent named shop'), unchecked in an
    empty one. The store's published agents count as served."""
    from halguru.store import open_store

    open_store().create_deployment("shop", "0" * 64, {"files": {}}, b"bundle", None)
    monkeypatch.chdir(agents_dir)  # beside the echo project
    result = cli("keys", "create", "ci", "--agents", "shop,echo")
    assert result.stdout.startswith("hg_") and "note:" not in result.stderr
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    result = cli("keys", "create", "ci2", "--agents", "shop")
    assert result.stdout.startswith("hg_") and "note:" not in result.stderr
    error = str(cli("keys", "create", "x", "--agents", "shp", code=1).exception)
    assert error == "--agents: no agent named 'shp' among the published; known: shop"


def test_keys_list_shows_scope_and_last_use(cli, serve, agents_dir, monkeypatch) -> None:
    import httpx

    monkeypatch.chdir(agents_dir)
    secret = cli("keys", "create", "ops", "--admin").stdout.strip().splitlines()[0]
    cli("keys", "create", "app", "--agents", "echo")
    before = cli("keys", "list").stdout
    assert before.count("never") == 4  # no expiry, never used: both keys
    server = serve()
    assert httpx.get(f"{server.url}/v1/agents", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    rows = {line.split()[1]: line for line in cli("keys", "list").stdout.splitlines()[1:]}
    assert " admin " in rows["ops"] and " user " in rows["app"]
    assert rows["ops"].count("never") == 1 and rows["app"].count("never") == 2  # ops: used just now


def test_keys_list_keeps_its_columns_for_every_role(cli) -> None:
    """A key without a user shows its role (developer, operator) in the SCOPE column, apart from the USER one."""
    cli("keys", "create", "ci", "--role", "developer")
    cli("keys", "create", "watch", "--role", "operator")
    rows = [line.split() for line in cli("keys", "list").stdout.splitlines()]
    assert rows[0][4:6] == ["SCOPE", "USER"]
    assert sorted((row[1], row[4], row[5]) for row in rows[1:]) == [("ci", "developer", "-"),
                                                                     ("watch", "operator", "-")]


def test_tokens_and_numbers_in_other_scripts_are_refused_never_a_500(serve, api_key) -> None:
    """hmac.compare_digest raises TypeError on str with non-ASCII characters, and '²'.isdigit() is True: a
    header or form field holding such characters is a refusal (401/403), never an internal error."""
    from halguru_server.identity import accounts

    server = serve()
    store = server.state.store
    with httpx.Client(base_url=server.url, headers={"Origin": server.url}, timeout=30) as browser:
        session = browser.get("/chat/api/conversations", headers={"X-Chat-Session": b"s1.aaaaaaaaaaaaaaaaaaaa.\xe9"})
        assert session.status_code == 401 and session.json()["error"]["type"] == "invalid_session"
        browser.get("/auth/login")  # the sign-in form's CSRF cookie
        form = {"email": "ann@example.com", "password": "correct horse battery"}
        refused = browser.post("/auth/login", data={**form, "csrf_token": "é"})
        assert refused.status_code == 403 and "halguru_session" not in browser.cookies
        accounts.create_user(store, "ann@example.com", password=form["password"], email_verified=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/auth/login").text)
        assert token and browser.post("/auth/login", data={**form, "csrf_token": token[1]}).status_code == 303
        forged = browser.post("/chat/api/conversations", json={"agent": "echo"}, headers={"X-CSRF-Token": b"\xe9"})
        assert forged.status_code == 403 and forged.json()["error"]["type"] == "csrf"
    user = {"id": "usr_x", "totp_secret": "JBSWY3DPEHPK3PXP"}
    assert accounts._totp_ok(store, user, "١٢٣٤٥٦") is False  # type: ignore[arg-type]  # Arabic-Indic digits
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}) as developer:
        for version in ("²", "9" * 5000):
            back = developer.post("/admin/deployments/echo/rollback", data={"version": version})
            assert back.status_code == 303 and "error=" in back.headers["location"], back.text
    assert server.state.metrics.server_errors() == 0


def test_the_audit_pages_refuse_a_cursor_past_64_bits(serve, api_key) -> None:
    server = serve()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key(scope='admin')}"}) as admin:
        for path in ("/admin/audit", "/v1/audit"):
            huge = admin.get(path, params={"before": "9" * 22})
            assert huge.status_code == 422 and "query.before" in huge.json()["error"]["message"], huge.text
        assert admin.get("/admin/audit", params={"before": 2**62}).status_code == 200


def test_a_conversation_deleted_as_its_message_starts_a_run_is_a_404(client, monkeypatch) -> None:
    """Deleted between the request's check and the run's start (another request of its owner): the answer is
    the 404 of a conversation that is not there, a streamed one's an error event saying so, not an internal
    error (with a traceback in the log) or the CLI's advice to start one without --conversation."""
    from halguru_server import service

    reserve = service.reserve

    def delete_then_reserve(state, served, principal):  # the DELETE lands just before the run starts
        state.store.delete_conversation(conv)
        return reserve(state, served, principal)

    monkeypatch.setattr(service, "reserve", delete_then_reserve)
    conv = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
    answer = client.post(f"/v1/conversations/{conv}/messages", json={"content": "hi"})
    assert answer.status_code == 404 and answer.json()["error"]["message"] == f"no conversation {conv!r}"
    conv = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
    streamed = client.post(f"/v1/conversations/{conv}/messages", json={"content": "hi", "stream": True})
    assert streamed.status_code == 200 and streamed.text.startswith("event: error\n"), streamed.text
    assert '"kind": "not_found"' in streamed.text and "internal" not in streamed.text
    assert client.server.state.store.list_runs(agent="echo") == []


def test_a_made_up_host_header_is_not_sent_back_in_a_redirect(serve) -> None:
    """Trailing-slash redirects were built from the request's Host: `Location: http://evil.example/admin`."""
    server = serve()
    for path in ("/admin/", "/v1/agents/", "/auth/login/"):
        answer = httpx.get(server.url + path, headers={"Host": "evil.example"}, follow_redirects=False)
        assert answer.is_redirect, (path, answer.status_code)
        assert "evil.example" not in answer.headers["location"], answer.headers["location"]
        assert answer.headers["location"].startswith("/"), answer.headers["location"]
    followed = httpx.get(server.url + "/v1/agents/", follow_redirects=True)  # a relative Location still lands
    assert followed.url.path == "/v1/agents" and followed.status_code == 401  # (no key: the route itself answered)
