"""Loading a team: the agents reachable from a lead through ``team.handoffs`` and ``team.specialists``.

Errors name the agent.yaml, line and field of the bad reference, like any agent.yaml error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from halguru.agents.spec import TeamSettings
from halguru.errors import AgentSpecError, did_you_mean
from halguru.models.base import ToolSpec
from halguru.yamlfile import yaml_line_for

if TYPE_CHECKING:
    from halguru.agents.loader import Agent

HANDOFF_PREFIX = "handoff_to_"
ASK_PREFIX = "ask_"
_HANDOFF_PARAMS = {"type": "object", "properties": {"reason": {
    "type": "string", "description": "why, in a few words"}}, "additionalProperties": False}
_ASK_PARAMS = {"type": "object", "properties": {"request": {
    "type": "string", "description": "what the specialist should do, self-contained"}},
    "required": ["request"], "additionalProperties": False}


@dataclass
class Member:
    """One agent of a team, with the team tools it gets on top of its own."""

    agent: Agent
    handoffs: dict[str, str] = field(default_factory=dict)     # tool name -> agent name
    specialists: dict[str, str] = field(default_factory=dict)  # tool name -> agent name
    descriptions: dict[str, str] = field(default_factory=dict)  # agent name -> its description, for the model

    @property
    def tool_specs(self) -> list[ToolSpec]:
        """Every tool the member's model sees: its own, then the team's."""
        return [*self.agent.tool_specs, *self.team_tool_specs]

    @property
    def team_tool_specs(self) -> list[ToolSpec]:
        """The team tools as the model sees them: its handoffs, then its specialists."""
        team_tools = [ToolSpec(name=t, description=f"Hand the conversation to {n}: "
                               f"{self._describe(n)}", parameters=_HANDOFF_PARAMS)
                      for t, n in self.handoffs.items()]
        team_tools += [ToolSpec(name=t, description=f"Ask {n} and get its answer back: {self._describe(n)}",
                                parameters=_ASK_PARAMS) for t, n in self.specialists.items()]
        return team_tools

    def _describe(self, name: str) -> str:
        return self.descriptions.get(name, "")


@dataclass
class Team:
    """The lead's team: every member by name, and the guards of the lead's ``team:`` section."""

    lead: str
    members: dict[str, Member]
    settings: TeamSettings


def load_team(lead: Agent) -> Team:
    """Load every agent reachable from ``lead``; reject unknown folders, duplicate names and handoff cycles."""
    from halguru.agents.loader import AGENT_FILE, load_agent

    assert lead.path is not None and lead.spec.team is not None
    by_path: dict[Path, Agent] = {lead.path.resolve(): lead}
    members: dict[str, Member] = {lead.name: Member(lead)}
    declared: dict[str, list[tuple[str, int | None]]] = {}  # agent -> [(target, line)] for cycle errors
    queue = [lead]
    while queue:
        agent = queue.pop(0)
        settings = agent.spec.team
        if settings is None:
            continue
        assert agent.path is not None
        agent_file = agent.path / AGENT_FILE
        text = agent_file.read_text(encoding="utf-8")
        for kind in ("handoffs", "specialists"):
            for index, ref in enumerate(getattr(settings, kind)):
                line = yaml_line_for(text, ("team", kind, index))
                where = f"{agent_file}:{line}: team.{kind}.{index}"
                folder = (agent.path / ref).resolve()
                if not (folder / AGENT_FILE).is_file():
                    raise AgentSpecError(f"{where}: unknown agent {ref!r}{folder_hint(folder, ref)} "
                                         f"(no {folder / AGENT_FILE})")
                target = by_path.get(folder)
                if target is None:
                    try:
                        target = load_agent(folder, with_team=False)
                    except AgentSpecError as exc:
                        raise AgentSpecError(f"{where}: {ref}: {exc}") from None
                    if target.name in members:
                        raise AgentSpecError(f"{where}: two agents are named {target.name!r}; names must differ")
                    by_path[folder] = target
                    members[target.name] = Member(target)
                    queue.append(target)
                if target.name == agent.name:
                    raise AgentSpecError(f"{where}: an agent cannot name itself")
                if kind == "specialists" and target.spec.team is not None:
                    raise AgentSpecError(f"{where}: specialist {target.name!r} has a team of its own; "
                                         "specialists cannot nest (it could cycle)")
                if kind == "specialists" and target.spec.approvals:  # its answer is a tool result: nothing
                    # could be approved, the call was refused while `⏸ waits for approval` was printed
                    raise AgentSpecError(f"{where}: specialist {target.name!r} has approvals: "
                                         f"[{', '.join(target.spec.approvals)}], and a specialist cannot wait for "
                                         "a human; list it under handoffs instead (a handed-off conversation can)")
                tool = (HANDOFF_PREFIX if kind == "handoffs" else ASK_PREFIX) + target.name
                if tool in agent.tools:
                    raise AgentSpecError(f"{where}: tool {tool!r} clashes with a tool of the same name")
                member = members[agent.name]
                member.descriptions[target.name] = target.spec.description
                if kind == "handoffs":
                    member.handoffs[tool] = target.name
                    declared.setdefault(agent.name, []).append((target.name, line))
                else:
                    member.specialists[tool] = target.name
    _reject_cycles(declared, {n: m.agent for n, m in members.items()})
    for name, targets in declared.items():  # whoever is handed the conversation can hand it back
        for handed_to, _ in targets:
            members[handed_to].handoffs.setdefault(HANDOFF_PREFIX + name, name)
            members[handed_to].descriptions.setdefault(name, members[name].agent.spec.description)
    return Team(lead=lead.name, members=members, settings=lead.spec.team)


def folder_hint(folder: Path, ref: str) -> str:
    """`` (did you mean 'agents/billing'?)`` when a sibling of a missing agent folder (one with agent.yaml) has a
    close name: the reference as written with that name (it said 'billing', which is no folder from here)."""
    from halguru.agents.loader import AGENT_FILE

    parent = folder.parent
    if not parent.is_dir():
        return ""
    hint = did_you_mean(folder.name, {p.name for p in parent.iterdir() if (p / AGENT_FILE).is_file()})
    head = ref.rstrip("/").rpartition("/")[0]
    return hint.replace(" (did you mean '", f" (did you mean '{head}/", 1) if hint and head else hint


def _reject_cycles(declared: dict[str, list[tuple[str, int | None]]], agents: dict[str, Agent]) -> None:
    """Declared handoffs must not cycle: handing back is automatic, so a cycle only invites loops."""
    from halguru.agents.loader import AGENT_FILE

    def visit(name: str, path: list[str]) -> None:
        for target, line in declared.get(name, []):
            if target in path:
                chain = " → ".join([*path[path.index(target):], target])
                folder = agents[path[-1]].path
                raise AgentSpecError(f"{folder / AGENT_FILE if folder else path[-1]}:{line}: team.handoffs: "
                                     f"cycle {chain} (handing back is automatic; list each handoff once)")
            visit(target, [*path, target])

    for start in declared:
        visit(start, [start])
