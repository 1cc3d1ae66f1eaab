"""Replay (F7) and fork (F8) of the open run in the debugger, as a mixin of ``DevApp``: the comparison of the
two runs opens in its own screen."""

from __future__ import annotations

from typing import Any

from halguru.agents.events import Event
from halguru.agents.replay import StoredRun, compare_runs, fork, replay
from halguru.errors import HalguruError
from halguru.tui.reloading import ReloadActions
from halguru.tui.replaying import explain, verdict
from halguru.tui.screens import CompareScreen
from halguru.tui.widgets import ChatPane, TraceTree


class RerunActions(ReloadActions):
    """Run the open run again: replayed from its records, or forked at the selected event with the agent now."""

    async def consume(self, stream: Any, chat: ChatPane | None = None) -> list[Event]:
        raise NotImplementedError

    def sampling(self) -> dict[str, Any]:
        raise NotImplementedError

    def refresh_sidebar(self) -> None:
        raise NotImplementedError

    def action_replay(self) -> None:
        if self.stored is None:
            self.notify("open a stored run first (sidebar, --run) or send a message", severity="warning")
            return
        if self.streaming("replay"):
            return
        self.run_worker(self._replay(self.stored), group="replay", exit_on_error=False)

    async def _replay(self, stored: StoredRun) -> None:
        events = await self.consume(replay(stored))
        comparison = compare_runs(stored.events, events, "recorded", "replay")
        why = explain(stored.events, events)
        outcome, good = verdict(comparison.same_answer, why)
        self.notify(f"replay of {stored.id}: {outcome}", severity="information" if good else "error")
        self.push_screen(CompareScreen(f"Replay of {stored.id}: {outcome}", "\n".join(comparison.left),
                                       "\n".join(comparison.right), why.text(comparison.tree_diff)))

    def action_fork(self) -> None:
        if self.stored is None or self.agent is None:
            self.notify("fork needs an open run and an agent project", severity="warning")
            return
        if self.streaming("fork"):
            return
        node = self.query_one(TraceTree).cursor_node
        at = node.data.seq if node is not None and node.data is not None else 0
        self.run_worker(self._fork(self.stored, at), group="replay", exit_on_error=False)

    async def _fork(self, stored: StoredRun, at: int) -> None:
        assert self.agent is not None
        try:
            events = await self.consume(fork(stored, at, self.agent, self._model(), store=self.store,
                                             sampling=self.sampling()))
        except HalguruError as exc:
            self.notify(str(exc), severity="error")
            return
        comparison = compare_runs(stored.events, events, "original", "fork")
        diff = f"answers:\n{comparison.answer_diff or 'same'}\n\nevents:\n{comparison.tree_diff or 'same'}"
        self.push_screen(CompareScreen(f"Fork of {stored.id} at event {at}", "\n".join(comparison.left),
                                       "\n".join(comparison.right), diff))
        self.refresh_sidebar()
