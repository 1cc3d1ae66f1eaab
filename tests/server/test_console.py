"""The admin console over HTTP: every page renders for an admin, a user gets 403 (a browser: an HTML page; JSON
for API clients), nobody signed in is sent to sign in, and each page's JSON twin answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from halguru_server import ServerSettings, create_app
from halguru_server.identity import websessions

ORIGIN = "http://testserver"
PAGES = ["/admin", "/admin/users", "/admin/audit", "/admin/status", "/admin/security", "/admin/analytics",
         "/admin/jobs"]
FRAGMENTS = ["/admin/monitoring/live"]
TWINS = ["/v1/monitoring", "/v1/users", "/v1/audit", "/v1/status/history", "/v1/security", "/v1/analytics"]


@pytest.fixture
def app(agents_dir: Path) -> Iterator[Any]:
    app = create_app(ServerSettings(agents=[agents_dir], worker=False, keep_mcp_servers=False))
    with TestClient(app, base_url=ORIGIN):
        yield app


def signed_in(app: Any, role: str, email: str | None = None) -> dict[str, str]:
    """Headers of a browser signed in as a new user of ``role`` (2FA on and passed: cookie, CSRF token, Origin)."""
    state = app.state.halguru
    user = state.store.create_user(f"usr_{role}{len(state.store.list_users())}", email, role, role)
    state.store.update_user(user["id"], totp_enabled=True)  # an admin without 2FA would be sent to enrol
    secret, record = websessions.issue(state.store, user["id"], state.settings.auth)
    return {"Cookie": f"{websessions.COOKIE}={secret}", "X-CSRF-Token": record["csrf"], "Origin": ORIGIN,
            "Accept": "text/html"}


def test_every_page_renders_for_an_admin_and_refuses_a_user(app) -> None:
    client = TestClient(app, base_url=ORIGIN)
    admin, user = signed_in(app, "admin", "root@example.com"), signed_in(app, "user")
    for page in PAGES:
        got = client.get(page, headers=admin)
        assert got.status_code == 200, (page, got.text[:300])
        assert "Content-Security-Policy" in got.headers and "<nav" in got.text and "root@example.com" in got.text
        refused = client.get(page, headers=user)
        assert refused.status_code == 403 and "Not allowed" in refused.text
        assert client.get(page, headers={**user, "Accept": "application/json"}).json()["error"]["type"] == "forbidden"
        nobody = client.get(page, headers={"Accept": "text/html"}, follow_redirects=False)
        assert nobody.status_code == 303 and nobody.headers["location"].startswith("/auth/login?next=")
    for url in FRAGMENTS + TWINS:
        assert client.get(url, headers=admin).status_code == 200, url
        assert client.get(url, headers={**user, "Accept": "application/json"}).status_code == 403, url


def test_the_navigation_shows_only_what_the_role_may_open_and_assets_are_served(app) -> None:
    client = TestClient(app, base_url=ORIGIN)
    page = client.get("/admin", headers=signed_in(app, "developer")).text
    assert 'href="/admin/analytics"' in page and 'href="/admin/users"' not in page
    assert 'href="/admin/users"' in client.get("/admin", headers=signed_in(app, "admin")).text
    js = client.get("/admin/assets/console.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/admin/assets/__init__.py").status_code == 404


def test_monitoring_counts_runs_per_agent_with_percentiles_and_the_last_error(app) -> None:
    from halguru.agents.events import RunFinished

    store = app.state.halguru.store
    for i in range(20):
        store.create_conversation(f"conv_m{i}", "echo", "t")
        store.start_run(f"run_m{i}", f"conv_m{i}", "echo", "scripted", "hi")
        status = "failed" if i % 5 == 0 else "ok"
        done = RunFinished(run_id=f"run_m{i}", seq=0, status=status, output="", error="boom" if i % 5 == 0 else None)
        store.finish_run(f"run_m{i}", f"conv_m{i}", done.model_dump(), [done], [])
    client = TestClient(app, base_url=ORIGIN)
    snap = client.get("/v1/monitoring?window=15m", headers=signed_in(app, "operator")).json()
    echo = next(a for a in snap["agents"] if a["agent"] == "echo")
    assert (echo["runs"], echo["errors"], echo["error_rate"], echo["state"]) == (20, 4, 0.2, "idle")
    assert echo["p50_ms"] is not None and echo["last_error"]["error"] == "boom" and len(echo["version"]) == 12
    assert sum(b["runs"] for b in snap["timeline"]) == 20 and sum(snap["latency"]["counts"]) == 20
    page = client.get("/admin?window=15m", headers=signed_in(app, "developer")).text
    assert '<tr data-agent="echo">' in page and "<svg" in page and "boom" in page


def test_monitoring_viewers_share_a_slow_read_of_the_store_and_see_a_fast_one_fresh(app, monkeypatch) -> None:
    """Each open monitoring page refreshes every few seconds and, at ~100k runs in the window, each refresh read
    the store for 1-2 s: eight viewers kept it busy eight times over. Viewers asking at once now wait for one
    read, reused for a few times what it took; a cheap read is made again for every request."""
    import threading
    import time

    from halguru.store.sql_stats import StatsMixin

    calls = []
    percentiles = StatsMixin.run_percentiles

    def slow(self: Any, since: float) -> Any:
        calls.append(since)
        time.sleep(0.4)
        return percentiles(self, since)

    client = TestClient(app, base_url=ORIGIN)
    operator = signed_in(app, "operator")
    monkeypatch.setattr(StatsMixin, "run_percentiles", slow)
    answers: list[int] = []
    start = threading.Barrier(8)

    def view() -> None:
        start.wait()
        answers.append(client.get("/v1/monitoring?window=24h", headers=operator).status_code)

    threads = [threading.Thread(target=view) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 8 and len(calls) == 1  # one read for eight viewers (eight before)
    monkeypatch.setattr(StatsMixin, "run_percentiles", percentiles)
    store = app.state.halguru.store

    def running() -> int:
        snap = client.get("/v1/monitoring?window=24h", headers=operator).json()
        return int(next(a for a in snap["agents"] if a["agent"] == "echo")["running"])

    store.create_conversation("conv_f0", "echo", "t")
    store.start_run("run_f0", "conv_f0", "echo", "scripted", "hi")
    deadline = time.monotonic() + 10
    while running() != 1:  # the slow read is reused a few times what it took (1.6 s or more), then read again
        assert time.monotonic() < deadline, "the slow read was reused for ever"
        time.sleep(0.1)
    store.create_conversation("conv_f1", "echo", "t")
    store.start_run("run_f1", "conv_f1", "echo", "scripted", "hi")
    assert running() == 2  # a cheap read is as good as fresh


def test_a_key_limited_to_some_agents_reads_no_numbers_of_every_agent(app) -> None:
    """Monitoring and analytics name every agent, its model and its last error: a key given --agents does
    not see the other agents anywhere else (GET /v1/agents), so not there either."""
    from halguru_server.keys import create_key

    store = app.state.halguru.store
    store.create_conversation("conv_p", "private", "t")
    store.start_run("run_p", "conv_p", "private", "scripted", "hi")
    client = TestClient(app, base_url=ORIGIN)
    narrow = {"Authorization": f"Bearer {create_key(store, 'narrow', ['echo'], scope='developer')[1]}"}
    for url in ("/v1/monitoring", "/v1/analytics", "/admin", "/admin/monitoring/live", "/admin/analytics"):
        refused = client.get(url, headers=narrow)
        assert refused.status_code == 403 and "private" not in refused.text, url
        assert "may use only echo" in refused.json()["error"]["message"]
    assert "private" not in client.get("/v1/agents", headers=narrow).text
    every = {"Authorization": f"Bearer {create_key(store, 'every', scope='developer')[1]}"}
    assert "private" in client.get("/v1/monitoring", headers=every).text


def test_users_page_changes_roles_disables_invites_and_revokes_keys_and_sessions(app) -> None:
    from halguru_server.keys import create_key, list_keys

    client = TestClient(app, base_url=ORIGIN)
    store = app.state.halguru.store
    admin = signed_in(app, "admin", "root@example.com")
    me = next(u for u in store.list_users() if u["email"] == "root@example.com")
    signed_in(app, "developer", "dev@example.com")
    dev = store.user_by_email("dev@example.com")
    form = {"csrf_token": admin["X-CSRF-Token"]}
    post = {k: v for k, v in admin.items() if k != "X-CSRF-Token"}

    def act(url: str, **fields: str) -> Any:
        return client.post(url, headers=post, data={**form, **fields}, follow_redirects=False)

    assert act(f"/admin/users/{dev['id']}/role", role="operator").status_code == 303
    assert store.get_user(dev["id"])["role"] == "operator"
    refused = act(f"/admin/users/{me['id']}/role", role="user")
    assert refused.status_code == 400 and "cannot demote or disable yourself" in refused.text
    assert act(f"/admin/users/{me['id']}/disable").status_code == 400
    assert client.get(f"/v1/users/{dev['id']}/sessions", headers=admin).json() == []  # a role change signs out
    websessions.issue(store, dev["id"], app.state.halguru.settings.auth)  # signed in again
    key = create_key(store, "laptop", user_id=dev["id"])[0]
    page = client.get(f"/admin/users/{dev['id']}", headers=admin).text
    assert "laptop" in page and "Sign out" in page
    session = client.get(f"/v1/users/{dev['id']}/sessions", headers=admin).json()[0]["id"]
    assert act(f"/admin/users/{dev['id']}/revoke-key", key=key.id, back=f"/admin/users/{dev['id']}").status_code == 303
    assert next(k for k in list_keys(store, dev["id"]) if k.id == key.id).revoked is not None
    assert act(f"/admin/users/{dev['id']}/revoke-session", session=session).status_code == 303
    assert client.get(f"/v1/users/{dev['id']}/sessions", headers=admin).json() == []
    for _ in range(5):
        store.record_login_failure(dev["id"], 5, 60, 900)
    listing = client.get("/admin/users", headers=admin).text
    assert ">locked<" in listing and f"/admin/users/{dev['id']}/unlock" in listing
    assert act(f"/admin/users/{dev['id']}/unlock").status_code == 303
    assert store.get_user(dev["id"])["locked_until"] is None
    assert f"/admin/users/{dev['id']}/unlock" not in client.get("/admin/users", headers=admin).text
    assert act(f"/admin/users/{dev['id']}/disable").status_code == 303 and store.get_user(dev["id"])["disabled"]
    invited = act("/admin/users/invite", email="new@example.com", role="developer")
    assert invited.status_code == 200 and "/auth/register?invite=" in invited.text
    no_token = client.post(f"/admin/users/{dev['id']}/enable", headers=post, data={}, follow_redirects=False)
    assert no_token.status_code == 403
    link = client.post("/v1/invites", headers=admin, json={"role": "operator"}).json()["link"]
    assert link.startswith("http://testserver/auth/register?invite=")
    actions = [e["action"] for e in store.list_audit(50)]
    assert {"user.role", "user.unlock", "user.disable", "key.revoke", "session.revoke", "user.invite"} <= set(actions)


def test_users_page_shows_one_page_with_a_next_link_a_search_and_actions_that_come_back_to_it(app) -> None:
    import html
    import re

    client = TestClient(app, base_url=ORIGIN)
    store = app.state.halguru.store
    admin = signed_in(app, "admin", "root@example.com")
    for i in range(120):
        store.create_user(f"usr_p{i:03d}", f"person{i:03d}@example.com", f"Person {i:03d}", "user")
    first = client.get("/admin/users", headers=admin)
    assert first.status_code == 200 and first.text.count("<tr data-user=") == 50  # not all 121
    assert "root@example.com" in first.text and "person048@example.com" in first.text
    assert "person049@example.com" not in first.text
    follow = re.findall(r'<p class="pager"><a href="([^"]+)">Next', first.text)
    assert len(follow) == 1
    second = client.get(html.unescape(follow[0]), headers=admin).text
    assert second.count("<tr data-user=") == 50 and "person049@example.com" in second
    assert "person048@example.com" not in second and "person099@example.com" not in second
    third = client.get(html.unescape(re.findall(r'class="pager"><a href="([^"]+)"', second)[0]), headers=admin).text
    assert third.count("<tr data-user=") == 21 and "person119@example.com" in third and 'class="pager"' not in third

    found = client.get("/admin/users", headers=admin, params={"q": "PERSON 07"}).text
    assert found.count("<tr data-user=") == 10 and "person070@example.com" in found
    assert 'value="PERSON 07"' in found and 'class="pager"' not in found
    missing = client.get("/admin/users", headers=admin, params={"q": "nobody"}).text
    assert "No user's email or name contains “nobody”" in missing
    bad = client.get("/admin/users", headers=admin, params={"cursor": "x"})
    assert bad.status_code == 422 and "invalid cursor" in bad.text

    back = html.unescape(follow[0])  # an action on the second page returns to it
    assert f'name="back" value="{follow[0]}"' in second
    done = client.post("/admin/users/usr_p060/disable", headers={k: v for k, v in admin.items() if k != "X-CSRF-Token"},
                       data={"csrf_token": admin["X-CSRF-Token"], "back": back}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == back and store.get_user("usr_p060")["disabled"]


def test_a_refused_invitation_keeps_the_email_and_role_typed(app) -> None:
    client = TestClient(app, base_url=ORIGIN)
    admin = signed_in(app, "admin", "root@example.com")
    app.state.halguru.store.create_user("usr_taken", "taken@example.com", "Taken", "user")
    got = client.post("/admin/users/invite", headers=admin,
                      data={"csrf_token": admin["X-CSRF-Token"], "email": "taken@example.com", "role": "operator"})
    assert got.status_code == 400 and "exists already" in got.text
    form = got.text.split('action="/admin/users/invite"')[1]
    assert 'value="taken@example.com"' in form and '<option value="operator" selected>' in form
    fresh = client.get("/admin/users", headers=admin).text.split('action="/admin/users/invite"')[1]
    assert 'value=""' in fresh and '<option value="user" selected>' in fresh


def test_an_empty_filtered_list_says_the_filters_hid_everything_and_how_to_clear_them(app) -> None:
    client = TestClient(app, base_url=ORIGIN)
    admin = signed_in(app, "admin", "root@example.com")
    users = client.get("/admin/users?q=nobody-like-this", headers=admin).text
    assert "No user's email or name contains “nobody-like-this”: try part of it, or" in users
    assert '<a href="/admin/users">Clear</a>.' in users
    filtered = client.get("/admin/opt-outs?channel=sms", headers=admin).text
    assert "No opt-out matches these filters: widen them or" in filtered and "Nobody has opted out" not in filtered
    assert "Nobody has opted out." in client.get("/admin/opt-outs", headers=admin).text


def test_audit_page_filters_and_verifies_the_chain(app) -> None:
    from halguru import audit

    store = app.state.halguru.store
    for i in range(3):
        audit.record(store, "cli:root", "user.role", f"usr_{i}", {"role": "operator"}, None)
    audit.record(store, "cli:root", "key.create", "k1", None, None)
    client = TestClient(app, base_url=ORIGIN)
    admin = signed_in(app, "admin", "root@example.com")
    page = client.get("/admin/audit?action=user.", headers=admin).text
    assert page.count("user.role") >= 3 and "key.create" not in page.split("<table")[1]
    verified = client.post("/admin/audit/verify", headers=admin, data={"csrf_token": admin["X-CSRF-Token"]})
    assert verified.status_code == 200 and "audit chain intact: 4 entries" in verified.text
    operator = signed_in(app, "operator")
    assert client.get("/admin/audit", headers=operator).status_code == 403


def test_audit_page_filters_by_date_range_and_exports_every_matching_entry_as_csv(app, monkeypatch) -> None:
    import csv
    import types
    from datetime import UTC, datetime

    from halguru import audit
    from halguru.store import sql_audit

    store = app.state.halguru.store
    for day, count in ((1, 3), (2, 1200), (3, 2)):  # more than one export batch on the 2nd
        noon = datetime(2026, 11, day, 12, tzinfo=UTC).timestamp()
        monkeypatch.setattr(sql_audit, "time", types.SimpleNamespace(time=lambda noon=noon: noon))
        for i in range(count):
            audit.record(store, "cli:root", "user.role", f"usr_d{day}_{i}", {"role": "operator"}, None)
        if day == 2:
            audit.record(store, "cli:root", "user.invite", "=HYPERLINK(1)", None, None)  # a formula typed in
    monkeypatch.undo()
    client = TestClient(app, base_url=ORIGIN)
    admin = signed_in(app, "admin", "root@example.com")
    page = client.get("/admin/audit?from=2026-11-02&to=2026-11-03&actor=cli:root", headers=admin).text
    table = page.split("<table")[1]
    assert "usr_d3_1" in table and "usr_d1_" not in table and 'value="2026-11-02"' in page
    assert 'href="/admin/audit?actor=cli%3Aroot&amp;from=2026-11-02&amp;to=2026-11-03&amp;before=' in page
    link = 'href="/admin/audit/export.csv?actor=cli%3Aroot&amp;from=2026-11-02&amp;to=2026-11-03"'
    assert link in page
    got = client.get("/admin/audit/export.csv?actor=cli:root&from=2026-11-02&to=2026-11-02", headers=admin)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert got.headers["content-disposition"].startswith('attachment; filename="halguru-audit-')
    rows = list(csv.DictReader(got.text.splitlines()))
    assert len(rows) == 1201 and {r["target"][:7] for r in rows[1:]} == {"usr_d2_"}
    assert rows[0]["time_utc"] == "2026-11-02T12:00:00Z" and rows[0]["target"] == "'=HYPERLINK(1)"  # no formula
    assert int(rows[0]["seq"]) > int(rows[-1]["seq"])
    empty = client.get("/admin/audit?from=2026-10-01&to=2026-10-02", headers=admin).text
    assert "No entries match these filters" in empty
    bad = client.get("/admin/audit?from=2026-13-45", headers=admin)
    assert bad.status_code == 400 and "is not a date; give one as YYYY-MM-DD" in bad.text
    assert client.get("/admin/audit?from=&to=", headers=admin).status_code == 200  # the form's empty fields
    assert client.get("/admin/audit/export.csv", headers=signed_in(app, "operator")).status_code == 403
    twin = client.get(f"/v1/audit?until={datetime(2026, 11, 2, tzinfo=UTC).timestamp()}&limit=500",
                      headers={**admin, "Accept": "application/json"}).json()
    assert len(twin["data"]) == 3 and twin["next"] is None


def test_jobs_page_shows_the_queue_and_retries_or_cancels_as_the_cli_does(app) -> None:
    """The console had no jobs: an operator saw a dead channel reply only with `halguru jobs` on the server."""
    store = app.state.halguru.store
    dead, _ = store.enqueue_job("reply", "echo", {"channel": "email", "text": "When are you open?"},
                                owner="channel:email", max_attempts=8)
    assert store.claim_job("w1", 30.0)["id"] == dead["id"]
    store.fail_job(dead["id"], "w1", "email channel of echo: SMTP 127.0.0.1:25: ann@x refused: 550 5.1.1 No such\n"
                   "user", None)
    waiting, _ = store.enqueue_job("run", "echo", {"input": "Summarise the day"}, delay=3600)
    client = TestClient(app, base_url=ORIGIN)
    operator = signed_in(app, "operator")
    page = client.get("/admin/jobs", headers=operator).text
    assert 'href="/admin/jobs"' in page  # in the navigation
    rows = page.split("<tbody>")[1]
    assert rows.index(waiting["id"]) < rows.index(dead["id"])  # newest first
    assert "550 5.1.1 No such user" in rows and "When are you open?" in rows and "Summarise the day" in rows
    assert f'action="/admin/jobs/{dead["id"]}/retry"' in rows and f'action="/admin/jobs/{waiting["id"]}/cancel"' in rows
    only_dead = client.get("/admin/jobs?status=dead", headers=operator).text.split("<tbody>")[1]
    assert dead["id"] in only_dead and waiting["id"] not in only_dead

    form = {k: v for k, v in operator.items() if k != "X-CSRF-Token"}
    token = {"csrf_token": operator["X-CSRF-Token"]}
    retried = client.post(f"/admin/jobs/{dead['id']}/retry", headers=form, data=token, follow_redirects=False)
    assert retried.status_code == 303 and "is+queued" in retried.headers["location"]
    assert store.get_job(dead["id"])["status"] == "queued" and store.get_job(dead["id"])["attempts"] == 0

    def post(job_id: str, action: str) -> str:  # the page the browser is sent back to, and what it says
        back = client.post(f"/admin/jobs/{job_id}/{action}", headers=form, data=token,
                           follow_redirects=False).headers["location"]
        return client.get(back, headers=operator).text

    assert f"{waiting['id']} is cancelled" in post(waiting["id"], "cancel")
    assert store.get_job(waiting["id"])["status"] == "cancelled"
    assert "only queued or running jobs can be cancelled" in post(waiting["id"], "cancel")  # one line, on the page
    actions = [(e["action"], e["target"]) for e in store.list_audit(10)]
    assert ("job.retry", dead["id"]) in actions and ("job.cancel", waiting["id"]) in actions
    no_token = client.post(f"/admin/jobs/{dead['id']}/cancel", headers=form, follow_redirects=False)
    assert no_token.status_code == 403 and store.get_job(dead["id"])["status"] == "queued"
    developer = signed_in(app, "developer")  # their own jobs only, through the API and CLI
    assert client.get("/admin/jobs", headers=developer).status_code == 403


def test_jobs_page_and_api_say_a_running_jobs_worker_died(app) -> None:
    """A job whose worker was killed reads 'running' until another worker claims it (for ever if none runs):
    the page showed it busy, and GET /v1/jobs gave nothing to tell; the CLI said so (tests/server/test_jobs_api)."""
    import time

    store = app.state.halguru.store
    alive, _ = store.enqueue_job("run", "echo", {"input": "still going"})
    assert store.claim_job("w1", 60.0)["id"] == alive["id"]
    dead, _ = store.enqueue_job("run", "echo", {"input": "summarise the day"})
    assert store.claim_job("w2", 0.01)["id"] == dead["id"]
    time.sleep(0.05)
    client = TestClient(app, base_url=ORIGIN)
    operator = signed_in(app, "operator")
    rows = client.get("/admin/jobs", headers=operator).text.split("<tbody>")[1].split("<tr ")
    assert "stopped renewing its lease" in next(r for r in rows if dead["id"] in r)
    assert "stopped renewing its lease" not in next(r for r in rows if alive["id"] in r)
    listed = {j["id"]: j for j in client.get("/v1/jobs", headers={**operator, "Accept": "application/json"}
                                               ).json()["data"]}
    assert listed[dead["id"]]["lease_expires"] < time.time() < listed[alive["id"]]["lease_expires"]


def test_status_page_shows_the_components_with_their_history(app) -> None:
    client = TestClient(app, base_url=ORIGIN)
    admin = signed_in(app, "admin")
    page = client.get("/admin/status", headers=admin).text
    assert "store" in page and "queue" in page and 'class="strip"' in page
    history = client.get("/v1/status/history", headers=admin).json()
    assert len(history["samples"]) == 1 and history["samples"][0]["components"]["store"]["ok"] is True


def test_status_history_names_a_key_only_agents_model_as_status_does_for_them(agents_dir: Path) -> None:
    """The sampler has no caller, so it recorded the anonymous view: an admin's Status page and
    /v1/status/history said ``model:private-1`` where /status names the model to them."""
    import yaml

    (agents_dir.parent / "hidden-script.yaml").write_text(yaml.safe_dump([{"text": "psst"}]))
    (agents_dir / "hidden").mkdir()
    (agents_dir / "hidden" / "agent.yaml").write_text(yaml.safe_dump(
        {"name": "hidden", "model": f"scripted:{agents_dir.parent / 'hidden-script.yaml'}"}))
    app = create_app(ServerSettings(agents=[agents_dir], worker=False, keep_mcp_servers=False))
    with TestClient(app, base_url=ORIGIN) as client:
        admin = signed_in(app, "admin")
        history = client.get("/v1/status/history", headers=admin).json()["samples"]
        assert "model:scripted:hidden-script.yaml" in history[-1]["components"], history[-1]
        assert not [n for n in history[-1]["components"] if "private-" in n]
        page = client.get("/admin/status", headers=admin).text
        assert "model:scripted:hidden-script.yaml" in page and "private-1" not in page
        named = client.get("/status", headers={**admin, "Accept": "application/json"}).json()["components"]
        assert "model:scripted:hidden-script.yaml" in named  # as /status names it to the same admin
        anonymous = client.get("/status", headers={"Accept": "application/json"}).json()["components"]
        assert "model:private-1" in anonymous and "hidden-script" not in str(anonymous)


def test_security_page_counts_refusals_failed_sign_ins_refused_tools_and_unused_keys(app) -> None:
    import time

    from halguru_server.console import denials
    from halguru_server.keys import create_key

    from halguru import audit
    from halguru.agents.events import ApprovalRejected, RunFinished

    store = app.state.halguru.store
    client = TestClient(app, base_url=ORIGIN)
    user = signed_in(app, "user")
    assert client.get("/admin/users", headers={**user, "Accept": "application/json"}).status_code == 403
    assert client.get("/v1/agents", headers={"Authorization": "Bearer nope"}).status_code == 401
    denials.of(app).note(403, "anon:203.0.113.9", "POST", "/channels/{channel}/{agent}")
    audit.record(store, "anon:127.0.0.1", "auth.sign_in_failed", "jo@example.com", {"step": "password"}, "127.0.0.1")
    store.create_conversation("conv_s1", "echo", "t")
    store.start_run("run_s1", "conv_s1", "echo", "scripted", "hi")
    rejected = ApprovalRejected(run_id="run_s1", seq=0, call_id="c1", name="ship", reason="too risky")
    done = RunFinished(run_id="run_s1", seq=1, status="ok", output="")
    store.finish_run("run_s1", "conv_s1", done.model_dump(), [rejected, done], [])
    key = create_key(store, "forgotten")[0]
    with store._tx() as conn:
        conn.execute("UPDATE api_keys SET created = ? WHERE id = ?", (time.time() - 40 * 86400, key.id))
    operator = signed_in(app, "operator")
    report = client.get("/v1/security?days=2&unused=30", headers=operator).json()
    denied = {(d["route"], d["status"]): d for d in report["denied"]}
    assert denied[("GET /admin/users", 403)]["principal"].startswith("user:usr_user")
    assert ("GET /v1/agents", 401) in denied
    today = report["daily"][0]
    assert (today["forbidden"], today["unauthenticated"], today["webhook_signatures"]) >= (1, 1, 1)
    assert today["failed_sign_ins"] == 1 and today["refused_tool_calls"] == 1
    assert report["refused_tool_calls"][0]["tool"] == "ship" and report["refused_tool_calls"][0]["by"] == "human"
    assert [k["name"] for k in report["unused_keys"]] == ["forgotten"]
    page = client.get("/admin/security", headers=operator).text
    assert "too risky" in page and "forgotten" in page and "jo@example.com" in page
    assert client.get("/admin/security", headers=signed_in(app, "developer")).status_code == 403


def test_security_page_names_locked_accounts_and_second_factors_without_reading_every_account(app, monkeypatch) -> None:
    """The security page read every account twice a view (locked ones, and emails for 2FA events): 0.5 s each with
    20,000. It asks for the locked ones and looks up the events' own."""
    from halguru import audit

    store = app.state.halguru.store
    client = TestClient(app, base_url=ORIGIN)
    operator = signed_in(app, "operator")
    ann = store.create_user("usr_ann", "ann@example.com", "Ann", "user")
    bob = store.create_user("usr_bob", "bob@example.com", "Bob", "developer")
    for _ in range(5):
        store.record_login_failure(ann["id"], 5, 60, 900)
    store.record_login_failure(bob["id"], 5, 60, 900)  # one failure: not locked
    audit.record(store, "user:admin", "user.reset_2fa", bob["id"], {})
    real = store.list_users

    def locked_only(*args, **kwargs):
        if kwargs.get("locked_after") is None:
            raise AssertionError("read every account")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "list_users", locked_only)
    report = client.get("/v1/security", headers=operator).json()
    assert [a["email"] for a in report["locked"]] == ["ann@example.com"]
    assert [(e["event"], e["user"]) for e in report["second_factor"]] == [("2fa_reset", "bob@example.com")]


def test_analytics_counts_conversations_messages_outcomes_handoffs_tools_and_tokens(app) -> None:
    from halguru.agents.events import Handoff, RunFinished
    from halguru.models.base import Message

    store = app.state.halguru.store
    for i, status in enumerate(["ok", "ok", "failed", "limited"]):
        conv, run = f"conv_a{i}", f"run_a{i}"
        store.create_conversation(conv, "echo", "t")
        store.start_run(run, conv, "echo", "scripted", "hi")
        events = [Handoff(run_id=run, seq=0, from_agent="echo", to_agent="private")] if i == 0 else []
        done = RunFinished(run_id=run, seq=len(events), status=status, output="")
        messages = [Message(role="user", content="hi"), Message(role="tool", content="42", name="lookup",
                                                                 tool_call_id="c1"), Message(role="assistant")]
        store.finish_run(run, conv, done.model_dump(), [*events, done], messages)
    client = TestClient(app, base_url=ORIGIN)
    developer = signed_in(app, "developer")
    report = client.get("/v1/analytics?days=2", headers=developer).json()
    assert report["resolution"] == {"ok": 2, "failed": 1, "limited": 1, "other": 0}
    assert report["per_day"][0]["conversations"] == 4
    assert report["messages"][0]["channel"] == "api" and report["messages"][0]["messages"] == 12
    assert report["handoffs"] == [{"from": "echo", "to": "private", "count": 1}]
    assert report["top_tools"] == [{"tool": "lookup", "agent": "echo", "calls": 4}]
    assert report["tokens"][0]["agent"] == "echo" and report["tokens"][0]["cost_usd"] == 0.0
    page = client.get("/admin/analytics", headers=developer).text
    assert "lookup" in page and "private" in page and "<svg" in page


def test_serve_samples_the_status_history_on_its_own(agents_dir: Path, monkeypatch) -> None:
    import time

    from halguru_server.console import status_pages

    monkeypatch.setattr(status_pages, "EVERY_S", 0.05)
    app = create_app(ServerSettings(agents=[agents_dir], worker=False, keep_mcp_servers=False))
    with TestClient(app, base_url=ORIGIN):
        deadline = time.monotonic() + 10
        while len(status_pages.history(app)) < 3:
            assert time.monotonic() < deadline, "no samples taken"
            time.sleep(0.02)
    count = len(status_pages.history(app))
    time.sleep(0.2)
    assert len(status_pages.history(app)) == count  # stopped with the app


def test_a_job_retried_or_cancelled_from_a_filtered_page_comes_back_to_that_page(app) -> None:
    """An operator looking at the dead jobs of one agent retried one and came back to the whole queue unfiltered
    (``/admin/jobs?notice=...``): the filters and the page were lost after every action."""
    import html
    import re
    from urllib.parse import parse_qs, urlsplit

    store = app.state.halguru.store
    jobs = [store.enqueue_job("run", "echo", {"input": f"job {i}"}, delay=3600)[0] for i in range(3)]
    client = TestClient(app, base_url=ORIGIN)
    operator = signed_in(app, "operator")
    here = "/admin/jobs?status=queued&agent=echo"
    page = client.get(here, headers=operator).text
    backs = {html.unescape(b) for b in re.findall(r'name="back" value="([^"]*)"', page)}
    assert backs == {here}, backs
    form = {k: v for k, v in operator.items() if k != "X-CSRF-Token"}
    done = client.post(f"/admin/jobs/{jobs[0]['id']}/cancel", headers=form, follow_redirects=False,
                       data={"csrf_token": operator["X-CSRF-Token"], "back": here})
    location = urlsplit(done.headers["location"])
    query = parse_qs(location.query)
    assert location.path == "/admin/jobs" and query["status"] == ["queued"] and query["agent"] == ["echo"]
    assert query["notice"] == [f"{jobs[0]['id']} is cancelled (its worker stops it within a third of its lease)"]
    shown = client.get(done.headers["location"], headers=operator).text
    assert jobs[0]["id"] not in shown.split("<tbody>")[1] and jobs[1]["id"] in shown
    elsewhere = client.post(f"/admin/jobs/{jobs[1]['id']}/cancel", headers=form, follow_redirects=False,
                            data={"csrf_token": operator["X-CSRF-Token"], "back": "//evil.example/admin/jobs"})
    assert elsewhere.headers["location"].startswith("/admin/jobs?notice=")  # not another site


@pytest.mark.parametrize(("url", "status", "said"), [
    ("/admin/analytics?days=0", 422, "days: Input should be greater than or equal to 1"),
    ("/admin/security?days=100", 422, "days: Input should be less than or equal to 90"),
    ("/admin?window=2h", 422, "window: String should match pattern"),
    ("/admin/audit?before=abc", 422, "before: Input should be a valid integer"),
    ("/admin/jobs?status=bogus", 400, "status must be one of queued"),
    ("/admin/jobs?cursor=zz", 400, "invalid cursor"),
    ("/admin/conversations/conv_nope", 404, "no conversation &#39;conv_nope&#39;"),
    ("/admin/users/usr_nope", 404, "no user &#39;usr_nope&#39;"),
])
def test_a_bad_filter_or_address_in_a_browser_gets_a_console_page_saying_so(app, url: str, status: int,
                                                                          said: str) -> None:
    """A 0 typed in the analytics window (a number field), a status or cursor edited in the address bar, a deleted
    conversation's link: the browser showed the API's raw JSON error. It gets an HTML page now with the message
    and a way back to the page without the filters; API clients keep the JSON."""
    client = TestClient(app, base_url=ORIGIN)
    admin = signed_in(app, "admin", "root@example.com")
    shown = client.get(url, headers={**admin, "Accept": "text/html,application/xhtml+xml"})
    assert shown.status_code == status and shown.headers["content-type"].startswith("text/html"), shown.text[:200]
    assert said in shown.text and "Content-Security-Policy" in shown.headers
    back = url.split("?")[0] if "?" in url else url.rsplit("/", 1)[0]
    assert f'href="{back}"' in shown.text
    api = client.get(url, headers={**admin, "Accept": "application/json"})
    assert api.status_code == status and "error" in api.json()


def test_monitoring_does_not_walk_an_agent_folder_of_many_files_on_every_refresh(agents_dir: Path) -> None:
    """An agent's version (a hash of its folder) was checked by listing and stat-ing every file of the folder on
    each snapshot: with 10,000 documents beside agent.yaml each live refresh took 0.3 s per agent, every 3 s for
    each open monitoring page. The folder is looked at again after ``monitor.RECHECK_S`` seconds only."""
    import time

    from halguru_server.console import monitor

    docs = agents_dir / "echo" / "docs"
    for i in range(100):
        (docs / f"d{i}").mkdir(parents=True)
        for j in range(100):
            (docs / f"d{i}" / f"{j}.md").write_text("text")
    app = create_app(ServerSettings(agents=[agents_dir], worker=False, keep_mcp_servers=False))
    with TestClient(app, base_url=ORIGIN) as client:
        viewer = signed_in(app, "developer")
        first = client.get("/v1/monitoring", headers=viewer).json()
        took = []
        for _ in range(5):
            started = time.perf_counter()
            again = client.get("/v1/monitoring", headers=viewer).json()
            took.append(time.perf_counter() - started)
        assert min(took) < 0.1, took  # walking the 10,000 files takes 0.3 s
        version = next(a["version"] for a in first["agents"] if a["agent"] == "echo")
        assert version == next(a["version"] for a in again["agents"] if a["agent"] == "echo")
        (agents_dir / "echo" / "agent.yaml").write_text("name: echo\nmodel: scripted\ninstructions: Changed.\n")
        later = time.monotonic() + monitor.RECHECK_S
        assert monitor.folder_version(agents_dir / "echo", now=later) != version  # seen once the time is up


def test_signed_out_the_console_sends_to_sign_in_and_back_to_the_same_filtered_page(app) -> None:
    """Signed out (a bookmark, an expired session), a filtered page sent to sign in with its path only, so the
    operator came back to the unfiltered list; and a button pressed on a page whose session had ended (Retry,
    Take over) showed the API's JSON 401. Both go to sign in now, and back to the page as it was."""
    import html
    from urllib.parse import parse_qs, urlsplit

    client = TestClient(app, base_url=ORIGIN)
    browser = {"Accept": "text/html,application/xhtml+xml"}
    page = "/admin/conversations?status=failed&agent=echo&q=refund+please"
    sent = client.get(page, headers=browser, follow_redirects=False)
    assert sent.status_code == 303
    target = parse_qs(urlsplit(sent.headers["location"]).query)["next"]
    assert target == [page]
    login = client.get(sent.headers["location"], headers=browser)
    assert f'name="next" value="{html.escape(page)}"' in login.text  # the form carries it on

    posted = client.post("/admin/jobs/job_x/retry", data={"csrf_token": "x"}, follow_redirects=False,
                         headers={**browser, "Origin": ORIGIN, "Referer": f"{ORIGIN}/admin/jobs?status=dead"})
    assert posted.status_code == 303
    assert parse_qs(urlsplit(posted.headers["location"]).query)["next"] == ["/admin/jobs?status=dead"]
    elsewhere = client.post("/admin/jobs/job_x/retry", data={"csrf_token": "x"}, follow_redirects=False,
                            headers={**browser, "Referer": "https://evil.example/admin/x"})
    assert parse_qs(urlsplit(elsewhere.headers["location"]).query)["next"] == ["/admin/jobs"]
    api = client.post("/admin/jobs/job_x/retry", data={"csrf_token": "x"}, headers={"Accept": "application/json"})
    assert api.status_code == 401 and "error" in api.json()

    operator = signed_in(app, "operator")
    forged = client.post("/admin/jobs/job_x/retry", data={"csrf_token": "wrong"}, follow_redirects=False,
                         headers={**browser, "Cookie": operator["Cookie"], "Origin": ORIGIN})
    assert forged.status_code == 403 and forged.headers["content-type"].startswith("text/html")
    assert "cross-site request refused" in forged.text


def test_retrying_every_dead_job_from_the_console_keeps_each_owner_under_max_waiting_jobs(agents_dir: Path) -> None:
    """An admin's "Retry every dead job" queued every owner's dead jobs whatever their max_waiting_jobs (a key's own
    bulk retry stopped at its cap): one click could put thousands back in one tenant's queue. Each owner now gets as
    many as their cap leaves room for, oldest first, and the page says how many stay dead."""
    app = create_app(ServerSettings(agents=[agents_dir], worker=False, keep_mcp_servers=False, max_waiting_jobs=2))
    with TestClient(app, base_url=ORIGIN) as client:
        store = app.state.halguru.store
        dead: dict[str | None, list[str]] = {}
        store.enqueue_job("run", "echo", {"input": "waiting"}, owner="key:ann", delay=3600)
        for owner, n in (("key:ann", 3), ("key:bob", 3), (None, 2)):
            for i in range(n):
                job, _ = store.enqueue_job("run", "echo", {"input": f"{owner} {i}"}, owner=owner)
                assert store.claim_job("w1", 30.0)["id"] == job["id"]
                assert store.fail_job(job["id"], "w1", "model down", None) == "dead"
                dead.setdefault(owner, []).append(job["id"])
        admin = signed_in(app, "admin")
        form = {k: v for k, v in admin.items() if k != "X-CSRF-Token"}
        retried = client.post("/admin/jobs/retry-dead", headers=form, data={"csrf_token": admin["X-CSRF-Token"]},
                              follow_redirects=False)
        said = client.get(retried.headers["location"], headers=admin).text
        assert "5 dead jobs queued again; 3 left dead: their owners have max_waiting_jobs queued" in said
        statuses = {owner: [store.get_job(j)["status"] for j in ids] for owner, ids in dead.items()}
        assert statuses == {"key:ann": ["queued", "dead", "dead"], "key:bob": ["queued", "queued", "dead"],
                            None: ["queued", "queued"]}  # oldest first; a job of no owner is nobody's to cap
        entry = store.list_audit(1, action="job.retry")[0]
        assert (entry["target"], entry["details"]["dead_jobs"], entry["details"]["left"]) == ("*", 5, 3)


def test_jobs_page_retries_every_dead_job_and_cancels_an_agents_queue_at_once(app) -> None:
    """After an outage each dead job took its own Retry click; a flood of queued replies its own Cancel each."""
    store = app.state.halguru.store
    dead = []
    for i in range(3):
        job, _ = store.enqueue_job("reply", "echo", {"text": f"reply {i}"}, owner="channel:email")
        assert store.claim_job("w1", 30.0)["id"] == job["id"]
        store.fail_job(job["id"], "w1", "SMTP down", None)
        dead.append(job["id"])
    queued = [store.enqueue_job("run", "echo", {"input": f"later {i}"}, delay=3600)[0]["id"] for i in range(2)]
    client = TestClient(app, base_url=ORIGIN)
    operator = signed_in(app, "operator")
    page = client.get("/admin/jobs", headers=operator).text
    assert 'action="/admin/jobs/retry-dead"' in page and "cancel-queued" not in page  # no agent chosen
    assert 'action="/admin/jobs/cancel-queued"' in client.get("/admin/jobs?agent=echo", headers=operator).text
    form = {k: v for k, v in operator.items() if k != "X-CSRF-Token"}
    token = {"csrf_token": operator["X-CSRF-Token"]}
    retried = client.post("/admin/jobs/retry-dead", headers=form, data={**token, "agent": "echo"},
                          follow_redirects=False)
    assert retried.status_code == 303
    assert "3 dead jobs queued again" in client.get(retried.headers["location"], headers=operator).text
    assert [store.get_job(j)["status"] for j in dead] == ["queued"] * 3
    cancelled = client.post("/admin/jobs/cancel-queued", headers=form, data={**token, "agent": "echo"},
                            follow_redirects=False)
    assert "5 queued jobs of echo cancelled" in client.get(cancelled.headers["location"], headers=operator).text
    assert {store.get_job(j)["status"] for j in [*dead, *queued]} == {"cancelled"}
    refused = client.post("/admin/jobs/cancel-queued", headers=form, data=token, follow_redirects=False)
    assert "name the agent" in client.get(refused.headers["location"], headers=operator).text
    assert client.post("/admin/jobs/retry-dead", headers=form, follow_redirects=False).status_code == 403  # no token
