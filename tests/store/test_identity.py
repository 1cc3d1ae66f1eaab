"""The identity tables (users, identities, web sessions, auth tokens, recovery codes), on SQLite and PostgreSQL:
what must happen once happens once, even for racing callers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from halguru.store import Store
from halguru.store.records import WebSessionRecord


def _user(store: Store, user_id: str = "usr_a", email: str | None = "Ann@Example.com", role: str = "user"):
    user = store.create_user(user_id, email, "Ann", role, password_hash="h")
    assert user is not None
    return user


def test_users_are_created_once_per_email_and_updated(store: Store) -> None:
    user = _user(store)
    assert (user["email"], user["role"], user["disabled"], user["totp_enabled"]) == ("ann@example.com", "user",
                                                                                      False, False)
    assert store.create_user("usr_b", "ANN@example.com", "Other", "user") is None  # the email is taken
    assert store.create_user("usr_c", None, "No mail", "user") is not None
    assert store.create_user("usr_d", None, "No mail either", "user") is not None  # several without email
    assert store.user_by_email(" ann@EXAMPLE.com ")["id"] == "usr_a"
    assert store.update_user("usr_a", role="admin", disabled=True, email_verified=True)
    got = store.get_user("usr_a")
    assert (got["role"], got["disabled"], got["email_verified"]) == ("admin", True, True)
    assert not store.update_user("usr_zz", role="admin")
    with pytest.raises(ValueError, match="another user"):
        store.update_user("usr_c", email="ann@example.com")
    with pytest.raises(ValueError):
        store.update_user("usr_a", failed_logins=0)  # not settable: the lockout has its own methods
    assert [u["id"] for u in store.list_users()] == ["usr_a", "usr_c", "usr_d"]
    assert (store.count_users(), store.count_users("admin")) == (3, 1)


def test_failed_logins_lock_with_doubling_and_concurrent_failures_all_count(store: Store) -> None:
    _user(store)
    for _ in range(2):
        assert store.record_login_failure("usr_a", 3, 30, 900)["locked_until"] is None
    now = time.time()
    locked = store.record_login_failure("usr_a", 3, 30, 900)["locked_until"]
    assert now + 29 < locked < now + 32
    assert store.record_login_failure("usr_a", 3, 30, 900)["locked_until"] > now + 59  # doubled
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: store.record_login_failure("usr_a", 3, 30, 900), range(16)))
    user = store.get_user("usr_a")
    assert user["failed_logins"] == 20 and user["locked_until"] < time.time() + 901  # capped
    store.record_login_success("usr_a")
    user = store.get_user("usr_a")
    assert (user["failed_logins"], user["locked_until"]) == (0, None) and user["last_login"] is not None


def test_a_totp_step_is_accepted_once_and_never_an_older_one(store: Store) -> None:
    _user(store)
    store.set_totp("usr_a", "SECRET", enabled=True)
    assert store.use_totp_step("usr_a", 100)
    assert not store.use_totp_step("usr_a", 100)
    assert not store.use_totp_step("usr_a", 99)
    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(lambda _: store.use_totp_step("usr_a", 101), range(8))) == 1
    store.set_totp("usr_a", None, enabled=False)  # a new secret starts the count again
    assert store.get_user("usr_a")["totp_secret"] is None and store.use_totp_step("usr_a", 50)


def test_identities_link_a_provider_subject_to_one_user(store: Store) -> None:
    _user(store)
    assert store.link_identity("google", "sub-1", "usr_a", "ann@example.com")
    assert not store.link_identity("google", "sub-1", "usr_a")  # linked already
    assert store.get_identity("google", "sub-1")["user_id"] == "usr_a"
    assert store.get_identity("entra", "sub-1") is None
    assert [i["provider"] for i in store.list_identities("usr_a")] == ["google"]
    assert store.set_identity_email("google", "sub-1", "ann@newco.example")  # it changed at the provider
    assert store.get_identity("google", "sub-1")["email"] == "ann@newco.example"
    assert not store.set_identity_email("entra", "sub-1", "ann@newco.example")
    assert store.unlink_identity("google", "sub-1") and store.get_identity("google", "sub-1") is None


def _session(id_hash: str, user_id: str = "usr_a", expires_in: float = 3600) -> WebSessionRecord:
    now = time.time()
    return WebSessionRecord(id_hash=id_hash, user_id=user_id, csrf="c", created=now, last_seen=now,
                            expires=now + expires_in, mfa_done=False, address="1.2.3.4", user_agent="ua", revoked=None)


def test_web_sessions_are_listed_touched_and_revoked(store: Store) -> None:
    _user(store)
    _user(store, "usr_b", "bob@example.com")
    for name in ("s1", "s2", "s3"):
        store.create_web_session(_session(name))
    store.create_web_session(_session("old", expires_in=-1))
    store.create_web_session(_session("bob", "usr_b"))
    assert store.get_web_session("s1")["mfa_done"] is False
    assert store.touch_web_session("s1", time.time() + 5, mfa_done=True)
    assert store.get_web_session("s1")["mfa_done"] is True
    listed = [s["id_hash"] for s in store.list_web_sessions("usr_a")]  # most recently active first
    assert listed[0] == "s1" and sorted(listed) == ["s1", "s2", "s3"]  # not the expired one
    assert store.revoke_web_sessions("usr_b", ["s2"]) == 0  # not bob's
    assert store.revoke_web_sessions("usr_a", ["s2"]) == 1
    assert not store.touch_web_session("s2", time.time())  # revoked
    assert store.revoke_web_sessions("usr_a", keep="s1") == 2  # s3 and the expired one
    assert [s["id_hash"] for s in store.list_web_sessions("usr_a")] == ["s1"]
    assert store.revoke_web_sessions() == 0  # neither a user nor sessions: nothing
    assert store.list_web_sessions("usr_b")[0]["id_hash"] == "bob"
    assert store.prune_web_sessions(time.time() + 1) >= 3


def test_an_auth_token_is_consumed_once_even_by_racing_callers(store: Store) -> None:
    _user(store)
    store.create_auth_token("t1", "reset", "usr_a", {"next": "/x"}, time.time() + 60)
    assert store.consume_auth_token("t1", "verify") is None  # another purpose
    assert store.get_auth_token("t1", "verify") is None
    for _ in range(2):  # looking spends nothing
        seen = store.get_auth_token("t1", "reset")
        assert seen is not None and seen["data"] == {"next": "/x"} and seen["used"] is None
    with ThreadPoolExecutor(8) as pool:
        got = [t for t in pool.map(lambda _: store.consume_auth_token("t1", "reset"), range(16)) if t]
    assert len(got) == 1 and got[0]["data"] == {"next": "/x"} and got[0]["used"] is not None
    assert store.get_auth_token("t1", "reset") is None  # used
    store.create_auth_token("t2", "reset", "usr_a", None, time.time() - 1)
    assert store.consume_auth_token("t2", "reset") is None and store.get_auth_token("t2", "reset") is None  # expired
    store.create_auth_token("t3", "reset", "usr_a", None, time.time() + 60)
    assert store.revoke_auth_tokens("usr_a", "reset") == 1
    assert store.consume_auth_token("t3", "reset") is None
    store.create_auth_token("t4", "oidc", None, {"nonce": "n"}, time.time() + 60)
    assert store.consume_auth_token("t4", "oidc")["user_id"] is None


def test_recovery_codes_work_once_and_are_replaced_together(store: Store) -> None:
    _user(store)
    store.set_recovery_codes("usr_a", ["h1", "h2"])
    assert store.recovery_codes_left("usr_a") == 2
    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(lambda _: store.use_recovery_code("usr_a", "h1"), range(8))) == 1
    assert not store.use_recovery_code("usr_a", "nope")
    assert store.recovery_codes_left("usr_a") == 1
    store.set_recovery_codes("usr_a", ["h3"])
    assert not store.use_recovery_code("usr_a", "h2") and store.recovery_codes_left("usr_a") == 1


def test_recovery_codes_made_again_at_once_leave_one_set(store_factory) -> None:
    """A double-submitted "new recovery codes" (or two processes at once): one set stays, the last. On PostgreSQL
    each transaction deleted only the codes it saw, and 8 at once left up to 80 valid codes, 70 of them in
    answers the user may never have kept."""
    stores = [store_factory(), store_factory()]
    _user(stores[0])
    start = threading.Barrier(8)

    def regenerate(i: int) -> None:
        start.wait()
        stores[i % 2].set_recovery_codes("usr_a", [f"h{i}-{n}" for n in range(10)])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(regenerate, range(8)))
    assert stores[0].recovery_codes_left("usr_a") == 10


def test_two_users_given_one_email_at_once_get_one_clear_refusal(store_factory) -> None:
    """On PostgreSQL both found the email free and the later one failed on the unique index (a driver error, a
    500) where SQLite says another user has it."""
    stores = [store_factory(), store_factory()]
    for i in range(8):
        stores[0].create_user(f"usr_{i}", f"u{i}@example.com", "U", "user")
    start = threading.Barrier(8)

    def give(i: int) -> str:
        start.wait()
        try:
            return str(stores[i % 2].update_user(f"usr_{i}", email="Same@Example.com"))
        except ValueError as exc:
            return str(exc)

    with ThreadPoolExecutor(8) as pool:
        outcomes = sorted(pool.map(give, range(8)))
    assert outcomes == ["True"] + ["another user has the email same@example.com"] * 7


def test_keys_belong_to_users(store: Store) -> None:
    _user(store)
    store.create_key("k1", "laptop", "hg_k1", "hash1", user_id="usr_a")
    store.create_key("k2", "old", "hg_k2", "hash2")
    assert store.key_by_hash("hash1")["user_id"] == "usr_a"
    assert store.key_by_hash("hash2")["user_id"] is None
    assert [k["id"] for k in store.list_keys("usr_a")] == ["k1"]
    assert len(store.list_keys()) == 2
