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
PAGES = ["/admin"]
FRAGMENTS = ["/admin/monitoring/live"]
TWINS = ["/v1/monitoring"]


@pytest.fixture
def app(agents_dir: Path) -> Iterator[Any]:
    app = create_app(ServerSettings(agents=[agents_dir], worker=False, keep_mcp_servers=False))
    with TestClient(app, base_url=ORIGIN):
        yield app


def signed_in(app: Any, role: str, email: str | None = None) -> dict[str, str]:
    """Headers of a browser signed in as a new user of ``role`` (cookie, CSRF token, Origin)."""
    state = app.state.halguru
    user = state.store.create_user(f"usr_{role}{len(state.store.list_users())}", email, role, role)
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
