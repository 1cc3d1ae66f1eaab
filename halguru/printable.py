"""Text from outside (a visitor's message, a model's answer, a document, a name an API client chose) made safe
to print on a terminal: its control characters are shown, not obeyed.

An escape sequence in a stored message would otherwise recolour, retitle or rewrite the operator's terminal
when `halguru logs` prints it, and a bidi override would make a name read as another."""

from __future__ import annotations

import re
import unicodedata

# C0 controls but tab and newline, DEL, C1 controls, and the bidi marks, embeddings, overrides and isolates
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with each unsafe character written as an escape (``\\x1b``, ``\\u202e``); tabs and line breaks
    (``\\r\\n`` as ``\\n``) are kept."""
    text = text.replace("\r\n", "\n")
    return _UNSAFE.sub(lambda m: _escaped(m.group()), text) if _UNSAFE.search(text) else text


def printable_name(text: str) -> str:
    """``printable`` for a name (a file's, a source's): its line breaks and tabs escaped too, so one name is one
    line of a listing."""
    return printable(text).replace("\n", "\\n").replace("\t", "\\t")


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def is_blank(text: str) -> bool:
    """Whether ``text`` has nothing to read: only whitespace, control characters and invisible format characters
    (a zero-width space, NUL, a bidi mark). A message like that would start a run on nothing."""
    return all(char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zs", "Zl", "Zp") for char in text)
