"""The rule for names that appear in URLs, YAML keys and file names (agents, MCP servers, models): one place,
at the bottom layer, so each layer that names things checks them the same way."""

from __future__ import annotations

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# The error messages' wording of NAME_PATTERN (`.` or `.hidden` were told to "use letters, digits, '.'").
NAME_RULE = "start with a letter or digit, then use letters, digits, '-', '_' or '.'"
