"""OIDC sign-in (authorization code flow with PKCE): provider discovery, the flow's single-use state, ID-token
verification, and the account a verified sign-in belongs to.

Providers are the ``auth.oidc`` list (``identity.settings.OidcProvider``): ``name: google`` (issuer
https://accounts.google.com), ``name: entra`` or any provider with a ``tenant`` (Microsoft Entra ID, issuer
https://login.microsoftonline.com/<tenant>/v2.0; ``common``/``organizations`` accept any tenant, whose id the
token's ``iss`` carries), and anything else by ``issuer`` (its discovery document).

Why each check exists: ``state`` is stored hashed and consumed once (no replayed callback), bound to the browser
that started the flow by a cookie (no login CSRF: an attacker's code cannot sign a victim into the attacker's
account), checked before the state is spent (a link scanner's visit leaves the sign-in to its browser); the
``nonce`` ties the ID token to that one flow (no replayed token); PKCE (S256) makes a stolen code useless. The ID
token's signature is checked against the provider's JWKS, with only the asymmetric algorithms the provider
advertises (never ``none``, never HMAC: an HS256 token "signed" with the public key is forged by anyone), and
``iss``, ``aud``/``azp``, ``exp``/``iat`` (60 s leeway) and ``nonce`` are checked before any account is touched.
Accounts are linked by (provider, ``sub``); by email only when the provider says it is verified and the operator
allows it (``link_by_email``), since an unverified email is whatever the person typed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from halguru import audit
from halguru.channels.email import is_loopback
from halguru_server.identity import accounts

if TYPE_CHECKING:
    from joserfc.jwk import Key

    from halguru.store.base import Store
    from halguru.store.records import UserRecord
    from halguru_server.identity.settings import AuthSettings, OidcProvider

log = logging.getLogger("halguru.server.oidc")

GOOGLE_ISSUER = "https://accounts.google.com"  # its tokens may also say plain "accounts.google.com"
ENTRA_ISSUER = "https://login.microsoftonline.com/{tenant}/v2.0"
TENANT_PLACEHOLDER = "{tenantid}"
"""Entra's multi-tenant discovery names its issuer with this placeholder; a token's ``iss`` has the real ``tid``."""
PURPOSE = "oidc"
FLOW_TTL = 600.0  # a sign-in started longer ago than this must start again
LEEWAY = 60  # seconds of clock skew accepted on exp, iat and nbf
METADATA_TTL = 3600.0
HTTP_TIMEOUT = 10.0
KEY_TYPES = {"RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
             "ES256": "EC", "ES384": "EC", "ES512": "EC", "EdDSA": "OKP"}
"""The ID-token algorithms accepted at all (asymmetric only) and the key type each needs."""
_TENANT = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_ENTRA = re.compile(r"https://login\.microsoftonline\.com/[A-Za-z0-9._{}-]{1,100}/v2\.0")


class OidcError(Exception):
    """A refused sign-in: one line, safe to show (never a token, a key or a stack)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class Metadata:
    """What a sign-in needs of a provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]  # advertised and asymmetric, in the provider's order
    auth_methods: tuple[str, ...]  # token_endpoint_auth_methods_supported


# -- providers and discovery ------------------------------------------------------------------------------------
def provider(settings: AuthSettings, name: str) -> OidcProvider:
    """The configured provider called ``name``; 404 for any other (the name is not echoed back as HTML)."""
    for candidate in settings.oidc:
        if candidate.name == name:
            return candidate
    raise OidcError("no such sign-in provider", 404)


def issuer_url(config: OidcProvider) -> str:
    """The issuer whose discovery document describes this provider (the presets fill it in)."""
    if config.issuer:
        return config.issuer
    if config.name == "google":
        return GOOGLE_ISSUER
    if config.name == "entra" or config.tenant:
        tenant = config.tenant or "organizations"
        if not _TENANT.match(tenant):
            raise OidcError(f"provider {config.name}: tenant must be a directory id or organizations/common", 500)
        return ENTRA_ISSUER.format(tenant=tenant)
    raise OidcError(f"provider {config.name} has no issuer: set auth.oidc[].issuer", 500)


def check_provider(config: OidcProvider) -> None:
    """Refuse at start-up a provider that could never sign anyone in (ValueError: a settings error)."""
    try:
        issuer = issuer_url(config)
    except OidcError as exc:
        raise ValueError(exc.message) from None
    parts = urlsplit(issuer)
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname))):
        raise ValueError(f"provider {config.name}: the issuer must be an https URL (http only on loopback)")


def _check_url(url: object, what: str) -> str:
    """An endpoint the server will call: https, or http on loopback (a provider on this machine)."""
    if not isinstance(url, str):
        raise OidcError(f"the provider's discovery document has no {what}", 502)
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return url
    raise OidcError(f"the provider's {what} is not an https URL", 502)


async def _get_json(url: str, what: str) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as client:
            response = await client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise OidcError(f"the sign-in provider did not answer ({what}: {type(exc).__name__})", 502) from None
    if response.status_code != 200:
        raise OidcError(f"the sign-in provider answered {response.status_code} for its {what}", 502)
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise OidcError(f"the sign-in provider's {what} is not a JSON object", 502)
    return data


_metadata: dict[str, tuple[float, Metadata]] = {}


async def discover(config: OidcProvider) -> Metadata:
    """The provider's discovery document (cached an hour): endpoints, JWKS address, signing algorithms."""
    issuer = _check_url(issuer_url(config), "issuer")
    cached = _metadata.get(issuer)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    doc = await _get_json(issuer.rstrip("/") + "/.well-known/openid-configuration", "discovery document")
    said = doc.get("issuer")
    if not isinstance(said, str) or not _same_issuer(said, issuer):
        raise OidcError(f"the discovery document of {issuer} names another issuer", 502)
    advertised = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = tuple(a for a in advertised if a in KEY_TYPES)
    if not algorithms:
        raise OidcError("the provider signs ID tokens with no algorithm accepted here (RS256, ES256, ...)", 502)
    meta = Metadata(issuer=said, authorization_endpoint=_check_url(doc.get("authorization_endpoint"),
                                                                     "authorization_endpoint"),
                    token_endpoint=_check_url(doc.get("token_endpoint"), "token_endpoint"),
                    jwks_uri=_check_url(doc.get("jwks_uri"), "jwks_uri"), algorithms=algorithms,
                    auth_methods=tuple(doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]))
    _metadata[issuer] = (time.monotonic() + METADATA_TTL, meta)
    return meta


def _same_issuer(said: str, configured: str) -> bool:
    """Discovery must name the issuer it was fetched for. Entra names its tenant by id whatever alias was asked
    (``contoso.onmicrosoft.com``, ``consumers``), and its multi-tenant endpoints name a ``{tenantid}`` template;
    the token's ``iss`` is then checked against what the document said."""
    if said.rstrip("/") == configured.rstrip("/"):
        return True
    if _ENTRA.fullmatch(configured.rstrip("/")):
        return bool(_ENTRA.fullmatch(said.rstrip("/")))
    if TENANT_PLACEHOLDER not in said:
        return False
    prefix, _, suffix = said.partition(TENANT_PLACEHOLDER)
    return configured.startswith(prefix) and configured.endswith(suffix)


def clear_caches() -> None:
    """Forget discovery documents and keys (tests; a provider reconfigured in place)."""
    _metadata.clear()
    _jwks.clear()


# -- keys ---------------------------------------------------------------------------------------------------------
_jwks: dict[str, list[Key]] = {}


async def _keys(uri: str, refresh: bool) -> list[Key]:
    from joserfc.errors import JoseError
    from joserfc.jwk import JWKRegistry

    if not refresh and uri in _jwks:
        return _jwks[uri]
    doc = await _get_json(uri, "key set")
    keys: list[Key] = []
    for data in doc.get("keys") or []:
        if not isinstance(data, dict) or data.get("use") not in (None, "sig") or data.get("kty") == "oct":
            continue  # encryption keys and shared secrets never verify an ID token
        try:
            keys.append(JWKRegistry.import_key(data))
        except (JoseError, ValueError, TypeError):
            continue  # a key of a kind not understood here (RFC 7517 §5: ignore it)
    _jwks[uri] = keys
    return keys


def _pick(keys: list[Key], kid: str | None, alg: str) -> Key | None:
    """The key this token names (by ``kid``, of the algorithm's type); without a kid, the only such key."""
    fits = [k for k in keys if k.key_type == KEY_TYPES[alg] and k.get("alg") in (None, alg)
            and (kid is None or k.kid == kid)]
    return fits[0] if len(fits) == 1 or (fits and kid is not None) else None


async def signing_key(meta: Metadata, kid: str | None, alg: str) -> Key:
    """The provider's key for this token; an unknown ``kid`` refetches the key set once (the provider rotated
    its keys), and is refused if it is still unknown."""
    key = _pick(await _keys(meta.jwks_uri, refresh=False), kid, alg)
    if key is None:
        key = _pick(await _keys(meta.jwks_uri, refresh=True), kid, alg)
    if key is None:
        raise OidcError("the ID token is signed with a key the provider does not publish")
    return key


# -- ID tokens ----------------------------------------------------------------------------------------------------
def _header(token: str) -> dict[str, Any]:
    """The JOSE header, read before the signature is checked (only to choose the key and algorithm)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise OidcError("the ID token is not a signed JWT")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise OidcError("the ID token's header is unreadable")
    return header


async def verify_id_token(config: OidcProvider, meta: Metadata, token: str, nonce: str) -> dict[str, Any]:
    """The ID token's claims, once its signature and claims check out; else OidcError saying what failed."""
    from joserfc import jwt
    from joserfc.errors import JoseError

    header = _header(token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in meta.algorithms:
        raise OidcError(f"the ID token's algorithm {str(alg)[:20]!r} is not accepted")
    kid = header.get("kid")
    key = await signing_key(meta, kid if isinstance(kid, str) else None, alg)
    try:
        claims = jwt.decode(token, key, algorithms=[alg]).claims
    except JoseError:
        raise OidcError("the ID token's signature does not verify") from None
    check_claims(config, meta, claims, nonce)
    return claims


def check_claims(config: OidcProvider, meta: Metadata, claims: dict[str, Any], nonce: str,
                 now: float | None = None) -> None:
    """``iss``, ``aud``/``azp``, ``exp``/``iat``/``nbf`` (with leeway), ``sub`` and ``nonce`` (OIDC Core 3.1.3.7)."""
    from joserfc.errors import ClaimError, ExpiredTokenError, MissingClaimError
    from joserfc.jwt import JWTClaimsRegistry

    registry = JWTClaimsRegistry(now=int(now if now is not None else time.time()), leeway=LEEWAY,
                                 iss={"essential": True}, sub={"essential": True}, exp={"essential": True},
                                 iat={"essential": True}, aud={"essential": True, "value": config.client_id})
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise OidcError("the ID token has expired") from None
    except MissingClaimError as exc:
        raise OidcError(f"the ID token has no {exc.claim}") from None
    except ClaimError as exc:
        raise OidcError(f"the ID token's {exc.claim} is not valid here") from None
    issuer = expected_issuer(meta.issuer, claims)
    if claims["iss"] != issuer and not (issuer == GOOGLE_ISSUER and claims["iss"] == "accounts.google.com"):
        raise OidcError("the ID token's iss is not this provider")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != config.client_id:
        raise OidcError("the ID token's azp is not this server")
    sent = claims.get("nonce")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
        raise OidcError("the ID token's nonce is not this sign-in's")
    if not isinstance(claims["sub"], str) or len(claims["sub"]) > 255:
        raise OidcError("the ID token's sub is not valid")


def expected_issuer(issuer: str, claims: Mapping[str, Any]) -> str:
    """The ``iss`` a token must carry: the discovered issuer, with Entra's ``{tenantid}`` filled from ``tid``."""
    if TENANT_PLACEHOLDER not in issuer:
        return issuer
    tid = claims.get("tid")
    if not isinstance(tid, str) or not _TENANT.match(tid):
        raise OidcError("the ID token has no tenant (tid)")
    return issuer.replace(TENANT_PLACEHOLDER, tid)


# -- the flow -----------------------------------------------------------------------------------------------------
def _binding_hash(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()


async def begin(store: Store, config: OidcProvider, next_url: str, redirect_uri: str,
                binding: str) -> str:
    """Start a sign-in: the provider's authorization URL. ``state`` (stored hashed, single use, 10 min), the
    ``nonce`` and the PKCE verifier are new for each sign-in; ``binding`` is the browser's flow cookie."""
    from authlib.common.security import generate_token
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    meta = await discover(config)
    nonce, verifier = secrets.token_urlsafe(32), generate_token(64)
    data = {"provider": config.name, "nonce": nonce, "verifier": verifier, "next": next_url,
            "redirect_uri": redirect_uri, "browser": _binding_hash(binding)}
    state = await asyncio.to_thread(accounts.issue_token, store, PURPOSE, None, FLOW_TTL, data)
    scopes = ["openid", *(s for s in config.scopes if s != "openid")]  # no openid scope, no ID token
    async with AsyncOAuth2Client(client_id=config.client_id, code_challenge_method="S256",
                                 scope=" ".join(scopes), redirect_uri=redirect_uri) as client:
        url, _ = client.create_authorization_url(meta.authorization_endpoint, state=state,
                                                 code_verifier=verifier, nonce=nonce)
    return str(url)


async def complete(store: Store, config: OidcProvider, params: Mapping[str, str],
                   binding: str | None) -> tuple[dict[str, Any], str]:
    """Finish a sign-in at the callback: the verified ID token's claims and the ``next`` URL it was started
    with. The state is used up once its browser (and provider) are checked, whatever happens next, so a callback
    works once; another browser's visit (a mail scanner or prefetcher opening the link first) spends nothing."""
    state = params.get("state")
    if not state and params.get("error"):  # some providers drop the state from error answers
        raise OidcError(f"the provider did not sign you in ({_code(params['error'])})", 403)
    if not state:
        raise OidcError("the sign-in answer has no state; start the sign-in again")
    flow = await asyncio.to_thread(accounts.peek_token, store, state, PURPOSE)
    if flow is None:
        raise OidcError("this sign-in expired or was used already; start it again")
    data = flow["data"]
    if data.get("provider") != config.name:
        raise OidcError("this sign-in was started with another provider; start it again")
    if not binding or not hmac.compare_digest(_binding_hash(binding), str(data.get("browser", ""))):
        raise OidcError("this sign-in was started in another browser; start it again here")
    if await asyncio.to_thread(accounts.consume_token, store, state, PURPOSE) is None:  # its browser, twice at once
        raise OidcError("this sign-in expired or was used already; start it again")
    if params.get("error"):
        raise OidcError(f"the provider did not sign you in ({_code(params['error'])})", 403)
    code = params.get("code")
    if not code:
        raise OidcError("the sign-in answer has no code; start the sign-in again")
    meta = await discover(config)
    id_token = await _exchange(config, meta, code, data)
    return await verify_id_token(config, meta, id_token, str(data["nonce"])), str(data.get("next") or "/")


def _code(error: object) -> str:
    """An OAuth error code as shown (``access_denied``); anything else in its place is not echoed, so a crafted
    callback link cannot put its own words on this server's page."""
    return error if isinstance(error, str) and re.fullmatch(r"[a-z_]{1,40}", error) else "error"


async def _exchange(config: OidcProvider, meta: Metadata, code: str, data: Mapping[str, Any]) -> str:
    """The code (and PKCE verifier) for tokens at the provider's token endpoint; the ID token."""
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

    secret = config.client_secret or None
    method = "none" if secret is None else (
        "client_secret_basic" if "client_secret_basic" in meta.auth_methods or "client_secret_post"
        not in meta.auth_methods else "client_secret_post")
    try:
        async with AsyncOAuth2Client(client_id=config.client_id, client_secret=secret, timeout=HTTP_TIMEOUT,
                                     token_endpoint_auth_method=method) as client:
            token = await client.fetch_token(meta.token_endpoint, grant_type="authorization_code", code=code,
                                             code_verifier=data["verifier"], redirect_uri=data["redirect_uri"])
    except OAuthError as exc:
        raise OidcError(f"the provider refused the sign-in code ({_code(exc.error)})") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise OidcError(f"the provider's token endpoint failed ({type(exc).__name__})", 502) from None
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise OidcError("the provider sent no ID token (is the openid scope configured?)", 502)
    return id_token


# -- accounts -------------------------------------------------------------------------------------------------------
def verified_email(claims: Mapping[str, Any]) -> str | None:
    """The email, lower-cased, only when the provider says it verified it (some send the string "true"; Entra
    says so with its optional ``xms_edov`` claim: the email's domain is verified by the tenant that owns it)."""
    email, verified = claims.get("email"), claims.get("email_verified", claims.get("xms_edov"))
    if isinstance(email, str) and "@" in email and (verified is True or verified == "true"):
        return email.strip().lower()
    return None


def refusal(config: OidcProvider, claims: Mapping[str, Any]) -> str | None:
    """Why this person may not sign in with this provider (``allowed_domains``, ``allowed_tenants``), or None.
    Checked at every sign-in, so narrowing the lists locks out those now outside them."""
    if config.allowed_tenants and claims.get("tid") not in config.allowed_tenants:
        return "your organization (tenant) may not sign in here"
    if config.allowed_domains:
        email = verified_email(claims)
        domains = {d.strip().lower().lstrip("@") for d in config.allowed_domains}
        if email is None or email.rpartition("@")[2] not in domains:
            return "your email domain may not sign in here (or the provider did not verify your email)"
    return None


def account_for(store: Store, config: OidcProvider, claims: Mapping[str, Any]) -> UserRecord:
    """The user this verified sign-in belongs to: linked by (provider, sub) (its address following a new verified
    email: ``_follow_email``); else, by a verified email, an
    account whose address was never confirmed (taken over: ``take_over_unconfirmed``) or, when
    ``link_by_email`` is on, any; else a new user with ``default_role`` (``create_users``). OidcError (403) if the
    domain/tenant is not allowed, nobody matches and users are not created, or the user is disabled."""
    reason = refusal(config, claims)
    if reason:
        raise OidcError(reason, 403)
    subject, email = str(claims["sub"]), verified_email(claims)
    user = _linked(store, config.name, subject)
    if user is not None and email:
        user = _follow_email(store, config.name, subject, user, email)
    if user is None and email:
        user = store.user_by_email(email)
        if user is not None and not user["email_verified"]:
            # A sign-up nobody confirmed: whoever made it did not prove the address, this sign-in did. Linked
            # as it was, its maker's password would sign in to the account its owner now uses.
            user = _take_over(store, config, user)
        elif user is not None and not config.link_by_email:
            user = None  # _create says the address has an account
        if user is not None and not store.link_identity(config.name, subject, user["id"], email):
            user = _linked(store, config.name, subject)  # linked meanwhile by a concurrent sign-in
    if user is None:
        user = _create(store, config, subject, email, claims)
    if user["disabled"]:
        raise OidcError("this account is disabled; ask an administrator", 403)
    return user


def _follow_email(store: Store, provider_name: str, subject: str, user: UserRecord, email: str) -> UserRecord:
    """A linked user whose verified email changed at the provider: the account's address follows it when it is the
    one this identity gave (or the account has none), and reset links mailed to the old one stop working. The old
    address may be someone else's by now (reassigned at the provider), and a reset link mailed to it would sign them
    in to this account. Kept, and logged, when another account has the new address."""
    identity = store.get_identity(provider_name, subject)
    given = (identity["email"] or "").strip().lower() if identity else ""
    if email == user["email"] or (user["email"] is not None and given != user["email"]):
        return user  # unchanged, or the account's address came from elsewhere (another provider, its owner)
    try:
        store.update_user(user["id"], email=email, email_verified=True)
    except ValueError:
        log.warning("an OIDC sign-in's new email belongs to another account; the account keeps its old one",
                    extra={"fields": {"provider": provider_name, "user": user["id"]}})
        return user
    store.set_identity_email(provider_name, subject, email)
    for purpose in ("verify", "reset"):
        store.revoke_auth_tokens(user["id"], purpose)
    audit.record(store, f"user:{user['id']}", "user.email", user["id"],
                 {"from": user["email"], "to": email, "via": provider_name})
    return {**user, "email": email, "email_verified": True}


def _take_over(store: Store, config: OidcProvider, user: UserRecord) -> UserRecord:
    user = accounts.take_over_unconfirmed(store, user)
    audit.record(store, f"user:{user['id']}", "user.take_over", user["id"],
                 {"email": user["email"], "via": config.name})
    log.warning("an unconfirmed sign-up was taken over by a verified OIDC sign-in for its address",
                extra={"fields": {"provider": config.name, "user": user["id"]}})
    return user


def _linked(store: Store, provider_name: str, subject: str) -> UserRecord | None:
    identity = store.get_identity(provider_name, subject)
    return store.get_user(identity["user_id"]) if identity else None


def _create(store: Store, config: OidcProvider, subject: str, email: str | None,
            claims: Mapping[str, Any]) -> UserRecord:
    if not config.create_users:
        raise OidcError("there is no account for you here; ask an administrator to create one", 403)
    if email and store.user_by_email(email) is not None:
        raise OidcError("an account with your email exists already; sign in to it, or ask an administrator "
                        "to link this provider to it", 403)
    name = claims.get("name") if isinstance(claims.get("name"), str) else ""
    try:
        user = accounts.create_user(store, email, role=config.default_role, name=str(name),
                                    email_verified=email is not None)
    except accounts.AccountError as exc:
        raise OidcError(str(exc), 403) from None
    raw_email = claims.get("email")
    if not store.link_identity(config.name, subject, user["id"], raw_email if isinstance(raw_email, str) else None):
        linked = _linked(store, config.name, subject)  # a concurrent first sign-in won the race
        if linked is None:
            raise OidcError("this sign-in could not be linked to an account; try again", 409)
        store.update_user(user["id"], disabled=True)  # the spare account this sign-in made is never used
        return linked
    audit.record(store, f"user:{user['id']}", "user.create", user["id"], {"email": email, "role": config.default_role,
                                                                       "via": config.name})
    log.info("new user from OIDC", extra={"fields": {"provider": config.name, "user": user["id"],
                                                      "role": config.default_role}})
    return user

