"""Drivers: what runs an agent whose agent.yaml has an orchestration section (``team:``, ``workflow:``).

The runtime knows only this protocol. Orchestration registers each section with the ``register_sections``
plugin hook (name -> a loader that builds the driver from the loaded agent), so the loader and the runtime
never import it. ``sub_run`` is how a driver or a tool runs another agent inside the current run.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from halguru.agents.events import BaseEvent, Error, Token
from halguru.errors import HalguruError, error_kind

if TYPE_CHECKING:
    from halguru.agents.context import RunContext
    from halguru.agents.loader import Agent
    from halguru.agents.loop import LoopEnd
    from halguru.models.base import Message, ToolCallRequest


@dataclass
class RunOutcome:
    """How a run ended, filled in by its driver; the runtime stores it."""

    status: str = "ok"  # ok, failed, limited, paused
    output: str = ""
    error: str | None = None
    paused: ToolCallRequest | None = None  # the call waiting for approval
    active_agent: str | None = None  # a team: the member that holds the conversation now


class Driver(Protocol):
    """Runs an agent with an orchestration section; built once per loaded agent."""

    kind: str  # the agent.yaml section: "team", "workflow"

    @property
    def timeout(self) -> float:
        """The whole run's time limit, in seconds."""
        ...

    def agents(self) -> list[Agent]:
        """Every agent it may run (their models are checked, MCP servers found, tools wrapped by tests)."""
        ...

    def with_agents(self, replace: Callable[[Agent], Agent]) -> Driver:
        """A copy running ``replace(agent)`` for each of its agents (``halguru test`` wraps their tools)."""
        ...

    def timed_out(self) -> tuple[str, str]:
        """The status and message of a run that exceeded ``timeout``."""
        ...

    def drive(self, ctx: RunContext, agent: Agent, history: list[Message], messages: list[Message],
              outcome: RunOutcome) -> AsyncGenerator[BaseEvent, None]:
        """Run it: yield untraced events, append to ``messages`` what the conversation keeps, fill ``outcome``."""
        ...


SectionLoader = Callable[["Agent"], Driver]


@dataclass(frozen=True)
class Section:
    """An agent.yaml section a plugin registered: the loader of its driver and the plugin, for errors."""

    loader: SectionLoader
    plugin: str
    builtin: bool  # halguru's own (team:, workflow:): the only ones that may be fields of agent.yaml itself


def sections() -> dict[str, Section]:
    """agent.yaml section name -> its Section, from the ``register_sections`` plugin hook; asked again when the
    plugins change (tests reset them)."""
    from halguru.plugins.manager import get_plugin_manager

    pm = get_plugin_manager()
    return _sections(id(pm), len(pm.get_plugins()))


@lru_cache(maxsize=1)
def _sections(manager: int, plugins: int) -> dict[str, Section]:
    """A name is its first plugin's, built-in ones first, with a warning naming both (``registered``). A plugin's
    section named like a field of agent.yaml (metadata:, tools:) is refused with a warning: it would take over
    every agent, which all have that field."""
    from halguru.agents.spec import AgentSpec
    from halguru.plugins.manager import BUILTIN_PLUGINS, registered, warn_once

    owners: dict[str, str] = {}
    loaders = registered("register_sections", "section", lambda name, loader: (name, loader), owners)
    found: dict[str, Section] = {}
    for name, loader in loaders.items():
        plugin = owners[name]
        builtin = plugin in BUILTIN_PLUGINS
        if name in AgentSpec.model_fields and not builtin:
            warn_once(f"plugin {plugin!r}: its section {name!r} is not loaded: {name}: is a field of agent.yaml "
                      "itself; the plugin must name its section otherwise")
            continue
        found[name] = Section(loader, plugin, builtin)
    return found


@dataclass
class SubRun:
    """A finished sub-run: its status, answer and error."""

    status: str = "failed"
    output: str = ""
    error: str | None = None


async def sub_run(ctx: RunContext, agent: Agent, input: str, result: SubRun, *,
                  output_schema: dict[str, Any] | None = None,
                  shared_model: bool = True) -> AsyncGenerator[BaseEvent, None]:
    """Run ``agent`` on ``input`` inside the current run: a child context (its events name it and their
    parent, within the parent's deadline and under its hooks), no conversation of its own, its answer in
    ``result``. Its tokens are not yielded: a sub-run's answer reaches the user through its parent.
    ``shared_model``: the run's instance of the agent's model (a team's), else a fresh one (a workflow step's).
    """
    import asyncio

    from halguru.agents.loop import LoopEnd, Turn, agent_loop
    from halguru.models.base import Message

    loop = asyncio.get_running_loop()
    own_deadline = loop.time() + agent.spec.limits.timeout
    child = ctx.child(deadline=own_deadline)
    messages = [Message(role="user", content=input)]
    try:
        if agent.driver is not None:
            outcome = RunOutcome()
            events = agent.driver.drive(child, agent, [], messages, outcome)
        else:
            end = LoopEnd()
            events = agent_loop(child, Turn(agent, child.model_for(agent, shared=shared_model), [], messages,
                                            output_schema=output_schema), end)
        async for event in events:
            if not isinstance(event, Token):
                yield child.tag(event)
    except TimeoutError:
        if loop.time() >= ctx.deadline:  # the parent's time is up: the whole run stops
            raise
        # its own limit: limited, as past its max_steps, and as the same agent run on its own ends
        result.status, result.error = "limited", f"run exceeded limits.timeout ({agent.spec.limits.timeout:g}s)"
        yield child.tag(Error(kind="timeout", message=result.error))
        return
    except HalguruError as exc:
        result.status, result.error = "failed", str(exc)
        yield child.tag(Error(kind=error_kind(exc), message=str(exc)))
        return
    if agent.driver is not None:
        result.status, result.output, result.error = outcome.status, outcome.output, outcome.error
        return
    result.status, result.output, result.error = plain_status(end)
    if end.reason == "limit":
        yield child.tag(Error(kind="limit", message=str(end.detail)))


def plain_status(end: LoopEnd) -> tuple[str, str, str | None]:
    """A plain agent's run status from how its loop ended (a limit it reached: limited, as a team's run)."""
    if end.reason in ("answer", "client_tools"):  # client_tools: the caller runs the calls it ended with
        return "ok", end.output, None
    if end.reason == "paused":
        return "paused", end.output, end.detail
    return "limited", end.output, end.detail
