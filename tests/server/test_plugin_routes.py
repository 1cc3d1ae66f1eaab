"""Plugin routes (register_routes): reachable or refused with a warning, never silently dead; a plugin skipped
half-way gives none; a keyless route under /v1 is said. The plugins are installed the way pip leaves them."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from halguru.plugins.manager import reset_plugin_manager
from tests.feedback_plugins import install

ROUTES = '''
from fastapi import APIRouter, Depends
from halguru.plugins import hookimpl
from halguru_server.identity.guards import require


@hookimpl
def register_routes(app):
    @app.get("/v1/agents")
    def mine():
        return {"from": "plugin"}

    @app.get("/v1/agents/{name}")
    def mine_too(name: str):
        return {"from": "plugin"}

    @app.get("/v1/plugin-thing")
    def keyless():
        return {"open": True}

    @app.get("/v1/plugin-guarded", dependencies=[Depends(require("chat:use"))])
    def guarded():
        return {"guarded": True}

    @app.get("/acme/ok")
    def ok():
        return {"acme": "ok"}

    @app.post("/admin/acme-purge")
    def purge():
        return {"purged": True}

    @app.get("/administrators")
    def not_under_admin():
        return {"open": True}

    app.router.routes[:0] = [app.router.routes.pop() for _ in range(7)]  # ahead of halguru's: still after them

    v1 = APIRouter(prefix="/v1")

    @v1.get("/keys")
    def keys():
        return {"from": "plugin"}

    @v1.get("/router-thing")
    def router_thing():
        return {"open": True}

    app.include_router(v1)
    guarded_router = APIRouter(prefix="/v1/acme", dependencies=[Depends(require("chat:use"))])

    @guarded_router.get("/me")
    def me():
        return {"me": True}

    app.include_router(guarded_router)
'''
SECOND = '''
from halguru.plugins import hookimpl


@hookimpl
def register_routes(app):
    @app.get("/acme/ok")
    def again():
        return {"second": True}

    @app.get("/second/crash")
    def crash(city: str = "Oslo"):
        return {"forecast": {}[city]}
'''
HALF = '''
from halguru.plugins import hookimpl
from starlette.middleware.base import BaseHTTPMiddleware


async def tag(request, call_next):
    response = await call_next(request)
    response.headers["x-half"] = "1"
    return response


@hookimpl
def register_routes(app):
    app.add_middleware(BaseHTTPMiddleware, dispatch=tag)
    app.add_api_route("/half/ok", lambda: {"half": "registered"})
    raise RuntimeError("routes boom")
'''

MIDDLEWARE = '''
from halguru.plugins import hookimpl
from starlette.responses import JSONResponse


@hookimpl
def register_routes(app):
    @app.middleware("http")
    async def status_of_mine(request, call_next):
        if request.url.path == "/status":
            return JSONResponse({"from": "plugin"})
        return await call_next(request)
'''


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agents_dir: Path, capsys: pytest.CaptureFixture[str]):
    site = install(tmp_path / "site", "acme", "halguru_acme_routes", ROUTES)
    install(site, "second", "halguru_second_routes", SECOND)
    install(site, "half", "halguru_half_routes", HALF)
    install(site, "tap", "halguru_tap_routes", MIDDLEWARE)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("HALGURU_LOAD_PLUGINS", "acme,second,half,tap")
    reset_plugin_manager()
    from halguru_server import ServerSettings, create_app

    with TestClient(create_app(ServerSettings(agents=[agents_dir]))) as test_client:
        yield test_client


def plugin_warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("halguru: warning: plugin")]


def test_a_plugin_route_halguru_answers_is_refused_and_said(client, capsys):
    """`GET /v1/agents` of a plugin was never called (halguru's matched first), without a word."""
    warnings = plugin_warnings(capsys.readouterr().err)
    assert "halguru: warning: plugin 'acme': its route GET /v1/agents is not used: halguru answers there" in warnings
    assert "halguru: warning: plugin 'acme': its route GET /v1/agents/{name} is not used: halguru answers there" \
        in warnings
    assert "halguru: warning: plugin 'acme': its route GET /v1/keys is not used: halguru answers there" in warnings
    assert client.get("/v1/agents").status_code == 401  # halguru's, guarded
    assert client.get("/v1/router-thing").json() == {"open": True}  # the rest of its router is served
    # two plugins' /acme/ok: the first loaded (the order the path lists them) has it, the other is said
    [clash] = [line for line in warnings if "/acme/ok" in line]
    first, later = ("acme", "second") if "plugin 'second'" in clash.split(":")[1] else ("second", "acme")
    assert clash == f"halguru: warning: plugin {later!r}: its route GET /acme/ok is not used: plugin {first!r} " \
                    "answers there"
    assert client.get("/acme/ok").json() == ({"acme": "ok"} if first == "acme" else {"second": True})
    paths = [getattr(route, "path", None) for route in client.app.router.routes]
    assert paths.index("/v1/plugin-thing") > paths.index("/swagger")  # acme put its routes first: not kept so


def test_a_keyless_plugin_route_under_v1_is_said_and_require_guards_one(client, capsys):
    """A keyless POST /admin/acme-purge (where every route of halguru's asks for an admin's key or session, and a
    cookie's CSRF token) was served without a word."""
    warnings = plugin_warnings(capsys.readouterr().err)
    keyless = [line for line in warnings if "without an API key" in line]
    assert sorted(keyless) == [f"halguru: warning: plugin 'acme': its route {route} answers without an API key, unlike "
                       f"halguru's {prefix} routes; add dependencies=[Depends(require(PERMISSION))] (docs/plugins.md)"
                       for route, prefix in (("GET /v1/plugin-thing", "/v1"), ("GET /v1/router-thing", "/v1"),
                                             ("POST /admin/acme-purge", "/admin"))]
    assert client.get("/v1/plugin-thing").json() == {"open": True}
    assert client.post("/admin/acme-purge").json() == {"purged": True}  # said: under /admin, a key is expected
    assert client.get("/v1/plugin-guarded").status_code == 401  # the guard docs/plugins.md shows
    assert client.get("/v1/acme/me").status_code == 401  # a router's guard counts too


def test_a_guarded_plugin_route_s_401_and_403_are_in_the_openapi_document(client):
    """/swagger showed a plugin's `Depends(require(...))` route as answering 200 and 422 only: its 401 (no key)
    and 403 (a role without the permission) were undocumented, unlike halguru's own routes' 401."""
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/plugin-guarded", "/v1/acme/me"):  # a route's own guard, and its router's
        answers = paths[path]["get"]["responses"]
        assert answers["401"] == {"description": "unauthorized", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        assert answers["403"]["description"] == "forbidden"
    assert "401" not in paths["/v1/plugin-thing"]["get"]["responses"]  # a keyless route answers no 401
    assert "ErrorBody" in client.get("/openapi.json").json()["components"]["schemas"]


def test_a_plugin_whose_routes_hook_raises_gives_no_routes_nor_middleware(client, capsys):
    """Its /half/ok answered 200 after the warning said it was skipped."""
    warnings = plugin_warnings(capsys.readouterr().err)
    assert "halguru: warning: plugin 'half' skipped: its register_routes hook raised RuntimeError: routes boom" \
        in warnings
    answer = client.get("/half/ok")
    assert answer.status_code == 404 and "x-half" not in answer.headers
    assert "x-half" not in client.get("/acme/ok").headers


def test_a_plugin_s_middleware_is_said_as_it_answers_before_halguru_s_routes(client, capsys):
    """A plugin's middleware answered GET /status (or /v1/agents, before its API-key check) for halguru, without
    a word."""
    warnings = plugin_warnings(capsys.readouterr().err)
    assert "halguru: warning: plugin 'tap' adds middleware (status_of_mine): it sees every request before " \
           "halguru's routes and their API-key checks, and may answer for them" in warnings
    assert client.get("/status").json() == {"from": "plugin"}  # said, not undone: a plugin's middleware is its own
    assert not [line for line in warnings if "'acme' adds middleware" in line or "'half' adds" in line]


def test_a_plugin_route_that_raises_is_a_500_whose_request_id_the_log_line_names_with_the_plugin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agents_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The 500 of an error nothing caught had no X-Request-ID (Starlette answers it outside the middleware that
    adds one), and its log line 'unhandled error on /second/crash' named neither the request nor the plugin:
    'see the server log', but which line?"""
    import logging

    from halguru_server import ServerSettings, create_app

    monkeypatch.syspath_prepend(str(install(tmp_path / "site", "second", "halguru_second_routes", SECOND)))
    monkeypatch.setenv("HALGURU_LOAD_PLUGINS", "second")
    reset_plugin_manager()
    app = create_app(ServerSettings(agents=[agents_dir]))
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.ERROR):
        answer = client.get("/second/crash", headers={"X-Request-ID": "req-crash-1"})
        own = client.get("/nowhere", headers={"X-Request-ID": "req-404"})
    assert answer.status_code == 500 and answer.headers["x-request-id"] == "req-crash-1"
    assert answer.json()["error"] == {"type": "internal", "message": "internal error (KeyError); see the server log"}
    assert own.headers["x-request-id"] == "req-404"
    [line] = [r for r in caplog.records if r.name == "halguru.server"]
    assert line.getMessage() == "unhandled error on plugin 'second''s route /second/crash: KeyError: 'Oslo'"
    assert line.fields == {"request_id": "req-crash-1", "plugin": "second"}  # type: ignore[attr-defined]


def test_an_unhandled_error_under_uvicorn_is_logged_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         agents_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Under a real uvicorn, uvicorn logged 'Exception in ASGI application' with the same traceback again after
    halguru's line (Starlette re-raises an error after answering 500): two tracebacks per error in the log."""
    import logging

    import httpx
    from halguru_server import ServerSettings, create_app

    from tests.server.conftest import Server, free_port

    monkeypatch.syspath_prepend(str(install(tmp_path / "site", "second", "halguru_second_routes", SECOND)))
    monkeypatch.setenv("HALGURU_LOAD_PLUGINS", "second")
    reset_plugin_manager()
    server = Server(create_app(ServerSettings(agents=[agents_dir])), free_port()).start()
    try:
        with caplog.at_level(logging.ERROR):
            answer = httpx.get(f"{server.url}/second/crash", timeout=10)
            other = httpx.get(f"{server.url}/v1/agents", timeout=10)  # the server goes on
    finally:
        server.stop()
    assert answer.status_code == 500 and other.status_code == 401
    assert [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.ERROR] == [
        ("halguru.server", "unhandled error on plugin 'second''s route /second/crash: KeyError: 'Oslo'")]
