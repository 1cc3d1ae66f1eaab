"""The list endpoints' cursors: opaque to clients (unpadded base64url of ``KIND:VALUE``), checked on the way in.

Lists whose head changes while a client pages through them use a keyset cursor, the last item's sort key:
conversations (newest activity first: ``c:UPDATED:ID``), jobs (newest first: ``j:SEQ``) and users (oldest
first: ``u:CREATED:ID``). The next page
starts after that key, so an item created, or bumped to the top by a new message, between two pages shifts
nothing (an offset repeated the items it pushed down). Each item shows at most once in one pass; one bumped to
the top after the pass began shows on the next pass from the start (a sync job starts each pass there and stops
at items it has seen as they were). A conversation's messages are only ever appended, so their cursor stays a
position (``o:N``). A cursor from another list, an older server or a typo is a 400, never a 500.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

from halguru_server.errors import ApiError

_MAX_INT = 12  # digits: far below SQLite's 64-bit integers (a larger one would overflow into a 500)


def _encode(kind: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def _invalid() -> ApiError:
    return ApiError(400, "invalid cursor: pass the next_cursor of a previous page of this list, or no cursor "
                         "to start from the first page")


def _decode(cursor: str, kind: str) -> str:
    """The value of a ``kind`` cursor; a 400 for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:  # not base64, or not UTF-8
        raise _invalid() from None
    found, _, value = text.partition(":")
    if found != kind:
        raise _invalid()
    return value


def _integer(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= _MAX_INT):
        raise _invalid()
    return int(text)


def offset_cursor(offset: int) -> str:
    """The cursor of the page starting at ``offset`` (a list that only grows at its end)."""
    return _encode("o", str(offset))


def offset_of(cursor: str | None) -> int:
    return _integer(_decode(cursor, "o")) if cursor else 0


def _time_id(kind: str, when: float, row_id: str) -> str:
    """A ``(time, id)`` keyset cursor; ``repr`` keeps every bit of the float, so the key compares equal to the
    stored one."""
    return _encode(kind, f"{float(when)!r}:{row_id}")


def _time_id_of(cursor: str | None, kind: str) -> tuple[float, str] | None:
    """The ``(time, id)`` of a ``kind`` cursor (None: the first page)."""
    if not cursor:
        return None
    when_text, _, row_id = _decode(cursor, kind).partition(":")
    try:
        when = float(when_text)
    except ValueError:
        raise _invalid() from None
    if not math.isfinite(when) or not row_id:
        raise _invalid()
    return when, row_id


def conversation_cursor(row: Mapping[str, Any]) -> str:
    """The cursor of the page after ``row`` (conversations: ``updated DESC, id``)."""
    return _time_id("c", row["updated"], row["id"])


def conversation_after(cursor: str | None) -> tuple[float, str] | None:
    """The ``(updated, id)`` a conversations page starts after (None: the first page)."""
    return _time_id_of(cursor, "c")


def user_cursor(row: Mapping[str, Any]) -> str:
    """The cursor of the page after ``row`` (users: ``created, id``)."""
    return _time_id("u", row["created"], row["id"])


def user_after(cursor: str | None) -> tuple[float, str] | None:
    """The ``(created, id)`` a users page starts after (None: the first page)."""
    return _time_id_of(cursor, "u")


def job_cursor(row: Mapping[str, Any]) -> str:
    """The cursor of the page after ``row`` (jobs: ``seq DESC``)."""
    return _encode("j", str(row["seq"]))


def job_before(cursor: str | None) -> int | None:
    """The seq a jobs page starts below (None: the first page)."""
    return _integer(_decode(cursor, "j")) if cursor else None
