"""The rule for names that appear in URLs, YAML keys and file names (agents, MCP servers, models): one place,
at the bottom layer, so each layer that names things checks them the same way."""

from __future__ import annotations

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
NAME_RULE = "use letters, digits, '-', '_' or '.'"  # the error messages' wording of NAME_PATTERN
