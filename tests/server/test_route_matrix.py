"""Every route of the app is guarded, and answers each kind of caller (admin, operator, developer, user, a
user's key, a key from before users, an anonymous visitor) on its own objects and on another user's as
docs/identity.md says: 401 for nobody, 403 for a role without the permission, 404 for another's object unless
the role sees everyone's. The routes are enumerated from the app, so a new route without a guard fails here,
and a new guarded route is checked against the roles without being listed."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from halguru_server import ServerSettings, create_app, sessions
from halguru_server.bodies import GuardedRoute
from halguru_server.identity import roles, websessions
from halguru_server.identity.guards import PUBLIC_MOUNTS, Guard, guards_in
from halguru_server.keys import create_key
from starlette.routing import Mount

from halguru.agents.events import RunFinished
from halguru.models.base import ToolCallRequest

ORIGIN = "http://testserver"
# run_id: see _resource
OWNED = {"conversation_id": "conversations", "job_id": "jobs", "session_id": "sessions", "key_id": "keys",
         "response_id": "conversations"}  # a stored Responses API response goes with its conversation
USER_ONLY = {"/auth/sessions", "/auth/sessions/{session_id}", "/auth/logout-all", "/v1/keys", "/v1/keys/{key_id}"}
BROWSER_ONLY = {"/chat/api/push/subscriptions"}  # notifications are for a signed-in browser, not for keys
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/conversations"): {"agent": "echo"},
    ("POST", "/chat/api/conversations"): {"agent": "echo"},
    ("POST", "/v1/conversations/{conversation_id}/messages"): {"content": "hi"},
    ("POST", "/chat/api/conversations/{conversation_id}/messages"): {"content": "hi"},
    ("PATCH", "/v1/conversations/{conversation_id}"): {"title": "renamed"},
    ("PATCH", "/chat/api/conversations/{conversation_id}"): {"title": "renamed"},
    ("POST", "/v1/jobs"): {"agent": "echo", "input": "hi", "delay": 3600},
    ("POST", "/v1/keys"): {"name": "matrix"},
    ("PATCH", "/v1/users/{user_id}"): {"role": "developer"},
    ("POST", "/v1/chat/completions"): {"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
    ("POST", "/v1/responses"): {"model": "echo", "input": "hi"},
    ("POST", "/v1/deployments/{agent}/rollback"): {"version": 1},  # echo is the command line's: 409 when allowed
    ("POST", "/chat/api/push/subscriptions"): {"endpoint": "https://push.example.com/send/1", "keys": {
        "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
        "auth": "BTBZMqHH6r4Tts7J_aSIgg"}},
}


def _guards(route: Any) -> list[Guard]:
    """The guards among a route's dependencies (its router's included), at any depth."""
    return guards_in(route.dependant)


def _contexts(app: Any) -> Iterator[Any]:
    """Every route as the app serves it (an included router's routes with its prefix and dependencies)."""
    yield from iter_route_contexts(app.routes)


def _routes(app: Any) -> Iterator[tuple[str, str, Guard]]:
    for route in _contexts(app):
        if isinstance(route.original_route, APIRoute) and len(guards := _guards(route)) == 1:  # others: below
            for method in sorted(route.methods):
                yield method, route.path, guards[0]


@pytest.fixture
def app(agents_dir: Path):
    app = create_app(ServerSettings(agents=[agents_dir], worker=False, keep_mcp_servers=False))
    with TestClient(app, base_url=ORIGIN):
        yield app


def test_every_route_has_exactly_one_guard_and_every_mount_is_a_known_public_one(app) -> None:
    unguarded, mounts, seen = [], [], set()
    for route in _contexts(app):
        if isinstance(route.original_route, APIRoute):
            if len(_guards(route)) != 1:
                unguarded.append(f"{sorted(route.methods)} {route.path}: {len(_guards(route))} guards")
            if not isinstance(route.original_route, GuardedRoute):  # its body would be parsed before its guard ran
                unguarded.append(f"{sorted(route.methods)} {route.path}: a {type(route.original_route).__name__}, "
                                 "not a GuardedRoute (give its router route_class=GuardedRoute)")
            for method in route.methods:
                assert (method, route.path) not in seen, f"two routes answer {method} {route.path}"
                seen.add((method, route.path))
        elif isinstance(route.original_route, Mount):
            mounts.append(route.path)
        else:  # a plain Starlette route takes no dependencies, so it could not carry a guard
            unguarded.append(f"{type(route.original_route).__name__} {route.path}")
    assert not unguarded, "routes without exactly one guard (add Depends(require(...)) or Depends(public)):\n" + \
        "\n".join(unguarded)
    assert set(mounts) <= PUBLIC_MOUNTS, f"mounted paths not known to be public: {set(mounts) - PUBLIC_MOUNTS}"
    assert {"/openapi.json", "/swagger", "/healthz", "/v1/agents", "/auth/me"} <= {p for _, p in seen}


@dataclass
class Caller:
    name: str
    headers: dict[str, str]
    owner: str
    permissions: frozenset[str]
    anonymous: bool = False
    user_id: str | None = None
    spare_session: str | None = None  # a second session of the user's, for DELETE /auth/sessions/{id}
    objects: dict[str, str] = field(default_factory=dict)


class World:
    """Users, callers and objects in the app's store; fresh ones for each request that could spoil them."""

    def __init__(self, app: Any):
        self.state = app.state.halguru
        self.store = self.state.store
        self.agent_path = str(self.state.agents["echo"].agent.path)
        self.n = 0

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n:06x}{int(time.time() * 1000) % 0xffffff:06x}"

    def user(self, role: str) -> tuple[str, str]:
        """A new user of ``role`` with a signed-in session (2FA done); its id and a spare session's id."""
        user = self.store.create_user(self._id("usr_"), None, role, role)
        assert user is not None
        spare = websessions.issue(self.store, user["id"], self.state.settings.auth)[1]
        return user["id"], websessions.session_id(spare)

    def caller(self, name: str) -> Caller:
        if name == "anonymous":
            token = sessions.issue(self.state.settings.session_secret)
            owner = f"anon:{sessions.verify(self.state.settings.session_secret, token)}"
            return Caller(name, {"X-Chat-Session": token}, owner, roles.ANONYMOUS, anonymous=True)
        if name in ("legacy key", "app key"):  # keys without a user, with a role of their own: a developer's (as
            role = "developer" if name == "legacy key" else "user"  # old keys kept, m016) or `keys create`'s default
            key, secret = create_key(self.store, name, scope=role)
            return Caller(name, {"Authorization": f"Bearer {secret}"}, f"key:{key.id}", roles.permissions(role))
        role = "operator" if name == "operator's key" else name
        user_id, spare = self.user(role)
        if name == "operator's key":  # scope user: the operator's permissions narrowed to a developer's
            secret = create_key(self.store, "laptop", scope="user", user_id=user_id)[1]
            return Caller(name, {"Authorization": f"Bearer {secret}"}, f"user:{user_id}",
                          roles.permissions("operator") & roles.permissions("developer"), user_id=user_id,
                          spare_session=spare)
        secret, record = websessions.issue(self.store, user_id, self.state.settings.auth)
        headers = {"Cookie": f"{websessions.COOKIE}={secret}", "X-CSRF-Token": record["csrf"], "Origin": ORIGIN}
        return Caller(name, headers, f"user:{user_id}", roles.permissions(role), user_id=user_id, spare_session=spare)

    def objects(self, owner: str) -> dict[str, str]:
        """A conversation with a finished run, a paused run waiting for approval, a queued job and (for a user)
        an API key, all owner's."""
        conv, run, paused = self._id("conv_"), self._id("run_"), self._id("run_")
        self.store.create_conversation(conv, "echo", "mine", owner=owner)
        for run_id, status in ((run, "ok"), (paused, "paused")):
            self.store.start_run(run_id, conv, "echo", "scripted", "hi", owner=owner)
            done = RunFinished(run_id=run_id, seq=0, status=status, output="")
            if status == "paused":
                call = ToolCallRequest(id="c1", name="ship", arguments={})
                self.store.save_pending(run_id, conv, "echo", self.agent_path, None, "hi", call.model_dump_json(),
                                        '[{"role": "user", "content": "hi"}]', owner)
            self.store.finish_run(run_id, conv, done.model_dump(), [done], [])
        job, _ = self.store.enqueue_job("run", "echo", {"input": "hi"}, owner=owner, delay=3600)
        key = create_key(self.store, "k", user_id=owner[5:])[0].id if owner.startswith("user:") else "nosuchkey"
        response = f"resp_{uuid.uuid4().hex}"  # a Responses API response, stored as openai_responses stores it
        self.store.record_channel_message({
            "id": response, "channel": "openai-responses", "agent": "echo", "conversation_id": conv,
            "direction": "out", "address": owner, "body": json.dumps({"response": {"id": response},
                                                                      "transcript": [], "conversation": conv}),
            "status": "completed", "job_id": None, "created": time.time(), "updated": time.time()})
        return {"conversation_id": conv, "run_id": run, "paused": paused, "job_id": job["id"], "key_id": key,
                "response_id": response}


def _resource(path: str, param: str) -> str | None:
    if param == "run_id":
        return "approvals" if re.search(r"/(approve|reject|resume)$", path) else "runs"
    return OWNED.get(param)


def _fill(path: str, mine: dict[str, str], caller: Caller, other: Caller, own: bool) -> tuple[str, str | None]:
    """The path with its parameters filled in (the caller's objects, or another user's); the resource of the
    owned object in it, if any."""
    resource = None
    for param in re.findall(r"{(\w+)(?::\w+)?}", path):
        owned = _resource(path, param)
        if param == "session_id":
            value = (caller.spare_session if own else other.spare_session) or "nosuchsession"
        elif owned is not None:
            value = mine["paused" if owned == "approvals" and path.endswith(("approve", "reject")) else param]
        else:
            value = {"agent": "echo", "model": "echo", "provider": "google", "channel": "twilio",
                     "user_id": other.user_id or "usr_nobody"}.get(param, "x")
        resource = resource or owned
        path = re.sub(r"{" + param + r"(?::\w+)?}", value, path)
    return path, resource


def _expect(guard: Guard, path: str, caller: Caller, resource: str | None, own: bool) -> str:
    """What the contract says: 'unauthenticated', 'forbidden', 'hidden' (404) or 'allowed'."""
    if caller.anonymous and not guard.anonymous:
        return "unauthenticated"
    assert guard.permission is not None
    if guard.permission not in caller.permissions:
        return "forbidden"
    if path in USER_ONLY and caller.user_id is None:
        return "hidden"  # a key from before users has no sessions
    if path in BROWSER_ONLY and "Cookie" not in caller.headers:
        return "forbidden"
    if resource is not None and not own:
        sees_all = resource in roles.OWNER_ALL and roles.OWNER_ALL[resource] in caller.permissions
        return "allowed" if sees_all else "hidden"
    return "allowed"


def _got(status: int) -> str:
    return {401: "unauthenticated", 403: "forbidden", 404: "hidden"}.get(status, "allowed")


CALLERS = ("admin", "operator", "developer", "user", "operator's key", "legacy key", "app key", "anonymous")


def test_every_guarded_route_answers_each_role_and_owner_as_the_contract_says(app) -> None:
    world = World(app)
    client = TestClient(app, base_url=ORIGIN)
    wrong, cases = [], 0
    for method, path, guard in sorted(set(_routes(app))):
        if guard.permission is None:
            continue  # public: anyone
        for name in CALLERS:
            owns_something = any(_resource(path, p) for p in re.findall(r"{(\w+)", path))
            for own in (True, False) if owns_something else (True,):
                caller, other = world.caller(name), world.caller("user")
                mine = world.objects(caller.owner if own else other.owner)
                url, resource = _fill(path, mine, caller, other, own)
                expected = _expect(guard, path, caller, resource, own)
                client.cookies.clear()
                response = client.request(method, url, headers={**caller.headers, "Accept": "application/json"},
                                          json=BODIES.get((method, path)))
                cases += 1
                if _got(response.status_code) != expected or response.status_code >= 500:
                    wrong.append(f"{method} {path} as {name} ({'own' if own else 'other'}): expected {expected}, "
                                 f"got {response.status_code} {response.text[:120]}")
    assert not wrong, f"{len(wrong)} of {cases} cases differ:\n" + "\n".join(wrong)
    print(f"route x caller x owner matrix: {cases} cases")
    assert cases > 200


def test_spot_checks_of_the_matrix_written_out(app) -> None:
    """A few of the matrix's answers by hand, so the table in roles.py is not only checked against itself."""
    world = World(app)
    client = TestClient(app, base_url=ORIGIN)
    callers = {name: world.caller(name) for name in CALLERS}
    theirs = world.objects(world.caller("user").owner)

    def status(name: str, method: str, url: str) -> int:
        client.cookies.clear()
        return client.request(method, url, headers=callers[name].headers).status_code

    conversation = f"/v1/conversations/{theirs['conversation_id']}"
    assert [status(n, "GET", conversation) for n in CALLERS] == [200, 200, 404, 404, 404, 404, 404, 401]
    assert [status(n, "GET", "/v1/jobs") for n in CALLERS] == [200, 200, 200, 403, 200, 200, 403, 401]
    assert [status(n, "GET", f"/v1/jobs/{theirs['job_id']}") for n in CALLERS] == [200, 200, 404, 403, 404, 404, 403,
                                                                                      401]
    assert [status(n, "GET", "/chat/api/agents") for n in CALLERS] == [200] * 8
    assert [status(n, "GET", "/v1/agents") for n in CALLERS] == [200] * 7 + [401]
    # the admin console: read-only views for developers, users never
    assert [status(n, "GET", "/admin") for n in CALLERS] == [200, 200, 200, 403, 200, 200, 403, 401]
    assert [status(n, "GET", "/admin/security") for n in CALLERS] == [200, 200, 403, 403, 403, 403, 403, 401]
    assert [status(n, "GET", "/admin/users") for n in CALLERS] == [200, 403, 403, 403, 403, 403, 403, 401]
    # publishing agents (`halguru publish`): developers and admins; an operator's key carries no more than both,
    # and an app's key (`keys create NAME`) chats only: it could publish, which runs code on the server
    assert [status(n, "GET", "/v1/deployments") for n in CALLERS] == [200, 403, 200, 403, 403, 200, 403, 401]


def test_a_cookie_request_needs_its_csrf_token_and_origin_and_a_finished_second_factor(app) -> None:
    world = World(app)
    client = TestClient(app, base_url=ORIGIN)
    caller = world.caller("developer")
    body = {"agent": "echo"}
    assert client.post("/v1/conversations", headers=caller.headers, json=body).status_code == 201
    no_token = {k: v for k, v in caller.headers.items() if k != "X-CSRF-Token"}
    assert client.post("/v1/conversations", headers=no_token, json=body).json()["error"]["type"] == "csrf"
    evil = {**caller.headers, "Origin": "https://evil.example"}
    assert client.post("/v1/conversations", headers=evil, json=body).status_code == 403
    assert client.get("/v1/conversations", headers=no_token).status_code == 200  # reads need no token
    secret, record = websessions.issue(world.store, caller.user_id, world.state.settings.auth, mfa_done=False)
    pending = {"Cookie": f"{websessions.COOKIE}={secret}"}
    assert client.get("/v1/conversations", headers=pending).json()["error"]["type"] == "mfa_required"
    me = client.get("/auth/me", headers=pending).json()  # what the 2FA page asks
    assert (me["mfa_done"], me["csrf"], me["role"]) == (False, record["csrf"], "developer")


def test_auth_me_sessions_and_sign_out_everywhere(app) -> None:
    world = World(app)
    client = TestClient(app, base_url=ORIGIN)
    caller = world.caller("operator")
    me = client.get("/auth/me", headers=caller.headers).json()
    assert (me["via"], me["role"], me["user"]["id"]) == ("session", "operator", caller.user_id)
    assert "runs:approve_all" in me["permissions"] and "users:manage" not in me["permissions"]
    listed = client.get("/auth/sessions", headers=caller.headers).json()["data"]
    assert len(listed) == 2 and sum(s["current"] for s in listed) == 1
    assert client.delete(f"/auth/sessions/{caller.spare_session}", headers=caller.headers).status_code == 204
    assert client.delete(f"/auth/sessions/{caller.spare_session}", headers=caller.headers).status_code == 404
    assert client.post("/auth/logout-all", headers=caller.headers).json() == {"revoked": 1}
    client.cookies.clear()
    assert client.get("/auth/me", headers=caller.headers).status_code == 401  # the session ended server-side
    legacy = world.caller("legacy key")
    me = client.get("/auth/me", headers=legacy.headers).json()
    assert (me["via"], me["role"], me["user"], me["csrf"]) == ("key", "developer", None, None)
    assert client.get("/auth/sessions", headers=legacy.headers).status_code == 404
