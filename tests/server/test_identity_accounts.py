"""Accounts: argon2 passwords (rehash), lockout with one answer for every failure, TOTP (window, no reuse),
recovery codes used once, single-use tokens; and the roles' permission table."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pyotp
import pytest
from halguru_server.identity import accounts, roles
from halguru_server.identity.accounts import AccountError, SignInFailed
from halguru_server.identity.settings import AuthSettings

from halguru.store import SQLiteStore


@pytest.fixture
def db(tmp_path: Path):
    store = SQLiteStore(tmp_path / "s.db")
    yield store
    store.close()


def test_users_are_created_checked_and_changed(db) -> None:
    user = accounts.create_user(db, " Ann@Example.com ", role="admin", name="Ann", password="correct horse")
    assert user["email"] == "ann@example.com" and user["password_hash"].startswith("$argon2id$")
    with pytest.raises(AccountError, match="exists already"):
        accounts.create_user(db, "ann@example.com", password="correct horse")
    with pytest.raises(AccountError, match="unknown role 'root'"):
        accounts.create_user(db, "b@example.com", role="root")
    with pytest.raises(AccountError, match="at least 10"):
        accounts.create_user(db, "b@example.com", password="short")
    with pytest.raises(AccountError, match="invalid email"):
        accounts.create_user(db, "not-an-email")
    assert accounts.find_user(db, "ANN@example.com")["id"] == user["id"] == accounts.find_user(db, user["id"])["id"]
    with pytest.raises(AccountError, match=r"no user 'x@example\.com'"):
        accounts.find_user(db, "x@example.com")
    with pytest.raises(AccountError, match=r"ann@example\.com is the last enabled admin"):
        accounts.set_role(db, user["id"], "operator")
    accounts.create_user(db, "root@example.com", role="admin")
    assert accounts.set_role(db, user["id"], "operator")["role"] == "operator"
    assert db.get_user(user["id"])["role"] == "operator"
    assert accounts.disable_user(db, "ann@example.com")["disabled"] and db.get_user(user["id"])["disabled"]


def test_sign_in_answers_the_same_for_every_failure_and_locks_with_backoff(db) -> None:
    settings = AuthSettings(login_max_failures=3)
    user = accounts.create_user(db, "ann@example.com", password="correct horse")
    assert accounts.authenticate(db, "Ann@example.com", "correct horse", settings)["id"] == user["id"]
    answers = set()
    for email, password in [("nobody@example.com", "correct horse"), ("ann@example.com", "wrong one"),
                            ("ann@example.com", "wrong two"), ("ann@example.com", "wrong three"),
                            ("ann@example.com", "correct horse")]:  # locked now: even the right password fails
        with pytest.raises(SignInFailed) as failed:
            accounts.authenticate(db, email, password, settings)
        answers.add(str(failed.value))
    assert answers == {accounts.SIGN_IN_FAILED}
    locked = db.get_user(user["id"])["locked_until"]
    assert time.time() + 25 < locked < time.time() + 31
    db.update_user(user["id"], disabled=False)
    db.record_login_success(user["id"])  # as when the lock has passed and the password is right
    admin = accounts.create_user(db, "root@example.com", role="admin", password="correct horse")
    db.record_login_failure(admin["id"], 3, 30, 900)
    accounts.authenticate(db, "root@example.com", "correct horse", settings)  # a second factor follows:
    assert db.get_user(admin["id"])["failed_logins"] == 1  # the count of wrong codes is not reset by it
    accounts.disable_user(db, user["id"])
    with pytest.raises(SignInFailed):
        accounts.authenticate(db, "ann@example.com", "correct horse", settings)



def test_the_right_password_of_an_account_whose_lock_has_passed_leaves_it_unlocked_for_the_code(db) -> None:
    """A password attempt is counted before it is checked; a right one with a second factor to come gives its
    count back, and the lock its count set with it, even past ``login_max_failures`` once an earlier lock has
    passed (else the owner's own right password locked them out of the code step)."""
    settings = AuthSettings(login_max_failures=3)
    user = accounts.create_user(db, "root@example.com", role="admin", password="correct horse")
    db.set_totp(user["id"], pyotp.random_base32(), enabled=True)
    for _ in range(4):
        db.record_login_failure(user["id"], 3, 0.01, 900)  # 4 failures, their lock (0.02 s) over at once
    time.sleep(0.05)
    accounts.authenticate(db, "root@example.com", "correct horse", settings)
    after = db.get_user(user["id"])
    assert after["failed_logins"] == 4 and after["locked_until"] is None
    assert db.claim_login_attempt(user["id"], 3, 30, 900) is not None  # the code step may check a code

def test_an_old_hash_is_replaced_when_the_password_is_right(db) -> None:
    from argon2 import PasswordHasher

    user = accounts.create_user(db, "ann@example.com")
    old = PasswordHasher(time_cost=1, memory_cost=8192).hash("correct horse")
    db.update_user(user["id"], password_hash=old)
    assert accounts.verify_password(db, db.get_user(user["id"]), "correct horse")
    assert db.get_user(user["id"])["password_hash"] != old
    assert not accounts.verify_password(db, db.get_user(user["id"]), "wrong")


def test_totp_enrolment_verification_and_no_reuse_within_the_window(db) -> None:
    user = accounts.create_user(db, "ann@example.com", role="admin")
    assert accounts.needs_2fa(user, AuthSettings())  # admins must
    assert not accounts.needs_2fa(user, AuthSettings(require_2fa_roles=[]))
    secret = accounts.totp_begin(db, user["id"])
    uri = accounts.provisioning_uri(db.get_user(user["id"]), secret)
    assert uri.startswith("otpauth://totp/halguru:ann%40example.com?secret=")
    assert accounts.qr_svg(uri).lstrip().startswith("<?xml")
    with pytest.raises(AccountError, match="not right"):
        accounts.totp_confirm(db, user["id"], "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    totp = pyotp.TOTP(secret)
    codes = accounts.totp_confirm(db, user["id"], totp.now())
    assert len(codes) == 10 and len(set(codes)) == 10
    user = db.get_user(user["id"])
    assert user["totp_enabled"] and db.recovery_codes_left(user["id"]) == 10
    assert not accounts.verify_totp(db, user, totp.now())  # the enrolment's code was used
    assert accounts.verify_totp(db, user, totp.at(time.time() + 30))  # the next step (valid_window=1)
    assert not accounts.verify_totp(db, user, totp.at(time.time() + 30))  # once
    assert not accounts.verify_totp(db, user, totp.at(time.time() + 90))  # outside the window
    assert accounts.verify_second_factor(db, user, codes[0].upper()) == "recovery_code"  # case-insensitive
    assert accounts.verify_second_factor(db, user, codes[0]) is None  # once
    assert db.recovery_codes_left(user["id"]) == 9
    accounts.reset_2fa(db, "ann@example.com")
    user = db.get_user(user["id"])
    assert not user["totp_enabled"] and user["totp_secret"] is None and db.recovery_codes_left(user["id"]) == 0


def test_tokens_are_single_use_and_purpose_bound(db) -> None:
    user = accounts.create_user(db, "ann@example.com", password="correct horse")
    token = accounts.issue_token(db, "reset", user["id"], ttl=60, data={"why": "forgot"})
    assert accounts.consume_token(db, token, "verify") is None
    assert accounts.consume_token(db, token, "reset")["data"] == {"why": "forgot"}
    assert accounts.consume_token(db, token, "reset") is None
    later = accounts.issue_token(db, "reset", user["id"], ttl=60)
    accounts.set_password(db, user["id"], "a new password")  # earlier reset links stop working
    assert accounts.consume_token(db, later, "reset") is None
    assert accounts.consume_token(db, "", "reset") is None


def test_the_roles_grant_what_the_contract_table_says() -> None:
    table = {  # docs/identity.md
        "agents:read": "AODU", "chat:use": "AODU", "account:own": "AODU", "conversations:read_all": "AO",
        "runs:read_all": "AO",
        "runs:approve_all": "AO", "jobs:read": "AOD", "jobs:write": "AOD", "jobs:read_all": "AO",
        "jobs:write_all": "AO", "keys:own": "AOD", "keys:all": "A", "users:manage": "A", "settings:manage": "A",
        "audit:read": "A", "agents:publish": "AD", "metrics:read": "AOD", "security:read": "AO",
    }
    for permission, who in table.items():
        for letter, role in zip("AODU", roles.ROLES, strict=True):
            assert (permission in roles.permissions(role)) == (letter in who), (permission, role)
    assert set(table) == roles.ALL_PERMISSIONS
    assert roles.permissions("nope") == frozenset()


def test_the_auth_settings_read_durations_and_refuse_bad_values(tmp_path) -> None:
    from halguru_server.settings import load_settings

    from halguru.errors import HalguruError

    config = tmp_path / "serve.yaml"
    config.write_text("auth:\n  registration: invite\n  session_idle: 30m\n  session_max_age: 2d\n"
                      "  require_2fa_roles: [admin, operator]\n  oidc:\n    - {name: google, client_id: abc}\n")
    auth = load_settings(config).auth
    assert (auth.registration, auth.session_idle, auth.session_max_age) == ("invite", 1800.0, 172800.0)
    assert auth.require_2fa_roles == ["admin", "operator"] and auth.oidc[0].name == "google"
    assert "s3cret" not in repr(auth.oidc[0].model_copy(update={"client_secret": "s3cret"}))  # not in logs
    for bad, where in [("registration: anyone", "auth.registration"), ("session_idle: soon", "auth.session_idle"),
                       ("require_2fa_roles: [root]", "auth.require_2fa_roles"), ("smtp: {port: 25}", "auth.smtp")]:
        config.write_text(f"auth:\n  {bad}\n")
        with pytest.raises(HalguruError, match=f"invalid serve setting {where}"):
            load_settings(config)


@pytest.mark.parametrize("change", ["demote", "disable"])
def test_two_admins_removing_each_other_at_once_leave_one_admin(store_factory, change: str) -> None:
    """Two admins, each in their own process, demote (or disable) the other at the same moment: one change
    is refused, so the server keeps an enabled admin (both used to pass the check and leave none)."""
    import threading

    first, second = store_factory(), store_factory()
    ann = accounts.create_user(first, "ann@example.com", role="admin")
    bo = accounts.create_user(first, "bo@example.com", role="admin")
    both_read = threading.Barrier(2)
    for store in (first, second):  # both read the users before either writes, as concurrent requests may
        def list_users(read=store.list_users):
            users = read()
            with contextlib.suppress(threading.BrokenBarrierError):
                both_read.wait(timeout=1)
            return users
        store.list_users = list_users
    outcomes: list[str] = []

    def remove(store, user_id: str) -> None:
        try:
            if change == "demote":
                accounts.set_role(store, user_id, "operator")
            else:
                accounts.disable_user(store, user_id)
            outcomes.append("done")
        except AccountError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=remove, args=(first, bo["id"])),
               threading.Thread(target=remove, args=(second, ann["id"]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert outcomes.count("done") == 1 and any("is the last enabled admin" in o for o in outcomes), outcomes
    admins = [u for u in (first.get_user(ann["id"]), first.get_user(bo["id"])) if u["role"] == "admin"
              and not u["disabled"]]
    assert len(admins) == 1
