"""Which halguru servers this machine publishes to (``halguru login``), and their tokens.

A token (an API key of the signed-in user) goes to the keyring, entry ``halguru`` / ``server:URL``, never to
a file; ``HALGURU_HOME/servers.json`` keeps only the URLs and who signed in, and which one was last (the
default of ``halguru publish``). ``HALGURU_TOKEN`` (with ``--to`` or a login's URL) stands in for the keyring
where there is none: CI runners, containers.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from halguru.errors import HalguruError

TOKEN_ENV = "HALGURU_TOKEN"


def server_url(url: str) -> str:
    """``url`` as the servers file keys it: scheme, host and port, no trailing slash; one line if it is none."""
    parts = urlsplit(url.strip() if "://" in url else f"http://{url.strip()}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HalguruError(f"{url!r} is not a server URL (like https://halguru.example.com or http://127.0.0.1:8000)")
    if parts.query or parts.fragment:
        raise HalguruError(f"{url!r}: give the server's address without ?query or #fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _file() -> Path:
    from halguru.config import get_settings

    return get_settings().home / "servers.json"


def _read() -> dict[str, Any]:
    try:
        data = json.loads(_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"servers": {}, "default": None}
    ok = isinstance(data, dict) and isinstance(data.get("servers"), dict)
    return data if ok else {"servers": {}, "default": None}


@contextlib.contextmanager
def _updating() -> Iterator[dict[str, Any]]:
    """The servers file's data, to change in the block, then written back atomically; locked from the read to
    the write, so two logins at once (CI jobs sharing a HALGURU_HOME) both land. A block that raises writes
    nothing."""
    from halguru.atomic import lock_for_update, write_atomically

    with lock_for_update(_file()):
        data = _read()
        yield data
        write_atomically(_file(), json.dumps(data, indent=1, sort_keys=True))


def require_keyring() -> Any:
    """The keyring module, or one line saying there is none (and what to do instead)."""
    from halguru.models.secrets import keyring_available

    if not keyring_available():
        raise HalguruError(f"no keyring on this machine to keep the token in (install a backend such as "
                           f"keyrings.alt, or set {TOKEN_ENV} to an API key and pass --to URL)")
    import keyring

    return keyring


_keyring = require_keyring


def save_login(url: str, token: str, who: str) -> None:
    """Keep ``token`` for ``url`` in the keyring and make ``url`` the default server."""
    _keyring().set_password("halguru", f"server:{url}", token)
    with _updating() as data:
        data["servers"][url] = {"user": who}
        data["default"] = url


def forget(url: str | None) -> str:
    """Drop the token of ``url`` (default: the default server); the URL forgotten."""
    with _updating() as data:
        url = server_url(url) if url else data.get("default")
        if not url or url not in data["servers"]:
            raise HalguruError(f"not signed in to {url}" if url else "not signed in to any server")
        keyring = _keyring()
        with contextlib.suppress(Exception):  # already gone from the keyring: forgetting it here is what was asked
            keyring.delete_password("halguru", f"server:{url}")
        del data["servers"][url]
        data["default"] = next(iter(data["servers"]), None) if data.get("default") == url else data.get("default")
    return url


def target(url: str | None) -> tuple[str, str]:
    """The server to talk to (``url``, else the last login) and its token (``HALGURU_TOKEN``, else the keyring)."""
    data = _read()
    chosen = server_url(url) if url else data.get("default")
    if not chosen:
        raise HalguruError("no server: run `halguru login URL` first, or pass --to URL")
    token = os.environ.get(TOKEN_ENV)
    if not token:
        from halguru.models.secrets import keyring_available

        token = _keyring().get_password("halguru", f"server:{chosen}") if keyring_available() else None
    if not token:
        raise HalguruError(f"not signed in to {chosen}: run `halguru login {chosen}` (or set {TOKEN_ENV})")
    return chosen, token


def servers() -> tuple[dict[str, dict[str, Any]], str | None]:
    data = _read()
    return data["servers"], data.get("default")


def device_login(url: str, say: Any, *, open_browser: bool = True) -> str:
    """Sign in through the browser (the server's device authorization): show the code and the page, wait for
    the approval there; the API key it gives."""
    import time

    import httpx

    with httpx.Client(base_url=url, timeout=30) as http:
        try:
            started = http.post("/auth/device/code")
        except httpx.HTTPError as exc:
            raise HalguruError(f"cannot reach {url}: {exc}") from None
        if started.status_code == 404:
            raise HalguruError(f"{url} does not offer browser sign-in; use `halguru login {url} --api-key`")
        if not started.is_success:
            raise HalguruError(f"{url}: {_message(started)}")
        flow = started.json()
        say(f"Open {flow['verification_uri_complete']}\nsigned in there, and approve the code {flow['user_code']}.")
        if open_browser and not os.environ.get("HALGURU_NO_BROWSER"):
            import webbrowser

            webbrowser.open(flow["verification_uri_complete"])
        deadline = time.monotonic() + float(flow["expires_in"])
        while time.monotonic() < deadline:
            time.sleep(float(flow.get("interval", 2)))
            try:
                answer = http.post("/auth/device/token", json={"device_code": flow["device_code"]})
            except httpx.HTTPError:
                continue  # a moment's outage: the code is still good until it expires
            if answer.is_success:
                return str(answer.json()["access_token"])
            if answer.status_code != 400 or "authorization_pending" not in answer.text:
                raise HalguruError(f"{url}: {_message(answer)}")
    raise HalguruError("the code expired before it was approved; run `halguru login` again")


def _message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
