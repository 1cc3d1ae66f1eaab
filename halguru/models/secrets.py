"""API keys: kept with keyring where a backend exists, else read from an environment variable.

A key is never written to a config file: models.yaml only names the variable.
"""

from __future__ import annotations

import os
import re

from halguru.errors import ModelError
from halguru.models.base import ModelEntry

KEYRING_SERVICE = "halguru"
SECRET_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # ${NAME} in agent.yaml


def keyring_available() -> bool:
    import keyring
    from keyring.backends import fail

    backend = keyring.get_keyring()
    return not isinstance(backend, fail.Keyring) and backend.priority > 0


def require_keyring(model_name: str) -> None:
    if not keyring_available():
        raise ModelError(
            "no keyring backend on this machine: put the key in an environment variable "
            f"and register it with `halguru models add {model_name} ... --api-key-env VAR`"
        )


def store_api_key(model_name: str, key: str) -> None:
    require_keyring(model_name)
    import keyring

    keyring.set_password(KEYRING_SERVICE, model_name, key)


def resolve_api_key(entry: ModelEntry) -> str | None:
    env_var = entry.options.get("api_key_env")
    if env_var and os.environ.get(env_var):
        return os.environ[env_var]
    if entry.options.get("keyring"):
        import keyring

        key = keyring.get_password(KEYRING_SERVICE, entry.name) if keyring_available() else None
        if key:
            return key
        raise ModelError(f"model {entry.name}: no API key in the keyring; run `halguru models set-key {entry.name}`")
    return None


def lookup_secret(name: str) -> str | None:
    """A named secret (HTTP tools' auth, MCP headers and env): the environment variable, else the keyring
    entry ``halguru`` / NAME (``keyring set halguru NAME``). None when neither has it."""
    value = os.environ.get(name)
    if value:
        return value
    try:
        if keyring_available():
            import keyring

            return keyring.get_password(KEYRING_SERVICE, name)
    except Exception:  # a broken keyring backend holds no secret; the caller's error says how to set one
        return None
    return None


def expand_secrets(value: str, used: list[str] | None = None) -> str:
    """``value`` with each ``${NAME}`` replaced by the secret NAME (``lookup_secret``); ValueError naming the first
    one that is not set. The values put in are appended to ``used``, for hiding them where text is shown."""

    def secret(match: re.Match[str]) -> str:
        name = match.group(1)
        found = lookup_secret(name)
        if not found:
            raise ValueError(f"the secret {name} is not set; set the environment variable {name} or store it "
                             f"with `keyring set halguru {name}`")
        if used is not None:
            used.append(found)
        return found

    return SECRET_REFERENCE.sub(secret, value)
