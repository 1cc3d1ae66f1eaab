"""Knowledge-base errors: one line each, printed by the CLI without a traceback."""

from __future__ import annotations

from halguru.errors import HalguruError


class KnowledgeError(HalguruError):
    """A knowledge base could not be found, created, ingested or searched. ``terminal``: the line as the CLI prints
    it on the user's own terminal, where it may say more than ``str()`` (which reaches API and web-chat clients in
    a failed run), e.g. the names of the other knowledge bases."""

    def __init__(self, message: str, terminal: str | None = None):
        super().__init__(message)
        self.terminal = terminal or message
