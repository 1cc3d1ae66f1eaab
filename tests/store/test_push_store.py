"""Web Push subscriptions and the server's secrets on both backends: a browser is one endpoint (a second user
signing in there takes it over), a user keeps at most ``keep`` browsers, outcomes are counted, and replicas
asking for the VAPID key at once all get the one stored first."""

from __future__ import annotations

import threading

KEY, AUTH = "BP" + "a" * 85, "c" * 22


def test_subscribe_list_take_over_and_unsubscribe(store) -> None:
    store.save_push_subscription("https://push.example/1", "usr_a", KEY, AUTH, "sess_a")
    store.save_push_subscription("https://push.example/2", "usr_a", KEY, AUTH, "sess_a2")
    store.save_push_subscription("https://push.example/1", "usr_a", KEY, "d" * 22, "sess_a3")  # again: updated
    mine = store.list_push_subscriptions("usr_a")
    assert [(s["endpoint"], s["auth"], s["session"]) for s in mine] == [
        ("https://push.example/1", "d" * 22, "sess_a3"), ("https://push.example/2", AUTH, "sess_a2")]
    assert mine[0]["failures"] == 0 and mine[0]["last_success"] is None
    store.save_push_subscription("https://push.example/2", "usr_b", KEY, AUTH, "sess_b")  # b signed in there
    assert [s["endpoint"] for s in store.list_push_subscriptions("usr_a")] == ["https://push.example/1"]
    assert [s["user_id"] for s in store.list_push_subscriptions("usr_b")] == ["usr_b"]
    assert not store.delete_push_subscription("https://push.example/1", "usr_b")  # not b's to delete
    assert store.delete_push_subscription("https://push.example/1", "usr_a")
    assert not store.delete_push_subscription("https://push.example/1")
    assert store.list_push_subscriptions("usr_a") == []


def test_a_user_keeps_the_newest_browsers_and_outcomes_are_recorded(store) -> None:
    for n in range(4):
        store.save_push_subscription(f"https://push.example/{n}", "usr_a", KEY, AUTH, None, keep=3)
    assert sorted(s["endpoint"][-1] for s in store.list_push_subscriptions("usr_a")) == ["1", "2", "3"]
    store.record_push("https://push.example/1", False)
    store.record_push("https://push.example/1", False)
    failed = {s["endpoint"]: s for s in store.list_push_subscriptions("usr_a")}["https://push.example/1"]
    assert failed["failures"] == 2 and failed["last_failure"] is not None
    store.record_push("https://push.example/1", True)
    ok = {s["endpoint"]: s for s in store.list_push_subscriptions("usr_a")}["https://push.example/1"]
    assert ok["failures"] == 0 and ok["last_success"] is not None
    store.record_push("https://push.example/gone", True)  # deleted meanwhile: nothing to update, no error


def test_concurrent_replicas_share_one_secret(store_factory) -> None:
    stores = [store_factory() for _ in range(4)]
    got: list[str] = []
    barrier = threading.Barrier(len(stores))

    def ask(n: int) -> None:
        barrier.wait()
        got.append(stores[n].server_secret("vapid_private_key", lambda: f"key-{n}"))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and got[0].startswith("key-")
    assert stores[0].server_secret("vapid_private_key", lambda: "another") == got[0]
