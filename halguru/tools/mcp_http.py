"""A bound on one message of a streamable HTTP MCP server, as the stdio transport has (``mcp_stdio``).

The SDK reads a JSON answer whole and an SSE event as it grows: a 100 MB result took 1 GB of memory before the
8000-character cut. Here an HTTP answer's body is read through a stream that stops once one message (the bytes
since the last blank line, which ends an SSE event) passes the limit, and counts it on the server, whose call then
says so instead of the connection error the SDK makes of it. A compressed body is decoded here, in bounded steps
(``halguru.tools.decoding``), and the limit counts what it decodes to: counting the compressed bytes let 1 MB of gzip
through as a 1 GB answer (5.2 GB peak).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx2

from halguru.tools.decoding import ACCEPT, Decoder, DecodingError

_ENDS = (b"\n\n", b"\r\n\r\n", b"\r\r")  # an SSE event ends at a blank line; a JSON answer has none


class _Bounded(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, decoder: Decoder, limit: int, over: Callable[[], None]):
        self.inner, self.decoder, self.limit, self.over = inner, decoder, limit, over

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size, tail = 0, b""
        async for raw in self.inner:
            try:
                for chunk in self.decoder.feed(raw):  # in bounded pieces, each counted as it comes
                    seen = tail + chunk
                    ends = [(i + len(end)) for end in _ENDS if (i := seen.rfind(end)) >= 0]
                    size = len(seen) - max(ends) if ends else size + len(chunk)
                    tail = seen[-3:]
                    if size > self.limit:
                        self.over()
                        raise httpx2.StreamError(f"an answer over {self.limit / 1024 / 1024:g} MB, the limit for "
                                                 "one message")
                    yield chunk
            except DecodingError as exc:
                raise httpx2.DecodingError(str(exc)) from None

    async def aclose(self) -> None:
        await self.inner.aclose()


class BoundedTransport(httpx2.AsyncBaseTransport):
    """Each response's body bounded per message; ``over`` is called when one is dropped. ``refused`` is the status
    of the last answer that was an HTTP error (``HTTP 401 Unauthorized``), which the SDK reports only as 'Server
    returned an error response'."""

    def __init__(self, limit: int, over: Callable[[], None]):
        self.inner = httpx2.AsyncHTTPTransport()
        self.limit, self.over = limit, over
        self.refused = ""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.headers["Accept-Encoding"] = ACCEPT  # what Decoder undoes (httpx2 would also ask for br and zstd)
        response = await self.inner.handle_async_request(request)
        if response.status_code >= 400 and request.method == "POST":
            phrase = httpx2.codes.get_reason_phrase(response.status_code)
            self.refused = f"HTTP {response.status_code}{f' {phrase}' if phrase else ''}"
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        try:
            decoder = Decoder(response.headers.get("content-encoding"))
        except DecodingError as exc:
            await response.aclose()
            raise httpx2.DecodingError(str(exc)) from None
        response.headers.pop("content-encoding", None)  # decoded here: httpx2 must not decode it again
        response.stream = _Bounded(response.stream, decoder, self.limit, self.over)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
