"""`halguru users`: bootstrap the first admin, list, change roles, disable, reset 2FA; one-line errors."""

from __future__ import annotations

from halguru_server.identity import accounts
from halguru_server.identity.settings import AuthSettings

from halguru.store import open_store


def test_create_the_first_admin_with_a_prompted_password_and_sign_in(cli, monkeypatch) -> None:
    from halguru_server import users_cli

    monkeypatch.setattr(users_cli, "_interactive", lambda: True)  # a terminal (CliRunner's stdin is not one)
    result = cli("users", "create", "Root@Example.com", "--role", "admin", "--name", "Root",
                 input="correct horse battery\ncorrect horse battery\n")
    assert "created with role admin" in result.output
    user = accounts.authenticate(open_store(), "root@example.com", "correct horse battery", AuthSettings())
    assert (user["role"], user["name"], user["email_verified"]) == ("admin", "Root", True)
    cli("users", "create", "dev@example.com", "--role", "developer", "--password-stdin",
        input="another long password\n")
    cli("users", "create", "sso@example.com", "--no-password")
    listing = cli("users", "list").stdout
    assert "root@example.com" in listing and "developer" in listing and "sso@example.com" in listing
    assert "correct horse" not in listing and "argon2" not in listing


def test_roles_disable_and_2fa_reset(cli) -> None:
    store = open_store()
    user = accounts.create_user(store, "ann@example.com", password="correct horse")
    assert "is now operator" in cli("users", "set-role", "ann@example.com", "operator").stdout
    assert store.get_user(user["id"])["role"] == "operator"
    accounts.totp_begin(store, user["id"])
    store.set_totp(user["id"], store.get_user(user["id"])["totp_secret"], enabled=True)
    cli("users", "reset-2fa", user["id"])
    assert not store.get_user(user["id"])["totp_enabled"]
    cli("users", "disable", "ann@example.com")
    assert store.get_user(user["id"])["disabled"]
    assert "disabled" in cli("users", "list").stdout
    cli("users", "disable", "ann@example.com", "--enable")
    assert not store.get_user(user["id"])["disabled"]
    for _ in range(5):
        store.record_login_failure(user["id"], 5, 60, 900)
    assert "locked" in cli("users", "list").stdout
    assert "unlocked" in cli("users", "unlock", "ann@example.com").stdout
    assert "active" in cli("users", "list").stdout and store.get_user(user["id"])["locked_until"] is None
    import json

    [listed] = json.loads(cli("users", "list", "--json").stdout)  # scripts read it; no secret in it
    assert (listed["email"], listed["role"], listed["state"]) == ("ann@example.com", "operator", "active")
    assert not {"password_hash", "totp_secret", "totp_last"} & set(listed)


def test_keys_can_belong_to_a_user(cli) -> None:
    user = accounts.create_user(open_store(), "dev@example.com", role="developer")
    result = cli("keys", "create", "laptop", "--user", "dev@example.com")
    assert "key " in result.output and " (laptop) created for dev@example.com, acting as them (role developer);" \
        in result.output
    accounts.create_user(open_store(), "boss@example.com", role="admin")
    capped = cli("keys", "create", "ci", "--user", "boss@example.com").output
    assert ("created for boss@example.com, acting as them with at most a developer's permissions (their role: "
            "admin; --admin gives it all of theirs);") in capped
    assert "created for boss@example.com, acting as them (role admin);" in cli(
        "keys", "create", "root", "--user", "boss@example.com", "--admin").output
    assert open_store().list_keys(user["id"])[0]["name"] == "laptop"
    assert user["id"] in cli("keys", "list").stdout


def test_bad_input_is_one_line(cli_error) -> None:
    assert cli_error("users", "create", "not-an-email", "--no-password") == \
        "Error: invalid email address 'not-an-email'"
    assert cli_error("users", "invite", "bo\u200b@example.com") == \
        "Error: invalid email address 'bo\\u200b@example.com'"  # a zero-width space: refused, and shown
    assert "unknown role 'root'" in cli_error("users", "create", "a@example.com", "--role", "root", "--no-password")
    assert "at least 10 characters" in cli_error("users", "create", "a@example.com", "--password-stdin",
                                                 input="short\n")
    assert "no user 'x@example.com'" in cli_error("users", "set-role", "x@example.com", "admin")
    assert "no user" in cli_error("users", "disable", "usr_nobody")
    assert "no user" in cli_error("users", "reset-2fa", "x@example.com")
    assert "no user" in cli_error("keys", "create", "k", "--user", "x@example.com")


def test_create_without_a_terminal_says_how_to_give_the_password(cli, cli_error) -> None:
    """`halguru users create you@example.com --role admin < /dev/null`: one line, no GetPassWarning."""
    assert cli_error("users", "create", "you@example.com", "--role", "admin") == \
        "Error: no terminal to ask for a password: pipe it in with --password-stdin (one line), or pass --no-password"
    assert cli("users", "list").stdout.startswith("no users")  # nothing created
    cli("users", "create", "you@example.com", "--role", "admin", "--password-stdin", input="correct horse battery\n")
    assert "you@example.com" in cli("users", "list").stdout
