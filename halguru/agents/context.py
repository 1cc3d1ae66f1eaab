"""What a run shares with its sub-runs: one trace, one deadline, the caller's hooks, the usage totals.

A sub-run (a specialist answering ``ask_<agent>``, a workflow's agent step) gets a child context: its own
run id and its parent's id on its events, the same trace numbering, the same deadline (or its own, if that
is sooner), the same hooks (so breakpoints stop inside it) and usage counted toward the top-level run.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from halguru.agents.events import BaseEvent, ModelCall, compact_history
from halguru.agents.hooks import RunHooks

E = TypeVar("E", bound=BaseEvent)

if TYPE_CHECKING:
    from halguru.agents.loader import Agent
    from halguru.agents.policies import Resume
    from halguru.models.base import Message, Model, PerAgentModel, ToolCallRequest
    from halguru.store.base import TraceStore
    from halguru.tools.decorator import Tool


def new_id(prefix: str) -> str:
    """Sortable, short, unique enough: hex milliseconds then random hex."""
    return f"{prefix}_{int(time.time() * 1000):x}{secrets.token_hex(3)}"


class Trace:
    """Numbers the events of one top-level run (and its sub-runs) and buffers them for the store."""

    # Events reach the store at most this often (and always when the run ends): one SQLite
    # transaction per step cost ~90 µs a step; a killed process loses at most this much trace.
    FLUSH_INTERVAL = 0.25

    def __init__(self, run_id: str, store: TraceStore | None):
        self.run_id = run_id
        self.store = store
        self.seq = 0
        self.step = 0
        self.pending: list[BaseEvent] = []
        self.flushed_at = time.monotonic()
        self.observe: Callable[[BaseEvent], None] | None = None  # telemetry: spans from the events (when on)
        self.history: list[Message] = []  # the conversation's messages before the run (stored by reference)
        self._history_dumps: list[dict[str, Any]] | None = None

    def __call__(self, event: E) -> E:
        """Number ``event`` (a sub-run's events keep the run id they were given) and buffer it for the store."""
        # Written straight into the fields: pydantic's __setattr__ costs ~1 µs each, three times per event, and
        # these plain values need no validation (no model sets validate_assignment).
        fields = event.__dict__
        if not fields["run_id"]:
            fields["run_id"] = self.run_id
        fields["seq"] = self.seq
        fields["step"] = self.step  # the top-level run's step, for a sub-run's events too
        self.seq += 1
        if self.observe is not None:
            self.observe(event)
        if self.store is not None and event.type != "token":
            self.pending.append(event)
        return event

    def take(self) -> list[BaseEvent]:
        """The events to store since the last take, each model call's copy of the history as its marker."""
        pending, self.pending = self.pending, []
        self.flushed_at = time.monotonic()
        if self.history:
            pending = [self._compact(e) if isinstance(e, ModelCall) else e for e in pending]
        return pending

    def _compact(self, event: ModelCall) -> BaseEvent:
        if self._history_dumps is None:
            self._history_dumps = [m.model_dump(exclude_defaults=True) for m in self.history]
        messages = compact_history(event.messages, self._history_dumps)
        return event if messages is None else event.model_copy(update={"messages": messages})

    def flush(self, force: bool = False) -> None:
        if self.store is None or not self.pending:
            return
        if force or time.monotonic() - self.flushed_at >= self.FLUSH_INTERVAL:
            self.store.record_events(self.run_id, self.take())


@dataclass
class Totals:
    """Model calls and tokens of a run, its sub-runs included; a resumed run's count on from its checkpoint's
    (the budgets, max_steps and max_tokens, span the resume) and ``carried`` keeps what those were."""

    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    carried: tuple[int, int, int] = (0, 0, 0)

    def state(self) -> dict[str, int]:
        return {"steps": self.steps, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens}

    def own(self) -> dict[str, int]:
        """This run's own model calls and tokens, what it stores: a resumed run's, less the calls it reused (the
        run it resumed counted them), so runs add up to what the models were asked."""
        steps, prompt, completion = self.carried
        return {"steps": self.steps - steps, "prompt_tokens": self.prompt_tokens - prompt,
                "completion_tokens": self.completion_tokens - completion}

    @classmethod
    def resumed(cls, resume: Resume | None) -> Totals:
        """A continuation of an interrupted run counts on from its checkpoint; any other run from zero."""
        state = resume.state if resume is not None and resume.state else {}
        counts = (state.get("steps", 0), state.get("prompt_tokens", 0), state.get("completion_tokens", 0))
        return cls(*counts, carried=counts)


@dataclass
class RunContext:
    """One run's shared state; drivers and the loop read it, sub-runs get a ``child``."""

    run_id: str
    conversation_id: str
    deadline: float  # event-loop time
    trace: Trace
    store: TraceStore | None = None
    hooks: RunHooks = field(default_factory=RunHooks)
    totals: Totals = field(default_factory=Totals)
    model: str | Model | PerAgentModel | None = None  # the caller's --model override (None: each agent's own)
    sampling: dict[str, Any] | None = None
    resume: Resume | None = None
    parent_run_id: str = ""
    mcp: dict[str, Any] = field(default_factory=dict)  # agent name -> its MCP toolbox, open until the run ends
    # Durable runs (teams, workflows): the driver's state now, saved after each step for a resume to start from.
    durable_state: Callable[[], dict[str, Any]] | None = None
    checkpoint_state: dict[str, Any] | None = None  # the state to save with the checkpoint event being yielded
    running_tool: Tool | None = None  # the tool a cancellation interrupted, if any
    running_call: ToolCallRequest | None = None  # its call, and since when (perf_counter): a cut call is traced
    running_since: float = 0.0
    _models: dict[str, Model] = field(default_factory=dict)
    is_sub_run: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_sub_run = bool(self.parent_run_id)

    def child(self, deadline: float | None = None) -> RunContext:
        """The context of a sub-run: same trace, hooks, totals, model override and MCP servers; its own id."""
        return RunContext(new_id("run"), self.conversation_id, min(self.deadline, deadline or self.deadline),
                          self.trace, self.store, self.hooks, self.totals, self.model, self.sampling,
                          parent_run_id=self.run_id, mcp=self.mcp, _models=self._models)

    def tag(self, event: BaseEvent) -> BaseEvent:
        """Name this sub-run on an event it emits (not on one a deeper sub-run already named); the top-level
        run's events get their id when traced."""
        if self.parent_run_id and not event.run_id:
            event.run_id, event.parent_run_id = self.run_id, self.parent_run_id
        return event

    def model_for(self, agent: Agent, *, shared: bool = True) -> Model:
        """``--model`` wins for every agent; otherwise the agent's own model, resolved once per run (a team's
        members share it) or, with ``shared=False``, afresh (each workflow step gets its own)."""
        from halguru.models.base import PerAgentModel

        ref = self.model if self.model is not None else agent.spec.model
        if isinstance(ref, PerAgentModel):
            return ref.for_agent(agent.spec.model)
        if not isinstance(ref, str):
            return ref
        from halguru.models.registry import get_model

        if not shared:
            return get_model(ref)
        if ref not in self._models:
            self._models[ref] = get_model(ref)
        return self._models[ref]

    def checkpoint_after(self, label: str, state: dict[str, Any] | None = None) -> BaseEvent | None:
        """A checkpoint event to yield (the top-level run saves the state with it, in one transaction), or
        None when the run is not durable. ``state`` defaults to the driver's ``durable_state()``."""
        if self.durable_state is None or self.is_sub_run or self.store is None:  # nothing saved: no event
            return None
        from halguru.agents.events import Checkpoint

        self.checkpoint_state = {**(state if state is not None else self.durable_state()), **self.totals.state()}
        return Checkpoint(label=label)
