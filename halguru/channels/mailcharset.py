"""Mail text in the charset its sender meant, which is often not quite the one it names.

Mail clients read a charset label as browsers do (the WHATWG Encoding Standard): ISO-8859-1 as Windows-1252
(curly quotes, the euro sign), Shift_JIS as Windows' CP932 (circled digits, ㈱), GB2312 as GB18030, EUC-KR as
CP949. Read strictly, those characters became U+FFFD or invisible control characters in the agent's text and in
the 'Re:' subject sent back. Text labelled UTF-8 that is not (Windows-1252 bytes from a script or an old client,
or a stray byte) keeps its UTF-8 letters and reads each other byte as Windows-1252.
"""

from __future__ import annotations

import codecs
from email.header import decode_header
from email.message import MIMEPart

# a label's codec (as ``codecs.lookup`` names it) -> the superset mail clients decode it with
_SUPERSETS = {"ascii": "cp1252", "iso8859-1": "cp1252", "iso8859-9": "cp1254", "tis-620": "cp874",
              "iso8859-11": "cp874", "gb2312": "gb18030", "gbk": "gb18030", "shift_jis": "cp932", "euc_kr": "cp949",
              "big5": "big5hkscs"}
_FALLBACK = "halguru-cp1252"  # the error handler: an undecodable byte as its Windows-1252 (else Latin-1) letter


def _byte_as_cp1252(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    byte = error.object[error.start:error.start + 1]
    try:
        return byte.decode("cp1252"), error.start + 1
    except UnicodeDecodeError:  # one of the five bytes Windows-1252 leaves undefined: Latin-1 has them all
        return byte.decode("latin-1"), error.start + 1


codecs.register_error(_FALLBACK, _byte_as_cp1252)


def decode(data: bytes, charset: str | None) -> str:
    """``data`` read as ``charset`` means (unknown or missing: UTF-8), never failing."""
    try:
        name = codecs.lookup(charset or "utf-8").name
    except LookupError:
        name = "utf-8"
    name = _SUPERSETS.get(name, name)
    if name in ("utf-8", "cp1252"):
        return data.decode(name, _FALLBACK)
    try:
        return data.decode(name, "replace")
    except UnicodeError:  # a codec that cannot decode at all (UTF-16 of an odd length...)
        return data.decode("utf-8", _FALLBACK)


def part_text(part: MIMEPart) -> str:
    """A text part's text. One that names no charset, or says US-ASCII, yet holds 8-bit bytes (a script's or an
    old client's mail) is read by what it holds, not as ASCII with a '\ufffd' for each such byte: HTML by the
    charset its ``<meta>`` names, else as UTF-8 (each byte that is not, as Windows-1252)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    declared = part.get_content_charset() or ""
    if declared in ("", "us-ascii", "ascii") and not payload.isascii():
        meta = None
        if part.get_content_type() == "text/html":
            from bs4.dammit import EncodingDetector

            meta = EncodingDetector.find_declared_encoding(payload, is_html=True)
        return decode(payload, meta)
    return decode(payload, declared)


def header_text(raw: str) -> str:
    """A header's raw value as text: its encoded words decoded as ``decode`` does (in the superset of their
    charset, UTF-8 that is not read byte by byte); raw 8-bit bytes (an old mailer's, which the parser keeps as
    surrogates) read as UTF-8, each byte that is not as Windows-1252."""
    data = raw.encode("utf-8", "surrogateescape")
    if not data.isascii():
        from email import policy

        return str(policy.default.header_factory("Subject", data.decode("utf-8", _FALLBACK)))
    return "".join(piece if isinstance(piece, str) else decode(piece, charset)
                   for piece, charset in decode_header(raw))
