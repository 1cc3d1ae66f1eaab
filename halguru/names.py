"""The rule for names that appear in URLs, YAML keys and file names (agents, MCP servers, models): one place,
at the bottom layer, so each layer that names things checks them the same way."""

from __future__ import annotations

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# The error messages' wording of NAME_PATTERN (`.` or `.hidden` were told to "use letters, digits, '.'").
NAME_RULE = "start with an ASCII letter or digit, then use ASCII letters, digits, '-', '_' or '.'"
# Names reach the store's indexed columns (PostgreSQL refuses an index row over ~2,700 bytes, said as an outage)
# and the API's routes (an embed URL takes 100); NAME_PATTERN is ASCII, so characters are bytes.
NAME_MAX = 100


def name_too_long(name: str) -> str | None:
    """The reason a name is too long, or None."""
    return f"at most {NAME_MAX} characters (it has {len(name)})" if len(name) > NAME_MAX else None
