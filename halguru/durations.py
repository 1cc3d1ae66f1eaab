"""Durations as people type them: 45s, 30m, 1h, 2d, 1w (``logs --since``, ``--older-than``, key lifetimes)."""

from __future__ import annotations

import email.utils
import re
import time

from halguru.errors import HalguruError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_SECONDS = 100 * 365 * 86400  # nobody means more, and a date that far off overflows (year 9999)
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", re.ASCII)  # ASCII: "３d" is not 3 days


def parse_duration(text: str, what: str) -> float:
    """``text`` in seconds; a one-line error naming ``what`` (the option or field) for anything else."""
    found = _DURATION.fullmatch(text.lower())
    if found is None:
        raise HalguruError(f"{what}: {text!r} is not a duration; give a number and a unit, e.g. 30m, 1h, 2d or 1w")
    seconds = float(found.group(1)) * UNITS[found.group(2)]
    if seconds > MAX_SECONDS:
        raise HalguruError(f"{what}: {text!r} is longer than 100 years")
    return seconds


def retry_after_seconds(value: str | None) -> float | None:
    """An HTTP ``Retry-After`` header in seconds from now (it is a number or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
