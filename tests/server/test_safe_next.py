"""``safe_next``: a sign-in's return URL is a path on this server or ``/``; an open-redirect corpus."""

from __future__ import annotations

import pytest
from halguru_server.identity.urls import safe_next

LOCAL = ["/", "/chat", "/chat/?agent=echo", "/admin/users?page=2#top", "/auth/account", "/a b",
         "/search?q=a%20b", "/chat?next=%2Fadmin", "/x?u=https://example.com/"]

OPEN_REDIRECTS = [
    # another host, written plainly
    "//evil.example", "///evil.example", "////evil.example", "https://evil.example", "http://evil.example/",
    "https:evil.example", "https:/evil.example", "HTTPS://evil.example", "ftp://evil.example",
    # scripts and data
    "javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    # backslashes (browsers read them as slashes)
    "/\\evil.example", "\\\\evil.example", "\\/evil.example", "/\\/evil.example", "/.\\evil.example",
    # whitespace and controls browsers strip before parsing
    " //evil.example", "\t//evil.example", "/\t/evil.example", "/\n/evil.example", "/\r/evil.example",
    "\x00//evil.example", "/\x0b/evil.example", "/x\x7f",
    # percent-encoded, once, twice and three times
    "/%2Fevil.example", "/%2F%2Fevil.example", "%2F%2Fevil.example", "/%5Cevil.example", "/%5cevil.example",
    "%2F%5Cevil.example", "/%09/evil.example", "/%0A/evil.example", "/%0d/evil.example", "/%00/evil.example",
    "/%252F%252Fevil.example", "/%255Cevil.example", "/%25252F%25252Fevil.example",
    "https%3A%2F%2Fevil.example", "javascript%3Aalert(1)", "%6Aavascript:alert(1)",
    "/%25252525252F%25252525252Fevil.example",  # nested past the decoding rounds: refused, not unwrapped
    # no leading slash, relative, empty
    "evil.example", "evil.example/path", "./evil", "../evil", "?next=//evil", "#//evil", "",
    # look-alikes of / and . outside ASCII
    "/\u2215evil.example", "/\uff0f\uff0fevil.example", "/\u3002evil", "/%E2%88%95evil.example",
    # too long
    "/" + "a" * 2001,
]


@pytest.mark.parametrize("url", LOCAL)
def test_local_paths_pass_unchanged(url: str) -> None:
    assert safe_next(url) == url


@pytest.mark.parametrize("url", OPEN_REDIRECTS)
def test_open_redirects_go_home(url: str) -> None:
    assert safe_next(url) == "/"


def test_not_a_string_goes_to_the_default() -> None:
    assert safe_next(None) == "/"
    assert safe_next(["/chat"]) == "/"
    assert safe_next("//evil.example", default="/auth/account") == "/auth/account"
