"""Published agent versions on both backends: numbered per agent, at most one active, a rollback switches it,
an unpublish leaves none, the bundle comes back byte for byte, and concurrent publishes of one agent never
share a version number."""

from __future__ import annotations

import threading


def test_versions_are_numbered_per_agent_and_one_is_active(store) -> None:
    first = store.create_deployment("shop", "a" * 64, {"tools": ["lookup"]}, b"\x00bundle-1", "user:usr_a")
    second = store.create_deployment("shop", "b" * 64, {"tools": []}, b"bundle-2", None)
    other = store.create_deployment("faq", "c" * 64, {}, b"faq", "user:usr_b")
    assert (first["version"], second["version"], other["version"]) == (1, 2, 1)
    assert store.active_deployments() == {"shop": (2, "b" * 64), "faq": (1, "c" * 64)}
    listed = store.list_deployments("shop")
    assert [(d["version"], d["active"]) for d in listed] == [(2, True), (1, False)]
    assert listed[1]["manifest"] == {"tools": ["lookup"]} and listed[1]["published_by"] == "user:usr_a"
    assert store.deployment_bundle("shop", 1) == b"\x00bundle-1"
    assert store.deployment_bundle("shop", 9) is None


def test_rollback_activates_an_older_version(store) -> None:
    store.create_deployment("shop", "a" * 64, {}, b"1", None)
    store.create_deployment("shop", "b" * 64, {}, b"2", None)
    back = store.activate_deployment("shop", 1)
    assert back is not None and back["active"] and back["version"] == 1
    assert store.active_deployments() == {"shop": (1, "a" * 64)}
    assert [d["active"] for d in store.list_deployments("shop")] == [False, True]
    assert store.activate_deployment("shop", 7) is None
    assert store.activate_deployment("nobody", 1) is None
    assert store.active_deployments() == {"shop": (1, "a" * 64)}
    third = store.create_deployment("shop", "c" * 64, {}, b"3", None)  # after a rollback: the next number
    assert third["version"] == 3 and store.active_deployments() == {"shop": (3, "c" * 64)}


def test_unpublish_leaves_no_version_active_and_keeps_them_all(store) -> None:
    store.create_deployment("shop", "a" * 64, {}, b"1", None)
    store.create_deployment("shop", "b" * 64, {}, b"2", None)
    store.create_deployment("faq", "c" * 64, {}, b"faq", None)
    down = store.deactivate_deployment("shop")
    assert down is not None and (down["version"], down["sha256"], down["active"]) == (2, "b" * 64, False)
    assert store.active_deployments() == {"faq": (1, "c" * 64)}  # the other agent untouched
    assert [(d["version"], d["active"]) for d in store.list_deployments("shop")] == [(2, False), (1, False)]
    assert store.deactivate_deployment("shop") is None and store.deactivate_deployment("nobody") is None
    assert store.delete_deployments("shop", [1, 2]) == [1, 2]  # none served: every version can go
    store.create_deployment("faq", "d" * 64, {}, b"faq2", None)
    assert store.activate_deployment("faq", 1) is not None and store.deactivate_deployment("faq") is not None
    assert store.activate_deployment("faq", 2) is not None  # served again: a rollback after an unpublish
    assert store.active_deployments() == {"faq": (2, "d" * 64)}


def test_concurrent_publishes_get_distinct_versions(store_factory) -> None:
    stores = [store_factory() for _ in range(4)]
    versions: list[int] = []

    def publish(store) -> None:
        for i in range(5):
            versions.append(store.create_deployment("shop", f"{i:064d}", {}, b"x", None)["version"])

    threads = [threading.Thread(target=publish, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == list(range(1, 21))
    assert len([d for d in stores[0].list_deployments("shop") if d["active"]]) == 1
