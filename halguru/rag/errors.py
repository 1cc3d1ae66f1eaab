"""Knowledge-base errors: one line each, printed by the CLI without a traceback."""

from __future__ import annotations

from halguru.errors import HalguruError


class KnowledgeError(HalguruError):
    """A knowledge base could not be found, created, ingested or searched."""
