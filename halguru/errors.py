"""Errors a user can cause. The CLI prints them as one line, without a traceback."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal


class HalguruError(Exception):
    """A problem the user can fix; ``str(err)`` is the one-line message."""


class AgentSpecError(HalguruError):
    """agent.yaml (or tools.py) is invalid; ``problems``: each problem found, one line each (``validate`` lists
    them all, other commands say the first)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


class ModelError(HalguruError):
    """A model could not be found, loaded or reached."""


class ContextOverflow(ModelError):
    """The prompt does not fit the model's context even with the oldest turns left out: the input itself is too
    long, so sending it again cannot help (OpenAI's ``context_length_exceeded``)."""


class ToolError(HalguruError):
    """A tool could not be found, validated or run; ``detail``: where a tool's own code failed (its traceback)."""

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.detail = detail


class StoreError(HalguruError):
    """The trace store could not find or write something."""


class TooManyJobs(HalguruError):
    """An owner already has as many jobs waiting as it may (``enqueue_job``'s ``max_waiting``)."""


class TooManyConversations(HalguruError):
    """An owner already keeps as many conversations as it may (``create_conversation``'s ``max_owned``)."""


class StoreUnavailable(HalguruError):
    """The store's database did not answer (down, unreachable, no connection in time): nothing the caller
    did wrong, and worth trying again. Not a StoreError, so code that reads "not found" from one never takes
    an outage for a missing record."""


class StoreTimeout(StoreUnavailable):
    """The database cancelled a statement that ran past its time limit (PostgreSQL's ``statement_timeout``;
    the ``database_statement_timeout`` setting): the store answers, this one request asked too much of it."""


class ConversationBusy(HalguruError):
    """Another run is answering in this conversation now: a second turn beside it would read the same history
    and both answers would land after it, neither seeing the other (serve mode: 409)."""

    retry_after = 2.0  # seconds a caller waits before it tries again (a run answers in seconds)

    def __init__(self, conversation_id: str, run_id: str, seconds: float):
        self.conversation_id, self.run_id = conversation_id, run_id
        super().__init__(f"conversation {conversation_id} is answering another message (run {run_id}); send this "
                         f"one when it is done (a run whose process died frees it within {max(1, round(seconds))} s)")


class ConversationPaused(ConversationBusy):
    """A turn of this conversation waits for a human to approve or reject a tool call: a new message now would
    come before that turn's end, which its continuation would then add after it (serve mode: 409)."""

    retry_after = 30.0  # a human decides: no hurry

    def __init__(self, conversation_id: str, run_id: str):
        self.conversation_id, self.run_id = conversation_id, run_id
        HalguruError.__init__(self, f"conversation {conversation_id} waits for a human to approve or reject a "
                                    f"tool call of run {run_id}; send this message once it is decided")


def exception_line(exc: BaseException) -> str:
    """``Type: first line of its message`` (or the type alone): another library's or a plugin's exception, said on
    the one line of a HalguruError."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def short_repr(value: object) -> str:
    """``repr(value)`` cut to 40 characters, for a line naming what a plugin gave."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def a_kind(value: object) -> str:
    """``an int``, ``a str``: the type of what a plugin gave, for a line saying it was not what was asked."""
    kind = type(value).__name__
    return f"{'an' if kind[:1] in tuple('aeiouAEIOU') else 'a'} {kind}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the closest of ``choices`` (difflib), or "" when none is close."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def error_kind(exc: HalguruError) -> Literal["context", "model", "internal"]:
    """The ``kind`` of the error event a run reports for ``exc``."""
    if isinstance(exc, ContextOverflow):
        return "context"
    return "model" if isinstance(exc, ModelError) else "internal"
