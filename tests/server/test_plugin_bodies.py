"""A plugin's routes cost what halguru's cost before anyone is known, without the plugin doing anything: an
anonymous caller is refused before its body is read, and a JSON body is weighed before it is parsed. The plugin
builds its routes as docs/plugins.md shows (a plain ``APIRouter()``) and is installed the way pip leaves it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.feedback_plugins import install, load
from tests.server.test_body_cost import JSON, MANY, _error

PLUGIN = '''
from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute
from halguru.plugins import hookimpl
from halguru_server.identity.guards import require


class Tagged(APIRoute):
    """A plugin's own route class: kept, its handler wrapped."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def tagged(request):
            response = await handler(request)
            response.headers["x-acme"] = "tagged"
            return response

        return tagged


notes = APIRouter(prefix="/acme")


@notes.post("/notes")
def add(note: list[dict], caller=Depends(require("chat:use"))):
    return {"count": len(note)}


guarded = APIRouter(prefix="/guarded")  # guarded where it is included


@guarded.post("/notes")
def add_too(note: list[dict]):
    return {"count": len(note)}


tagged = APIRouter(prefix="/acme/tagged", route_class=Tagged)


@tagged.post("/notes")
def add_tagged(note: list[dict], caller=Depends(require("chat:use"))):
    return {"count": len(note)}


def add_direct(note: list[dict], caller=Depends(require("chat:use"))):
    return {"count": len(note)}


@hookimpl
def register_routes(app):
    app.router.routes.append(APIRoute("/acme/direct/notes", add_direct, methods=["POST"]))  # as FastAPI < 0.120 copies
    app.include_router(notes)
    app.include_router(guarded, prefix="/acme", dependencies=[Depends(require("chat:use"))])
    app.include_router(tagged)
'''
ROUTES = ("/acme/notes", "/acme/guarded/notes", "/acme/tagged/notes", "/acme/direct/notes")


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve):
    load(install(tmp_path / "site", "acme", "halguru_acme_bodies", PLUGIN), monkeypatch)
    monkeypatch.setenv("HALGURU_LOAD_PLUGINS", "acme")
    return serve()


def test_fifty_anonymous_megabyte_bodies_to_a_plugin_s_routes_are_401_before_they_are_read(server, traced) -> None:
    """Each was parsed into ~330,000 objects (~26 MB) before the plugin's guard refused it: FastAPI parses a
    route's body before its dependencies run, and only halguru's own routers ran the guard first."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        client.get("/healthz")
        for path in ROUTES:
            traced()
            answers = [client.post(path, content=MANY, headers=JSON) for _ in range(50)]
            peak = traced()
            assert {a.status_code for a in answers} == {401}, answers[0].text
            assert "API key" in _error(answers[0])["message"]
            assert peak < 4_000_000, f"{path}: refusing 50 anonymous 1 MB bodies took {peak / 1e6:.1f} MB"


def test_a_plugin_s_routes_weigh_a_json_body_and_still_take_one(server, api_key, traced) -> None:
    headers = {**JSON, "Authorization": f"Bearer {api_key()}"}
    with httpx.Client(base_url=server.url, timeout=60, headers=headers) as client:
        client.get("/healthz")
        for path in ROUTES:
            traced()
            answer = client.post(path, content=MANY)
            peak = traced()
            assert answer.status_code == 413, answer.text
            assert "50000 (HALGURU_SERVE_MAX_JSON_ITEMS)" in _error(answer)["message"]
            assert peak < 4_000_000, f"{path}: refusing 1 MB of JSON values took {peak / 1e6:.1f} MB"
            answer = client.post(path, json=[{}, {"a": 1}])
            assert answer.status_code == 200 and answer.json() == {"count": 2}, answer.text
        assert client.post("/acme/tagged/notes", json=[]).headers["x-acme"] == "tagged"  # its own class kept
