"""A cap on the conversations one owner keeps (``max_conversations``), on each backend, across processes."""

from __future__ import annotations

from typing import Any

import pytest

from halguru.errors import TooManyConversations
from tests.store.races import race


def test_an_owner_keeps_at_most_max_owned_conversations(store: Any) -> None:
    for i in range(3):
        store.create_conversation(f"conv_a{i}", "echo", owner="key:a", max_owned=3)
    with pytest.raises(TooManyConversations, match="you keep 3 conversations"):
        store.create_conversation("conv_a3", "echo", owner="key:a", max_owned=3)
    assert store.get_conversation("conv_a3") is None  # nothing half-stored
    store.create_conversation("conv_b0", "echo", owner="key:b", max_owned=3)  # another owner is not held
    store.create_conversation("conv_free", "echo", owner="key:a")  # no cap asked: as before
    store.delete_conversation("conv_a0")
    store.delete_conversation("conv_free")
    store.create_conversation("conv_a4", "echo", owner="key:a", max_owned=3)  # a deleted one frees its place
    with pytest.raises(TooManyConversations, match="you keep 1 conversation, as many"):  # said as one
        store.create_conversation("conv_c1", "echo", owner="key:a", max_owned=1)


def test_the_cap_holds_when_two_processes_create_at_once(store_factory: Any) -> None:
    """16 creations at once through two stores (two replicas' pools): counted under the owner's lock, so
    exactly the cap's worth are stored, not each replica's count before the others committed."""
    stores = [store_factory(), store_factory()]
    seq = iter(range(100))

    def create(store: Any) -> bool:
        try:
            store.create_conversation(f"conv_r{next(seq)}", "echo", owner="key:a", max_owned=5)
            return True
        except TooManyConversations:
            return False

    assert sorted(race(stores, create, n=16)) == [False] * 11 + [True] * 5
    assert len(stores[0].list_conversations(owner="key:a", limit=100)) == 5


def test_only_the_named_agents_conversations_count(store: Any) -> None:
    store.create_conversation("conv_gone", "gone", owner="key:a")
    store.create_conversation("conv_a0", "echo", owner="key:a", max_owned=1, among=["echo", "other"])
    with pytest.raises(TooManyConversations):
        store.create_conversation("conv_a1", "echo", owner="key:a", max_owned=1, among=["echo", "other"])
    with pytest.raises(TooManyConversations):
        store.check_owned_conversations("key:a", 1, ["echo"])
    store.check_owned_conversations("key:a", 1, ["other"])
