"""One client (a person with all their keys, an app's key, an anonymous visitor's address) has at most
``max_in_flight`` requests in flight at once: past them 429 ``too_many_in_flight`` with Retry-After, while other
users, health probes and the routes that stop abuse are served as before."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from tests.server.conftest import Server
from tests.server.test_client_budgets import _person_with_keys
from tests.server.test_serve_api import new_conversation
from tests.server.test_sse_resume import _running, keyed


@contextlib.contextmanager
def held_lists(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, Callable[[int], None]]]:
    """GET /v1/conversations held in its route until the event is set (as a list over a busy store takes);
    the function waits until that many are in the route."""
    from halguru_server import service

    release, inside, lock = threading.Event(), [0], threading.Lock()
    real = service.list_conversations

    def held(*args, **kwargs):
        with lock:
            inside[0] += 1
        release.wait(30)
        return real(*args, **kwargs)

    def reached(count: int) -> None:
        deadline = time.monotonic() + 10
        while inside[0] < count:
            assert time.monotonic() < deadline, f"{inside[0]} of {count} requests reached the route"
            time.sleep(0.01)

    monkeypatch.setattr(service, "list_conversations", held)
    try:
        yield release, reached
    finally:
        release.set()


def _send(pool: ThreadPoolExecutor, server: Server, secret: str, count: int) -> list[Future[httpx.Response]]:
    def one() -> httpx.Response:
        return httpx.get(f"{server.url}/v1/conversations", headers={"Authorization": f"Bearer {secret}"},
                         timeout=30)

    return [pool.submit(one) for _ in range(count)]


@pytest.mark.timeout(60)
def test_past_max_in_flight_one_key_gets_429_while_another_user_is_served(
        serve: Callable[..., Server], api_key: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Measured before: 50 requests of one key held every route thread, and another user's GET /v1/agents waited
    for one (p50 4 ms idle, hundreds of ms under the flood). Now the key's fourth request at once is refused."""
    server = serve(max_in_flight=3)
    mine, other = api_key("flood"), api_key("other")
    with held_lists(monkeypatch) as (release, reached), ThreadPoolExecutor(8) as pool:
        flood = _send(pool, server, mine, 3)
        reached(3)
        refused = httpx.get(f"{server.url}/v1/agents", headers={"Authorization": f"Bearer {mine}"})
        assert refused.status_code == 429, refused.text
        assert refused.headers["Retry-After"] == "1"
        error = refused.json()["error"]
        assert error["type"] == "too_many_in_flight"
        assert "3 at once per client" in error["message"] and "HALGURU_SERVE_MAX_IN_FLIGHT" in error["message"]
        served = httpx.get(f"{server.url}/v1/agents", headers={"Authorization": f"Bearer {other}"})
        assert served.status_code == 200, served.text
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        release.set()
        assert [f.result().status_code for f in flood] == [200, 200, 200]
    # every place was given back by the time its answer arrived (after it, a client's next request could find
    # its own last one still counted): three at once are served again
    with ThreadPoolExecutor(3) as pool:
        assert [f.result().status_code for f in _send(pool, server, mine, 3)] == [200, 200, 200]
    assert not server.state.in_flight.counts


@pytest.mark.timeout(60)
def test_a_persons_keys_and_refused_requests_share_one_count(
        serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch) -> None:
    """A person minting keys gets no more places: their second key's request is refused too; and requests that
    end in an error (404) give their places back."""
    server = serve(max_in_flight=2)
    first, second = _person_with_keys(2)
    with held_lists(monkeypatch) as (release, reached), ThreadPoolExecutor(4) as pool:
        flood = _send(pool, server, first, 2)
        reached(2)
        refused = httpx.get(f"{server.url}/v1/agents", headers={"Authorization": f"Bearer {second}"})
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "too_many_in_flight"
        release.set()
        assert [f.result().status_code for f in flood] == [200, 200]
    with keyed(server, second) as client:
        for _ in range(5):
            assert client.get("/v1/conversations/conv_missing").status_code == 404
        assert client.get("/v1/agents").status_code == 200
    assert not server.state.in_flight.counts



@pytest.mark.timeout(60)
def test_anonymous_web_chat_visitors_are_counted_by_their_address(
        serve: Callable[..., Server], api_key: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The public web chat's visitors have no key: one address's requests share one count, and a user with a
    key is served meanwhile."""
    server = serve(max_in_flight=2)
    with held_lists(monkeypatch) as (release, reached), ThreadPoolExecutor(4) as pool:
        flood = [pool.submit(httpx.get, f"{server.url}/chat/api/conversations", timeout=30) for _ in range(2)]
        reached(2)
        refused = httpx.get(f"{server.url}/chat/api/agents")
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "too_many_in_flight"
        assert httpx.get(f"{server.url}/v1/agents", headers={"Authorization": f"Bearer {api_key()}"}
                         ).status_code == 200
        release.set()
        for f in flood:
            f.result()
    assert httpx.get(f"{server.url}/chat/api/agents").status_code == 200

@pytest.mark.timeout(60)
def test_a_leaked_keys_flood_does_not_stop_its_owner_revoking_it(
        serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch) -> None:
    """The person's keys share one count, so a leaked key's flood refuses their other key too; revoking the
    leaked key (DELETE /v1/keys/ID) is not counted, so it goes through, and the leaked key is then refused."""
    server = serve(max_in_flight=2)
    leaked, own = _person_with_keys(2)
    leaked_id = leaked.split("_")[1]
    with held_lists(monkeypatch) as (release, reached), ThreadPoolExecutor(4) as pool:
        flood = _send(pool, server, leaked, 2)
        reached(2)
        with keyed(server, own) as client:
            assert client.get("/v1/keys").status_code == 429
            revoked = client.delete(f"/v1/keys/{leaked_id}")
            assert revoked.status_code == 200, revoked.text
            assert revoked.json()["revoked"] is not None
        release.set()
        for f in flood:
            f.result()
    assert httpx.get(f"{server.url}/v1/agents", headers={"Authorization": f"Bearer {leaked}"}).status_code == 401


@pytest.mark.timeout(60)
def test_an_open_stream_does_not_hold_a_place(serve: Callable[..., Server], api_key: Callable[..., str]) -> None:
    """An SSE stream counts against its own cap (the model gate's place, ``max_followers``), not against the
    caller's requests in flight: with a cap of 1, a client following a run and streaming an answer still gets
    its next short request answered."""
    server = serve(max_in_flight=1)
    with keyed(server, api_key()) as client, contextlib.ExitStack() as streams:
        run_id, listener = _running(client, new_conversation(client, "slow"), "/v1/conversations/{}/messages")
        follower = streams.enter_context(client.stream("GET", f"/v1/runs/{run_id}/events"))
        assert follower.status_code == 200
        assert client.get("/v1/agents").status_code == 200
        assert client.get("/v1/agents").status_code == 200  # and again: the first gave its place back
        listener.join(15)




def test_the_public_openapi_document_is_encoded_once(serve: Callable[..., Server],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """/openapi.json is public (no key, so not counted in flight) and 150 KB. Measured against a real `halguru
    serve`: 50 anonymous clients asking for it at once made another user's GET /v1/agents time out (5 s), each
    answer encoding the whole document again on a route thread. It is encoded once now: later requests get the
    same bytes without building it again."""
    server = serve()
    first = httpx.get(f"{server.url}/openapi.json")
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    assert "/v1/agents" in first.json()["paths"]
    app = server.app
    monkeypatch.setattr(app, "openapi", lambda: pytest.fail("the document was built and encoded again"))
    for _ in range(3):
        again = httpx.get(f"{server.url}/openapi.json")
        assert again.status_code == 200 and again.content == first.content


@pytest.mark.timeout(60)
def test_the_cap_holds_across_replicas_on_one_store(
        serve: Callable[..., Server], api_key: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted per process, a key behind N replicas had N times its cap. Now requests held on one replica count
    on the other within a second (the store shares the counts), and their places come back there once answered."""
    one, two = serve(max_in_flight=2), serve(max_in_flight=2)  # two replicas of one database
    mine = api_key("flood")
    with held_lists(monkeypatch) as (release, reached), ThreadPoolExecutor(4) as pool:
        flood = _send(pool, one, mine, 2)
        reached(2)
        deadline = time.monotonic() + 5
        while (refused := httpx.get(f"{two.url}/v1/agents", headers={"Authorization": f"Bearer {mine}"})
               ).status_code == 200:
            assert time.monotonic() < deadline, "the other replica never counted the held requests"
            time.sleep(0.2)
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "too_many_in_flight", refused.text
        release.set()
        assert [f.result().status_code for f in flood] == [200, 200]
    deadline = time.monotonic() + 5
    while httpx.get(f"{two.url}/v1/agents", headers={"Authorization": f"Bearer {mine}"}).status_code != 200:
        assert time.monotonic() < deadline, "the places never came back on the other replica"
        time.sleep(0.2)
