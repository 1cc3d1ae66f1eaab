"""One person is one client for the server's per-client budgets, however many API keys they hold.

A developer mints keys over ``/v1/keys`` at will; each key used to be a client of its own, so twenty keys had twenty
shares of a model's queue and twenty times ``max_followers`` streams followed at once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from halguru.store import open_store
from tests.server.conftest import Server
from tests.server.test_serve_api import new_conversation
from tests.server.test_sse_resume import _running, keyed


def _person_with_keys(count: int) -> list[str]:
    """A developer's ``count`` API keys (as ``POST /v1/keys`` makes them: the user's, scope ``user``)."""
    from halguru_server.identity import accounts
    from halguru_server.keys import create_key

    store = open_store()
    person = accounts.create_user(store, "dev@example.com", role="developer", password="a long passphrase 123",
                                  email_verified=True)
    return [create_key(store, f"k{i}", None, None, "user", user_id=person["id"])[1] for i in range(count)]


def test_a_persons_keys_share_one_share_of_the_queue(serve: Callable[..., Server],
                                                     api_key: Callable[..., str]) -> None:
    """Measured: with concurrency 1 and 4 waiting places (2 per client), one developer's 4 keys took the running
    slot and every waiting place (the 4th key's message was admitted too); another client then got 503. Now the
    person's third waiting message is refused as their share, and the other client still gets in."""
    server = serve()
    state = server.state
    state.settings.concurrency = 1
    state.gate.queue_size, state.gate.per_client = 4, 2
    secrets = _person_with_keys(4)
    mine = [keyed(server, s) for s in secrets]
    other = keyed(server, api_key("other"))
    try:
        with contextlib.ExitStack() as streams:
            for client in mine[:3]:  # one running, two waiting: the person's share
                conversation = new_conversation(client, "slow")
                response = streams.enter_context(client.stream(
                    "POST", f"/v1/conversations/{conversation}/messages", json={"content": "a", "stream": True}))
                assert response.status_code == 200
                time.sleep(0.1)
            refused = mine[3].post(f"/v1/conversations/{new_conversation(mine[3], 'slow')}/messages",
                                   json={"content": "d"})
            assert refused.status_code == 503, refused.text
            assert "you have 2 runs waiting" in refused.json()["error"]["message"]
            with other.stream("POST", f"/v1/conversations/{new_conversation(other, 'slow')}/messages",
                              json={"content": "b", "stream": True}) as admitted:
                assert admitted.status_code == 200
    finally:
        for client in [*mine, other]:
            client.close()


def test_a_persons_keys_follow_at_most_max_followers_streams(serve: Callable[..., Server]) -> None:
    """Measured: with ``max_followers`` 2, one developer's 3 keys followed 6 streams of one run (2 each); now the
    person's third follower is a 429 ``too_many_streams``, whichever key sends it."""
    server = serve(max_followers=2)
    mine = [keyed(server, s) for s in _person_with_keys(3)]
    try:
        with contextlib.ExitStack() as streams:
            run_id, listener = _running(mine[0], new_conversation(mine[0], "slow"), "/v1/conversations/{}/messages")
            followers = [streams.enter_context(c.stream("GET", f"/v1/runs/{run_id}/events")) for c in mine[:2]]
            assert [f.status_code for f in followers] == [200, 200]
            refused = mine[2].get(f"/v1/runs/{run_id}/events")
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["type"] == "too_many_streams"
            for follower in followers:
                follower.read()
            listener.join(10)
    finally:
        for client in mine:
            client.close()

