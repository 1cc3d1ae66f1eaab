"""Text from outside (a terminal argument, a pipe, an API body, a tool's output) as every store can keep it.

PostgreSQL text cannot hold U+0000 (its store writes U+FFFD), and bytes that were not UTF-8 (a Latin-1 terminal's
argument or pipe) reach Python as lone surrogates that no store, tokenizer or JSON encoder takes. A run's input and
a search's question go through ``storable`` first, so what runs is what is stored: an answer and its replay agree,
and nothing fails half-way on an encoding error."""

from __future__ import annotations


def storable(text: str) -> str:
    """``text`` with U+0000 and each byte that was not UTF-8 written as U+FFFD."""
    text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        data = text.encode("utf-8", "surrogateescape")  # each undecodable byte back as itself: one U+FFFD
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogatepass")  # a lone surrogate from elsewhere (JSON's "\ud800")
    return data.decode("utf-8", "replace")
