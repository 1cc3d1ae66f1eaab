"""A run that waits for the developer: at a breakpoint (F2/F3, then F4 edit, F5 continue, F6 step), for
approval of a tool call (F9/F10), or interrupted and opened to be resumed (F5). The debugger app's actions for
them, as a mixin of ``DevApp``."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from rich.text import Text
from textual.app import App
from textual.widgets import Static, TextArea
from textual.worker import Worker

from halguru.agents.events import ApprovalRequested, Event, RunFinished
from halguru.agents.hooks import BreakpointHooks, Pause
from halguru.agents.replay import StoredRun
from halguru.errors import HalguruError
from halguru.models.base import Model
from halguru.printable import printable
from halguru.store.base import TraceStore
from halguru.tui.screens import EditScreen
from halguru.tui.widgets import ChatPane


class PauseActions(App[None]):
    """Breakpoints and approvals; the pause bar, the chat notices and the inspector follow them."""

    # Set and used by DevApp.
    hooks: BreakpointHooks
    pause: Pause | None
    awaiting: dict[str, Any] | None  # the last run's tool call waiting for approval
    last_events: list[Event]
    store: TraceStore
    run_worker_: Worker[None] | None
    stored: StoredRun | None  # the open run
    resumable: bool  # it can be resumed from its checkpoint (F5)
    model_ref: str | Model | None  # the model Ctrl+O chose (None: each run's own)

    async def _turn(self, make_stream: Callable[[], Any]) -> None:
        raise NotImplementedError

    def streaming(self, then: str) -> bool:
        raise NotImplementedError

    def _model(self) -> Any:
        raise NotImplementedError

    def refresh_status(self) -> None:
        raise NotImplementedError

    # -- approvals (human in the loop) -------------------------------------------
    def _show_approval(self, events: list[Event] | None = None) -> None:
        """A run that ended paused (the last one, or a stored one opened: a channel's, waiting for someone): say
        which call waits, and how to decide it."""
        events = self.last_events if events is None else events
        self.awaiting = None
        last = events[-1] if events else None
        if isinstance(last, RunFinished) and last.status == "paused":
            asked = next((e for e in reversed(events) if isinstance(e, ApprovalRequested)), None)
            if asked is not None:
                self.awaiting = {"run_id": last.run_id, "name": asked.name, "arguments": asked.arguments}
                bar = self.query_one("#pausebar", Static)
                bar.update(Text(f"⏸ {asked.name} waits for approval · F9 approve · F10 reject"))
                bar.add_class("paused")
                self.query_one(ChatPane).add_note(f"⏸ {asked.name} waits for your approval: F9 approve · F10 reject")
        self.refresh_status()

    def waits_for_approval(self, conversation_id: str | None) -> bool:
        """Whether ``conversation_id`` has a call waiting for F9/F10 (said, with the keys): the runtime refuses a
        message to it, and the debugger lost the waiting call with that refused run (F9 said nothing waits)."""
        waiting = self.awaiting
        if waiting is None or conversation_id is None:
            return False
        try:
            if self.store.get_run(waiting["run_id"])["conversation_id"] != conversation_id:
                return False
        except HalguruError:  # the run is gone (pruned): the runtime says what it says
            return False
        self.notify(f"{waiting['name']} waits for approval: F9 approve or F10 reject it, then send your message "
                    "(Ctrl+N starts a new conversation)", severity="warning")
        return True

    def action_approve(self) -> None:
        waiting = self.awaiting
        if waiting is None:
            self.notify("no tool call waits for approval", severity="warning")
            return
        current = json.dumps(waiting["arguments"], indent=2, ensure_ascii=False)

        def problem(text: str) -> str | None:  # checked before the dialog closes: a refused edit decides nothing
            from halguru.orchestration.approvals import edited_args_problem

            found = _json_object_problem(text)
            row = self.store.find_approval(waiting["run_id"]) if found is None and self.store is not None else None
            return edited_args_problem(row, json.loads(text)) if row is not None else found

        def approved(text: str | None) -> None:
            if text is not None:
                args = json.loads(text)
                self.run_worker_ = self.run_worker(
                    self.decide(waiting["run_id"], args if args != waiting["arguments"] else None, None),
                    group="run", exit_on_error=False)

        self.push_screen(EditScreen(f"Approve {waiting['name']} with these arguments", current, problem),
                         approved)

    def action_reject(self) -> None:
        waiting = self.awaiting
        if waiting is None:
            self.notify("no tool call waits for approval", severity="warning")
            return

        def rejected(reason: str | None) -> None:
            if reason is not None:
                self.run_worker_ = self.run_worker(self.decide(waiting["run_id"], None, reason.strip()),
                                                   group="run", exit_on_error=False)

        self.push_screen(EditScreen(f"Reject {waiting['name']}: why (the model is told)", ""), rejected)

    async def decide(self, run_id: str, edit_args: dict[str, Any] | None, reason: str | None) -> None:
        """Approve (``reason`` None) or reject the paused call; the continuation streams into the chat."""
        from halguru.orchestration.approvals import resume_events

        waiting, self.awaiting = self.awaiting, None
        self._clear_pause()
        # The run's own approval_approved / approval_rejected event says which call was decided; this says how.
        if reason:
            self.query_one(ChatPane).add_note(f"why: {reason}")
        elif edit_args is not None:
            self.query_one(ChatPane).add_note(f"✎ with the arguments {json.dumps(edit_args, ensure_ascii=False)}")
        await self._turn(lambda: resume_events(run_id, edit_args, reject=reason, model=self._model(),
                                               store=self.store))
        row = self.store.find_approval(run_id) if self.store is not None else None
        if waiting is not None and self.awaiting is None and row is not None and row["status"] == "pending":
            self.awaiting = waiting  # refused before anything was decided (its model did not load): F9/F10 again
            bar = self.query_one("#pausebar", Static)
            bar.update(Text(f"⏸ {waiting['name']} still waits for approval · F9 approve · F10 reject"))
            bar.add_class("paused")
            self.refresh_status()

    # -- breakpoints ----------------------------------------------------------
    def _on_pause(self, pause: Pause) -> None:
        self.pause = pause
        what = {"model_call": "model call (F4 edits the next message)",
                "tool_call": f"tool call {pause.value.name if pause.kind == 'tool_call' else ''} "
                             "(F4 edits the arguments)",
                "tool_result": "tool result (F4 edits it)"}[pause.kind]
        bar = self.query_one("#pausebar", Static)
        bar.update(Text(f"⏸ paused before {what} · F5 continue · F6 step"))
        bar.add_class("paused")
        self.query_one(ChatPane).add_note(f"⏸ paused at a breakpoint before the {what}")
        self.query_one("#inspector", TextArea).text = printable(self.pending_text())
        self.refresh_status()

    def pending_text(self) -> str:
        pause = self.pause
        if pause is None:
            return ""
        if pause.kind == "model_call":
            return "\n\n".join(f"--- {m.role} ---\n{m.content}" for m in pause.value.messages)
        if pause.kind == "tool_call":
            return json.dumps(pause.value.arguments, indent=2, ensure_ascii=False)
        return pause.value[1]

    def _clear_pause(self) -> None:
        self.pause = None
        bar = self.query_one("#pausebar", Static)
        bar.remove_class("paused")
        self.refresh_status()

    def action_toggle_model_break(self) -> None:
        self.hooks.break_models = not self.hooks.break_models
        self.notify(f"breakpoint before model calls {'on' if self.hooks.break_models else 'off'}")
        self.refresh_status()

    def action_toggle_tool_break(self) -> None:
        self.hooks.break_tools = not self.hooks.break_tools
        self.notify(f"breakpoint before tool calls {'on' if self.hooks.break_tools else 'off'}")
        self.refresh_status()

    def _resume(self, stepping: bool) -> None:
        if self.pause is None:
            self.notify("nothing is paused", severity="warning")
            return
        pause, self.hooks.stepping = self.pause, stepping
        self._clear_pause()
        pause.resume()

    def action_continue(self) -> None:
        """F5: continue the run paused at a breakpoint, or resume the open interrupted run from its checkpoint (as
        `halguru runs resume`), with the model Ctrl+O chose or else the run's own."""
        if self.pause is not None or not self.resumable or self.stored is None:
            self._resume(False)
            return
        if self.streaming("resume it"):
            return
        run_id, self.resumable = self.stored.id, False
        self.query_one(ChatPane).add_note(f"resuming {run_id} from its last checkpoint")
        self.run_worker_ = self.run_worker(self._resume_stored(run_id), group="run", exit_on_error=False)

    async def _resume_stored(self, run_id: str) -> None:
        from halguru.orchestration.durable import check_resumable, resume_events

        await self._turn(lambda: resume_events(run_id, model=self.model_ref, store=self.store))
        if self.stored is not None and self.stored.id == run_id:  # refused before it started: F5 may try again
            with suppress(HalguruError):
                self.resumable = check_resumable(self.store, run_id)[1] is not None
            self.refresh_status()

    def action_step(self) -> None:
        self._resume(True)

    def action_edit(self) -> None:
        pause = self.pause
        if pause is None:
            self.notify("nothing is paused: set a breakpoint (F2/F3) first", severity="warning")
            return
        titles = {"model_call": "Next message", "tool_call": f"Arguments of {getattr(pause.value, 'name', '')}",
                  "tool_result": "Tool result"}
        current = pause.value.messages[-1].content if pause.kind == "model_call" else self.pending_text()
        validate = _json_object_problem if pause.kind == "tool_call" else None
        self.push_screen(EditScreen(titles[pause.kind], current, validate), lambda text: self.apply_edit(text))

    def apply_edit(self, text: str | None) -> None:
        """Put the edited value in place of the pending one; the run uses it when resumed."""
        pause = self.pause
        if text is None or pause is None:
            return
        chat = self.query_one(ChatPane)
        if pause.kind == "tool_call":
            pause.value = pause.value.model_copy(update={"arguments": json.loads(text)})
            chat.add_note(f"✎ {pause.value.name} will run with {json.dumps(json.loads(text), ensure_ascii=False)}")
        elif pause.kind == "tool_result":
            call, _, is_error = pause.value
            pause.value = (call, text, is_error)
            chat.add_note(f"✎ the model gets {call.name}'s result as: {text}")
        else:
            last = pause.value.messages[-1].model_copy(update={"content": text})
            pause.value.messages = [*pause.value.messages[:-1], last]
            if last.role == "user":
                chat.edit_last_user(text)
            else:
                chat.add_note(f"✎ the next message ({last.role}) is now: {text}")
        self.query_one("#inspector", TextArea).text = printable(self.pending_text())
        self.notify("edited: F5 to continue with it")


def _json_object_problem(text: str) -> str | None:
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    return None if isinstance(value, dict) else "the arguments must be a JSON object"
