"""Outbound HTTP that connects to the address it checked.

Checking a host's addresses and then letting httpx resolve the name again is open to DNS rebinding: the
name answers a public address to the check and a loopback or private one to the connection. Here a name is
resolved once per request; the check sees those addresses and the connection goes to the first of them.
The URL, the ``Host`` header and the TLS server name (SNI, and so certificate verification) keep the name.

Invariant: a request sent through :func:`pinned_client` reaches only an address that :func:`resolve` returned
and, when ``refuse_private``, that :func:`is_private` said was public.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from halguru.errors import ToolError

if TYPE_CHECKING:
    import httpx

Resolver = Callable[[str, int], Awaitable[list[str]]]
PRIVATE_HINT = "set HALGURU_HTTP_ALLOW_PRIVATE=1 to allow it"
BODY_LIMIT = 1_000_000  # bytes of a response body read; a model reads 8000 characters of a tool's result


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host`` (without blocking the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


resolver: Resolver = system_resolver  # tests replace it with a stub (e.g. public, then loopback)


# IPv6 prefixes whose last 32 bits are an IPv4 address that the packet reaches: IPv4-compatible (::/96),
# SIIT-translated (::ffff:0:0:0/96) and a NAT64 gateway's well-known prefix (64:ff9b::/96). Python 3.11 calls
# them global whatever they carry: http://[64:ff9b::a9fe:a9fe]/ was the metadata service through NAT64.
_CARRIERS = tuple(ipaddress.IPv6Network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96"))
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: a site's own translators, to its own network


def is_private(address: str) -> bool:
    """Loopback, private, link-local, reserved...: anything that is not a global unicast address, also as the
    IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4)."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return True
        carried = ip.ipv4_mapped or ip.sixtofour
        if carried is None and any(ip in net for net in _CARRIERS):
            carried = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        ip = carried or ip
    return not ip.is_global or ip.is_multicast


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


async def resolve(host: str, port: int, refuse_private: bool) -> str:
    """The one address to connect to: resolved once; with ``refuse_private``, every answer must be public."""
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = await resolver(host, port)
        except (OSError, UnicodeError):
            raise ToolError(f"cannot resolve host {host!r}") from None
        if not addresses:
            raise ToolError(f"cannot resolve host {host!r}")
    if refuse_private:
        for address in addresses:
            if is_private(address):
                raise ToolError(f"{host} is a private or loopback address ({address}); {PRIVATE_HINT}")
    return addresses[0]


def _transport_class() -> Callable[[bool], httpx.AsyncBaseTransport]:
    import httpx

    class PinnedTransport(httpx.AsyncBaseTransport):
        """Sends each request to the address :func:`resolve` chose for its host (per transport, once)."""

        def __init__(self, refuse_private: bool, **kwargs: Any):
            self.refuse_private = refuse_private
            self.inner = httpx.AsyncHTTPTransport(**kwargs)
            self.pins: dict[tuple[str, int], str] = {}

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            host = request.url.host
            port = request.url.port or (443 if request.url.scheme == "https" else 80)
            address = self.pins.get((host, port))
            if address is None:
                address = self.pins[(host, port)] = await resolve(host, port, self.refuse_private)
            if _literal(host) != address:
                # Host header already holds the name (httpx set it from the URL); SNI and the certificate
                # check use the name too, through httpcore's sni_hostname extension.
                request.url = request.url.copy_with(host=address)
                request.extensions = {**request.extensions, "sni_hostname": host}
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    return PinnedTransport


def pinned_client(refuse_private: bool, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx.AsyncClient whose connections go to the checked address; ``kwargs`` go to the client."""
    import httpx

    return httpx.AsyncClient(transport=_transport_class()(refuse_private), **kwargs)


async def fetch(client: httpx.AsyncClient, method: str, url: str, *, limit: int = BODY_LIMIT,
                **kwargs: Any) -> tuple[httpx.Response, str]:
    """The response and its body as text, of which at most ``limit`` bytes are read (decoded, when it came
    compressed): a huge, endless or highly compressed body would otherwise fill the memory for the few thousand
    characters a model reads. A body compressed other than as gzip or deflate is a ToolError."""
    import httpx

    from halguru.tools.decoding import ACCEPT, Decoder, DecodingError

    headers = httpx.Headers({"Accept-Encoding": ACCEPT})
    headers.update(kwargs.pop("headers", None) or {})
    chunks: list[bytes] = []
    size = 0
    async with client.stream(method, url, headers=headers, **kwargs) as response:
        try:
            decoder = Decoder(response.headers.get("content-encoding"))
            async for raw in response.aiter_raw():  # decoded here, in bounded steps (httpx would do it at once)
                for chunk in decoder.feed(raw):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= limit:
                        break
                if size >= limit:
                    break
        except DecodingError as exc:
            raise ToolError(str(exc)) from None
    body = b"".join(chunks)[:limit]
    return response, body.decode(response.encoding or "utf-8", errors="replace")
