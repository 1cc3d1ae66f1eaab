"""The audit log on both backends: one unbroken hash chain however many threads and processes append, and
every kind of tampering (an edited entry, a deleted one, two swapped, a recomputed hash under a key) named
by the seq of the first broken entry."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

WRITER = """
import sys
from pathlib import Path
from halguru.store import SQLiteStore

target, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
if target.startswith("sqlite:"):
    store = SQLiteStore(Path(target.removeprefix("sqlite:")))
else:
    from halguru.store.postgres import PostgresStore
    store = PostgresStore(target)
for i in range(count):
    store.append_audit(f"cli:{name}", "job.cancel", f"job_{name}_{i}", {"i": i})
store.close()
"""


def _fill(store, n: int = 6) -> None:
    for i in range(1, n + 1):
        store.append_audit("user:usr_a", "user.role", f"usr_{i}", {"role": "operator", "n": i}, "10.0.0.1")


def _stored(raw_sql, seq: int) -> dict:
    """An entry's stored fields, read as another program would."""
    names = ["seq", "time", "actor", "action", "target", "details", "address", "alg", "prev_hash"]
    return dict(zip(names, raw_sql(f"SELECT {', '.join(names)} FROM audit WHERE seq = ?", [seq])[0], strict=True))


def test_entries_chain_list_newest_first_and_filter(store) -> None:
    assert store.verify_audit() == {"ok": True, "entries": 0, "seq": None, "reason": None, "head": "0" * 64}
    first = store.append_audit("user:usr_a", "auth.sign_in", "usr_a", {"method": "password"}, "127.0.0.1")
    second = store.append_audit("key:k1", "key.create", "key_1", {"scope": "user", "bad\x00": "x\x00"})
    assert first["seq"] == 1 and first["prev_hash"] == "0" * 64 and second["prev_hash"] == first["hash"]
    store.append_audit("user:usr_a", "auth.sign_out", "usr_a")
    listed = store.list_audit()
    assert [e["seq"] for e in listed] == [3, 2, 1]
    assert listed[2]["details"] == {"method": "password"} and listed[2]["address"] == "127.0.0.1"
    assert [e["seq"] for e in store.list_audit(action="auth.")] == [3, 1]
    assert [e["seq"] for e in store.list_audit(action="auth.sign_in")] == [1]
    assert [e["seq"] for e in store.list_audit(actor="key:k1")] == [2]
    assert [e["seq"] for e in store.list_audit(before=3, limit=1)] == [2]
    assert store.list_audit(since=listed[0]["time"] + 1) == []
    check = store.verify_audit()
    assert check["ok"] and check["entries"] == 3 and check["head"] == listed[0]["hash"]


def test_verify_streams_in_batches(store) -> None:
    _fill(store, 7)
    assert store.verify_audit(batch=2)["entries"] == 7
    assert store.verify_audit(batch=7)["entries"] == 7


def test_concurrent_appends_from_threads_and_stores_keep_one_chain(store_factory) -> None:
    stores = [store_factory(), store_factory()]  # two stores: as two processes' connections would be
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(15):
                stores[n % 2].append_audit(f"cli:t{n}", "tool.call", f"t{n}-{i}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    check = stores[0].verify_audit()
    assert check["ok"] and check["entries"] == 90


def test_concurrent_appends_from_two_processes_keep_one_chain(store_url: str, store) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, store_url, name, "40"]) for name in ("p1", "p2")]
    assert [proc.wait(120) for proc in procs] == [0, 0]
    check = store.verify_audit()
    assert check["ok"] and check["entries"] == 80
    assert {e["actor"] for e in store.list_audit(limit=100)} == {"cli:p1", "cli:p2"}


def test_an_edited_entry_is_named(store, raw_sql) -> None:
    _fill(store)
    raw_sql("UPDATE audit SET details = ? WHERE seq = 3", ['{"n":3,"role":"admin"}'])
    check = store.verify_audit()
    assert not check["ok"] and check["seq"] == 3 and check["reason"].startswith("hash mismatch")
    assert check["entries"] == 2


def test_an_edited_entry_with_its_hash_recomputed_breaks_the_next_link(store, raw_sql) -> None:
    from halguru.store.sql_audit import canonical_details, entry_hash

    _fill(store)
    row = _stored(raw_sql, 4)
    row["details"] = canonical_details({"role": "admin"})
    raw_sql("UPDATE audit SET details = ?, hash = ? WHERE seq = 4",
            [row["details"], entry_hash(row, row["prev_hash"], None)])
    check = store.verify_audit()
    assert check["seq"] == 5 and check["reason"].startswith("prev mismatch")


def test_a_deleted_entry_is_a_gap(store, raw_sql) -> None:
    _fill(store)
    raw_sql("DELETE FROM audit WHERE seq = 2")
    check = store.verify_audit()
    assert not check["ok"] and check["seq"] == 2 and check["reason"].startswith("gap")
    raw_sql("DELETE FROM audit WHERE seq = 1")
    assert store.verify_audit()["seq"] == 1


def test_swapped_entries_are_named(store, raw_sql) -> None:
    _fill(store)
    raw_sql("UPDATE audit SET seq = 100 WHERE seq = 3")
    raw_sql("UPDATE audit SET seq = 3 WHERE seq = 4")
    raw_sql("UPDATE audit SET seq = 4 WHERE seq = 100")
    check = store.verify_audit()
    assert not check["ok"] and check["seq"] == 3 and check["reason"].startswith("prev mismatch")


def test_a_keyed_chain_cannot_be_recomputed_without_the_key(store, raw_sql) -> None:
    from halguru.store.sql_audit import canonical_details, entry_hash

    store.append_audit("cli:me", "user.create", "usr_1")  # unkeyed entries before the key was set are fine
    for i in range(3):
        store.append_audit("cli:me", "user.role", f"usr_{i}", {"role": "user"}, key=b"secret")
    assert store.verify_audit(key=b"secret")["ok"]
    assert store.verify_audit()["seq"] == 2 and "HALGURU_AUDIT_KEY" in store.verify_audit()["reason"]
    assert store.verify_audit(key=b"wrong")["reason"].startswith("hash mismatch")
    # someone with the database but not the key rewrites entry 3 as an unkeyed one, hash recomputed
    row = _stored(raw_sql, 3)
    row["details"], row["alg"] = canonical_details({"role": "admin"}), "sha256"
    raw_sql("UPDATE audit SET details = ?, alg = ?, hash = ? WHERE seq = 3",
            [row["details"], row["alg"], entry_hash(row, row["prev_hash"], None)])
    check = store.verify_audit(key=b"secret")
    assert check["seq"] == 3 and check["reason"].startswith("key: an unkeyed entry")


@pytest.mark.parametrize("details", [{"x": 1.5, "y": [1, "é"]}, {}])
def test_times_and_details_read_back_as_hashed(store, details) -> None:
    entry = store.append_audit("dev", "conversation.delete", "conv_1", details)
    assert store.list_audit()[0] == entry and entry["details"] == details
    assert store.verify_audit()["ok"]


def test_a_copied_database_keeps_a_verifiable_chain(store_url: str, store, tmp_path) -> None:
    from halguru.store.admin import copy_database
    from halguru.store.sqlite import SQLiteStore

    _fill(store, 4)
    copy_database(store_url, f"sqlite:{tmp_path / 'copy.db'}")
    copy = SQLiteStore(tmp_path / "copy.db")
    try:
        assert copy.verify_audit() == store.verify_audit() and copy.verify_audit()["entries"] == 4
    finally:
        copy.close()
