"""Return URLs (``next=``) after sign-in: only paths on this server, so a link to a sign-in page can never send
the browser elsewhere (an open redirect turns a trusted sign-in page into a phishing hop).

A value is checked raw and after each round of percent-decoding (a proxy or framework may decode once more
than expected), and refused whole, never repaired: whatever is not plainly a local path goes to ``/``.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

HOME = "/"
MAX_LENGTH = 2000
_DECODE_ROUNDS = 4
"""Nested encodings (``%252F`` ...) are unwrapped this many times; one still changing after that is refused."""


def safe_next(url: object, default: str = HOME) -> str:
    """``url`` if it is a local path (``/`` then anything but ``/`` or ``\\``, no scheme, no host, printable
    ASCII only, at every level of percent-decoding); else ``default``."""
    if not isinstance(url, str) or not url or len(url) > MAX_LENGTH:
        return default
    value = url
    for _ in range(_DECODE_ROUNDS):
        if not _plain_local_path(value):
            return default
        decoded = unquote(value)
        if decoded == value:
            return url
        value = decoded
    return default


def _plain_local_path(value: str) -> bool:
    """One decoding level: a path-absolute reference with no way for a browser to read a host into it."""
    if any(not 0x20 <= ord(ch) < 0x7F for ch in value):  # tabs, newlines, DEL, non-ASCII look-alikes
        return False
    if "\\" in value:  # browsers read a backslash as a slash: /\evil is //evil
        return False
    if not value.startswith("/") or value.startswith("//"):
        return False
    parts = urlsplit(value)
    return not parts.scheme and not parts.netloc
