"""A chat session: one agent, one stored conversation, many runs. Used by `halguru chat` and the TUI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from halguru.agents.events import Event, RunFinished, RunStarted
from halguru.agents.loader import Agent, load_agent
from halguru.errors import HalguruError
from halguru.models.base import Message, Model
from halguru.store import open_store
from halguru.store.base import TraceStore


@dataclass
class ChatSession:
    agent: Agent
    conversation_id: str | None = None
    model: str | None = None
    store: TraceStore = field(default_factory=open_store)
    last_run_id: str | None = None
    _resolved: tuple[str, Model] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str | Path, conversation_id: str | None = None, model: str | None = None) -> ChatSession:
        agent = load_agent(path)
        store = open_store()
        if conversation_id is not None:
            conversation = store.get_conversation(conversation_id)
            if conversation is None:
                raise HalguruError(f"no conversation {conversation_id!r}; see `halguru logs --conversations`")
            if conversation["agent"] != agent.name:
                raise HalguruError(
                    f"conversation {conversation_id} belongs to agent {conversation['agent']!r}, not {agent.name!r}")
        return cls(agent=agent, conversation_id=conversation_id, model=model, store=store)

    @property
    def model_name(self) -> str:
        return self.model or self.agent.spec.model

    def _model(self) -> Model:
        """The session's model, resolved once per reference so it keeps its state across turns."""
        from halguru.models.registry import get_model

        if self._resolved is None or self._resolved[0] != self.model_name:
            self._resolved = (self.model_name, get_model(self.model_name))
        return self._resolved[1]

    async def send(self, text: str) -> AsyncIterator[Event]:
        from halguru.agents.runtime import run

        async for event in run(self.agent, text, self.conversation_id, model=self._model(), store=self.store):
            if isinstance(event, RunStarted):
                self.conversation_id = event.conversation_id
                self.last_run_id = event.run_id
            yield event
            if isinstance(event, RunFinished):
                return

    def reset(self) -> None:
        """Start a new conversation; the old one stays stored."""
        self.conversation_id = None
        self.last_run_id = None

    def history(self) -> list[Message]:
        return self.store.get_messages(self.conversation_id) if self.conversation_id else []

    def last_trace(self) -> tuple[dict, list[dict]] | None:
        if self.last_run_id is None:
            return None
        return self.store.get_run(self.last_run_id), self.store.get_events(self.last_run_id)
