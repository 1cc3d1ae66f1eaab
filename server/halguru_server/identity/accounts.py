"""Users and how they prove who they are: argon2 passwords (argon2-cffi), TOTP (pyotp) with one-time
recovery codes, lockout after failed attempts, and single-use tokens for mail links. The store keeps the rows;
this module holds the rules. The CLI (`halguru users`), the local sign-in pages and OIDC all come through here.

Answers never tell an attacker whether an email has an account: a failed sign-in says the same for an unknown
email, a wrong password, a disabled or a locked account, and takes about as long (an argon2 hash either way).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
import unicodedata
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from halguru.errors import HalguruError
from halguru.store.base import Store
from halguru.store.records import AuthTokenRecord, UserRecord, WebSessionRecord
from halguru.store.sql_identity import LastAdmin
from halguru_server.identity.roles import check_role

if TYPE_CHECKING:
    from argon2 import PasswordHasher

    from halguru_server.identity.settings import AuthSettings

MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte of "password" is a denial of service
RECOVERY_CODES = 10
TOTP_ISSUER = "halguru"
KNOWN_BROWSER = "known_browser"
"""The ``auth_tokens`` purpose of a browser that signed in to an account (``remember_browser``)."""
KNOWN_BROWSER_TTL = 180 * 86400.0
ENROLMENT = "totp_enrolment"
"""The ``auth_tokens`` purpose of a browser's pending TOTP secret (``enrolment_secret``)."""
RUNS = ("abcdefghijklmnopqrstuvwxyz", "01234567890", "qwertyuiopasdfghjklzxcvbnm", "qwertzuiop", "azertyuiop",
        "1q2w3e4r5t6y7u8i9o0p", "1qaz2wsx3edc4rfv5tgb")
"""Runs a password may not be a piece of (either way round)."""
COMMON_PASSWORDS = frozenset({
    "password123", "password1234", "password12", "passw0rd123", "1234567890a", "iloveyou123", "welcome123",
    "welcome1234", "letmein123", "changeme123", "administrator", "admin12345", "admin123456", "qwerty12345",
    "qwerty123456", "football123", "princess123", "sunshine123", "superman123", "trustno1234", "monkey12345",
    "dragon12345", "baseball123", "starwars123", "halguru123", "halguru1234", "p@ssw0rd123", "password!23",
    "passwordpassword", "qwertyqwerty", "iloveyouiloveyou", "1234512345", "1234567890123",
})
"""Common passwords of ``MIN_PASSWORD`` or more characters (lower-cased), from the top of public breach lists."""
SIGN_IN_FAILED = "wrong email or password, or too many attempts: wait a minute and try again"


class AccountError(HalguruError):
    """Bad input about an account (one line, safe to show to the person who gave it)."""


class SignInFailed(AccountError):
    """The one answer for every failed password sign-in (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(SIGN_IN_FAILED)


# -- users -------------------------------------------------------------------------------------------------
def new_user_id() -> str:
    return f"usr_{secrets.token_hex(8)}"


def create_user(store: Store, email: str | None, *, role: str = "user", name: str = "",
                password: str | None = None, email_verified: bool = False) -> UserRecord:
    """A new user; ``password`` (checked by ``check_password``) is stored as an argon2 hash."""
    try:
        check_role(role)
    except ValueError as exc:
        raise AccountError(str(exc)) from None
    if email is not None:
        email = check_email(email)
    hashed = hash_password(check_password(password, email)) if password is not None else None
    user = store.create_user(new_user_id(), email, name.strip()[:200], role, password_hash=hashed,
                             email_verified=email_verified)
    if user is None:
        raise AccountError(f"a user with the email {email} exists already")
    return user


def check_email(email: str) -> str:
    """The email, trimmed, lower-cased and in Unicode's compatibility form (NFKC), if it looks like one (the mail
    link proves it is theirs). Letters written in another width or style (``ｃy@example.com``) are the address
    they look like, so they cannot make a second account that reads as the first; an address holding characters
    that show as nothing or reorder the text (controls, zero-width and direction marks, soft hyphens) is
    refused."""
    email = unicodedata.normalize("NFKC", email.strip()).lower()
    local, _, domain = email.partition("@")
    if (not local or "." not in domain or len(email) > 254
            or any(c.isspace() or unicodedata.category(c) in _INVISIBLE for c in email)):
        raise AccountError(f"invalid email address {email!r}")
    return email


_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


def find_user(store: Store, id_or_email: str) -> UserRecord:
    """The user with this id or email; AccountError when there is none."""
    user = store.get_user(id_or_email) if id_or_email.startswith("usr_") else store.user_by_email(id_or_email)
    if user is None:
        raise AccountError(f"no user {id_or_email!r}; see `halguru users list`")
    return user


def list_users(store: Store) -> list[UserRecord]:
    return store.list_users()


def set_role(store: Store, id_or_email: str, role: str) -> UserRecord:
    """Change a user's role; their keys have the new role's permissions at their next request, and their
    browsers are signed out (signing in again asks for the second factor when the new role requires it)."""
    try:
        check_role(role)
    except ValueError as exc:
        raise AccountError(str(exc)) from None
    user = find_user(store, id_or_email)
    if role != user["role"]:
        _update_keeping_an_admin(store, user, role=role)
        store.revoke_web_sessions(user["id"])
    return {**user, "role": role}


def _update_keeping_an_admin(store: Store, user: UserRecord, **fields: Any) -> None:
    """Change the user's role or state, refused when it would take the last enabled admin's role or access away:
    nobody could manage users after it (a key made with `keys create --admin` belongs to no user and could,
    unnoticed, leave a server without one). The store checks and writes in one transaction, so two admins
    demoting each other at once cannot both pass the check."""
    try:
        store.update_user(user["id"], keep_an_admin=fields.get("role", "admin") != "admin" or bool(
            fields.get("disabled")), **fields)
    except LastAdmin as exc:
        raise AccountError(str(exc)) from None


def enforce_2fa_roles(store: Store, settings: AuthSettings) -> int:
    """Sign out the browsers of users whose role requires 2FA but who have none (the setting grew since they
    signed in): their next sign-in makes them enrol. How many users that was."""
    roles = set(settings.require_2fa_roles)
    users = [u for u in store.list_users() if u["role"] in roles and not u["totp_enabled"]]
    return sum(store.revoke_web_sessions(u["id"]) > 0 for u in users)


def disable_user(store: Store, id_or_email: str, disabled: bool = True) -> UserRecord:
    """Disable (or enable) a user: a disabled user's sessions are revoked and their keys stop working."""
    user = find_user(store, id_or_email)
    _update_keeping_an_admin(store, user, disabled=disabled)
    if disabled:
        store.revoke_web_sessions(user["id"])
    return {**user, "disabled": disabled}


def unlock(store: Store, id_or_email: str) -> UserRecord:
    """End a user's sign-in lock (too many wrong passwords or codes) and its count: anyone who knows an address
    can keep its account locked, so an admin can let its owner in (so does a finished password reset)."""
    user = find_user(store, id_or_email)
    store.unlock_user(user["id"])
    return {**user, "locked_until": None, "failed_logins": 0}


def take_over_unconfirmed(store: Store, user: UserRecord) -> UserRecord:
    """Give an account whose email was never confirmed to the person who just proved the address (a verified
    OIDC sign-in). Anyone can register any address, so what they set goes: the password, a second factor,
    sessions, keys and pending mail links; the address is then confirmed."""
    store.update_user(user["id"], email_verified=True, password_hash=None)
    store.set_totp(user["id"], None, enabled=False)
    store.set_recovery_codes(user["id"], [])
    store.revoke_web_sessions(user["id"])
    store.revoke_keys([key["id"] for key in store.list_keys(user["id"])])
    for purpose in ("verify", "reset"):
        store.revoke_auth_tokens(user["id"], purpose)
    return {**user, "email_verified": True, "password_hash": None, "totp_enabled": False, "totp_secret": None}


# -- passwords ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


def check_password(password: str | None, email: str | None = None) -> str:
    """The password if it is acceptable: long enough, not absurdly long, and not one that is tried first (NIST
    SP 800-63B 3.1.1.2: one character repeated, a run of the keyboard or alphabet, a common password, the account's
    own email or its name part)."""
    if password is None or len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"a password has at most {MAX_PASSWORD} characters")
    plain = password.strip().lower()
    own = {email.strip().lower(), email.strip().lower().partition("@")[0]} if email else set()
    if len(set(plain)) <= 2 or plain in own or plain in COMMON_PASSWORDS or any(
            plain in run or plain in run[::-1] for run in RUNS):
        raise AccountError("that password is among the first ones tried (a repeat, a keyboard run, a common one or "
                           "your email): choose another, e.g. a few unrelated words")
    return password


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(store: Store, user: UserRecord, password: str) -> bool:
    """Whether ``password`` is the user's; a hash made with older parameters is replaced (rehash)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    stored = user["password_hash"]
    if not stored or len(password) > MAX_PASSWORD:
        _spend_hash_time(password)
        return False
    try:
        _hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
    if _hasher().check_needs_rehash(stored):
        store.update_user(user["id"], password_hash=hash_password(password))
    return True


def _spend_hash_time(password: str) -> None:
    """As long as a real check, so timing does not tell which emails have accounts."""
    from argon2.exceptions import VerificationError

    with contextlib.suppress(VerificationError):
        _hasher().verify(_dummy_hash(), password[:MAX_PASSWORD])


def providers_only(store: Store, user: UserRecord) -> list[str]:
    """The OIDC providers an account signs in through when it has no password of its own, else []. Such an
    account gets no password by a reset link: its provider decides who signs in (its second factor, a person it
    removed, ``allowed_domains`` and ``allowed_tenants``), and a mailbox alone would get past all of that."""
    if user["password_hash"]:
        return []
    return sorted({identity["provider"] for identity in store.list_identities(user["id"])})


def set_password(store: Store, user_id: str, password: str) -> None:
    """A new password; earlier reset links stop working."""
    user = store.get_user(user_id)
    store.update_user(user_id, password_hash=hash_password(check_password(password, user["email"] if user else None)))
    store.revoke_auth_tokens(user_id, "reset")
    store.revoke_auth_tokens(user_id, KNOWN_BROWSER)  # a thief's browser keeps no tries past a lock


def authenticate(store: Store, email: str, password: str, settings: AuthSettings,
                 known_browser: str | None = None) -> UserRecord:
    """The user whose email and password these are, not disabled nor locked; else ``SignInFailed`` (the same
    for every reason). A failure counts towards the lockout; while the account is locked, a browser that signed
    in to it before (``known_browser``, its ``remember_browser`` token) still gets tries of its own. A success
    clears the count only when no second factor follows (``needs_2fa``): otherwise the caller clears it once the
    code is right, so that signing in with a known password again and again never resets the count of wrong
    codes."""
    user = store.user_by_email(email) if email and "@" in email else None
    if user is None:
        _spend_hash_time(password)
        raise SignInFailed()
    # counted before it is checked, in one transaction with the lock: concurrent guesses (from many addresses,
    # past the per-address limit) get no more checks than the lockout allows
    counted = store.claim_login_attempt(user["id"], settings.login_max_failures, settings.lockout_base,
                                        settings.lockout_max) is not None
    if not counted and not known_browser_try(store, user, settings, known_browser):
        _spend_hash_time(password)  # locked, not even checked: guessing while locked learns nothing
        raise SignInFailed()
    if not verify_password(store, user, password) or user["disabled"]:
        raise SignInFailed()
    if needs_2fa(user, settings):
        if counted:  # a known browser's try past a lock counted nothing; its code step is its own try too
            store.release_login_attempt(user["id"])
    else:
        store.record_login_success(user["id"])
    return user


def known_browser_try(store: Store, user: UserRecord, settings: AuthSettings, known_browser: str | None) -> bool:
    """Whether a sign-in attempt (password or code) of a locked account may be checked all the same: the lock,
    which anyone who knows the email can set, does not keep out the browsers its owner signed in with before;
    such a browser gets ``login_max_failures`` tries of its own every ``lockout_max`` while the lock lasts."""
    if not known_browser or not _known(store, user["id"], known_browser):
        return False
    return store.rate_hit(f"known_browser:{token_hash(known_browser)}", settings.login_max_failures,
                          settings.lockout_max) is None


def remember_browser(store: Store, user_id: str, token: str | None) -> str | None:
    """After a complete sign-in: a new known-browser token for the browser's cookie, or None when the token it
    sent is this user's already (``KNOWN_BROWSER_TTL``; a new password forgets them all)."""
    if token and _known(store, user_id, token):
        return None
    return issue_token(store, KNOWN_BROWSER, user_id, KNOWN_BROWSER_TTL)


def _known(store: Store, user_id: str, token: str) -> bool:
    found = peek_token(store, token, KNOWN_BROWSER)
    return found is not None and found["user_id"] == user_id


# -- second factor (TOTP and recovery codes) --------------------------------------------------------------------
def needs_2fa(user: UserRecord, settings: AuthSettings) -> bool:
    """Whether signing in takes a second factor: the user enabled TOTP, or their role requires it (then a user
    without TOTP must enrol before using anything)."""
    return user["totp_enabled"] or user["role"] in settings.require_2fa_roles


def totp_begin(store: Store, user_id: str) -> str:
    """A new TOTP secret for the user, not enabled until ``totp_confirm`` sees a code from it (the shell and
    tests; a browser enrols through ``enrolment_secret``, a secret of its session's own)."""
    import pyotp

    secret = pyotp.random_base32()
    store.set_totp(user_id, secret, enabled=False)
    return secret


def enrolment_secret(store: Store, user_id: str, session: WebSessionRecord) -> str:
    """The TOTP secret this browser's enrolment shows: its session's own (kept while the session lives, so a
    reload shows the same one), new when it has none. Another session of the account (a stolen cookie) never
    sees it, so it cannot learn the second factor its owner is about to turn on (``enrolment_confirm``)."""
    import pyotp

    key = _enrolment_key(session)
    row = store.get_auth_token(key, ENROLMENT)
    if row is None:
        # two page loads of the same browser at once: the first one's secret stays (create keeps a stored row)
        store.create_auth_token(key, ENROLMENT, user_id, {"secret": pyotp.random_base32()}, session["expires"])
        row = store.get_auth_token(key, ENROLMENT)
    if row is None or row["user_id"] != user_id or not isinstance(row["data"].get("secret"), str):
        raise AccountError("two-factor enrolment could not start; reload the page")
    return str(row["data"]["secret"])


def enrolment_confirm(store: Store, user_id: str, session: WebSessionRecord, code: str) -> list[str]:
    """Turn TOTP on with the secret this session's enrolment showed (``enrolment_secret``) and a code from it;
    the new recovery codes. AccountError for a wrong code or no enrolment begun in this session."""
    key = _enrolment_key(session)
    row = store.get_auth_token(key, ENROLMENT)
    if row is None or row["user_id"] != user_id or not isinstance(row["data"].get("secret"), str):
        raise AccountError("start two-factor enrolment first: reload the page and scan its code")
    store.set_totp(user_id, str(row["data"]["secret"]), enabled=False)
    codes = totp_confirm(store, user_id, code)
    store.consume_auth_token(key, ENROLMENT)
    return codes


def _enrolment_key(session: WebSessionRecord) -> str:
    return token_hash(f"totp-enrolment:{session['id_hash']}")


def provisioning_uri(user: UserRecord, secret: str, issuer: str = TOTP_ISSUER) -> str:
    """The ``otpauth://`` URI an authenticator app scans."""
    import pyotp

    return pyotp.TOTP(secret).provisioning_uri(name=user["email"] or user["id"], issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as an SVG QR code (inline in a page: no image request, no third party)."""
    import io

    import qrcode
    import qrcode.image.svg

    buffer = io.BytesIO()
    qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage).save(buffer)
    return buffer.getvalue().decode()


def totp_confirm(store: Store, user_id: str, code: str) -> list[str]:
    """Enable TOTP once the user shows a valid code from the new secret; their new recovery codes (shown
    once). AccountError for a wrong code or no secret begun."""
    user = store.get_user(user_id)
    if user is None or not user["totp_secret"]:
        raise AccountError("start two-factor enrolment first")
    if not _totp_ok(store, user, code):
        raise AccountError("that code is not right; check the authenticator app's time and try the next one")
    store.set_totp(user_id, user["totp_secret"], enabled=True)
    store.use_totp_step(user_id, _step(time.time()))  # the code just shown cannot sign in as well
    return new_recovery_codes(store, user_id)


def _step(at: float) -> int:
    return int(at // 30)


def _totp_ok(store: Store, user: UserRecord, code: str) -> bool:
    """A code of the previous, current or next 30 s step (``valid_window=1``), accepted once per step."""
    import pyotp

    code = "".join(code.split())
    secret = user["totp_secret"]
    if not secret or len(code) != 6 or not (code.isascii() and code.isdigit()):  # isdigit alone takes '٣'
        return False
    totp, now = pyotp.TOTP(secret), time.time()
    for offset in (-1, 0, 1):
        at = now + offset * totp.interval
        if hmac.compare_digest(totp.at(at), code):
            return store.use_totp_step(user["id"], _step(at))
    return False


def verify_totp(store: Store, user: UserRecord, code: str) -> bool:
    """An enabled TOTP's code, not used before."""
    return user["totp_enabled"] and _totp_ok(store, user, code)


def _code_hash(code: str) -> str:
    # Recovery codes are 50 random bits each, so a plain hash is enough (and lets the store use one atomically).
    return hashlib.sha256("".join(code.lower().split()).replace("-", "").encode()).hexdigest()


def new_recovery_codes(store: Store, user_id: str) -> list[str]:
    """Ten new one-time codes (the old ones stop working); shown once, stored hashed."""
    import base64

    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(7)).decode().lower()[:10]
        codes.append(f"{raw[:5]}-{raw[5:]}")
    store.set_recovery_codes(user_id, [_code_hash(c) for c in codes])
    return codes


def use_recovery_code(store: Store, user: UserRecord, code: str) -> bool:
    """Spend one recovery code (each works once)."""
    return store.use_recovery_code(user["id"], _code_hash(code))


def verify_second_factor(store: Store, user: UserRecord, code: str) -> str | None:
    """A TOTP code or, failing that, a recovery code: which one passed (``totp``, ``recovery_code``), or None.
    The caller counts a failure towards the lockout (``store.record_login_failure``) and a success clears it
    (``store.record_login_success``)."""
    if verify_totp(store, user, code):
        return "totp"
    return "recovery_code" if use_recovery_code(store, user, code) else None


def reset_2fa(store: Store, id_or_email: str) -> UserRecord:
    """Remove the user's TOTP and recovery codes (a lost phone; `halguru users reset-2fa`); their sessions are
    revoked, so the next sign-in asks them to enrol again when their role requires it."""
    user = find_user(store, id_or_email)
    store.set_totp(user["id"], None, enabled=False)
    store.set_recovery_codes(user["id"], [])
    store.revoke_web_sessions(user["id"])
    return {**user, "totp_enabled": False, "totp_secret": None}


# -- single-use tokens (mail links, invites, OIDC state) -----------------------------------------------------
def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(store: Store, purpose: str, user_id: str | None, ttl: float,
                data: dict[str, Any] | None = None) -> str:
    """A new random token for ``purpose``, valid ``ttl`` seconds, usable once (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    store.create_auth_token(token_hash(token), purpose, user_id, data, time.time() + ttl)
    return token


def peek_token(store: Store, token: str, purpose: str) -> AuthTokenRecord | None:
    """The token's record, if it is valid for ``purpose``, not used up (``consume_token`` does that)."""
    if not token or len(token) > 200:
        return None
    return store.get_auth_token(token_hash(token), purpose)


def consume_token(store: Store, token: str, purpose: str) -> AuthTokenRecord | None:
    """The token's record, if it is valid for ``purpose``; it is then used up (one caller only)."""
    if not token or len(token) > 200:
        return None
    return store.consume_auth_token(token_hash(token), purpose)
