"""Errors a user can cause. The CLI prints them as one line, without a traceback."""

from __future__ import annotations


class HalguruError(Exception):
    """A problem the user can fix; ``str(err)`` is the one-line message."""


class AgentSpecError(HalguruError):
    """agent.yaml (or tools.py) is invalid."""


class ModelError(HalguruError):
    """A model could not be found, loaded or reached."""


class ToolError(HalguruError):
    """A tool could not be found, validated or run."""


class StoreError(HalguruError):
    """The trace store could not find or write something."""
