"""Check that a server can listen on an address before it says it does."""

from __future__ import annotations

import errno
import socket

from halguru.errors import HalguruError


def check_listen(host: str, port: int) -> int:
    """Fail with one line when HOST:PORT cannot be listened on (a port in use, a bad host or port): uvicorn
    would only log it, after the banner that says the server is listening. The port to listen on: ``port``,
    or for 0 one the system has free now (so the banner names the port the server will have)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is fine
            sock.bind(address)
            return int(sock.getsockname()[1])
    except (OSError, OverflowError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        if getattr(exc, "errno", None) == errno.EADDRINUSE:  # say what to do: the default 8000 is often taken
            reason += " (another program listens there: choose another --port, or --port 0 for a free one)"
        raise HalguruError(f"cannot listen on {host}:{port}: {reason}") from None


WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # every interface -> a link to this machine


def url_base(host: str, port: int) -> str:
    """``http://HOST:PORT`` as a browser takes it, for a banner: a wildcard host (0.0.0.0, ::) is every interface,
    not an address a link opens everywhere, so it becomes loopback; an IPv6 address is bracketed (the banner of
    ``--host ::1`` said ``http://::1:8000``, which no client parses)."""
    shown = WILDCARDS.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
