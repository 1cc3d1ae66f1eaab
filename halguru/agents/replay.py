"""Replay and fork stored runs: the library behind `halguru dev`'s replay and compare.

Replay feeds a run's recorded model outputs and tool results back through the same
runtime (``run`` with hooks), so no model is called and the answer is identical. A fork
feeds back only what happened before a chosen event, then goes on live with the current
agent and model; ``compare_runs`` diffs the two answers and event trees.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from halguru.agents.client_tools import ClientTools
from halguru.agents.describe import describe, parse_events
from halguru.agents.events import (
    Event,
    Handoff,
    ModelCall,
    ModelResult,
    RunFinished,
    RunStarted,
    ToolCall,
    ToolResult,
    parse_event,
)
from halguru.agents.hooks import RunHooks
from halguru.agents.loader import Agent
from halguru.agents.spec import AgentSpec
from halguru.errors import HalguruError, StoreError
from halguru.models.base import (
    Chunk,
    Message,
    Model,
    ModelRequest,
    TextChunk,
    ToolCallChunk,
    ToolCallRequest,
    ToolSpec,
    UsageChunk,
)
from halguru.models.scripted import word_pieces
from halguru.store.base import TraceStore
from halguru.store.records import RunRecord


@dataclass
class StoredRun:
    """A run from the trace store, its events parsed back into typed events."""

    run: RunRecord
    events: list[Event]
    agent_path: str | None = None  # a team or workflow run's agent folder (from its checkpoint)

    @property
    def id(self) -> str:
        return str(self.run["id"])

    # The run's own calls and results: a sub-run's (a specialist's, a workflow step's) are folded into the
    # result of the tool or step that started it, which replay feeds back whole.
    def model_calls(self) -> list[ModelCall]:
        return [e for e in self.events if isinstance(e, ModelCall) and not e.parent_run_id]

    def model_results(self) -> list[ModelResult]:
        return [e for e in self.events if isinstance(e, ModelResult) and not e.parent_run_id]

    def tool_results(self) -> list[ToolResult]:
        return [e for e in self.events if isinstance(e, ToolResult) and not e.parent_run_id]


def load_run(store: TraceStore, run_id: str) -> StoredRun:
    """A stored run by id (or prefix, or ``last``); a missing or corrupt one raises a one-line error."""
    from halguru.agents.session import run_reference

    run = store.get_run(run_reference(store, run_id))
    try:
        events = [parse_event(e) for e in store.get_events(run["id"])]
    except (ValueError, TypeError) as exc:
        raise StoreError(f"run {run['id']} has a corrupt event in the trace store: "
                         f"{str(exc).splitlines()[0]}") from None
    if not events and run.get("status") == "running":  # its events are stored as it goes on, or when it ends
        raise StoreError(f"run {run['id']} is still running: open or replay it once it has finished")
    if not events or not isinstance(events[0], RunStarted):
        raise StoreError(f"run {run['id']} has no recorded events to open or replay")
    checkpoint = store.get_checkpoint(run["id"])
    return StoredRun(run, events, checkpoint["agent_path"] if checkpoint else None)


class RecordedModel:
    """Streams recorded outputs in order, then (in a fork) hands over to a live model."""

    def __init__(self, results: list[ModelResult], name: str, live: Model | None = None):
        self.results = results
        self.name = live.name if live is not None else name
        self.live = live
        self.position = 0

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        index = self.position
        self.position += 1
        if index >= len(self.results):
            if self.live is None:
                raise HalguruError(f"replay: model call {index + 1} is not in the recorded run")
            async for chunk in self.live.stream(request):
                yield chunk
            return
        recorded = self.results[index]
        for piece in word_pieces(recorded.text):
            yield TextChunk(piece)
        for call in recorded.tool_calls:
            yield ToolCallChunk(ToolCallRequest(**call))
        yield UsageChunk(prompt_tokens=recorded.prompt_tokens, completion_tokens=recorded.completion_tokens,
                         cached_tokens=recorded.cached_tokens, finish_reason=recorded.finish_reason)


@dataclass
class ReplayHooks(RunHooks):
    """Feeds recorded tool results back (no tool runs) and, in a pure replay, the recorded prompts."""

    calls: list[ModelCall]
    results: list[ToolResult]
    exact_prompts: bool = True
    history: list[Message] = field(default_factory=list)
    model_position: int = 0
    by_call: dict[str, deque[ToolResult]] = field(init=False)

    def __post_init__(self) -> None:
        # By call id, not in order: a continuation's first result is the approved call's, which came before its
        # first model call (where a replay starts), and a fork's live calls get none. A queue per id: some
        # models number their calls afresh each turn.
        self.by_call = {}
        for result in self.results:
            self.by_call.setdefault(result.call_id, deque()).append(result)

    async def before_model_call(self, request: ModelRequest) -> ModelRequest:
        index = self.model_position
        self.model_position += 1
        if self.exact_prompts and index < len(self.calls):
            recorded = self.calls[index]
            request.messages = [Message(**m) for m in recorded.messages]
            request.tools = [ToolSpec(name=n, description="", parameters={}) for n in recorded.tools]
        elif self.history:  # a fork: the conversation before the run, then the live prompt
            system = [m for m in request.messages if m.role == "system"]
            rest = [m for m in request.messages if m.role != "system"]
            request.messages = [*system, *self.history, *rest]
        return request

    async def supply_tool_result(self, call: ToolCallRequest) -> tuple[str, bool] | None:
        """The recorded result of this call (the recorded model output gave it its id), or None to run it."""
        queue = self.by_call.get(call.id)
        if not queue:
            return None
        recorded = queue.popleft()
        return recorded.content, recorded.is_error


class PromptMatchedModel:
    """Answers each request with the recorded output of the model call that sent the same messages (the first
    not used yet), whatever order the calls come in: parallel workflow steps replay faithfully."""

    def __init__(self, events: list[Event], name: str):
        self.name = name
        self.pending: list[tuple[list[dict[str, Any]], ModelResult]] = []
        asked: dict[str, ModelCall] = {}  # run id -> its model call waiting for a result
        for e in events:
            if isinstance(e, ModelCall):
                asked[e.run_id] = e
            elif isinstance(e, ModelResult) and e.run_id in asked:
                self.pending.append((asked.pop(e.run_id).messages, e))

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        sent = [m.model_dump(exclude_defaults=True) for m in request.messages]
        index = next((i for i, (messages, _) in enumerate(self.pending) if messages == sent), None)
        if index is None:
            last = sent[-1]["content"][:80] if sent else ""
            raise HalguruError(f"replay: no recorded model call sent these messages (the agent's prompt or files "
                               f"changed since the run?); the last one was {last!r}")
        _, recorded = self.pending.pop(index)
        async for chunk in RecordedModel([recorded], self.name).stream(request):
            yield chunk


class RecordedResults(RunHooks):
    """Feeds back each tool call's recorded result by call id, in order (a workflow step's ``retries:`` call its
    tool again under its id; no tool runs); a call the run never made gets an error result rather than running for
    real."""

    def __init__(self, events: list[Event]):
        self.results: dict[str, deque[tuple[str, bool]]] = {}
        for e in events:
            if isinstance(e, ToolResult):
                self.results.setdefault(e.call_id, deque()).append((e.content, e.is_error))

    async def supply_tool_result(self, call: ToolCallRequest) -> tuple[str, bool] | None:
        queue = self.results.get(call.id)
        if not queue:
            return f"error: replay: {call.name} (call {call.id}) was not in the recorded run", True
        return queue.popleft()


def _through_driver(stored: StoredRun, agent: Agent | None) -> Agent | None:
    """The team or workflow agent to replay ``stored`` through, when the run can be reproduced event for event:
    it started its conversation (no earlier messages) with its lead holding it."""
    started = stored.events[0]
    assert isinstance(started, RunStarted)
    if agent is None and stored.agent_path:
        from halguru.agents.loader import load_agent
        from halguru.errors import AgentSpecError

        try:
            agent = load_agent(stored.agent_path)
        except AgentSpecError:
            return None
    if agent is None or agent.driver is None or agent.name != started.agent or _prior_history(stored):
        return None
    holds = next((e for e in stored.events[1:3] if isinstance(e, Handoff)), None)
    return None if holds is not None and holds.reason == "holds the conversation" else agent


def _prior_history(stored: StoredRun) -> list[Message]:
    """The conversation before this run, as its first model call sent it."""
    calls = stored.model_calls()
    if not calls:
        return []
    messages = [Message(**m) for m in calls[0].messages if m.get("role") != "system"]
    return messages[:-1]  # the last one is this run's input


def _replay_agent(stored: StoredRun) -> Agent:
    started = stored.events[0]
    assert isinstance(started, RunStarted)
    steps = max(len(stored.model_calls()), 1)
    spec = AgentSpec(name=started.agent, model="scripted", limits={"max_steps": steps, "timeout": 3600})
    return Agent(spec=spec)


def replay(stored: StoredRun, *, agent: Agent | None = None, metadata: dict[str, Any] | None = None
           ) -> AsyncIterator[Event]:
    """Re-run ``stored`` from its records: same prompts, outputs and tool results; nothing stored.

    A team or workflow run (its agent is ``agent`` or the folder its checkpoint names) is re-run through its
    driver, each model call answered by the recorded call that sent the same messages and each tool call by
    its recorded result: sub-runs, handoffs, steps and checkpoints come back event for event. Other runs
    replay through a plain loop fed the top-level run's recorded prompts, outputs and tool results.
    """
    started = stored.events[0]
    assert isinstance(started, RunStarted)
    from halguru.agents.runtime import run

    meta = {"replay_of": stored.id, **(metadata or {})}
    driven = _through_driver(stored, agent)
    if driven is not None:
        return run(driven, started.input, model=PromptMatchedModel(stored.events, started.model), record=False,
                   hooks=RecordedResults(stored.events), metadata=meta)
    model = RecordedModel(stored.model_results(), started.model)
    hooks = ReplayHooks(stored.model_calls(), stored.tool_results())
    given = [Message(role="tool", content=e.content, tool_call_id=e.call_id, name=e.name)
             for e in stored.tool_results() if e.client]  # a caller's results, which the run started with
    left = [ToolSpec(name=e.name, description="", parameters={}) for e in stored.events
            if isinstance(e, ToolCall) and e.client and not e.parent_run_id]  # calls left to the caller
    return run(_replay_agent(stored), started.input, model=model, record=False, hooks=hooks, metadata=meta,
               tool_results=given or None, client_tools=ClientTools(tuple(left)) if left else None)


def fork(stored: StoredRun, at_seq: int, agent: Agent, model: Model, *, store: TraceStore | None = None,
         sampling: dict[str, Any] | None = None) -> AsyncIterator[Event]:
    """Replay what happened before event ``at_seq``, then continue live with ``agent`` and ``model``.

    The fork is recorded as a new run (in its own conversation) so it can be opened and compared later.
    """
    started = stored.events[0]
    assert isinstance(started, RunStarted)
    results = [e for e in stored.model_results() if e.seq < at_seq]
    tools = [e for e in stored.tool_results() if e.seq < at_seq]
    hooks = ReplayHooks([], tools, exact_prompts=False, history=_prior_history(stored))
    from halguru.agents.runtime import run

    return run(agent, started.input, model=RecordedModel(results, model.name, live=model), store=store,
               record=store is not None, hooks=hooks, sampling=sampling,
               metadata={"fork_of": stored.id, "fork_at_seq": at_seq})


def event_line(event: Event | dict[str, Any]) -> str:
    """One comparable line per event: what happened, without ids, times or durations."""
    return describe(parse_event(event) if isinstance(event, dict) else event, limit=80, stable=True).plain


@dataclass
class Comparison:
    """Two runs side by side: whether they agree, and unified diffs of answers and event trees."""

    same_answer: bool
    answer_diff: str
    tree_diff: str
    left: list[str]
    right: list[str]


def compare_runs(left: list[Any], right: list[Any], left_name: str = "original",
                 right_name: str = "fork") -> Comparison:
    """Two runs' events (typed, or dicts as stored) compared: answers and event lines."""
    typed_l, typed_r = parse_events(left), parse_events(right)

    def answer(events: list[Event]) -> str:
        last = events[-1] if events else None
        return last.output if isinstance(last, RunFinished) else ""

    lines_l = [event_line(e) for e in typed_l if e.type != "token"]
    lines_r = [event_line(e) for e in typed_r if e.type != "token"]
    a, b = answer(typed_l), answer(typed_r)
    answer_diff = "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), left_name, right_name,
                                                 lineterm=""))
    tree_diff = "\n".join(difflib.unified_diff(lines_l, lines_r, left_name, right_name, lineterm=""))
    return Comparison(a == b, answer_diff, tree_diff, lines_l, lines_r)


def run_export(stored: StoredRun) -> dict[str, Any]:
    """A run as one JSON document: its summary and every stored event."""
    return {"format": 1, "run": stored.run, "events": [e.model_dump() for e in stored.events]}
