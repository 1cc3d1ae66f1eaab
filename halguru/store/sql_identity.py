"""Serve mode's people (either backend; see ``sql_base``): users, their linked sign-in identities (OIDC
provider + subject), server-side web sessions, single-use tokens (email verification, password reset,
invites, OIDC state), TOTP recovery codes and the failed-login counters behind lockout.

Only hashes of secrets are stored (session cookies, tokens, recovery codes); password hashing and the rules
(roles, lockout timing, TOTP) live in ``halguru_server.identity``. What must happen once is decided here, in
one statement or one locked transaction: a token is consumed by one caller only, a recovery code is used
once, a TOTP time step is accepted once, and concurrent failed logins all count.

Booleans are stored as integers (0/1) on both backends, so one query serves both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from halguru.store.records import AuthTokenRecord, IdentityRecord, UserRecord, WebSessionRecord
from halguru.store.sql_base import SQLBase, after_position, like_pattern

USER_FIELDS = frozenset({"email", "name", "role", "password_hash", "email_verified", "totp_secret",
                         "totp_enabled", "disabled", "last_login"})
"""What ``update_user`` may set (the lockout and TOTP-step counters have their own atomic methods)."""
_BOOLS = ("email_verified", "totp_enabled", "disabled")
_SESSION_COLUMNS = ("id_hash", "user_id", "csrf", "created", "last_seen", "expires", "mfa_done", "address",
                    "user_agent", "revoked")


def _user(row: Mapping[str, Any]) -> UserRecord:
    record: dict[str, Any] = dict(row)
    for name in _BOOLS:
        record[name] = bool(record[name])
    return UserRecord(**record)  # type: ignore[typeddict-item]


def _session(row: Mapping[str, Any]) -> WebSessionRecord:
    record: dict[str, Any] = dict(row)
    record["mfa_done"] = bool(record["mfa_done"])
    return WebSessionRecord(**record)  # type: ignore[typeddict-item]


def _token(row: Mapping[str, Any]) -> AuthTokenRecord:
    record: dict[str, Any] = dict(row)
    record["data"] = json.loads(record["data"]) if record["data"] else {}
    return AuthTokenRecord(**record)  # type: ignore[typeddict-item]


class LastAdmin(ValueError):
    """The change would take the last enabled admin's role or access away (``update_user(keep_an_admin=True)``)."""


def _db(value: Any) -> Any:
    """A value as both backends store it (booleans as 0/1)."""
    return int(value) if isinstance(value, bool) else value


class IdentityMixin(SQLBase):
    """Users, identities, web sessions, auth tokens and recovery codes."""

    # -- users ---------------------------------------------------------------------------------------
    def create_user(self, user_id: str, email: str | None, name: str, role: str, *,
                    password_hash: str | None = None, email_verified: bool = False) -> UserRecord | None:
        """A new user (``email`` lower-cased); None when another user has that email already."""
        email = email.strip().lower() if email else None
        now = time.time()
        with self._tx() as conn:
            if email:  # as update_user: one writer of an email at a time
                self._lock(conn, "user", f"email:{email}")
            row = conn.execute(
                "INSERT INTO users (id, email, name, role, password_hash, email_verified, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING *",
                (user_id, email, name, role, password_hash, int(email_verified), now)).fetchone()
        return _user(dict(row)) if row else None

    def get_user(self, user_id: str) -> UserRecord | None:
        rows = self._rows("SELECT * FROM users WHERE id = ?", [user_id])
        return _user(rows[0]) if rows else None

    def user_by_email(self, email: str) -> UserRecord | None:
        rows = self._rows("SELECT * FROM users WHERE email = ?", [email.strip().lower()])
        return _user(rows[0]) if rows else None

    def list_users(self, limit: int | None = None, *, after: tuple[float, str] | None = None,
                   text: str | None = None, locked_after: float | None = None) -> list[UserRecord]:
        """Oldest first (``created, id``): all of them, or ``limit`` from ``after`` (the last row's
        ``(created, id)``: a keyset, so a user created between two pages is neither repeated nor skipped).
        ``text``: only those whose email or name holds it (any case); ``locked_after``: only those locked until
        after that time (the console's security page, without reading every account)."""
        clauses, params = after_position(after, "created", "id", oldest_first=True)
        if locked_after is not None:
            clauses.append("locked_until > ?")
            params.append(locked_after)
        if text:
            pattern = like_pattern(text)
            clauses.append(f"({self.FOLD.format('email')} LIKE ? ESCAPE '\\' OR "
                           f"{self.FOLD.format('name')} LIKE ? ESCAPE '\\')")
            params += [pattern, pattern]
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        page = "LIMIT ?" if limit is not None else ""
        rows = self._rows(f"SELECT * FROM users {where}ORDER BY created, id {page}",
                          [*params, *([limit] if limit is not None else [])])
        return [_user(r) for r in rows]

    def count_users(self, role: str | None = None) -> int:
        """How many users (with this role), disabled ones included."""
        sql, params = ("SELECT count(*) AS n FROM users", []) if role is None else \
            ("SELECT count(*) AS n FROM users WHERE role = ?", [role])
        return int(self._rows(sql, params)[0]["n"])

    def update_user(self, user_id: str, *, keep_an_admin: bool = False, **fields: Any) -> bool:
        """Set some of ``USER_FIELDS``; False for an unknown user (or an email another user has: ValueError).
        ``keep_an_admin``: refused with ``LastAdmin`` (nothing changed) when the user is the last enabled admin.
        That check runs in the write's transaction, one such transaction at a time (the ``user`` lock on
        PostgreSQL, the single writer on SQLite): two admins demoting each other at once cannot both pass it."""
        unknown = set(fields) - USER_FIELDS
        if unknown or not fields:
            raise ValueError(f"cannot update user fields {sorted(unknown) or 'none'}")
        if fields.get("email"):
            fields["email"] = str(fields["email"]).strip().lower()
        names = sorted(fields)
        with self._tx() as conn:
            if keep_an_admin:
                self._lock(conn, "user", "admins")
                row = conn.execute("SELECT email, role, disabled FROM users WHERE id = ?", (user_id,)).fetchone()
                if row is not None and row["role"] == "admin" and not row["disabled"] and not conn.execute(
                        "SELECT 1 FROM users WHERE role = 'admin' AND disabled = 0 AND id <> ?", (user_id,)).fetchone():
                    raise LastAdmin(f"{row['email'] or user_id} is the last enabled admin; make another user admin "
                                    "first")
            if fields.get("email"):  # read, then written, under the email's lock: on PostgreSQL two users given
                # one email at once both found it free, and the second failed on the unique index (a 500)
                self._lock(conn, "user", f"email:{fields['email']}")
                taken = conn.execute("SELECT id FROM users WHERE email = ? AND id <> ?",
                                     (fields["email"], user_id)).fetchone()
                if taken:
                    raise ValueError(f"another user has the email {fields['email']}")
            return bool(conn.execute(f"UPDATE users SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
                                     [*(_db(fields[n]) for n in names), user_id]).rowcount)

    def record_login_failure(self, user_id: str, max_failures: int, base_s: float, cap_s: float) -> UserRecord:
        """Count a failed sign-in; from the ``max_failures``-th on the account is locked for
        ``base_s * 2**(failures - max_failures)`` seconds (at most ``cap_s``). Concurrent failures all count."""
        user = self._count_failure(user_id, max_failures, base_s, cap_s, unless_locked=False)
        assert user is not None
        return user

    def claim_login_attempt(self, user_id: str, max_failures: int, base_s: float,
                            cap_s: float) -> UserRecord | None:
        """Count an attempt as a failure before it is checked (a success then clears the count, as
        ``record_login_success``): the user as counted, or None, with nothing counted, while the account is
        locked. Checked and counted in one transaction, so of a burst of concurrent guesses only those counted
        before the lock are let through: reading the lock first and counting after the check let every guess of
        the burst be checked."""
        return self._count_failure(user_id, max_failures, base_s, cap_s, unless_locked=True)

    def release_login_attempt(self, user_id: str) -> None:
        """Take back one attempt ``claim_login_attempt`` counted that turned out right but is not a finished
        sign-in (a password with a second factor to come): the count goes down by one and the lock is lifted (a
        claim passes only when no lock is in force; one that a concurrent failure set meanwhile comes back with
        the next failure, the count being past the limit still)."""
        with self._tx() as conn:
            self._lock(conn, "user", user_id)
            conn.execute("UPDATE users SET failed_logins = CASE WHEN failed_logins > 0 THEN failed_logins - 1 "
                         "ELSE 0 END, locked_until = NULL WHERE id = ?", (user_id,))

    def _count_failure(self, user_id: str, max_failures: int, base_s: float, cap_s: float, *,
                       unless_locked: bool) -> UserRecord | None:
        now = time.time()
        with self._tx() as conn:
            self._lock(conn, "user", user_id)
            row = conn.execute(f"SELECT failed_logins, locked_until FROM users WHERE id = ?{self.FOR_UPDATE}",
                               (user_id,)).fetchone()
            if unless_locked and row and row[1] is not None and float(row[1]) > now:
                return None
            failures = (int(row[0]) if row else 0) + 1
            locked = None
            if failures >= max_failures:
                locked = now + min(cap_s, base_s * 2 ** min(failures - max_failures, 30))
            conn.execute("UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?",
                         (failures, locked, user_id))
        user = self.get_user(user_id)
        if user is None:
            raise KeyError(user_id)
        return user

    def record_login_success(self, user_id: str) -> None:
        """A successful sign-in: the failure count and lock cleared, ``last_login`` now."""
        with self._tx() as conn:
            conn.execute("UPDATE users SET failed_logins = 0, locked_until = NULL, last_login = ? WHERE id = ?",
                         (time.time(), user_id))

    def unlock_user(self, user_id: str) -> bool:
        with self._tx() as conn:
            return bool(conn.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?",
                                     (user_id,)).rowcount)

    def use_totp_step(self, user_id: str, step: int) -> bool:
        """Accept a TOTP code of time step ``step`` once: False if this step (or a later one) was used already,
        so a code cannot be replayed within its window."""
        with self._tx() as conn:
            return bool(conn.execute("UPDATE users SET totp_last = ? WHERE id = ? "
                                     "AND (totp_last IS NULL OR totp_last < ?)", (step, user_id, step)).rowcount)

    def set_totp(self, user_id: str, secret: str | None, enabled: bool) -> None:
        """Set (or clear, with None) the TOTP secret; the used-step counter starts again."""
        with self._tx() as conn:
            conn.execute("UPDATE users SET totp_secret = ?, totp_enabled = ?, totp_last = NULL WHERE id = ?",
                         (secret, int(enabled), user_id))

    # -- identities (OIDC provider + subject -> user) -------------------------------------------------
    def link_identity(self, provider: str, subject: str, user_id: str, email: str | None = None) -> bool:
        """Link (provider, subject) to the user; False when it is linked already (to anyone)."""
        with self._tx() as conn:
            return bool(conn.execute(
                "INSERT INTO identities (provider, subject, user_id, email, created) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING", (provider, subject, user_id, email, time.time())).rowcount)

    def get_identity(self, provider: str, subject: str) -> IdentityRecord | None:
        rows = self._rows("SELECT * FROM identities WHERE provider = ? AND subject = ?", [provider, subject])
        return IdentityRecord(**rows[0]) if rows else None  # type: ignore[typeddict-item]

    def set_identity_email(self, provider: str, subject: str, email: str | None) -> bool:
        """Record the email the provider now gives for this identity; False when it is not linked."""
        with self._tx() as conn:
            return bool(conn.execute("UPDATE identities SET email = ? WHERE provider = ? AND subject = ?",
                                     (email, provider, subject)).rowcount)

    def list_identities(self, user_id: str) -> list[IdentityRecord]:
        return [IdentityRecord(**r) for r in  # type: ignore[typeddict-item]
                self._rows("SELECT * FROM identities WHERE user_id = ? ORDER BY created", [user_id])]

    def unlink_identity(self, provider: str, subject: str) -> bool:
        with self._tx() as conn:
            return bool(conn.execute("DELETE FROM identities WHERE provider = ? AND subject = ?",
                                     (provider, subject)).rowcount)

    # -- web sessions ---------------------------------------------------------------------------------
    def create_web_session(self, session: WebSessionRecord) -> None:
        names = list(_SESSION_COLUMNS)
        with self._tx() as conn:
            conn.execute(f"INSERT INTO web_sessions ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                         [_db(session[n]) for n in names])  # type: ignore[literal-required]

    def get_web_session(self, id_hash: str) -> WebSessionRecord | None:
        rows = self._rows("SELECT * FROM web_sessions WHERE id_hash = ?", [id_hash])
        return _session(rows[0]) if rows else None

    def touch_web_session(self, id_hash: str, last_seen: float, *, mfa_done: bool | None = None) -> bool:
        """Record activity (and, given, that the second factor was passed); False for a revoked session."""
        extra, params = ("", []) if mfa_done is None else (", mfa_done = ?", [int(mfa_done)])
        with self._tx() as conn:
            return bool(conn.execute(f"UPDATE web_sessions SET last_seen = ?{extra} WHERE id_hash = ? "
                                     "AND revoked IS NULL", [last_seen, *params, id_hash]).rowcount)

    def list_web_sessions(self, user_id: str) -> list[WebSessionRecord]:
        """The user's sessions not revoked nor past their absolute expiry, newest activity first."""
        return [_session(r) for r in self._rows(
            "SELECT * FROM web_sessions WHERE user_id = ? AND revoked IS NULL AND expires > ? "
            "ORDER BY last_seen DESC", [user_id, time.time()])]

    def revoke_web_sessions(self, user_id: str | None = None, id_hashes: Sequence[str] = (), *,
                            keep: str | None = None) -> int:
        """Revoke the sessions ``id_hashes`` (of ``user_id`` when given), or with no ``id_hashes`` every
        session of ``user_id`` but ``keep``; how many."""
        clauses: list[str] = ["revoked IS NULL"]
        params: list[Any] = [time.time()]
        if user_id is not None:
            clauses.append("user_id = ?")
            params.append(user_id)
        if id_hashes:
            clauses.append(f"id_hash IN ({','.join('?' * len(id_hashes))})")
            params.extend(id_hashes)
        elif user_id is None:
            return 0
        if keep is not None:
            clauses.append("id_hash <> ?")
            params.append(keep)
        with self._tx() as conn:
            return int(conn.execute(f"UPDATE web_sessions SET revoked = ? WHERE {' AND '.join(clauses)}",
                                    params).rowcount)

    def prune_web_sessions(self, before: float) -> int:
        """Delete sessions (and auth tokens) that expired or were revoked before ``before``; how many sessions."""
        with self._tx() as conn:
            conn.execute("DELETE FROM auth_tokens WHERE expires < ?", (before,))
            return int(conn.execute("DELETE FROM web_sessions WHERE expires < ? OR revoked < ?",
                                    (before, before)).rowcount)

    # -- single-use tokens ----------------------------------------------------------------------------
    def create_auth_token(self, token_hash: str, purpose: str, user_id: str | None,
                          data: Mapping[str, Any] | None, expires: float) -> None:
        """A new single-use token; a row already stored under ``token_hash`` is kept as it is (random tokens
        never meet one; a token derived from something else, such as a session, is made once)."""
        with self._tx() as conn:
            conn.execute("INSERT INTO auth_tokens (token_hash, purpose, user_id, data, created, expires) "
                         "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         (token_hash, purpose, user_id, json.dumps(dict(data or {})), time.time(), expires))

    def get_auth_token(self, token_hash: str, purpose: str) -> AuthTokenRecord | None:
        rows = self._rows("SELECT * FROM auth_tokens WHERE token_hash = ? AND purpose = ? AND used IS NULL "
                          "AND expires > ?", [token_hash, purpose, time.time()])
        return _token(rows[0]) if rows else None

    def consume_auth_token(self, token_hash: str, purpose: str) -> AuthTokenRecord | None:
        """The token, marked used, if it has this purpose, is unused and unexpired; else None. One statement:
        of concurrent callers exactly one gets it."""
        now = time.time()
        with self._tx() as conn:
            row = conn.execute("UPDATE auth_tokens SET used = ? WHERE token_hash = ? AND purpose = ? "
                               "AND used IS NULL AND expires > ? RETURNING *",
                               (now, token_hash, purpose, now)).fetchone()
        return _token(dict(row)) if row else None

    def revoke_auth_tokens(self, user_id: str, purpose: str) -> int:
        """Mark the user's unused tokens of ``purpose`` used (a newer reset link voids the older ones)."""
        with self._tx() as conn:
            now = time.time()
            return int(conn.execute("UPDATE auth_tokens SET used = ? WHERE user_id = ? AND purpose = ? "
                                    "AND used IS NULL AND expires > ?", (now, user_id, purpose, now)).rowcount)

    # -- recovery codes -------------------------------------------------------------------------------
    def set_recovery_codes(self, user_id: str, code_hashes: Sequence[str]) -> None:
        """Replace the user's recovery codes (an empty list removes them). One replacement at a time (the ``user``
        lock): on PostgreSQL each deleted only the codes it saw, and two at once left both sets valid."""
        with self._tx() as conn:
            self._lock(conn, "user", user_id)
            conn.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
            conn.executemany("INSERT INTO recovery_codes (user_id, code_hash, created) VALUES (?, ?, ?)",
                             [(user_id, h, time.time()) for h in code_hashes])

    def use_recovery_code(self, user_id: str, code_hash: str) -> bool:
        """Use one of the user's unused codes; False if it is not one (or was used)."""
        with self._tx() as conn:
            return bool(conn.execute("UPDATE recovery_codes SET used = ? WHERE user_id = ? AND code_hash = ? "
                                     "AND used IS NULL", (time.time(), user_id, code_hash)).rowcount)

    def recovery_codes_left(self, user_id: str) -> int:
        return int(self._rows("SELECT count(*) AS n FROM recovery_codes WHERE user_id = ? AND used IS NULL",
                              [user_id])[0]["n"])
