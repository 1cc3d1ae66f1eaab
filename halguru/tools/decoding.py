"""Compressed response bodies (``Content-Encoding: gzip, deflate``) decoded in bounded steps.

A server halguru does not control (an API an HTTP tool calls, a page ``http_get`` reads, an MCP server) chooses
how its body is compressed. httpx decodes each compressed chunk in one call: 1.8 KB sent as ``gzip, gzip`` became
1 GB of memory at once (2.1 GB peak, 23 s) before the 1 MB read limit was looked at; and the MCP transport's limit
on one message counted compressed bytes, so 1 MB of gzip passed it as 1 GB. Here each layer gives at most STEP
bytes per call, so a reader that stops at its limit never holds more than a few steps of the body.

Invariant: a piece ``Decoder.feed`` yields from a compressed body is at most STEP bytes, and it holds at most one
piece per layer meanwhile.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

ACCEPT = "gzip, deflate"  # the Accept-Encoding to send where a body goes through a Decoder
STEP = 64 * 1024  # bytes one layer gives per call
MAX_LAYERS = 3  # encodings applied one over the other (a chain of 1,000 would be 1,000 decompressors)
_KINDS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


class DecodingError(ValueError):
    """A body compressed in a way halguru does not decode, or not validly."""


class _Layer:
    def __init__(self, kind: str):
        self.kind = kind
        self.first = True  # "deflate" is zlib-wrapped by the standard, raw by some servers: tried once both ways
        self.inflate = zlib.decompressobj(_KINDS[kind])

    def step(self, data: bytes) -> bytes:
        try:
            out = self.inflate.decompress(data, STEP)
        except zlib.error:
            if not (self.first and self.kind == "deflate"):
                raise DecodingError(f"the body is not valid {self.kind} (Content-Encoding)") from None
            self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            self.first = False
            return self.step(data)
        self.first = False
        return out


class Decoder:
    """Decodes one body, compressed as its ``Content-Encoding`` header says (None or ``identity``: as it is)."""

    def __init__(self, content_encoding: str | None):
        names = [n.strip().lower() for n in (content_encoding or "").split(",")]
        names = [n for n in names if n and n != "identity"]
        unknown = [n for n in names if n not in _KINDS]
        if unknown:
            raise DecodingError(f"the body is compressed as {unknown[0]!r}, which halguru does not decode "
                                f"(it asked for {ACCEPT})")
        if len(names) > MAX_LAYERS:
            raise DecodingError(f"the body is compressed {len(names)} times over (at most {MAX_LAYERS} are decoded)")
        self.layers = [_Layer(n) for n in reversed(names)]  # the last encoding applied is undone first

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes of the next raw chunk, in pieces of at most STEP bytes."""
        yield from self._through(0, data)

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self.layers):
            if data:
                yield data
            return
        layer = self.layers[index]
        while data:
            out = layer.step(data)
            data = layer.inflate.unconsumed_tail
            yield from self._through(index + 1, out)
