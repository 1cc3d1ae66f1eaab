"""``ServerSettings.auth``: who may sign in and how (the YAML ``auth:`` section; docs/identity.md).

Durations are written as ``90s``, ``30m``, ``2h``, ``7d`` (or plain seconds) and read as seconds.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from halguru_server.identity.roles import ROLES

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(value: object) -> object:
    """``2h`` -> 7200.0; numbers pass through; anything else is left for pydantic to refuse."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(seconds), Field(gt=0)]


class SmtpSettings(BaseModel):
    """Where verification and reset mail goes out (the email channel's SMTP settings)."""

    model_config = ConfigDict(extra="forbid")
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    sender: str
    starttls: bool = True
    ssl: bool = False


class OidcProvider(BaseModel):
    """One OIDC provider: a preset (``google``, ``entra`` with ``tenant``) or any issuer (discovery)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    client_id: str
    client_secret: str | None = Field(default=None, repr=False)
    issuer: str | None = None  # presets fill it in; required for any other provider
    tenant: str | None = None  # entra: the directory (tenant) id, or organizations/common
    label: str | None = None  # the sign-in button's text
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    link_by_email: bool = False  # link to an existing user by a verified email
    allowed_domains: list[str] = Field(default_factory=list)  # empty: any
    allowed_tenants: list[str] = Field(default_factory=list)  # entra ``tid``; empty: any
    default_role: str = "user"
    create_users: bool = True  # a first sign-in creates the user (else only linked/invited users get in)

    @field_validator("default_role")
    @classmethod
    def _role(cls, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: use {', '.join(ROLES)}")
        return role

    @model_validator(mode="after")
    def _issuer(self) -> OidcProvider:
        from halguru_server.identity.oidc import check_provider

        check_provider(self)  # no issuer, a bad tenant, plain http: refused before anything listens
        return self


class ProxySettings(BaseModel):
    """Auth proxy mode: requests under ``prefix`` go to ``upstream`` with the signed-in identity in headers."""

    model_config = ConfigDict(extra="forbid")
    upstream: str
    prefix: str = Field(default="/apps", pattern=r"^/[A-Za-z0-9._~/-]*$")
    role: str = "user"  # the least role that may pass

    @field_validator("role")
    @classmethod
    def _role(cls, role: str) -> str:
        return OidcProvider._role(role)


class AuthSettings(BaseModel):
    """Sign-in, sessions and lockout."""

    model_config = ConfigDict(extra="forbid")
    registration: Literal["open", "invite", "closed"] = "closed"
    require_2fa_roles: list[str] = Field(default_factory=lambda: ["admin"])
    session_idle: Duration = 2 * 3600.0
    session_max_age: Duration = 7 * 86400.0
    login_max_failures: int = Field(default=5, ge=1)
    login_rate_per_minute: int = Field(default=10, ge=1)  # password attempts per client address, any account
    lockout_base: Duration = 30.0  # the first lockout; it doubles with each further failure
    lockout_max: Duration = 900.0
    smtp: SmtpSettings | None = None
    oidc: list[OidcProvider] = Field(default_factory=list)
    proxy: ProxySettings | None = None
    public_url: str | None = None  # this server's address as browsers see it (links in mail, OIDC redirects)

    @field_validator("require_2fa_roles")
    @classmethod
    def _roles(cls, roles: list[str]) -> list[str]:
        return [OidcProvider._role(r) for r in roles]

    @field_validator("oidc")
    @classmethod
    def _unique(cls, providers: list[OidcProvider]) -> list[OidcProvider]:
        names = [p.name for p in providers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two OIDC providers are named {', '.join(twice)}: each needs its own name")
        return providers
