"""Roles and permissions (docs/identity.md has the table). Roles are fixed sets of ``resource:action``
strings; routes ask ``Principal.can(permission)`` and never name a role, so a role's reach is read here only.
"""

from __future__ import annotations

ROLES = ("admin", "operator", "developer", "user")
"""Every role, most powerful first."""

_USER = frozenset({"agents:read", "chat:use", "account:own"})
_DEVELOPER = _USER | {"jobs:read", "jobs:write", "keys:own", "agents:publish", "metrics:read"}
_OPERATOR = _USER | {"jobs:read", "jobs:write", "keys:own", "conversations:read_all", "runs:read_all",
                     "runs:approve_all", "jobs:read_all", "jobs:write_all", "metrics:read", "security:read"}
_ADMIN = _OPERATOR | _DEVELOPER | {"keys:all", "users:manage", "settings:manage", "audit:read"}

ANONYMOUS = frozenset({"agents:read", "chat:use"})
"""An anonymous web-chat visitor's: public agents only (``Principal.allows``), on routes that let them in."""

PERMISSIONS: dict[str, frozenset[str]] = {"admin": _ADMIN, "operator": _OPERATOR, "developer": _DEVELOPER,
                                          "user": _USER}
ALL_PERMISSIONS = frozenset(_ADMIN)

OWNER_ALL = {"conversations": "conversations:read_all", "runs": "runs:read_all", "approvals": "runs:approve_all",
             "jobs": "jobs:read_all", "keys": "keys:all"}
"""The permission that lets a principal see everyone's objects of a resource (else only its own)."""

KEY_SCOPES = ("user", "admin")
"""A user's key: ``user`` carries at most a developer's permissions of its user's, ``admin`` all of them. A key
without a user has a role of its own instead: its scope is one of ``ROLES`` (``user`` by default: chat only)."""


def permissions(role: str) -> frozenset[str]:
    """The role's permissions; an unknown role (a database written by a newer version) has none."""
    return PERMISSIONS.get(role, frozenset())


def check_role(role: str) -> str:
    """The role, or ValueError naming the valid ones."""
    if role not in PERMISSIONS:
        raise ValueError(f"unknown role {role!r}: use {', '.join(ROLES)}")
    return role
