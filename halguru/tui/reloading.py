"""Hot reload in the debugger: the project is loaded again when one of its files is saved, as a mixin of
``DevApp``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual import work

from halguru.agents.changes import edited_file
from halguru.agents.checks import check_agent_model
from halguru.agents.loader import Agent, load_agent
from halguru.errors import HalguruError
from halguru.tui.pausing import PauseActions
from halguru.tui.sidebar import RunsPanel
from halguru.tui.widgets import ChatPane


class ReloadActions(PauseActions):
    """Watch the project and reload it; a failed reload keeps the previous agent and says why."""

    # Set and used by DevApp.
    path: Path | None
    agent: Agent | None
    reload_error: str | None
    reloads: int
    conversation_id: str | None

    @work(group="watch", exit_on_error=False)
    async def watch_project(self) -> None:
        from watchfiles import awatch

        assert self.path is not None
        folder = self.path if self.path.is_dir() else self.path.parent
        async for _changes in awatch(folder, debounce=100, step=20, watch_filter=lambda _, path: edited_file(path)):
            await self.reload()

    async def reload(self) -> None:
        """Load the project again; on failure keep the previous agent and show why."""
        assert self.path is not None
        try:
            agent = await asyncio.to_thread(self._load_checked, self.path)
        except HalguruError as exc:
            self.reload_error = str(exc)
            self.notify(f"reload failed, keeping the previous version: {exc}", severity="error", timeout=8)
        else:
            old = self.agent.name if self.agent is not None else ""
            renamed = bool(old) and agent.name != old
            self.agent, self.reload_error = agent, None
            self.reloads += 1
            self.notify(f"reloaded {agent.name}")
            if renamed:  # the sidebar lists the new name's runs
                self.query_one(RunsPanel).follow(old, agent.name)
            if renamed and self.conversation_id is not None:  # the conversation is the old agent's
                self.conversation_id = None
                self.query_one(ChatPane).add_note(f"renamed {agent.name}: a new conversation starts (the old one "
                                                  "stays stored)")
        self.refresh_status()

    def _load_checked(self, path: Path) -> Agent:
        """The project, its model checked when it is the one runs use: a typo said once, not at every message."""
        agent = load_agent(path)
        if self.model_ref is None:
            check_agent_model(agent)
        return agent
