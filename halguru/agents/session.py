"""A chat session: one agent, one stored conversation, many runs. Used by `halguru chat` and the TUI."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halguru.agents.changes import FileState, changed_files, project_state
from halguru.agents.checks import check_agent_knowledge, check_agent_model
from halguru.agents.events import Event, RunFinished, RunStarted
from halguru.agents.loader import Agent, load_agent
from halguru.errors import HalguruError
from halguru.models.base import Message, Model
from halguru.store import open_store
from halguru.store.base import TraceStore
from halguru.store.records import RunRecord


@dataclass
class ChatSession:
    agent: Agent
    conversation_id: str | None = None
    model: str | None = None
    store: TraceStore = field(default_factory=open_store)
    last_run_id: str | None = None
    sampling: dict[str, Any] | None = None  # overrides of the agent's sampling (temperature, max_tokens, seed)
    source: Path | None = None  # what the project was loaded from (its folder or its agent.yaml): reloaded from
    _resolved: dict[str, Model] = field(default_factory=dict, repr=False)
    _files: FileState = field(default_factory=dict, repr=False)  # the project's files as last loaded

    def __post_init__(self) -> None:
        self._files = project_state(self.agent)

    @classmethod
    def open(cls, path: str | Path, conversation_id: str | None = None, model: str | None = None,
             sampling: dict[str, Any] | None = None) -> ChatSession:
        agent = load_agent(path)
        if model is None:  # a chat (or `halguru dev`) whose every answer fails: one line before it starts
            check_agent_model(agent)
        check_agent_knowledge(agent)
        store = open_store()
        conversation_id = conversation_reference(store, agent.name, conversation_id)
        if conversation_id is not None:
            conversation = store.get_conversation(conversation_id)
            if conversation is None:
                raise HalguruError(f"no conversation {conversation_id!r}; see `halguru logs --conversations`")
            if conversation["agent"] != agent.name:
                raise HalguruError(
                    f"conversation {conversation_id} belongs to agent {conversation['agent']!r}, not {agent.name!r}")
        return cls(agent=agent, conversation_id=conversation_id, model=model, store=store, sampling=sampling,
                   source=Path(path))

    def reload(self) -> Reload | None:
        """Load the project again when one of its files changed since it was loaded (agent.yaml, tools.py, a
        prompt file; a team member's or a step agent's too), as `halguru dev` does on save; None when none did.
        A version that does not load (or names a model that is not there) leaves the session with the one it
        has, and is said once: the next message answers with the previous version until the files change."""
        files = project_state(self.agent)
        changed = changed_files(self._files, files)
        if not changed or self.source is None:
            return None
        self._files = files
        base = self.source if self.source.is_dir() else self.source.parent
        names = [os.path.relpath(path, base) for path in changed]
        try:
            agent = load_agent(self.source)
            if self.model is None:
                check_agent_model(agent)
        except HalguruError as exc:
            return Reload(names, error=str(exc))
        renamed = agent.name != self.agent.name
        self.agent, self._files = agent, project_state(agent)
        if renamed and self.conversation_id is not None:  # the conversation is the old agent's: not continued
            self.reset()
            return Reload(names, new_conversation=True)
        return Reload(names)

    @property
    def model_name(self) -> str:
        return self.model or self.agent.spec.model

    def _model(self) -> Any:
        """The session's model, resolved once per reference so it keeps its state across turns; without
        ``--model``, each member of a team and each workflow step keeps its own."""
        if self.model is None and self.agent.driver is not None:
            from halguru.models.base import PerAgentModel

            return PerAgentModel(self._resolve)
        return self._resolve(self.model_name)

    def _resolve(self, reference: str) -> Model:
        from halguru.models.registry import get_model

        if reference not in self._resolved:
            self._resolved[reference] = get_model(reference)
        return self._resolved[reference]

    async def send(self, text: str) -> AsyncIterator[Event]:
        from halguru.agents.runtime import run
        from halguru.tools.mcp import keep_servers_running

        if self.agent.uses_mcp():  # a chat keeps its MCP servers for the next turns (close() stops them)
            keep_servers_running()
        # Closed with this generator: a caller that stops listening cancels the run now, not at garbage collection.
        async with aclosing(run(self.agent, text, self.conversation_id, model=self._model(),
                                store=self.store, sampling=self.sampling)) as events:
            async for event in events:
                if isinstance(event, RunStarted):
                    self.conversation_id = event.conversation_id
                    self.last_run_id = event.run_id
                yield event
                if isinstance(event, RunFinished):
                    return

    async def close(self) -> None:
        """Stop the MCP servers this session kept running (call it on the loop its turns ran on)."""
        from halguru.tools.mcp import stop_kept_servers

        await stop_kept_servers()

    def reset(self) -> None:
        """Start a new conversation; the old one stays stored."""
        self.conversation_id = None
        self.last_run_id = None

    def history(self) -> list[Message]:
        return self.store.get_messages(self.conversation_id) if self.conversation_id else []

    def last_trace(self) -> tuple[RunRecord, list[dict[str, Any]]] | None:
        if self.last_run_id is None:
            return None
        return self.store.get_run(self.last_run_id), self.store.get_events(self.last_run_id)


@dataclass(frozen=True)
class Reload:
    """What a reload did: the files that changed, and the error that kept the previous version, if any."""

    files: list[str]
    error: str | None = None
    new_conversation: bool = False  # the agent's name changed: its old conversation is not continued


LAST = "last"
"""``--conversation last``: the agent's most recently active conversation."""


def conversation_reference(store: TraceStore, agent: str, reference: str | None) -> str | None:
    """The conversation id that ``--conversation`` names: an id as given, or ``last``, this agent's most
    recently active conversation, not one `halguru test` made (an error when it has none)."""
    if reference != LAST:
        return reference
    latest = _newest_conversation(store, agent)
    if latest is None:
        raise HalguruError(f"agent {agent!r} has no conversation yet; leave out --conversation to start one")
    return latest


def _newest_conversation(store: TraceStore, agent: str | None) -> str | None:
    """The conversation of the newest run (of ``agent``) that `halguru test` or `eval` did not make: `halguru logs`
    hides those runs, and `run -c last` after a `halguru test` went on with the test's conversation."""
    for run in store.list_runs(20, agent, test_runs=False):
        if run.get("conversation_id") and store.get_conversation(run["conversation_id"]) is not None:
            return run["conversation_id"]
    return None


def listed_conversation(store: TraceStore, reference: str, agent: str | None = None) -> str:
    """The conversation `halguru logs` is given (``-c``, ``logs conversation``): ``last``, the newest one (this
    agent's, with ``agent``), or an id that is stored; an error otherwise, never a filter that matches nothing."""
    if reference == LAST:
        newest = _newest_conversation(store, agent)
        if newest is None:
            of_agent = f" of agent {agent!r}" if agent else ""
            raise HalguruError(f"no conversation{of_agent} yet: `halguru run` or `halguru chat` an agent first")
        return newest
    if store.get_conversation(reference) is None and not store.list_runs(1, conversation_id=reference,
                                                                          test_runs=True):
        raise HalguruError(f"no conversation {reference!r}; `halguru logs --conversations` lists them")
    return reference


def run_reference(store: TraceStore, reference: str) -> str:
    """The run a command is given: an id or unique prefix as given, or ``last``, the latest run (not one that
    `halguru test` made, as `halguru logs` lists them; an error when there is none)."""
    if reference != LAST:
        return reference
    latest = store.list_runs(1, test_runs=False)
    if not latest:
        raise HalguruError("no run yet: `halguru run` or `halguru chat` an agent first (`halguru logs -a` lists "
                           "the runs `halguru test` made)")
    return latest[0]["id"]
